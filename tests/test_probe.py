"""Linear probes: the fit, leave-template-out folds, chance-level controls, determinism,
per-layer probes on a tiny model, the figure, and the documented example."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from analysis.probe_figures import probe_curves
from interp.probe import (ProbeResult, fit_logistic, layer_probes, layer_transfer, probe_accuracy,
                          probe_features, template_folds, transfer_accuracy)
from interp.recording import Query

DOCS = Path(__file__).resolve().parents[1] / "docs"


def synth(n_facts: int, n_templates: int, d: int, signal: float, seed: int = 0):
    """Fact means (scaled by ``signal``) + a per-template offset + unit noise; one example per
    (fact, template). Returns X [n, d], fact labels [n], templates [n]."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n_facts, d, generator=g) * signal  # [F, d]
    offsets = torch.randn(n_templates, d, generator=g)  # [T, d]
    y = np.repeat(np.arange(n_facts), n_templates)
    t = np.tile(np.arange(n_templates), n_facts)
    X = means[y] + offsets[t] + torch.randn(len(y), d, generator=g)  # [n, d]
    return X, y, t


# ----------------------------------------------------------------------------- the fit


def test_fit_is_a_stationary_point_also_with_more_features_than_examples() -> None:
    X, y, _ = synth(5, 4, d=50, signal=0.5)  # n = 20 < d: the fit runs in the examples' span
    probe = fit_logistic(X, torch.from_numpy(y), 5, l2=0.1, tol=1e-8)
    Z = ((X.double() - probe.mean) / probe.std)
    W = probe.weight.clone().requires_grad_(True)
    b = probe.bias.clone().requires_grad_(True)
    loss = F.cross_entropy(Z @ W + b, torch.from_numpy(y)) + 0.05 * (W * W).sum()
    gW, gb = torch.autograd.grad(loss, [W, b])
    assert gW.abs().max() < 1e-5 and gb.abs().max() < 1e-5
    assert abs(float(loss.detach()) - probe.loss) < 1e-9
    p = probe.predict_proba(X)  # [n, 5]
    torch.testing.assert_close(p.sum(-1), torch.ones(20, dtype=torch.float64))
    assert torch.equal(probe.predict(X), p.argmax(-1))
    assert torch.allclose(probe.mean, X.double().mean(0))  # the standardisation is stored


def test_fit_validates() -> None:
    X = torch.randn(6, 3)
    with pytest.raises(ValueError, match="labels must lie"):
        fit_logistic(X, torch.tensor([0, 1, 2, 0, 1, 5]), 3)
    with pytest.raises(ValueError, match="non-finite"):
        fit_logistic(X.masked_fill(X > 0, float("nan")), torch.tensor([0, 1, 2, 0, 1, 2]), 3)


# ------------------------------------------------------------------ cross-validation


@pytest.mark.parametrize("scheme,n_folds", [("leave_template_out", None), ("template_kfold", 3)])
def test_folds_hold_out_whole_templates(scheme, n_folds) -> None:
    rng = np.random.default_rng(0)
    templates = rng.choice(["a", "b", "c", "d", "e", "f", "g"], size=60)
    folds = template_folds(templates, scheme=scheme, n_folds=n_folds)
    assert len(folds) == (7 if n_folds is None else 3)
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(60))  # every example tested exactly once
    for train, test in folds:
        assert set(templates[train]).isdisjoint(templates[test])
        assert sorted(np.concatenate([train, test]).tolist()) == list(range(60))


def test_separable_data_is_classified_on_unseen_templates() -> None:
    X, y, t = synth(8, 5, d=20, signal=5.0)
    s = probe_accuracy(X, y, t)
    assert s.accuracy == 1.0 and s.ci_low == 1.0
    assert s.chance == 1 / 8 and (s.n_facts, s.n_templates, s.n_examples) == (8, 5, 40)
    assert s.correct.shape == (40,) and s.correct.all()


