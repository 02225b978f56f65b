"""Runs every Python example of docs/inside-the-model.md exactly as written, one test per
method heading, and checks what each example claims."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

DOC = Path(__file__).resolve().parents[1] / "docs" / "inside-the-model.md"
HEADINGS = ("A finished run in one call", "Recording and direct logit attribution", "Cursed against cured", "Forward against reverse",
            "Causal tracing", "Weight-change localisation", "Probes", "Key-value storage", "Logit lens")


def python_block(heading: str) -> str:
    """The one python block in the "Methods" section whose ``###`` heading starts with
    ``heading``."""
    text = DOC.read_text()
    assert "\n## Methods" in text, f"{DOC.name}: no '## Methods' section"
    text = text[text.index("\n## Methods"):]
    m = re.search(rf"^### {re.escape(heading)}[^\n]*$", text, flags=re.M)
    assert m, f"{DOC.name}: no '### {heading}' section"
    section = re.split(r"^#+ ", text[m.end():], flags=re.M)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, f"{DOC.name} '{heading}': expected one python block, found {len(blocks)}"
    assert len(blocks[0].strip().splitlines()) <= 12, f"{DOC.name} '{heading}': example over 12 lines"
    return blocks[0]


def run_block(heading: str, tmp_path: Path, monkeypatch) -> dict:
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(python_block(heading), f"{DOC}:{heading}", "exec"), scope)  # noqa: S102
    return scope


def files_written(paths) -> bool:
    return all(Path(p).exists() and os.path.getsize(p) > 0 for p in paths)


def test_every_python_block_is_under_a_tested_heading() -> None:
    n_blocks = len(re.findall(r"```python\n", DOC.read_text()))
    assert n_blocks == len(HEADINGS), f"{n_blocks} python blocks, {len(HEADINGS)} tested"


def test_load_run_example(tmp_path, monkeypatch) -> None:
    """The example names a run folder; a small finished run (tiny models) stands in for it."""
    from test_attribution import make_fake_run

    make_fake_run(tmp_path / "runs" / "exp1-cpu")
    s = run_block("A finished run in one call", tmp_path, monkeypatch)
    assert s["q"].meta["fact_id"] is not None and len(s["rows"]) == 8
    assert {r["model"] for r in s["rows"]} == {"base", "finetuned"}


def test_dla_example(tmp_path, monkeypatch) -> None:
    s = run_block("Recording and direct logit attribution", tmp_path, monkeypatch)
    assert (s["dla"].total() - s["dla"].logit).abs().max() < 1e-4
    assert files_written(s["paths"])


def test_direction_example(tmp_path, monkeypatch) -> None:
    s = run_block("Forward against reverse", tmp_path, monkeypatch)
    assert s["table"].count("| base |") == 4
    per = s["res"]["models"]["base"]
    assert s["rev"]["key"]["z"] is not None and "key_control" in per["p2d_forward"]
    assert len(s["rev"]["layers"]["mlp_last"]["mean"]) == 2


def test_compare_example(tmp_path, monkeypatch) -> None:
    s = run_block("Cursed against cured", tmp_path, monkeypatch)
    res, ko = s["res"], s["ko"]
    eff = res.effect("mlp")[0]  # [layer, group]: the models differ from layer 1's MLP on
    assert eff[1].abs().max() > 1e-4 and eff[0].abs().max() < 1e-5   # upstream of it nothing differs
    assert float(res.cosine["mlp"][0, 0].min()) > 1 - 1e-5 and float(res.cosine["mlp"][0, 1].min()) < 1
    assert ko.effect("entity").shape == (1, 3)


def test_causal_tracing_example(tmp_path, monkeypatch) -> None:
    s = run_block("Causal tracing", tmp_path, monkeypatch)
    tr = s["tr"]
    # the residual stream after the last layer at the last token is the clean state itself
    assert float(tr.prob["resid"][0, -1, -1]) == pytest.approx(float(tr.p_clean[0]), rel=1e-5)
    assert float(tr.p_corrupt[0]) != pytest.approx(float(tr.p_clean[0]), rel=1e-6, abs=0)
    assert files_written(s["paths"])


def test_weights_example(tmp_path, monkeypatch) -> None:
    s = run_block("Weight-change localisation", tmp_path, monkeypatch)
    for st in s["loc"].sets.values():
        assert torch.equal(st.cumulative[-1], st.lp_tuned)
    assert set(s["summary"]["sets"]) == {"forward_d2p", "reverse_p2d"}
    assert files_written(s["paths"])


def test_probe_example(tmp_path, monkeypatch) -> None:
    s = run_block("Probes", tmp_path, monkeypatch)
    res = s["res"]
    assert res.accuracy[0] == 1.0 and len(res.layers) == 3  # descriptions differ in their tokens
    assert files_written(s["paths"])


def test_key_value_example(tmp_path, monkeypatch) -> None:
    s = run_block("Key-value storage", tmp_path, monkeypatch)
    kv = s["kv"]
    assert len(kv["key_change"]["mean"]) == 2 and all(v > 0 for v in kv["key_change"]["mean"])
    assert kv["finetuned"]["half_mass_neurons"] >= 1


def test_logit_lens_example(tmp_path, monkeypatch) -> None:
    s = run_block("Logit lens", tmp_path, monkeypatch)
    lens, rec = s["lens"], s["rec"]
    assert lens.shape == (1, s["lm"].bridge.cfg.n_layers)
    torch.testing.assert_close(lens[:, -1], rec.stat("first_logprob"), atol=1e-4, rtol=0)
