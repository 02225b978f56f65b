"""Experiment 2 statistics: per-query means and the parent-vs-child differences, with CIs
clustered by family.

The rows are not independent: a child has a mother row and a father row, and a parent asked
about several children gets the same child query several times. Every CI here resamples
families (:func:`experiments.exp2.candidates.families`: connected groups of people linked by
a pair) with all their rows (:func:`analysis.stats.cluster_bootstrap_mean_ci`). Tests that
treat rows as independent are not used.

Metrics, per query (a record of :func:`experiments.exp2.run.evaluate_exp2`):

- ``beaten``: the fraction of same-role wrong names whose log-prob is below the correct
  name's (0.5 = chance), ``top1``, and the mean rank: the metric that escapes the floor;
- ``logprob`` / probability of the correct name, ``exact_match`` (greedy), and
  ``gap_vs_random``: correct minus a random wrong name of the same role;
- ``sample_hit``: any of ``k`` temperature samples starts with the name (when sampled).

The split by whether child and parent share a name word was chosen after seeing the data; it
is reported apart, labelled exploratory, with Holm-adjusted cluster sign-flip p-values.

Example::

    m = summarise_exp2(records)
    m["parent_vs_child"]["diff"]["beaten"]   # {"mean": ..., "low": ..., "high": ...}
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from analysis.stats import cluster_bootstrap_mean_ci, cluster_signflip_pvalue, holm

QUERIES = ("parent", "child")
N_BOOT = 4000
LEVEL = 0.95
# metric name -> value of one record (None = not available for that record)
METRICS: dict[str, Callable[[dict[str, Any]], float | None]] = {
    "beaten": lambda r: r["beaten"],
    "top1": lambda r: float(r["top1"]) if r["beaten"] is not None else None,
    "logprob": lambda r: r["logprob"],
    "prob": lambda r: math.exp(r["logprob"]),
    "exact_match": lambda r: float(bool(r["exact"])),
    "gap_vs_random": lambda r: r["logprob"] - r["control_logprob"] if r["control_logprob"] is not None else None,
    "sample_hit": lambda r: float(r["sample_hit"]) if r.get("sample_hit") is not None else None,
}
EXPLORATORY_METRICS = ("beaten", "gap_vs_random")


def _ci(values: list[float], clusters: list[Any], seed: int) -> dict[str, Any]:
    c = cluster_bootstrap_mean_ci(values, clusters, n_boot=N_BOOT, seed=seed, level=LEVEL)
    return {"mean": c["mean"], "low": c["low"], "high": c["high"], "n": c["n"], "n_families": c["n_clusters"]}


def _per_query(rs: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(rs)}
    for name, get in METRICS.items():
        kept = [(get(r), r["family"]) for r in rs if get(r) is not None]
        if kept:
            out[name] = _ci([v for v, _ in kept], [f for _, f in kept], seed)
    ranked = [r for r in rs if r["beaten"] is not None]
    if ranked:
        out["mean_rank"] = float(np.mean([r["rank"] for r in ranked]))
        out["mean_n_candidates"] = float(np.mean([r["n_candidates"] for r in ranked]))
        out["chance_top1"] = float(np.mean([1 / r["n_candidates"] for r in ranked]))
    out["mean_token_logprob"] = float(np.mean([r["logprob"] / r["n_tokens"] for r in rs])) if rs else None
    return out


def _paired(both: list[tuple[dict[str, Any], dict[str, Any]]], metric: str) -> tuple[list[float], list[Any]]:
    """Parent-query minus child-query value of ``metric`` per pair, and the pair's family."""
    get = METRICS[metric]
    kept = [(get(a), get(b), a["family"]) for a, b in both if get(a) is not None and get(b) is not None]
    return [x - y for x, y, _ in kept], [f for _, _, f in kept]


def summarise_exp2(records: list[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """Per-query means and parent-minus-child differences, each with a family-clustered
    bootstrap 95% CI, and the exploratory shared-name split (see the module docstring).
    ``seed`` seeds the bootstrap and the sign flips."""
    out: dict[str, Any] = {
        "clustering": {"unit": "family (people linked by a child-parent pair)", "n_boot": N_BOOT,
                       "level": LEVEL, "seed": seed},
        "queries": {q: _per_query([r for r in records if r["query"] == q], seed) for q in QUERIES},
    }
    by_pair: dict[int, dict[str, dict[str, Any]]] = {}
    for r in records:
        by_pair.setdefault(r["pair"], {})[r["query"]] = r
    both = [(v["parent"], v["child"]) for v in by_pair.values() if all(q in v for q in QUERIES)]
    pc: dict[str, Any] = {"n_pairs": len(both), "n_children": len({a["child"] for a, _ in both}),
                          "n_families": len({a["family"] for a, _ in both}), "diff": {}, "parent_higher": {}}
    for metric in METRICS:
        diffs, fams = _paired(both, metric)
        if diffs:
            pc["diff"][metric] = _ci(diffs, fams, seed)
            pc["parent_higher"][metric] = {"parent": sum(d > 0 for d in diffs), "child": sum(d < 0 for d in diffs),
                                           "tie": sum(d == 0 for d in diffs)}
    pc["exact"] = {"only_parent": sum(bool(a["exact"]) and not b["exact"] for a, b in both),
                   "only_child": sum(bool(b["exact"]) and not a["exact"] for a, b in both),
                   "both": sum(bool(a["exact"]) and bool(b["exact"]) for a, b in both)}
    out["parent_vs_child"] = pc
    out["exploratory_shared_name"] = exploratory_split(both, seed)
    return out


def exploratory_split(both: list[tuple[dict[str, Any], dict[str, Any]]], seed: int = 0) -> dict[str, Any]:
    """Parent-minus-child differences within pairs whose names share a word and pairs whose
    names do not, for :data:`EXPLORATORY_METRICS`: mean, unadjusted clustered 95% CI,
    cluster sign-flip p and its Holm adjustment over every test reported here."""
    tests = []
    for subset, keep in (("shared name word", True), ("no shared name word", False)):
        sel = [(a, b) for a, b in both if bool(a["shares_name"]) == keep]
        for metric in EXPLORATORY_METRICS:
            diffs, fams = _paired(sel, metric)
            if len(diffs) < 2:
                continue
            ci = _ci(diffs, fams, seed)
            tests.append({"subset": subset, "metric": metric, "n_pairs": ci["n"], "n_families": ci["n_families"],
                          "mean": ci["mean"], "low": ci["low"], "high": ci["high"],
                          "p": cluster_signflip_pvalue(diffs, fams, seed=seed)})
    for t, adj in zip(tests, holm([t["p"] for t in tests])):
        t["p_holm"] = adj
    return {"exploratory": True,
            "note": "split chosen after seeing the data (whether child and parent share a name word, "
                    "usually a surname); Holm-adjusted over the tests listed; not a confirmatory result",
            "correction": "holm", "n_tests": len(tests), "tests": tests}