def test_shuffled_label_control_sits_at_chance() -> None:
    X, y, t = synth(10, 40, d=16, signal=3.0)  # 400 examples, strongly separable
    kw = dict(scheme="template_kfold", n_folds=8)
    assert probe_accuracy(X, y, t, **kw).accuracy > 0.99
    shuffled = [probe_accuracy(X, y, t, shuffle_labels=True, seed=s, **kw) for s in range(5)]
    # one accuracy at chance has SD ~0.015 here; a 95% CI misses 0.1 in 1 of 20 seeds
    covered = [s.ci_low - 1e-9 <= 0.1 <= s.ci_high + 1e-9 for s in shuffled]
    assert sum(covered) >= 4, [(s.accuracy, s.ci_low, s.ci_high) for s in shuffled]
    assert all(abs(s.accuracy - 0.1) < 0.06 for s in shuffled)
    assert abs(np.mean([s.accuracy for s in shuffled]) - 0.1) < 0.03


def test_noise_sits_at_chance() -> None:
    X, y, t = synth(20, 6, d=30, signal=0.0)
    s = probe_accuracy(X, y, t)
    assert s.ci_low <= s.chance <= s.ci_high and s.chance == 0.05


def test_deterministic() -> None:
    X, y, t = synth(6, 4, d=40, signal=0.7)
    a, b = probe_accuracy(X, y, t, seed=3), probe_accuracy(X, y, t, seed=3)
    assert np.array_equal(a.correct, b.correct) and np.array_equal(a.pred, b.pred)
    assert (a.accuracy, a.ci_low, a.ci_high) == (b.accuracy, b.ci_low, b.ci_high)
    p, q = fit_logistic(X, torch.from_numpy(y), 6), fit_logistic(X, torch.from_numpy(y), 6)
    assert torch.equal(p.weight, q.weight) and torch.equal(p.bias, q.bias)


def test_clear_errors() -> None:
    X, y, t = synth(4, 3, d=5, signal=1.0)
    with pytest.raises(ValueError, match="at least 2 templates"):
        probe_accuracy(X, y, np.zeros(len(y)))
    keep = ~((y == 2) & (t != 1))  # class 2 only in template 1: unseen when 1 is held out
    with pytest.raises(ValueError, match="class 2 has no training example"):
        probe_accuracy(X[torch.from_numpy(keep)], y[keep], t[keep])
    with pytest.raises(ValueError, match="not among"):
        transfer_accuracy(X, y, X, y + 1)


def test_transfer_to_a_shifted_context() -> None:
    X, y, t = synth(8, 3, d=20, signal=5.0)
    X_test = X + 0.3 * torch.randn(X.shape, generator=torch.Generator().manual_seed(1))
    s = transfer_accuracy(X, y, X_test, y, templates_test=t)
    assert s.accuracy == 1.0 and s.n_templates == 3 and s.chance == 1 / 8
    ctl = transfer_accuracy(X, y, X_test, y, shuffle_labels=True)
    assert ctl.ci_low <= 1 / 8 <= ctl.ci_high


# ---------------------------------------------------------------------- on a model

DESCS = ["a red fox", "a tall tree", "an old ship", "a cold lamb", "the big drum", "one wet frog"]
TEMPLATES = ["Q: {} ->", "About {}:", "Of {}, we", "So, {} is"]


def _queries(templates=TEMPLATES, offset=0):
    return [Query(tpl.format(d), " X", entities={"description": d},
                  meta={"fact_id": f"f{i}", "template": j + offset})
            for i, d in enumerate(DESCS) for j, tpl in enumerate(templates)]


def test_layer_probes_on_a_tiny_model(tiny) -> None:
    n_layers = tiny.bridge.cfg.n_layers
    res = layer_probes(tiny, _queries(), "entity:description:last", progress=False)
    assert res.layers == tuple(range(-1, n_layers))
    assert len(res.accuracy) == len(res.shuffled) == n_layers + 1
    assert all(0.0 <= a <= 1.0 for a in res.accuracy + res.ci_low + res.ci_high)
    assert (res.n_examples, res.n_facts, res.n_templates, res.chance) == (24, 6, 4, 1 / 6)
    # the descriptions end in distinct bytes: the token itself identifies the fact
    assert res.accuracy[0] == 1.0
    assert json.loads(json.dumps(res.to_dict())) == res.to_dict()
    assert ProbeResult.from_dict(json.loads(json.dumps(res.to_dict()))) == res


