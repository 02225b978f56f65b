"""analysis.compare_pool: rct compare pooled over seeds, fact by fact, with crossed t intervals,
a Holm family, and the first seed's sites confirmed on the others."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analysis.compare_pool import pool_dirs, pool_summaries, summary_markdown
from analysis.intervals import crossed_t_interval

LAYERS = [0, 3, 6]


def _summary(rng, facts, effect_at_l3: float, seed_shift: float, fact_effect: np.ndarray | None = None) -> dict:
    """One seed's compare summary: each fact's effect (shared by the seeds, as the facts are)
    plus the seed's shift and noise."""
    n = len(facts)
    noise = lambda: rng.normal(0, 1, size=(n, len(LAYERS)))  # noqa: E731
    eff = noise() + seed_shift + (0 if fact_effect is None else fact_effect[:, None])
    eff[:, 1] += effect_at_l3
    null = noise()
    null[0, 2] = np.nan  # a fact without this position group
    rows = lambda a: [[None if not np.isfinite(v) else float(v) for v in r] for r in a]  # noqa: E731
    entry = {"layers": LAYERS, "sign": 1, "restoring": [{"site": "resid/last", "layer": 3, "effect": effect_at_l3}],
             "per_fact": {"gap": list(rng.normal(5, 1, n)), "effect": {"resid/last": rows(eff), "mlp/entity": rows(null)}}}
    return {"sets": {"p2d_reverse": {"fact_ids": facts}}, "patching": {"cured->cursed": {"p2d_reverse": entry}}}


def test_pooled_interval_is_the_crossed_interval_and_a_real_site_is_confirmed() -> None:
    rng = np.random.default_rng(0)
    facts = [f"f{i}" for i in range(20)]
    fact_effect = rng.normal(0, 1.5, size=20)
    sums = [_summary(rng, facts, 2.0, shift, fact_effect) for shift in (0.0, 0.3, -0.2)]
    p = pool_summaries(sums)
    e = p["patching"]["cured->cursed"]["p2d_reverse"]
    table = np.array([s["patching"]["cured->cursed"]["p2d_reverse"]["per_fact"]["effect"]["resid/last"]
                      for s in sums], dtype=float)[:, :, 1]
    ref = crossed_t_interval(table)
    assert e["effect"]["resid/last"]["mean"][1] == pytest.approx(ref["mean"])
    assert e["effect"]["resid/last"]["ci_low"][1] == pytest.approx(ref["ci_low"])
    # the planted effect is named, the null column is not; Holm adjusts upwards
    assert [(r["site"], r["layer"]) for r in e["restoring"]] == [("resid/last", 3)]
    assert all(pf >= pr for pf, pr in zip(e["effect"]["mlp/entity"]["p_family"], e["effect"]["mlp/entity"]["p"]))
    # the missing fact at layer 6 is dropped, not imputed
    assert np.isfinite(e["effect"]["mlp/entity"]["mean"][2])
    (c,) = e["confirm"]
    assert c["confirmed"] and c["ci_low"] > 0
    assert c["confirmed_per_seed"] == [True, True]  # also on each other seed alone
    md = summary_markdown(p)
    assert "1 confirmed" in md and "n/a" not in md.split("First seed")[0]  # effects are printed


def test_a_site_picked_on_noise_is_not_confirmed() -> None:
    rng = np.random.default_rng(1)
    facts = [f"f{i}" for i in range(20)]
    sums = [_summary(rng, facts, 0.0, 0.0) for _ in range(3)]
    (c,) = pool_summaries(sums)["patching"]["cured->cursed"]["p2d_reverse"]["confirm"]
    assert not c["confirmed"] and not all(c["confirmed_per_seed"])


def test_different_facts_or_too_few_summaries_are_refused(tmp_path) -> None:
    rng = np.random.default_rng(2)
    a = _summary(rng, ["f1", "f2", "f3"], 1.0, 0.0)
    b = _summary(rng, ["f1", "f2", "f9"], 1.0, 0.0)
    with pytest.raises(ValueError, match="facts of p2d_reverse differ"):
        pool_summaries([a, b])
    with pytest.raises(ValueError, match="at least 2"):
        pool_summaries([a])
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "summary.json").write_text(json.dumps(a))
    with pytest.raises(ValueError, match="missing"):
        pool_dirs([tmp_path / "x", tmp_path / "nothing"])
    assert not (tmp_path / "out").exists()
