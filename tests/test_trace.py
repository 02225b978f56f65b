"""Causal tracing: invariants on tiny models (exact recoveries, cache = full runs, hook sites)."""

from __future__ import annotations

import pytest
import torch

from interp.hooks import hook_name
from interp.models import load_model
from interp.recording import Query, record
from interp.tokens import encode_pair
from interp.trace import CATEGORIES, TraceConfig, causal_trace, restored_probability, site_modules

Q = Query("Alice Bob is the one who", " x", {"name": "Alice Bob"})
Q2 = Query("They say the tall one is", " Carol", {"description": "the tall one"})


@pytest.fixture(scope="module")
def lm():
    return load_model("tiny:n_layers=4,d_model=64,seed=3")


@pytest.mark.parametrize("layer", [0, 2, 3])
def test_restoring_a_layer_everywhere_recovers_clean(lm, layer) -> None:
    p_clean, p_corrupt, p_restored = restored_probability(lm, Q, "name", [("resid", layer)])
    assert p_corrupt != pytest.approx(p_clean, rel=1e-6, abs=0)  # the noise did something
    assert p_restored == pytest.approx(p_clean, rel=1e-5)


def test_restoring_mlp_and_attn_outputs(lm) -> None:
    """Every MLP and attention output restored everywhere: the last token's residual is its own
    (uncorrupted) embedding plus clean outputs, so the clean probability comes back; the
    same outputs restored only at the entity's tokens leave the corruption in the residual."""
    restore = [(s, L) for s in ("mlp", "attn") for L in range(4)]
    p_clean, p_corrupt, p_all = restored_probability(lm, Q, "name", restore)
    assert p_all == pytest.approx(p_clean, rel=1e-5)
    _, _, p_entity = restored_probability(lm, Q, "name", restore, positions=[1, 2, 3])
    assert p_entity != pytest.approx(p_clean, rel=1e-4, abs=0)


def test_trace_last_layer_last_token_is_clean_and_cache_changes_nothing(lm) -> None:
    cfg = TraceConfig(n_noise=2, window=2, batch_size=8)
    tr = causal_trace(lm, [Q], "name", cfg, progress=False)
    full = causal_trace(lm, [Q], "name", cfg, progress=False, use_cache=False)
    for s in cfg.sites:
        torch.testing.assert_close(tr.prob[s], full.prob[s], rtol=1e-4, atol=1e-7)
    assert tr.columns[0][-1][1] == "last"
    assert float(tr.prob["resid"][0, -1, -1]) == pytest.approx(float(tr.p_clean[0]), rel=1e-5)
    assert tr.columns[0][0][0] == tr.span[0][0]  # no column before the entity


def test_key_positions_match_the_full_trace(lm) -> None:
    full = causal_trace(lm, [Q2], "description", TraceConfig(n_noise=2, window=3), progress=False)
    key = causal_trace(lm, [Q2], "description", TraceConfig(n_noise=2, window=3, positions="key"),
                       progress=False)
    cols = [p for p, _ in full.columns[0]]
    for j, (p, cat) in enumerate(key.columns[0]):
        assert cat in CATEGORIES
        torch.testing.assert_close(key.prob["mlp"][0, :, j], full.prob["mlp"][0, :, cols.index(p)])
    assert torch.isfinite(key.by_category("attn")).any()


def test_same_noise_for_each_model_and_seed_reproducible(lm) -> None:
    cfg = TraceConfig(n_noise=2, sites=("resid",), layer_stride=2)
    a = causal_trace(lm, [Q], "name", cfg, progress=False)
    b = causal_trace(lm, [Q], "name", cfg, progress=False)
    assert torch.equal(a.prob["resid"], b.prob["resid"])
    assert a.layers == [0, 2, 3]


def test_site_modules_are_the_bridge_hook_points(lm) -> None:
    """The HF modules hooked for tracing output exactly the bridge's resid_post, mlp_out and
    attn_out: the same sites as every other analysis in the toolkit."""
    mods = site_modules(lm.hf)
    got: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_hook(lambda mod, a, o, k=f"{s}{L}": got.__setitem__(
        k, (o[0] if isinstance(o, tuple) else o)[0].detach()))
        for s in ("resid", "mlp", "attn") for L, m in enumerate(mods[s])]
    p_ids, c_ids = encode_pair(lm, Q.prompt, Q.target)
    ids = torch.tensor([p_ids + c_ids])
    with torch.no_grad():
        lm.hf(ids)
    for h in handles:
        h.remove()
    rec = record(lm, [Q],
                 [hook_name(x, L) for x in ("resid_post", "mlp_out", "attn_out") for L in range(4)],
                 positions=("all",))
    for s, site in (("resid", "resid_post"), ("mlp", "mlp_out"), ("attn", "attn_out")):
        for L in range(4):
            torch.testing.assert_close(got[f"{s}{L}"], rec.act(hook_name(site, L), "all"),
                                       rtol=1e-4, atol=1e-5)