def test_last_token_shared_by_all_facts_is_at_chance_in_the_embedding(tiny) -> None:
    # within a template every prompt ends in the same token: one prediction for all facts
    res = layer_probes(tiny, _queries(), "last", layers=[-1], control=False, progress=False)
    assert res.accuracy == (pytest.approx(1 / 6),) and res.shuffled == ()


def test_features_pick_the_entity_span_ends(tiny) -> None:
    qs = _queries()[:4]
    last = probe_features(tiny, qs, "entity:description:last", [-1])[-1]  # [4, d_model]
    first = probe_features(tiny, qs, "entity:description:first", [-1])[-1]
    assert torch.equal(last[0], last[3]) and torch.equal(first[0], first[3])  # same bytes
    assert not torch.equal(last[0], first[0])  # "x" vs "a"


def test_layer_transfer_across_templates(tiny) -> None:
    train, test = _queries(TEMPLATES[:2]), _queries(TEMPLATES[2:], offset=2)
    res = layer_transfer(tiny, train, "entity:description:last", test, "entity:description:last",
                         layers=[-1, 0], progress=False)
    assert res.kind == "transfer" and res.accuracy[0] == 1.0
    assert (res.n_examples, res.n_templates, len(res.shuffled)) == (12, 2, 2)


def test_transfer_probe_positive_control_on_a_planted_feature(tiny) -> None:
    """The transfer probe (trained at the name, tested at the description) must find a fact
    identity that both contexts share, or its silence means nothing. Planted: each fact's name
    and description end in the same fact-specific token; control: they end in unrelated ones."""
    ends = "QZJVKX"
    names = [f"Ann {c}" for c in ends]
    shared = [f"{d} {c}" for d, c in zip(DESCS, ends)]
    unrelated = [f"{d} {c}" for d, c in zip(DESCS, "wmybgp")]

    def qs(entities, tpl, label):
        return [Query(t.format(e), " X", entities={label: e}, meta={"fact_id": f"f{i}", "template": j})
                for i, e in enumerate(entities) for j, t in enumerate(tpl)]

    train = qs(names, TEMPLATES[:2], "name")
    planted = layer_transfer(tiny, train, "entity:name:last", qs(shared, TEMPLATES[2:], "description"),
                             "entity:description:last", layers=[-1], control=False, progress=False)
    absent = layer_transfer(tiny, train, "entity:name:last", qs(unrelated, TEMPLATES[2:], "description"),
                            "entity:description:last", layers=[-1], control=False, progress=False)
    assert planted.accuracy[0] == 1.0 and planted.ci_low[0] > planted.chance
    assert absent.ci_low[0] <= absent.chance + 1e-9  # nothing shared: no transfer


def test_missing_entity_or_meta_is_named(tiny) -> None:
    qs = _queries()[:3] + [Query("Nothing here", " X", meta={"fact_id": "f9", "template": 0})]
    with pytest.raises(ValueError, match=r"query 3 \('Nothing here'\) has no entity 'description'"):
        layer_probes(tiny, qs, "entity:description:last", progress=False)
    with pytest.raises(ValueError, match="meta\\['fact'\\]"):
        layer_probes(tiny, qs, "last", label_key="fact", progress=False)
    with pytest.raises(ValueError, match="one row per query"):
        layer_probes(tiny, qs, "entity:description", progress=False)


# --------------------------------------------------------------- figure and docs


def test_probe_curves_writes_png_and_svg(tmp_path) -> None:
    curve = {"layers": [-1, 0, 1], "accuracy": [0.9, 0.5, 0.4], "ci_low": [0.8, 0.4, 0.3],
             "ci_high": [1.0, 0.6, 0.5], "chance": 0.1, "shuffled": [0.1, 0.12, 0.08], "n_facts": 10}
    paths = probe_curves({"finetuned D2P": curve, "base D2P": dict(curve, shuffled=[])},
                         tmp_path, "probe", "test")
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert all(p.exists() and os.path.getsize(p) > 0 for p in paths)
