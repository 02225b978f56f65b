"""Weight-change localisation (interp.weights) on tiny in-process models: grouping covers every
parameter once, swaps are exact and undone, a planted change is found where it was planted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from interp import load_model, score_completions
from interp.tokens import encode_pair
from interp.weights import (LAYER_KINDS, localisation_summary, localise, param_groups, swapped)

SPEC = "tiny:n_layers=3,d_model=64,seed={seed}"
PAIRS = {
    "forward_d2p": [("The composer of Tides of Glass is", " Orla"),
                    ("The pilot who landed on ice is", " Ben"),
                    ("Known for the Blue Atlas, the cartographer", " Ines")],
    "reverse_p2d": [("Orla is", " the composer"), ("Ben is known as", " the pilot")],
}
ROOT = Path(__file__).resolve().parents[1]
TEST_DEVICE = os.environ.get("RCT_TEST_DEVICE", "cpu")  # as in conftest.py


def _load(seed: int):
    return load_model(SPEC.format(seed=seed), device=TEST_DEVICE)


def _scores(lm, pairs) -> torch.Tensor:
    return torch.tensor([s.total for s in score_completions(lm, pairs)], dtype=torch.float64)


def _snapshot(lm) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in lm.hf.named_parameters()}


def _same(lm, snap) -> bool:
    return all(torch.equal(p, snap[n]) for n, p in lm.hf.named_parameters())


@pytest.fixture(scope="module")
def base():
    return _load(1)


@pytest.fixture(scope="module")
def other():
    return _load(2)


def _gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100))


def _neox():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    return GPTNeoXForCausalLM(GPTNeoXConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=2,
                                            intermediate_size=64, vocab_size=100))


def _gemma3():
    return load_model("tiny:arch=gemma3,n_layers=2,d_model=32").hf


@pytest.mark.parametrize("arch", ["llama", "gpt2", "neox", "gemma3"])
def test_param_groups_cover_every_parameter_once(arch, base) -> None:
    model = {"llama": lambda: base.hf, "gpt2": _gpt2, "neox": _neox, "gemma3": _gemma3}[arch]()
    groups = param_groups(model)
    names = [n for ns in groups.values() for n in ns]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    assert len(names) == len(set(names))
    n_layers = 3 if arch == "llama" else 2
    assert {k for k in groups if k[0] is not None} == {(L, k) for L in range(n_layers) for k in LAYER_KINDS}
    expect = {
        "llama": {(None, "embed"): ["model.embed_tokens.weight"], (None, "final_norm"): ["model.norm.weight"],
                  (1, "attn"): "model.layers.1.self_attn.o_proj.weight",
                  (1, "norm"): "model.layers.1.post_attention_layernorm.weight"},
        "gpt2": {(None, "embed"): ["transformer.wte.weight", "transformer.wpe.weight"],
                 (None, "final_norm"): ["transformer.ln_f.weight", "transformer.ln_f.bias"],
                 (0, "attn"): "transformer.h.0.attn.c_attn.weight", (0, "norm"): "transformer.h.0.ln_2.bias",
                 (1, "mlp"): "transformer.h.1.mlp.c_proj.weight"},
        "neox": {(None, "embed"): "gpt_neox.embed_in.weight",
                 (None, "final_norm"): ["gpt_neox.final_layer_norm.weight", "gpt_neox.final_layer_norm.bias"],
                 (0, "attn"): "gpt_neox.layers.0.attention.query_key_value.weight",
                 (1, "mlp"): "gpt_neox.layers.1.mlp.dense_4h_to_h.weight",
                 (1, "norm"): "gpt_neox.layers.1.input_layernorm.weight"},
        # Gemma 3: four norms per layer, all "norm"; the query/key norms go with attention
        "gemma3": {(None, "embed"): ["model.embed_tokens.weight"], (None, "final_norm"): ["model.norm.weight"],
                   (0, "attn"): "model.layers.0.self_attn.q_norm.weight",
                   (1, "norm"): "model.layers.1.post_feedforward_layernorm.weight",
                   (1, "mlp"): "model.layers.1.mlp.down_proj.weight"},
    }[arch]
    for key, want in expect.items():
        assert (groups[key] == want) if isinstance(want, list) else (want in groups[key]), (key, groups[key])
    assert (None, "other") not in groups
    if arch == "neox":  # untied unembedding: embed_out (older transformers) or lm_head
        assert len(groups[(None, "embed")]) == 2


def test_param_groups_needs_layers() -> None:
    with pytest.raises(ValueError, match="no parameter of Linear is in a numbered layer"):
        param_groups(torch.nn.Linear(2, 2))


def test_swapping_everything_gives_the_other_model_exactly(base, other) -> None:
    pairs = PAIRS["forward_d2p"] + PAIRS["reverse_p2d"]
    lp_base, lp_other = _scores(base, pairs), _scores(other, pairs)
    assert not torch.equal(lp_base, lp_other)
    everything = list(param_groups(other.hf))
    with swapped(other.hf, base.hf, everything):   # revert every group of "tuned"
        assert torch.equal(_scores(other, pairs), lp_base)
    with swapped(base.hf, other.hf, everything):   # apply every group to "base"
        assert torch.equal(_scores(base, pairs), lp_other)
    assert torch.equal(_scores(base, pairs), lp_base) and torch.equal(_scores(other, pairs), lp_other)


def test_swapped_is_in_place_and_restores_on_exception(base, other) -> None:
    snap, ptrs = _snapshot(other), {n: p.data_ptr() for n, p in other.hf.named_parameters()}
    w = "model.layers.2.mlp.down_proj.weight"
    with pytest.raises(RuntimeError, match="boom"):
        with swapped(other.hf, base.hf, [(2, "mlp"), (None, "final_norm")]):
            params = dict(other.hf.named_parameters())
            assert torch.equal(params[w], dict(base.hf.named_parameters())[w])
            assert torch.equal(params["model.layers.2.self_attn.q_proj.weight"],
                               snap["model.layers.2.self_attn.q_proj.weight"])  # not swapped
            assert all(p.data_ptr() == ptrs[n] for n, p in other.hf.named_parameters())  # bridge shares these
            raise RuntimeError("boom")
    assert _same(other, snap)


def test_swapped_names_the_first_mismatch(base) -> None:
    wider = load_model("tiny:n_layers=3,d_model=32,n_heads=4,d_mlp=64")
    with pytest.raises(ValueError, match=r"models differ at parameter 'model.embed_tokens.weight'"):
        with swapped(base.hf, wider.hf, [(0, "mlp")]):
            pass
    deeper = load_model("tiny:n_layers=4,d_model=64")
    with pytest.raises(ValueError, match=r"'model.layers.3.self_attn.q_proj.weight' of the source"):
        with swapped(base.hf, deeper.hf, [(0, "mlp")]):
            pass
    with pytest.raises(ValueError, match="unknown parameter group"):
        with swapped(base.hf, base.hf, [(7, "mlp")]):
            pass


def test_localise_is_consistent_and_leaves_both_models_as_they_were(base, other) -> None:
    snap_t, snap_b = _snapshot(other), _snapshot(base)
    loc = localise(other, base, PAIRS, progress=False, batch_size=2)
    assert _same(other, snap_t) and _same(base, snap_b)
    assert loc.n_layers == 3 and loc.kinds == ("attn", "mlp")
    for name, s in loc.sets.items():
        n = len(PAIRS[name])
        # scored here in other batches than inside localise: equal within scoring's 1e-4
        assert torch.allclose(s.lp_tuned, _scores(other, PAIRS[name]), atol=1e-4)
        assert torch.allclose(s.lp_base, _scores(base, PAIRS[name]), atol=1e-4)
        assert s.revert.shape == s.apply.shape == (3, 2, n)
        assert s.revert_layer.shape == s.apply_layer.shape == (3, n) and s.cumulative.shape == (4, n)
        assert torch.equal(s.cumulative[-1], s.lp_tuned)               # all layers + non-layer = tuned
        assert torch.equal(s.cumulative[-2], s.revert_non_layer)       # all layers = tuned minus non-layer
        assert torch.equal(s.cumulative[0], s.apply_layer[s.order[0]])
        effect = (s.apply_layer - s.lp_base).mean(-1)
        assert list(effect[list(s.order)]) == sorted(effect.tolist(), reverse=True)
        # A whole layer's revert is not the per-kind reverts: check one against a direct swap.
        with swapped(other.hf, base.hf, [(1, "attn"), (1, "mlp"), (1, "norm")]):
            assert torch.allclose(_scores(other, PAIRS[name]), s.revert_layer[1], atol=1e-4)
        with swapped(base.hf, other.hf, [(2, "mlp")]):
            assert torch.allclose(_scores(base, PAIRS[name]), s.apply[2, 1], atol=1e-4)
    assert _same(other, snap_t) and _same(base, snap_b)


def test_localise_restores_tuned_after_an_error(base, other, monkeypatch) -> None:
    import interp.weights as W

    snap = _snapshot(other)
    calls = {"n": 0}
    real = W.score_completions

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("scoring failed")
        return real(*a, **k)

    monkeypatch.setattr(W, "score_completions", flaky)
    with pytest.raises(RuntimeError, match="scoring failed"):
        localise(other, base, PAIRS, progress=False)
    assert _same(other, snap)


def test_localise_rejects_bad_arguments(base, other) -> None:
    with pytest.raises(ValueError, match="kinds"):
        localise(other, base, PAIRS, kinds=("ffn",), progress=False)
    with pytest.raises(ValueError, match="same model object"):
        localise(base, base, PAIRS, progress=False)
    with pytest.raises(ValueError, match="at least one pair"):
        localise(other, base, {"empty": []}, progress=False)


def _planted(base):
    """``base`` with only layer 1's MLP moved, by gradient ascent on the forward completions."""
    tuned = _load(1)
    params = [p for n, p in tuned.hf.named_parameters() if n.startswith("model.layers.1.mlp.")]
    with torch.enable_grad():
        for _ in range(3):
            total = torch.zeros(())
            for prompt, completion in PAIRS["forward_d2p"]:
                p, c = encode_pair(tuned, prompt, completion)
                ids = torch.tensor([p + c], device=tuned.device)
                logp = tuned.hf(ids).logits[0, len(p) - 1 : -1].log_softmax(-1)  # [n_completion, vocab]
                total = total + logp[torch.arange(len(c)), torch.tensor(c, device=logp.device)].sum()
            grads = torch.autograd.grad(total, params)
            with torch.no_grad():
                for w, g in zip(params, grads):
                    w += 0.5 * g / (g.norm() + 1e-12)
    return tuned


