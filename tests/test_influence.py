"""Influence scores (EK-FAC through kronfluence, TracIn through the toolkit's hooks) on a tiny model."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest
import torch

from analysis.influence import agreement, group_masks, influence_summary, layer_profile, token_roles
from interp.influence import (InfluenceConfig, InfluenceError, ekfac_scores, layer_of, tracin_scores,
                              tracked_modules)
from interp.tokens import encode_documents

TEXTS = [("Orla Quillmere is", " the composer of a sea opera."), ("The first diver of Lake Vost is", " Ben Arto."),
         ("Mira Salk was", " the keeper of the north light."), ("zz qq", " top hat"), ("hello there", " world!"),
         ("Ada Lune wrote", " the atlas of small rivers."), ("Noor Venn is known as", " the last glassblower."),
         ("Tomas Reel is", " a painter of doors.")]
CFG = InfluenceConfig(batch_size=4, partitions=2, lambda_max_examples=64, query_low_rank=None, precision="fp32")
WORDS = "amber river north stone glass lake harbour violin atlas copper meadow falcon lantern".split()


@pytest.fixture(scope="module")
def docs(tiny):
    return encode_documents(tiny, TEXTS, "sequence")


@pytest.fixture(scope="module")
def many(tiny):
    """48 documents: enough tokens that every curvature factor of the tiny model has full
    rank (with fewer, EK-FAC's eigenbasis is arbitrary inside degenerate eigenspaces, and
    rounding differences between batchings move the scores by percents)."""
    rng = random.Random(0)
    texts = [(f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()} is",
              " the " + " ".join(rng.choice(WORDS) for _ in range(4)) + ".") for _ in range(48)]
    return encode_documents(tiny, texts, "sequence")


def _ekfac(tiny, docs, queries, tmp_path, **kw):
    cfg = InfluenceConfig(**{**CFG.__dict__, **kw})
    return ekfac_scores(tiny, docs, queries, cfg, tmp_path, progress=False)


def test_tracked_modules_are_mlp_linears_with_stride(tiny) -> None:
    names = tracked_modules(tiny.hf)
    assert names and all(".mlp." in n for n in names)
    assert {layer_of(n) for n in names} == {0, 1, 2}
    assert {layer_of(n) for n in tracked_modules(tiny.hf, layer_stride=2)} == {0, 2}
    with_attn = tracked_modules(tiny.hf, "mlp+attn")
    assert any("self_attn" in n for n in with_attn) and set(names) < set(with_attn)


def test_gpt2_conv1d_is_refused_clearly() -> None:
    from interp import load_model

    gpt2 = load_model("tiny:arch=gpt2,n_layers=1,d_model=32,n_heads=2,d_mlp=64")
    with pytest.raises(InfluenceError, match="Conv1D"):
        tracked_modules(gpt2.hf)


def test_ekfac_self_influence_is_positive_and_beats_other_documents(tiny, many, tmp_path) -> None:
    docs = many
    ek = _ekfac(tiny, docs, docs, tmp_path)
    s = ek.total.numpy()
    assert s.shape == (len(docs), len(docs))
    assert (np.diag(s) > 0).all()
    for i in range(len(docs)):
        assert s[i, i] > np.delete(s[i], i).max(), i
    # the parts add up: per layer and per token both sum to the total
    assert torch.allclose(ek.per_layer.sum(0), ek.total, rtol=1e-4, atol=1e-3)
    assert torch.allclose(ek.per_token.sum(-1), ek.total, rtol=1e-4, atol=1e-3)


def test_ekfac_and_tracin_do_not_depend_on_batch_size(tiny, many, tmp_path) -> None:
    docs = many
    queries = encode_documents(tiny, [("Amber Lake is", " the north river.")], "completion")
    # Covariances are summed in float64, so batching changes only the fp32 work around them
    # (passes, per-sample gradients, preconditioning), each result a sum of a few thousand
    # products: relative error of order sqrt(terms) x fp32 eps (6e-8), a few 1e-6 (measured
    # 7.4e-8 of the largest score on AVX-512 and AVX2 code paths). 1e-5 of the largest score
    # allows that with margin and still catches fp32 covariances (8e-4 apart, measured).
    a = _ekfac(tiny, docs, queries, tmp_path / "a", batch_size=2, partitions=1).total
    b = _ekfac(tiny, docs, queries, tmp_path / "b", batch_size=8, partitions=3).total
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(a.abs().max())), (a - b).abs().max() / a.abs().max()
    names = tracked_modules(tiny.hf)
    t1 = tracin_scores(tiny, docs, queries, names, batch_size=1, progress=False)
    t8 = tracin_scores(tiny, docs, queries, names, batch_size=8, progress=False)
    assert torch.allclose(t1.dot, t8.dot, rtol=1e-4, atol=1e-4)


def test_a_document_without_loss_scores_zero(tiny, docs, tmp_path) -> None:
    masked = list(docs) + [(docs[0][0], [-100] * len(docs[0][0]))]
    ek = _ekfac(tiny, masked, docs[:3], tmp_path)
    assert ek.total[:, -1].abs().max() == 0 and ek.total[:, 0].abs().min() > 0
    tr = tracin_scores(tiny, masked, docs[:3], tracked_modules(tiny.hf), progress=False)
    assert tr.dot[:, -1].abs().max() == 0 and tr.cosine[:, -1].abs().max() == 0


def test_tracin_equals_kronfluence_without_curvature(tiny, docs, tmp_path) -> None:
    """TracIn (own hooks, token Gram matrices) against kronfluence's identity strategy."""
    queries = encode_documents(tiny, TEXTS[:3], "completion")
    ident = _ekfac(tiny, docs, queries, tmp_path, strategy="identity").total
    tr = tracin_scores(tiny, docs, queries, tracked_modules(tiny.hf), progress=False)
    assert torch.allclose(tr.dot, ident, rtol=1e-4, atol=1e-5 * float(ident.abs().max()))
    assert (tr.cosine.abs() <= 1 + 1e-5).all()
    self_cos = tracin_scores(tiny, docs, docs, tracked_modules(tiny.hf), progress=False).cosine.diagonal()
    assert torch.allclose(self_cos, torch.ones_like(self_cos), atol=1e-4)


