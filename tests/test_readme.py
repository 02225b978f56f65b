"""The README's Python examples run as written."""

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2
    scope: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), scope)  # noqa: S102 - our own README
    out = capsys.readouterr().out
    assert "torch.Size([1, 6, 1536])" in out and "Paris" in out
    assert scope["mlp"].shape[-1] == scope["lm"].hf.config.intermediate_size