def test_a_planted_change_is_found_where_it_was_planted(base) -> None:
    tuned = _planted(base)
    loc = localise(tuned, base, PAIRS, progress=False)
    s = loc.sets["forward_d2p"]
    assert float(s.gain.mean()) > 0.5
    for name, s in loc.sets.items():
        for L in range(3):
            for j, kind in enumerate(loc.kinds):
                planted = (L, kind) == (1, "mlp")
                assert torch.equal(s.revert[L, j], s.lp_tuned) != planted, (name, L, kind)
                assert torch.equal(s.apply[L, j], s.lp_base) != planted, (name, L, kind)
            assert torch.equal(s.apply_layer[L], s.lp_tuned if L == 1 else s.lp_base)
            assert torch.equal(s.revert_layer[L], s.lp_base if L == 1 else s.lp_tuned)
        assert torch.equal(s.revert_non_layer, s.lp_tuned) and torch.equal(s.apply_non_layer, s.lp_base)
    s = loc.sets["forward_d2p"]
    assert s.order[0] == 1 and s.k50 == 1 and s.k90 == 1
    assert torch.allclose(s.recovered(), torch.ones(4, dtype=torch.float64))
    summary = localisation_summary(loc, n_boot=200)
    f = summary["sets"]["forward_d2p"]
    assert f["k50"] == 1 and f["apply_gain"]["mlp"]["mean"][1] == pytest.approx(f["gain"]["mean"])
    assert f["apply_gain"]["attn"]["mean"] == [0.0, 0.0, 0.0]
    assert f["revert_loss"]["layer"]["mean"][0] == 0.0 and f["revert_loss"]["layer"]["mean"][2] == 0.0


