"""Attribution invariants on a tiny model: parts sum to the logit they explain."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interp.attribution import (attribution_hooks, compare, direct_logit_attribution, grad_x_act,
                                logit_lens)
from interp.models import load_model
from interp.recording import Query, record

QUERIES = [
    Query("The writer of Tides of Glass is", " Orla Quillmere", foil=" Ben Hall"),
    Query("Known as Ben Hall, the", " first pilot", foil=" last"),
    Query("Hi", " there", foil=" Zed"),
    Query("A longer prompt about a composer of songs:", " Ada", foil=" Bo"),
]


def _perturbed(processing: str):
    lm = load_model("tiny:n_layers=2,d_model=64", processing=processing)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-trivial norm weights, so the final-norm handling matters
        for name, p in lm.hf.named_parameters():
            if "norm" in name:
                p.mul_(1 + 0.3 * torch.randn(p.shape, generator=gen))
    return lm


@pytest.fixture(scope="module")
def lm():
    return _perturbed("none")


@pytest.fixture(scope="module")
def rec(lm):
    return record(lm, QUERIES, attribution_hooks(lm), positions=("last", "all"), grad="first")


@pytest.mark.parametrize("contrast", [False, True])
def test_dla_sums_to_logit(lm, rec, contrast: bool) -> None:
    a = direct_logit_attribution(lm, rec, contrast=contrast)
    torch.testing.assert_close(a.total(), a.logit, atol=1e-4, rtol=0)
    torch.testing.assert_close(a.heads.sum(-1), a.attn, atol=1e-4, rtol=0)
    torch.testing.assert_close(a.neurons.sum(-1), a.mlp, atol=1e-4, rtol=0)
    assert a.attn.shape == (4, 2) and a.heads.shape == (4, 2, 4) and a.neurons.shape == (4, 2, 128)


@pytest.mark.parametrize("processing", ["fold_ln", "fold_ln_center"])
def test_dla_sums_to_logit_under_weight_processing(processing: str) -> None:
    lm = _perturbed(processing)
    rec = record(lm, QUERIES, attribution_hooks(lm))
    a = direct_logit_attribution(lm, rec, contrast=False)
    torch.testing.assert_close(a.total(), a.logit, atol=1e-4, rtol=0)
    torch.testing.assert_close(a.neurons.sum(-1), a.mlp, atol=1e-4, rtol=0)


def test_logit_lens_ends_at_the_model(lm, rec) -> None:
    lens = logit_lens(lm, rec)  # [n, L]
    assert lens.shape == (4, 2)
    torch.testing.assert_close(lens[:, -1], rec.stat("first_logprob"), atol=1e-4, rtol=0)


@pytest.mark.parametrize("pos", ["last", "all"])
def test_grad_x_act_is_consistent(lm, rec, pos: str) -> None:
    g = grad_x_act(lm, rec, pos)
    torch.testing.assert_close(g.heads.sum(-1), g.attn, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(g.neurons.sum(-1), g.mlp, atol=1e-4, rtol=1e-4)
    assert torch.isfinite(g.total()).all()


def test_compare_summary(lm, rec) -> None:
    a = direct_logit_attribution(lm, rec, contrast=True)
    fwd, rev = a.subset(torch.tensor([True, True, False, False])), a.subset(torch.tensor([False, False, True, True]))
    with pytest.warns(UserWarning, match="writers need at least 3"):  # 2 queries per set here
        out = compare(fwd, rev)
    assert len(out["forward"]["mlp"]["mean"]) == 2 and len(out["difference"]["attn"]) == 2
    assert out["summary"].startswith("[dla_contrast]")
    assert out["forward_writers"] == [] and "not tested (n=2 < 3)" in out["summary"]


def test_compare_on_one_query_reports_no_spread_and_no_writers(lm, rec) -> None:
    import math

    a = direct_logit_attribution(lm, rec, contrast=True)
    one, rest = a.subset(torch.tensor([True, False, False, False])), a.subset(torch.tensor([False, True, True, True]))
    with pytest.warns(UserWarning, match="the forward set has 1 query"):
        out = compare(one, rest)
    assert all(math.isnan(v) for v in out["forward"]["mlp"]["sem"])
    assert out["writers_tested"] == {"forward": False, "reverse": True} and out["forward_writers"] == []


def make_fake_run(root, n_facts: int = 3):
    """An experiment 1 run directory with a tiny base model and a perturbed "finetuned" copy."""
    import json

    from experiments.exp1.data import Exp1DataConfig, generate_exp1, write_exp1
    from interp.models import save_model

    spec = "tiny:n_layers=2,d_model=64"
    write_exp1(generate_exp1(Exp1DataConfig(n_facts=n_facts, n_paraphrases=1, n_test_templates=2)),
               root / "data")
    tuned = load_model(spec)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in tuned.hf.named_parameters():
            if "mlp" in name:
                p.add_(0.02 * torch.randn(p.shape, generator=gen))
    save_model(tuned, root / "model")
    (root / "config.json").write_text(json.dumps({"model": spec}))
    return root


def test_inside_analysis_on_fake_run(tmp_path) -> None:
    import json

    from experiments.exp1.analyse import main

    run = make_fake_run(tmp_path / "run")
    # a random model's answers are far below the default clean-probability gate: trace them all
    assert main([str(run), "--prompts-per-fact", "2", "--trace-facts", "2", "--trace-templates", "3",
                 "--trace-min-p", "0", "--quiet"]) == 0
    out = run / "analysis"
    s = json.loads((out / "summary.json").read_text())
    assert s["n_forward"] == 6 and s["n_reverse"] == 6
    for label in ("finetuned", "base"):
        assert s[label]["dla"]["max_abs_sum_error"] < 1e-4
        assert len(s[label]["logit_lens_mean"]["forward"]) == 2
    assert s["weights"]["per_layer"]["rel_W_out"][0] > 0
    md = (out / "summary.md").read_text()
    assert md.startswith("# Inside the model")
    for f in s["figures"] + s["pages"] + [s["causal_tracing"]["page"]]:
        assert (out / f).stat().st_size > 0, f
    assert any(f.endswith(".svg") for f in s["figures"]) and len(s["pages"]) == 2
    # the causal sections, on every query set, with CIs over facts
    sets = {"d2p_forward", "p2d_forward", "p2d_reverse", "d2p_reverse"}
    for label in ("finetuned", "base"):
        tr = s["causal_tracing"][label]
        assert set(tr) == sets and tr["d2p_forward"]["n"] == 2
        assert tr["d2p_forward"]["n_prompts"] == 4  # both test templates of each fact, averaged per fact
        eff = tr["p2d_forward"]["effect"]["resid"]["last"]
        assert len(eff["mean"]) == 2 and eff["low"][0] <= eff["mean"][0] <= eff["high"][0]
        assert eff["interval"] == "t" and tr["p2d_forward"]["noise_std"] > 0
        whole = tr["p2d_forward"]["effect_answer"]["resid"]["last"]
        assert len(whole["mean"]) == 2 and tr["p2d_forward"]["p_clean_answer"]["mean"] <= tr["p2d_forward"]["p_clean"]["mean"]
        peak = tr["p2d_forward"]["peak"]["resid"]["last"]
        assert peak["p_family"] is None or 0 < peak["p_family"] <= 1
    assert set(s["weight_revert"]["sets"]) == sets
    assert set(s["key_value"]["key_value"]) == sets
    assert "key_change_untrained" in s["key_value"]["key_value"]["d2p_reverse"]
    probes = s["probes"]["finetuned"]
    assert probes["d2p_forward@description"]["chance"] == 1 / 3
    assert "transfer_p2d_name_to_description" in probes
    assert set(s["direction"]["models"]) == {"base", "finetuned"} and "key" in s["direction"]["models"]["finetuned"]["p2d_reverse"]
    for section in ("## Causal tracing", "## Weight-change localisation", "## Probes", "## Key-value",
                    "## Forward against reverse"):
        assert section in md


def test_head_heatmaps_per_head_view(lm, rec, tmp_path) -> None:
    from analysis.inside_figures import head_heatmaps

    a = direct_logit_attribution(lm, rec, contrast=True)
    fwd, rev = a.subset(torch.tensor([True, True, False, False])), a.subset(torch.tensor([False, False, True, True]))
    paths = head_heatmaps(fwd, rev, tmp_path, "heads")
    assert all(p.stat().st_size > 0 for p in paths) and {p.suffix for p in paths} == {".png", ".svg"}
    with pytest.raises(ValueError, match="layer, head"):
        head_heatmaps(np.zeros((2, 4)), np.zeros((3, 4)), tmp_path, "bad")
