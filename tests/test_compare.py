"""rct compare: invariants of cross-model patching, attention knockout and grafting on tiny
models, the report end to end on two hand-made runs, and one-line refusals of bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from analysis.compare import CompareConfig, compare_models
from experiments.exp1.compare import RunMismatch, check_runs, main as compare_main, run_compare
from interp.cross_patch import PatchConfig, cross_patch, patch_query
from interp.knockout import KnockoutConfig, _run, attention_knockout, edge_keys, knock_query
from interp.models import load_model, save_model
from interp.recording import Query
from interp.scoring import score_completions
from interp.trace_sites import _parts

SPEC = "tiny:n_layers=4,d_model=64,seed=3"
Q = Query("They say the tall one is", " Carol", {"description": "the tall one"})
QN = Query("Alice Bob is the one who", " sings", {"name": "Alice Bob"})


def _perturbed(lm, scale: float = 0.05, seed: int = 0):
    """A copy of ``lm`` whose block weights moved (embeddings, final norm, unembedding kept)."""
    other = copy.deepcopy(lm)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in other.hf.named_parameters():
            if ".layers." in n:
                p.add_(scale * torch.randn(p.shape, generator=g))
    return other


@pytest.fixture(scope="module")
def pair():
    a = load_model(SPEC)
    return a, _perturbed(a)


def test_patching_the_last_residual_reproduces_the_source(pair) -> None:
    """The last layer's residual at the last prompt token is everything the first answer token
    is read from: patched in, the target gives the source's first-token probability."""
    a, b = pair
    r = patch_query(a, b, Q, "description", PatchConfig(groups=("last", "all"), sites=("resid",)))
    assert r["p_source"] != pytest.approx(r["p_target"], rel=1e-3)
    assert r["p_first"]["resid"][-1, 0] == pytest.approx(r["p_source"], rel=1e-5)
    assert r["p_first"]["resid"][-1, 1] == pytest.approx(r["p_source"], rel=1e-5)


def test_patching_every_site_reproduces_the_source(pair) -> None:
    """Every layer's MLP and attention outputs (window = all layers) at every prompt position:
    the prompt's residual stream is the source's, so the first answer token is too."""
    a, b = pair
    cfg = PatchConfig(groups=("all",), sites=("mlp", "attn"), window=4)
    r = patch_query(a, b, Q, "description", cfg)
    # one site at a time is not enough; the residual (both sites together) is checked below
    assert not torch.allclose(r["p_first"]["mlp"][:, 0], torch.tensor(r["p_source"]), rtol=1e-4)
    both = cross_patch(a, b, [Q], "description", PatchConfig(groups=("all",), sites=("resid",)), progress=False)
    assert float(both.p_first["resid"][0, -1, 0]) == pytest.approx(float(both.p_source[0]), rel=1e-5)


def test_identical_models_patch_to_nothing_and_cache_matches_full_runs(pair) -> None:
    a, b = pair
    same = cross_patch(a, copy.deepcopy(a), [Q, QN][:1], "description", progress=False)
    for s in same.lp:
        assert torch.nan_to_num(same.effect(s)).abs().max() < 1e-4
        assert torch.nan_to_num(same.cosine[s], 1.0).min() > 1 - 1e-5
    cfg = PatchConfig(batch_size=7)
    r1 = cross_patch(a, b, [QN], "name", cfg, progress=False)
    r2 = cross_patch(a, b, [QN], "name", cfg, progress=False, use_cache=False)
    for s in r1.lp:
        assert torch.allclose(torch.nan_to_num(r1.lp[s]), torch.nan_to_num(r2.lp[s]), atol=1e-4)
    assert r1.groups == ["entity", "last entity", "after", "last"]