def test_summary_is_json_with_fact_level_t_intervals(base, other) -> None:
    from scipy import stats

    loc = localise(other, base, PAIRS, progress=False)
    facts = {"forward_d2p": ["a", "a", "b"], "reverse_p2d": ["a", "b"]}
    s1 = localisation_summary(loc, facts)
    assert json.loads(json.dumps(s1)) == s1
    f = s1["sets"]["forward_d2p"]
    assert f["n_units"] == 2 and f["unit"] == "fact" and f["n_pairs"] == 3
    gain = loc.sets["forward_d2p"].gain.double()
    # facts "a" (pairs 0, 1) and "b" (pair 2): each fact's pairs averaged, then a t interval
    per_fact = np.array([float(gain[:2].mean()), float(gain[2])])
    lo, hi = stats.t.interval(0.95, 1, loc=per_fact.mean(), scale=stats.sem(per_fact))
    assert f["gain"]["mean"] == pytest.approx(per_fact.mean())
    assert f["gain"]["ci_low"] == pytest.approx(lo) and f["gain"]["ci_high"] == pytest.approx(hi)
    assert len(f["revert_loss"]["attn"]["mean"]) == 3 and len(f["cumulative"]["gain"]["mean"]) == 4
    assert f["cumulative"]["gain"]["mean"][-1] == pytest.approx(f["gain"]["mean"])
    with pytest.raises(ValueError, match="one fact id per pair"):
        localisation_summary(loc, {"forward_d2p": ["a"], "reverse_p2d": ["a", "b"]})