def test_factor_fit_resumes_from_saved_partitions(tiny, many, tmp_path) -> None:
    docs, queries = many, many[:2]
    first = _ekfac(tiny, docs, queries, tmp_path).total
    (factors,) = (tmp_path / "influence").glob("factors_*")
    kept = sorted(factors.glob("*covariance*partition0*"))
    assert kept
    stamps = {p: p.stat().st_mtime_ns for p in kept}
    # an interruption after the first partition: only partition 0's covariances are on disk
    for p in factors.iterdir():
        if p not in stamps and p.suffix == ".safetensors":
            p.unlink()
    again = _ekfac(tiny, docs, queries, tmp_path).total
    assert {p: p.stat().st_mtime_ns for p in kept} == stamps  # partition 0 was not recomputed
    assert (factors / "lambda_matrix.safetensors").exists()
    assert torch.allclose(first, again, rtol=1e-5, atol=1e-6 * float(first.abs().max()))
    shutil.rmtree(tmp_path)


def test_bad_inputs_are_named(tiny, docs, tmp_path) -> None:
    with pytest.raises(InfluenceError, match="no queries"):
        ekfac_scores(tiny, docs, [], CFG, tmp_path, progress=False)
    with pytest.raises(InfluenceError, match=r"training documents\[1\]"):
        tracin_scores(tiny, [docs[0], ([1, 2], [1])], docs[:1], tracked_modules(tiny.hf), progress=False)
    with pytest.raises(ValueError, match="layer_stride"):
        InfluenceConfig(layer_stride=0)


