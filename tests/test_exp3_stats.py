"""Experiment 3 statistics on constructed inputs: McNemar's test and its interval, the
before/after (difference-in-differences) log-prob contrast, pooling over seeds, and the
refusal to compare orders that test different questions."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.stats import mcnemar, paired_diff_ci, wilson_ci
from experiments.exp3.report import check_same_questions, contrast_orders, exp3_markdown, order_effects, pooled


def rec(i, exact, logprob, control_logprob, target=None):
    return {"id": i, "prompt": f"Q: question {i}? A:", "target": target or f"answer {i}", "control": f"other {i}",
            "generated": "", "exact": exact, "plausible": True, "pool_size": 16, "logprob": logprob,
            "control_logprob": control_logprob}


def test_mcnemar_counts_exact_p_and_newcombe_interval():
    a = [True] * 5 + [False] * 5
    b = [True, False, False, False, False, False, False, False, False, True]
    m = mcnemar(a, b)
    assert (m["both"], m["a_only"], m["b_only"], m["neither"]) == (1, 4, 1, 4)
    assert m["p"] == pytest.approx(0.375)  # two-sided exact: 2 * P(X >= 4 | 5, 1/2) = 2 * 6/32
    assert m["diff"] == pytest.approx(0.3) and m["diff_ci95_low"] < 0.3 < m["diff_ci95_high"]
    r = mcnemar(b, a)  # swapping the arms mirrors everything
    assert r["diff"] == pytest.approx(-0.3) and r["p"] == pytest.approx(m["p"])
    assert (r["diff_ci95_low"], r["diff_ci95_high"]) == pytest.approx((-m["diff_ci95_high"], -m["diff_ci95_low"]))
    same = mcnemar([True, False] * 10, [True, False] * 10)  # full agreement still leaves a width
    assert same["p"] == 1.0 and same["diff"] == 0 and same["diff_ci95_low"] < 0 < same["diff_ci95_high"]
    # large n: close to the Wald interval, (b - c)/n +- 1.96 sqrt((b + c)/n^2 - (b - c)^2/n^3)
    d, low, high = paired_diff_ci(59, 6, 16, 80)
    se = np.sqrt(22 / 161**2 - 100 / 161**3)
    assert d == pytest.approx(-10 / 161) and (low, high) == pytest.approx((d - 1.96 * se, d + 1.96 * se), abs=2e-3)
    assert wilson_ci(0, 40)[1] == pytest.approx(3.8415 / 43.8415, abs=1e-4)  # z^2 / (n + z^2)
    with pytest.raises(ValueError, match="outcomes"):
        mcnemar([True], [True, False])


def test_paired_interval_covers_the_true_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    probs = np.array([0.15, 0.25, 0.05, 0.55])  # both, a only, b only, neither: true diff 0.20
    hits = 0
    for _ in range(2000):
        cells = rng.multinomial(40, probs)
        _, low, high = paired_diff_ci(*cells)
        hits += low <= 0.20 <= high
    assert 0.93 <= hits / 2000 <= 0.99


def constructed(n=12, seeds=(0,)):
    """q2a learns ids 0-7 (log-prob -2 + noise), a2q only id 11 (log-prob -8 + noise); controls
    rise less. Returns base and finetuned records and the hand-computed differences."""
    rng = np.random.default_rng(0)
    base_lp, base_ctrl = -10 + rng.normal(0, 1, n), -11 + rng.normal(0, 1, n)
    base = [rec(i, False, base_lp[i], base_ctrl[i]) for i in range(n)]
    ft, gains = {"q2a": {}, "a2q": {}}, {"q2a": [], "a2q": []}
    for s in seeds:
        for o, learned, level, ctrl_level in (("q2a", range(8), -2.0, -6.0), ("a2q", [11], -8.0, -9.0)):
            lp = level + rng.normal(0, 1, n)
            cl = ctrl_level + rng.normal(0, 1, n)
            ft[o][s] = [rec(i, i in learned, lp[i], cl[i]) for i in range(n)]
            gains[o].append(((lp - base_lp), (lp - base_lp) - (cl - base_ctrl)))
    return base, ft, gains


def test_did_and_mcnemar_across_orders_on_constructed_records():
    base, ft, gains = constructed()
    c = contrast_orders({"q2a": base, "a2q": base}, ft)
    m = c["per_seed"]["0"]["mcnemar"]
    assert (m["a_only"], m["b_only"], m["both"], m["neither"]) == (8, 1, 0, 3)
    assert m["p"] == pytest.approx(2 * 10 / 512)  # 2 * P(X >= 8 | 9, 1/2)
    did_gain = gains["q2a"][0][0] - gains["a2q"][0][0]
    did_spec = gains["q2a"][0][1] - gains["a2q"][0][1]
    assert c["per_seed"]["0"]["did_gain"]["mean"] == pytest.approx(did_gain.mean())
    assert c["per_seed"]["0"]["did_specific"]["mean"] == pytest.approx(did_spec.mean())
    lo, hi = c["pooled"]["did_specific"]["low"], c["pooled"]["did_specific"]["high"]
    assert lo < did_spec.mean() < hi
    # the base term is the same for both orders, so the gain contrast is the finetuned contrast
    assert did_gain == pytest.approx(np.array([r["logprob"] for r in ft["q2a"][0]]) -
                                     np.array([r["logprob"] for r in ft["a2q"][0]]))
    eff = order_effects(base, ft["a2q"])
    assert eff["gain"]["mean"] == pytest.approx(gains["a2q"][0][0].mean())
    assert eff["specific"]["mean"] == pytest.approx(gains["a2q"][0][1].mean())


def test_pooling_over_seeds_sums_discordant_pairs_and_averages_questions():
    base, ft, gains = constructed(seeds=(0, 1, 2))
    c = contrast_orders({"q2a": base, "a2q": base}, ft)
    assert c["seeds"] == [0, 1, 2]
    assert (c["pooled"]["q2a_only"], c["pooled"]["a2q_only"]) == (24, 3)
    assert c["pooled"]["diff"] == pytest.approx(7 / 12)
    assert c["pooled"]["diff_ci95_low"] < 7 / 12 < c["pooled"]["diff_ci95_high"]
    per_q = np.mean([g[1] for g in gains["q2a"]], axis=0) - np.mean([g[1] for g in gains["a2q"]], axis=0)
    assert c["pooled"]["did_specific"]["mean"] == pytest.approx(per_q.mean())
    p = pooled(ft["q2a"])
    assert p["n_seeds"] == 3 and p["exact_match"] == pytest.approx(8 / 12)
    assert p["exact_ci95_low"] < 8 / 12 < p["exact_ci95_high"]
    none = pooled({s: [dict(r, exact=False) for r in ft["a2q"][s]] for s in (0, 1, 2)})
    assert none["exact_match"] == 0 and none["exact_ci95_high"] > 0.2  # all zero still has an upper bound


def test_orders_must_test_the_same_questions_with_the_same_answers():
    base, ft, _ = constructed()
    other = [dict(r, target="something else") if r["id"] == 3 else r for r in ft["a2q"][0]]
    with pytest.raises(ValueError, match="held-out id 3 has another target"):
        contrast_orders({"q2a": base, "a2q": base}, {"q2a": ft["q2a"], "a2q": {0: other}})
    with pytest.raises(ValueError, match="id 11 is in one only"):
        check_same_questions(ft["q2a"][0], ft["a2q"][0][:-1], "x")
    with pytest.raises(ValueError, match="no finetuning seed was run in both orders"):
        contrast_orders({"q2a": base, "a2q": base}, {"q2a": ft["q2a"], "a2q": {5: ft["a2q"][0]}})


def test_report_states_effects_with_cis_and_absences_as_bounds():
    base, ft, _ = constructed(seeds=(0, 1))
    null = {s: [dict(r, logprob=b["logprob"] + 0.01 * (r["id"] % 3 - 1), control_logprob=b["control_logprob"])
                for r, b in zip(recs, base)] for s, recs in ft["a2q"].items()}
    results = {}
    for o, recs in (("q2a", ft["q2a"]), ("a2q", null)):
        summary = {"n": 12, "exact_match": 0.0, "exact_ci95_low": 0.0, "exact_ci95_high": 0.24, "plausible": 1.0,
                   "chance": 1 / 16, "mean_logprob": -5.0}
        results[o] = {"base": {"unrealized": summary, "realized": summary},
                      "finetuned": {"unrealized": pooled(recs), "realized": pooled(recs)},
                      "seeds": {str(s): {"unrealized": summary, "realized": summary, "train": {"epochs": 3}}
                                for s in recs},
                      "effects": {k: v for k, v in order_effects(base, recs).items() if k != "ids"}}
    results["contrast"] = contrast_orders({"q2a": base, "a2q": base}, {"q2a": ft["q2a"], "a2q": null})
    text = exp3_markdown(results, "t")
    assert "McNemar" in text and "pooled" in text
    a2q_line = next(x for x in text.splitlines() if x.startswith("  Gain") and "at most" in x)
    assert "includes zero" in a2q_line  # the a2q effect is near zero: stated as a bound
    assert "above zero" in text  # the q2a effect is not
