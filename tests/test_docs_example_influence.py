"""Runs the Python example of docs/influence.md exactly as written and checks what it claims."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "influence.md"


def test_influence_example_runs(tmp_path, monkeypatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, f"{DOC.name}: expected one python block, found {len(blocks)}"
    assert len(blocks[0].strip().splitlines()) <= 12
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(blocks[0], str(DOC), "exec"), scope)  # noqa: S102
    ek, tr = scope["ek"], scope["tr"]
    assert ek.total.shape == tr.dot.shape == tr.cosine.shape == (1, 3)
    assert ek.per_token.shape[:2] == (1, 3) and ek.per_layer.shape == (2, 1, 3)
    # the document that states the query's fact in the query's order is the most similar
    assert int(tr.cosine.argmax()) == 1 and int(tr.dot.argmax()) == 1
    assert (Path("influence-work") / "influence").is_dir()