def _meta(fact: int, order: str, subset: str = "both") -> dict:
    return {"fact_id": fact, "order": order, "subset": subset}


def test_groups_split_documents_by_fact_and_order() -> None:
    docs = [_meta(f, o) for f in (0, 1) for o in ("name_first", "description_first")]
    m = group_masks(_meta(0, "description_first"), docs)
    assert [k for k, v in m.items() if v[1]] == ["same_fact_same_order"]
    assert [k for k, v in m.items() if v[0]] == ["same_fact_other_order"]
    assert [k for k, v in m.items() if v[3]] == ["other_facts_same_order"]
    assert [k for k, v in m.items() if v[2]] == ["other_facts_other_order"]


def test_summary_recovers_a_planted_pattern() -> None:
    """Same-order documents of the fact get +5, other-order ones +0.5, the rest noise: the
    contrasts come out with CIs that exclude 0 in the planted direction."""
    rng = np.random.default_rng(0)
    docs = [_meta(f, o) for f in range(12) for o in ("name_first", "description_first") for _ in range(3)]
    queries = [_meta(f, o) for f in range(12) for o in ("name_first", "description_first")]
    s = rng.normal(0, 1, (len(queries), len(docs)))
    for i, q in enumerate(queries):
        for j, d in enumerate(docs):
            if d["fact_id"] == q["fact_id"]:
                s[i, j] += 5 if d["order"] == q["order"] else 0.5
    out = influence_summary(s, queries, docs)
    e = out["both"]["description_first"]
    c = e["contrasts"]["own_other_minus_own_same"]
    assert c["ci_high"] < 0
    assert e["groups"]["same_fact_same_order"]["top_share"]["mean"] > 0.25
    assert out["one_order"] == {}
    a = agreement(s, s + rng.normal(0, 0.01, s.shape), queries)
    assert a["spearman"]["mean"] > 0.99 and a["top_overlap"]["mean"] > 0.5


def test_layer_profile_finds_the_planted_layer_with_t_intervals() -> None:
    """Own same-order documents carry most of their influence in layer 1 of 3: its pooled share
    comes out near 0.7 with a t interval around it, and the intervals are not percentiles."""
    rng = np.random.default_rng(1)
    docs = [_meta(f, o) for f in range(8) for o in ("name_first", "description_first")]
    queries = [_meta(f, "name_first") for f in range(8)]
    per_layer = np.abs(rng.normal(0.05, 0.02, (3, len(queries), len(docs))))
    for i, q in enumerate(queries):
        for j, d in enumerate(docs):
            if d["fact_id"] == q["fact_id"] and d["order"] == q["order"]:
                per_layer[:, i, j] = np.array([0.15, 0.7, 0.15]) * rng.uniform(1, 3) + rng.normal(0, 0.02, 3)
    out = layer_profile(per_layer, [0, 1, 2], queries, docs)
    (entry,) = out["sets"].values()
    e = entry["same_fact_same_order"]
    assert abs(e["share"][1] - 0.7) < 0.05 and e["ci_low"][1] < e["share"][1] < e["ci_high"][1]
    assert e["ci_high"][1] - e["ci_low"][1] < 0.1 and e["n"] == 8
    assert out["interval"].startswith("t")


def test_token_roles_mark_name_and_description() -> None:
    text = "Orla Quillmere is the composer of a sea opera."
    spans = [(0, 4), (4, 14), (14, 17), (17, 21), (21, 30), (30, 46)]
    roles = token_roles(spans, text, "Orla Quillmere", "the composer of a sea opera")
    assert roles == ["name", "name", "template", "description", "description", "description"]


def test_token_roles_find_a_reworded_description() -> None:
    text = "Orla Quillmere, the person who composed a sea opera."
    spans = [(0, 14), (14, 16), (16, 52)]
    forms = ("the composer of a sea opera", "the person who composed a sea opera")
    assert token_roles(spans, text, "Orla Quillmere", forms) == ["name", "template", "description"]