def test_missing_entity_is_a_clear_error(lm) -> None:
    with pytest.raises(ValueError, match="not in the prompt"):
        causal_trace(lm, [Query("no entity here", " x", {"name": "Zed"})], "name", progress=False)
    with pytest.raises(ValueError, match="sites"):
        TraceConfig(sites=("mlp", "oops"))


@pytest.mark.parametrize("arch", ["gpt2", "neox", "gemma3"])
def test_other_architectures(arch) -> None:
    """GPT-2 (tuple-returning attention, learned positions), GPT-NeoX (parallel attention
    and MLP) and Gemma 3 (post-sub-layer norms, scaled embedding, an 8-token sliding window
    that the prompt crosses): the same exact recoveries, and the cached runs equal full-length
    runs."""
    other = load_model(f"tiny:arch={arch},n_layers=3,d_model=64,seed=2")
    if arch == "gemma3":  # the noise is added to the embedding's output, scaled by sqrt(d_model)
        from interp.trace_sites import _parts
        emb = other.hf.get_input_embeddings()
        assert _parts(other.hf).emb_std == pytest.approx(float(emb.weight.std()) * 64 ** 0.5, rel=1e-6)
    p_clean, p_corrupt, p_restored = restored_probability(other, Q, "name", [("resid", 1)])
    assert p_restored == pytest.approx(p_clean, rel=1e-5) and p_corrupt != pytest.approx(p_clean, rel=1e-6, abs=0)
    cfg = TraceConfig(n_noise=2, window=2, positions="key")
    a = causal_trace(other, [Q], "name", cfg, progress=False)
    b = causal_trace(other, [Q], "name", cfg, progress=False, use_cache=False)
    for s in cfg.sites:
        torch.testing.assert_close(a.prob[s], b.prob[s], rtol=1e-4, atol=1e-7)
    assert float(a.prob["resid"][0, -1, -1]) == pytest.approx(float(a.p_clean[0]), rel=1e-5)


def test_whole_answer_probability_and_entity_noise_scale(lm) -> None:
    """The whole answer (teacher-forced) is traced too: its clean probability is the product of
    its tokens' probabilities, and restoring a layer's residual everywhere gives it back. The
    noise is measured in the entity tokens' embedding spread by default (Meng et al.)."""
    from interp.scoring import score_completions

    q = Query("Alice Bob is the one who", " sings loud", {"name": "Alice Bob"})
    cfg = TraceConfig(n_noise=4, window=1, positions="key")
    tr = causal_trace(lm, [q], "name", cfg, progress=False)
    total = score_completions(lm, [(q.prompt, q.target)])[0].total
    assert float(tr.p_clean_answer[0]) == pytest.approx(float(torch.tensor(total).exp()), rel=1e-4, abs=0)
    assert float(tr.p_clean_answer[0]) < float(tr.p_clean[0])
    # the last layer's residual at the last token restores the first token; the whole answer
    # also depends on the corrupted entity through the answer tokens' attention, so it needn't
    assert float(tr.prob["resid"][0, -1, -1]) == pytest.approx(float(tr.p_clean[0]), rel=1e-5)
    p_ids, _ = encode_pair(lm, q.prompt, q.target)
    emb = lm.hf.get_input_embeddings().weight.detach()
    ent = emb[torch.tensor([p_ids[j] for j in tr.span[0]])].float().std()
    assert tr.noise_std == pytest.approx(float(ent), rel=1e-5)
    mat = causal_trace(lm, [q], "name", TraceConfig(n_noise=2, window=1, positions="key",
                                                    noise_reference="matrix"), progress=False)
    assert mat.noise_std == pytest.approx(float(emb.float().std()), rel=1e-5)
    with pytest.raises(ValueError, match="noise_reference"):
        TraceConfig(noise_reference="subjects")


def test_restoring_every_position_restores_the_whole_answer(lm) -> None:
    q = Query("Alice Bob is the one who", " sings loud", {"name": "Alice Bob"})
    from interp.trace import _noise_parts, _Runner
    cfg = TraceConfig(n_noise=3)
    with torch.no_grad():
        r = _Runner(lm, q, "name", cfg, _noise_parts(lm, [q], "name", cfg), 0, {("resid", 1)})
        # every position of the sequence, the teacher-forced answer tokens too: the answer's
        # tokens also read the corrupted entity, through attention in layers 0-1
        first, whole = r.run([[("resid", 1)]], list(range(r.ids.shape[1])))
        first_p, whole_p = r.run([[("resid", 1)]], list(range(len(r.p_ids))))
        c_first, c_whole = r.run([], [])
    assert float(whole[0]) == pytest.approx(r.p_clean_answer, rel=1e-5, abs=0)
    assert float(c_whole[0]) != pytest.approx(r.p_clean_answer, rel=1e-4, abs=0)
    assert float(first_p[0]) == pytest.approx(r.p_clean, rel=1e-5)   # prompt only: the first token