def test_empty_knockout_changes_nothing_and_cache_matches(pair) -> None:
    a, _ = pair
    parts = _parts(a.hf)
    r = knock_query(a, Q, "description", KnockoutConfig(window=2))
    clean = score_completions(a, [(Q.prompt, Q.target)])[0].total
    assert r["lp_clean"] == pytest.approx(clean, abs=1e-4)
    from interp.tokens import encode_pair
    p, c = encode_pair(a, Q.prompt, Q.target)
    ids = torch.tensor([p + c[:-1]])
    with torch.no_grad():
        lp, _ = _run(a, ids, 0, None, c, [([], [0, 1, 2, 3])], parts.keep, ids.shape[1], parts.attn, len(p) - 1)
    assert float(lp[0]) == pytest.approx(clean, abs=1e-4)
    k1 = attention_knockout(a, [Q], "description", KnockoutConfig(window=2), progress=False)
    k2 = attention_knockout(a, [Q], "description", KnockoutConfig(window=2), progress=False, use_cache=False)
    for e in k1.lp:
        assert torch.allclose(k1.lp[e], k2.lp[e], atol=1e-4)
    assert not torch.allclose(k1.lp["entity"], k1.lp_clean[:, None], atol=1e-6)  # the cut did something


def test_knockout_zeroes_the_cut_attention_weights(pair) -> None:
    """The cut entries get zero attention in the cut layers and only there."""
    a, _ = pair
    from interp.knockout import _mask_hook
    from interp.tokens import encode_pair
    p, c = encode_pair(a, Q.prompt, Q.target)
    T = len(p)
    keys = edge_keys([3, 4, 5], T, "entity")
    attn = _parts(a.hf).attn
    seen = {}
    hooks = [attn[1].register_forward_pre_hook(_mask_hook({0: keys}, T - 1, 0, T), with_kwargs=True)]
    hooks += [m.register_forward_hook(lambda m, i, o, L=L: seen.__setitem__(L, o[1])) for L, m in enumerate(attn)]
    try:
        with torch.no_grad():
            a.hf(torch.tensor([p]))
    finally:
        for h in hooks:
            h.remove()
    assert seen[1][0, :, T - 1, keys].abs().max() == 0
    assert seen[1][0, :, T - 2, keys].abs().min() > 0  # other queries untouched
    assert seen[2][0, :, T - 1, keys].abs().min() > 0  # other layers untouched
    assert edge_keys([3, 4, 5], T, "other") == [x for x in range(1, T - 1) if x not in (3, 4, 5)]
    assert edge_keys([3, 4, 5], T, "self") == [T - 1]


def test_gemma3_patching_and_knockout_invariants() -> None:
    """On Gemma 3 (norms after each sub-layer, scaled embedding, an 8-token sliding window that
    these prompts cross): the ``mlp``/``attn`` sites are the post-norms, so patching the last
    residual or both sites everywhere reproduces the source; cached runs equal full runs;
    an empty knockout changes nothing; a cut zeroes exactly the cut attention weights."""
    a = load_model("tiny:arch=gemma3,n_layers=4,d_model=64,n_heads=4,n_kv_heads=2,seed=3",
                   attn_implementation="eager")
    with torch.no_grad():  # Gemma's norm gains are 1 + w with w = 0 at init: move them
        for n, p in a.hf.named_parameters():
            if "norm" in n:
                p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(n))))
    b = _perturbed(a)
    parts = _parts(a.hf)
    assert type(parts.mods["mlp"][0]).__name__ == "Gemma3RMSNorm"
    assert type(parts.attn[0]).__name__ == "Gemma3Attention"
    r = patch_query(a, b, Q, "description", PatchConfig(groups=("last",), sites=("resid",)))
    assert r["p_source"] != pytest.approx(r["p_target"], rel=1e-3)
    assert r["p_first"]["resid"][-1, 0] == pytest.approx(r["p_source"], rel=1e-5)
    both = cross_patch(a, b, [Q], "description", PatchConfig(groups=("all",), sites=("mlp", "attn"), window=4),
                       progress=False)
    assert not torch.allclose(both.p_first["mlp"][0, :, 0], both.p_source[0], rtol=1e-4)
    r1 = cross_patch(a, b, [QN], "name", PatchConfig(batch_size=7), progress=False)
    r2 = cross_patch(a, b, [QN], "name", PatchConfig(batch_size=7), progress=False, use_cache=False)
    for s in r1.lp:
        assert torch.allclose(torch.nan_to_num(r1.lp[s]), torch.nan_to_num(r2.lp[s]), atol=1e-4)
    clean = score_completions(a, [(Q.prompt, Q.target)])[0].total
    k1 = attention_knockout(a, [Q], "description", KnockoutConfig(window=2), progress=False)
    k2 = attention_knockout(a, [Q], "description", KnockoutConfig(window=2), progress=False, use_cache=False)
    assert float(k1.lp_clean[0]) == pytest.approx(clean, abs=1e-4)
    for e in k1.lp:
        assert torch.allclose(k1.lp[e], k2.lp[e], atol=1e-4)
    from interp.knockout import _mask_hook
    from interp.tokens import encode_pair
    p, _ = encode_pair(a, Q.prompt, Q.target)
    T = len(p)
    assert T > 8  # the sliding window (8) is crossed
    for layer in (0, 1):  # sliding, then global
        keys = edge_keys(list(range(T - 6, T - 3)), T, "entity")
        seen = {}
        hooks = [parts.attn[layer].register_forward_pre_hook(_mask_hook({0: keys}, T - 1, 0, T), with_kwargs=True),
                 parts.attn[layer].register_forward_hook(lambda m, i, o: seen.__setitem__("w", o[1]))]
        try:
            with torch.no_grad():
                a.hf(torch.tensor([p]))
        finally:
            for h in hooks:
                h.remove()
        assert seen["w"][0, :, T - 1, keys].abs().max() == 0
        assert seen["w"][0, :, T - 2, keys].abs().min() > 0
        outside = seen["w"][0, :, T - 1, : T - 8].abs()  # keys beyond the last token's window
        assert (outside.max() == 0) if layer == 0 else (outside.min() > 0)