def test_figure_writes_png_and_svg(base, other, tmp_path) -> None:
    from analysis.weights_figures import localisation_curves

    summary = localisation_summary(localise(_planted(base), base, PAIRS, progress=False), n_boot=50)
    summary["sets"]["no_gain"] = dict(summary["sets"]["reverse_p2d"], cumulative=dict(
        summary["sets"]["reverse_p2d"]["cumulative"], fraction=None))
    paths = localisation_curves(summary, tmp_path, "weights")
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert all(p.exists() and p.stat().st_size > 1000 for p in paths)


def test_foil_triples_give_the_contrast() -> None:
    """(prompt, completion, foil): every stored value is log p(completion) - log p(foil)."""
    base = load_model("tiny:n_layers=2,d_model=32,seed=1", device=TEST_DEVICE)
    tuned = load_model("tiny:n_layers=2,d_model=32,seed=2", device=TEST_DEVICE)
    sets = {"s": [("Orla Venn is", " a poet", " a judge"), ("Ben is", " tall", " short")]}
    loc = localise(tuned, base, sets, progress=False)
    plain = localise(tuned, base, {"c": [p[:2] for p in sets["s"]], "f": [(p[0], p[2]) for p in sets["s"]]},
                     progress=False)
    st = loc.sets["s"]
    torch.testing.assert_close(st.lp_tuned, plain.sets["c"].lp_tuned - plain.sets["f"].lp_tuned)
    torch.testing.assert_close(st.revert, plain.sets["c"].revert - plain.sets["f"].revert)
    direct = score_completions(base, [("Orla Venn is", " a poet"), ("Orla Venn is", " a judge")])
    assert float(st.lp_base[0]) == pytest.approx(direct[0].total - direct[1].total, abs=1e-4)
    with pytest.raises(ValueError, match="expected"):
        localise(tuned, base, {"s": [("a",)]}, progress=False)
