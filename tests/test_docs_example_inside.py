"""Runs the Python example of docs/inside-the-model.md exactly as written."""

from __future__ import annotations

import os
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "inside-the-model.md"


def test_docs_example_runs(tmp_path: Path, monkeypatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1
    code = blocks[0]
    assert len(code.strip().splitlines()) <= 12
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, str(DOC), "exec"), scope)  # noqa: S102 - the documented snippet
    dla = scope["dla"]
    assert (dla.total() - dla.logit).abs().max() < 1e-4
    assert all(Path(p).exists() and os.path.getsize(p) > 0 for p in scope["paths"])