def test_knockout_mask_built_without_one_keeps_a_sliding_window() -> None:
    """Where the model passes no mask, the cut mask is built causal, and within the window of
    a sliding-window attention module."""
    from types import SimpleNamespace

    from interp.knockout import _mask_hook

    hs = torch.zeros(1, 6, 4)
    for window, first_seen in ((None, 0), (3, 3)):
        _, kw = _mask_hook({0: [4]}, 5, 0, 6)(SimpleNamespace(sliding_window=window), (), {"hidden_states": hs})
        seen = kw["attention_mask"][0, 0] == 0  # [query, key]
        assert seen[5].nonzero().flatten().tolist() == [k for k in range(first_seen, 6) if k != 4]
        assert not bool(seen[2, 3:].any())  # causal


# ------------------------------------------------------------------ runs end to end


def _make_run(folder: Path, lm, model_spec: str = SPEC, seed: int = 0, data_seed: int = 0) -> Path:
    from experiments.exp1.generator import generate_exp1, write_exp1
    from experiments.exp1.schema import Exp1DataConfig

    folder.mkdir(parents=True)
    data = Exp1DataConfig(n_facts=3, n_paraphrases=2, n_test_templates=2, seed=data_seed)
    write_exp1(generate_exp1(data), folder / "data")
    (folder / "config.json").write_text(json.dumps({"model": model_spec, "model_options": {"dtype": "float32"},
                                                    "data": {"seed": data_seed}, "data_dir": None,
                                                    "finetune": {"seed": seed}}))
    save_model(lm, folder / "model")
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory, pair):
    root = tmp_path_factory.mktemp("cmp")
    a, b = pair
    return _make_run(root / "cursed", a), _make_run(root / "cured", b), root


