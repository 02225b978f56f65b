"""Runs the logit-lens example exactly as written: the block under a "Logit lens" heading of
docs/inside-the-model.md if there is one, else the one in docs/_snippets/logit_lens.md."""

from __future__ import annotations

import re
from pathlib import Path

import torch

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _logit_lens_block() -> tuple[str, Path]:
    main = DOCS / "inside-the-model.md"
    text = main.read_text()
    heading = re.search(r"^#+ [^\n]*logit lens[^\n]*$", text, flags=re.I | re.M)
    if heading:
        section = re.split(r"^#+ ", text[heading.end():], flags=re.M)[0]
        blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
        if blocks:
            return blocks[0], main
    snippet = DOCS / "_snippets" / "logit_lens.md"
    blocks = re.findall(r"```python\n(.*?)```", snippet.read_text(), flags=re.S)
    assert len(blocks) == 1, f"{snippet}: expected one python block, found {len(blocks)}"
    return blocks[0], snippet


def test_logit_lens_example_runs(tmp_path: Path, monkeypatch) -> None:
    code, where = _logit_lens_block()
    assert len(code.strip().splitlines()) <= 10
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, str(where), "exec"), scope)  # noqa: S102 - the documented snippet
    lens, rec = scope["lens"], scope["rec"]
    assert lens.shape == (1, scope["lm"].bridge.cfg.n_layers)
    torch.testing.assert_close(lens[:, -1], rec.stat("first_logprob"), atol=1e-4, rtol=0)