def test_compare_end_to_end_writes_the_report(runs) -> None:
    cursed, cured, root = runs
    cfg = CompareConfig(n_facts=3, n_perm=200, patch=PatchConfig(window=2), knockout=KnockoutConfig(window=3),
                        sections=("patching", "grafting", "knockout", "probes", "direction"))
    s = run_compare(cursed, cured, root / "out", cfg, progress=False)
    for f in ("summary.json", "summary.md", "compare.html", "patching_cured_into_cursed.png", "grafting.png",
              "knockout.png"):
        assert (root / "out" / f).is_file(), f
    html = (root / "out" / "compare.html").read_text()
    assert "http" not in html.split("<body>")[1].split("data:image")[0]  # offline: nothing fetched
    # grafting and the cursed->cured patching run on the reverse sets only, by default
    assert set(s["grafting"]) == set(s["patching"]["cursed->cured"]) == {"p2d_reverse", "d2p_reverse"}
    assert len(s["patching"]["cured->cursed"]) == 4
    g = s["grafting"]["p2d_reverse"]
    assert g["cumulative"]["fraction"] is None or g["cumulative"]["fraction"][-1] == pytest.approx(1.0, abs=1e-4)
    p = s["patching"]["cured->cursed"]["p2d_reverse"]
    assert p["layers"] == [0, 1, 2, 3] and len(p["effect"]["resid/last"]["mean"]) == 4
    # the last layer's residual at the last token gives the first token of the source (see above)
    assert p["first_token_prob_change"]["resid/last"][-1] == pytest.approx(p["p_source"] - p["p_target"], abs=1e-5)
    assert json.loads((root / "out" / "summary.json").read_text())["runs"]["cured"] == str(cured)
    pr = s["probes"]
    assert set(pr["control_passes"]) == {"p2d", "d2p"} and pr["cursed"]["p2d"]["chance"] == pytest.approx(1 / 3)
    assert "positive control" in (root / "out" / "summary.md").read_text()
    d = s["direction"]["models"]  # the base model from the runs' config, then cursed and cured
    assert list(d) == ["base", "cursed", "cured"] and "key" in d["cured"]["p2d_reverse"]
    assert (root / "out" / "direction.png").is_file() and "by direction" in (root / "out" / "summary.md").read_text()
    # pooling a real summary with itself keeps its means (the per-fact values are stored)
    from analysis.compare_pool import pool_dirs
    pooled = pool_dirs([root / "out", root / "out"], root / "pooled")
    col = pooled["patching"]["cured->cursed"]["p2d_reverse"]["effect"]["resid/last"]["mean"]
    assert col == pytest.approx(p["effect"]["resid/last"]["mean"], abs=2e-4)
    assert (root / "pooled" / "summary.md").read_text().startswith("# rct compare pooled over 2 seeds")


def test_grafting_every_layer_reproduces_the_cured_logprobs(pair) -> None:
    from interp.weights import localise

    a, b = pair
    loc = localise(b, a, {"q": [(Q.prompt, Q.target), (QN.prompt, QN.target)]}, progress=False)
    s = loc.sets["q"]
    assert torch.equal(s.cumulative[-1], s.lp_tuned)


@pytest.mark.parametrize("change, match", [
    ({"model": "tiny:n_layers=4,d_model=64,seed=4"}, "different base models"),
    ({"seed": 1}, "different finetuning seeds"),
    ({"data_seed": 5}, "different facts"),
])
def test_mismatched_runs_are_refused_in_one_line(tmp_path, pair, runs, change, match) -> None:
    cursed, _, _ = runs
    a, _ = pair
    other = _make_run(tmp_path / "other", a, model_spec=change.get("model", SPEC), seed=change.get("seed", 0),
                      data_seed=change.get("data_seed", 0))
    with pytest.raises(RunMismatch, match=match) as e:
        check_runs(cursed, other)
    assert "\n" not in str(e.value)


def test_bad_input_gives_one_line_and_writes_nothing(tmp_path, runs, capsys) -> None:
    cursed, cured, _ = runs
    no_model = tmp_path / "nomodel"
    no_model.mkdir()
    (no_model / "config.json").write_text((cursed / "config.json").read_text())
    cases = [
        ([str(cursed), str(no_model)], "no finetuned model"),
        ([str(cursed), str(tmp_path / "missing")], "not a run directory"),
        ([str(cursed), str(cured), "--layers", "0,9"], "layer 9 out of range"),
        ([str(cursed), str(cured), "--sections", "patching,bogus"], "unknown section bogus"),
    ]
    for argv, match in cases:
        out = tmp_path / "out"
        assert compare_main([*argv, "--out", str(out), "--quiet"]) == 2
        msg = capsys.readouterr().out.strip()
        assert match in msg and "\n" not in msg, msg
        assert not out.exists()
    # a dataset without one of the query sets' files
    broken = tmp_path / "broken"
    import shutil
    shutil.copytree(cured, broken)
    (broken / "data" / "p2d_reverse_prompts_test.jsonl").unlink()
    lm = load_model(str(cursed / "model"))
    from experiments.exp1.data import load_exp1
    with pytest.raises(ValueError, match="p2d_reverse_prompts_test"):
        compare_models(lm, lm, load_exp1(broken / "data"), None, CompareConfig(n_facts=3))
