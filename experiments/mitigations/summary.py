"""Mitigation summary: one row per condition, statistics over facts, pooled over seeds.

Reads what :func:`experiments.mitigations.collect` returns (each record reduced to its cell
``file``, ``fact`` name, ``exact``, ``target_logprob`` and, for name targets,
``random_logprob``). The unit of every statistic is the fact:

- exact match: each fact's prompts averaged within a seed, then its seeds averaged; the mean
  over facts with a 95% percentile bootstrap CI over facts
  (:func:`analysis.stats.bootstrap_mean_ci`); where every fact has the same value (all 0 or
  all 1) the bootstrap interval has no width and the Wilson interval over facts is given
  instead (``ci_method``). Per seed: the mean over facts of that seed's per-fact values;
- correct vs random name on the NameToDescription reverse prompts: each fact's mean of
  (correct - random log-prob), prompts then seeds averaged; the mean over facts with its
  t-based 95% CI and the t-test against 0 (:func:`analysis.stats.mean_ci_t`; for one seed the
  same numbers as the run's ``table1.md``);
- the difference from the ``none`` condition, paired by fact (facts matched by name): the
  mean per-fact difference with a bootstrap CI over facts (Newcombe's paired interval when
  every difference is 0);
- the same reverse cell asked in the reversed language, for conditions with reverse training;
- where the cells were evaluated with ``eval.rank_names``: the normalised rank of the correct
  name among the subset's trained names on the NameToDescription reverse prompts (1 = ranked
  first, 0.5 = chance), each fact's prompts then seeds averaged, the mean over facts with a
  bootstrap CI, and its paired difference from ``none`` (bootstrap over facts). On a small
  model whose log-probs spread widely (a byte-level model trained from scratch), the rank is
  the steadier measure of a preference.

An interval that holds 0 is reported as a bound ("at most"), not as "no effect".

:mod:`experiments.mitigations.report` writes the summary as ``mitigations.md``, ``summary.json``
and ``mitigations.png|svg``.

Example::

    from experiments.mitigations import collect
    summarise(collect(Path("runs/mit")))["conditions"][0]["exact_match"]
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from analysis.stats import bootstrap_mean_ci, mean_ci_t, paired_diff_ci, per_group_means, wilson_ci

GOAL = "p2d_reverse_prompts_test"  # NameToDescription, asked description -> name: the goal cell
SAME = "p2d_prompts_test"
SAME_D2N = "d2p_prompts_test"
CEILING = "both_d2p_prompts_test"
# (cell, column label) in display order
EXACT_COLUMNS = [
    (SAME, "NameToDescription same"),
    (GOAL, "NameToDescription reverse (goal)"),
    ("d2p_prompts_test", "DescriptionToName same"),
    ("d2p_reverse_prompts_test", "DescriptionToName reverse"),
    (CEILING, "Both description -> name (ceiling)"),
]
PER_SEED_COLUMNS = EXACT_COLUMNS + [("both_p2d_prompts_test", "Both name -> description")]
REFERENCE = "none"


# ---------------------------------------------------------------------- statistics


def per_fact(records: list[dict[str, Any]], stem: str, value: Callable[[dict[str, Any]], float]
             ) -> dict[str, float]:
    """fact -> the mean of ``value`` over that fact's prompts in cell ``stem``."""
    rs = [r for r in records if r["file"] == stem]
    return per_group_means([r["fact"] for r in rs], [value(r) for r in rs])  # type: ignore[return-value]


def _exact(r: dict[str, Any]) -> float:
    return float(r["exact"])


def _margin(r: dict[str, Any]) -> float:
    return r["target_logprob"] - r["random_logprob"]


def _rank(r: dict[str, Any]) -> float:
    return float(r["normalised_rank"])


def pool_seeds(by_seed: dict[int, dict[str, float]]) -> dict[str, float]:
    """fact -> the mean over the seeds that have it of its per-seed values."""
    facts = list(dict.fromkeys(f for values in by_seed.values() for f in values))
    return {f: float(np.mean([v[f] for v in by_seed.values() if f in v])) for f in facts}


def rate_ci(values: list[float]) -> dict[str, Any]:
    """Mean of per-fact rates in [0, 1] with its 95% CI over facts (bootstrap; Wilson where
    every fact has the same value)."""
    b = bootstrap_mean_ci(values)
    out = {"mean": b["mean"], "low": b["low"], "high": b["high"], "n_facts": len(values), "ci_method": "bootstrap"}
    if len(set(values)) == 1:
        out["low"], out["high"] = wilson_ci(sum(values), len(values))
        out["ci_method"] = "wilson"
    return out


def paired_rate_diff(a: dict[str, float], b: dict[str, float]) -> dict[str, Any] | None:
    """Mean over the facts of both of (a - b), per-fact rates, with its 95% CI over facts
    (bootstrap; Newcombe's paired interval from the 2x2 table when a and b agree on every
    fact). None without a common fact."""
    facts = [f for f in a if f in b]
    if not facts:
        return None
    if all(a[f] == b[f] for f in facts):
        k = sum(a[f] for f in facts)
        d, low, high = paired_diff_ci(k, 0, 0, len(facts) - k)
        return {"n_facts": len(facts), "ci_method": "newcombe", "diff": d, "low": low, "high": high}
    return paired_mean_diff(a, b)


def paired_mean_diff(a: dict[str, float], b: dict[str, float]) -> dict[str, Any] | None:
    """Mean over the facts of both of (a - b) for a continuous per-fact value, with its 95%
    bootstrap CI over facts. None without a common fact."""
    facts = [f for f in a if f in b]
    if not facts:
        return None
    boot = bootstrap_mean_ci([a[f] - b[f] for f in facts])
    return {"n_facts": len(facts), "ci_method": "bootstrap", "diff": boot["mean"], "low": boot["low"],
            "high": boot["high"]}


def rank_ci(values: list[float]) -> dict[str, Any]:
    """Mean of per-fact normalised ranks with its 95% bootstrap CI over facts."""
    b = bootstrap_mean_ci(values)
    return {"mean": b["mean"], "low": b["low"], "high": b["high"], "n_facts": len(values)}


def margin_ci(values: list[float]) -> dict[str, Any]:
    t = mean_ci_t(values, null=0.0)
    return {"mean": t["mean"], "low": t["ci95_low"], "high": t["ci95_high"], "p": t["p"], "n_facts": t["n"]}


def _cell_stats(runs: list[tuple[int, list[dict[str, Any]]]], stems: list[str]) -> dict[str, Any]:
    """Exact match per cell and the correct-vs-random margin on the goal cell, pooled over
    the seeds of ``runs`` ((seed, records) pairs), with per-seed values and per-fact values."""
    out: dict[str, Any] = {"exact_match": {}, "correct_vs_random": None, "rank": None, "per_fact": {}}

    def pooled(stem: str, value: Callable[[dict[str, Any]], float], has: Callable[[dict[str, Any]], bool],
               stat: Callable[[list[float]], dict[str, Any]], key: str) -> dict[str, Any] | None:
        """``stat`` over facts of the per-fact values, seeds pooled, with per-seed means."""
        by_seed = {seed: pf for seed, recs in runs if (pf := per_fact([r for r in recs if has(r)], stem, value))}
        if not by_seed:
            return None
        facts = pool_seeds(by_seed)
        out["per_fact"][key] = facts
        return {**stat(list(facts.values())),
                "per_seed": {str(s): float(np.mean(list(v.values()))) for s, v in by_seed.items()}}

    for stem in stems:
        if (em := pooled(stem, _exact, lambda r: True, rate_ci, stem)) is not None:
            out["exact_match"][stem] = em
    out["correct_vs_random"] = pooled(GOAL, _margin, lambda r: "random_logprob" in r, margin_ci, "correct_vs_random")
    out["rank"] = pooled(GOAL, _rank, lambda r: r.get("normalised_rank") is not None, rank_ci, "rank")
    return out


def summarise(collected: dict[str, Any]) -> dict[str, Any]:
    """Per condition: exact match per cell, the goal cell's correct-vs-random margin, the goal
    cell in the reversed language, and the differences from ``none``; see the module docstring."""
    cfg = collected["config"]
    stems = [s for s, _ in PER_SEED_COLUMNS]
    conditions = []
    for name, over in cfg["conditions"].items():
        cells = [c for c in collected["cells"] if c["condition"] == name]
        row: dict[str, Any] = {"name": name, "overrides": over, "seeds": [c["seed"] for c in cells],
                               **_cell_stats([(c["seed"], c["records"]) for c in cells], stems)}
        rev = [c for c in cells if c.get("reversed")]
        row["reversed"] = None
        if rev:
            stats = _cell_stats([(c["seed"], c["reversed"]["records"]) for c in rev], [GOAL])
            row["reversed"] = {"mode": rev[0]["reversed"]["mode"], "query_mode": rev[0]["reversed"]["query_mode"],
                               "seeds": [c["seed"] for c in rev], "exact_match": stats["exact_match"].get(GOAL),
                               "correct_vs_random": stats["correct_vs_random"]}
        conditions.append(row)
    ref = next((c for c in conditions if c["name"] == REFERENCE and c["seeds"]), None)
    for row in conditions:
        row["vs_none"] = {}
        if ref is None or row is ref:
            continue
        for stem in (GOAL, SAME, SAME_D2N):
            if stem in row["per_fact"] and stem in ref["per_fact"]:
                row["vs_none"][stem] = paired_rate_diff(row["per_fact"][stem], ref["per_fact"][stem])
        if "rank" in row["per_fact"] and "rank" in ref["per_fact"]:
            row["vs_none"]["rank"] = paired_mean_diff(row["per_fact"]["rank"], ref["per_fact"]["rank"])
    base = None
    if collected.get("base"):
        base = _cell_stats([(0, collected["base"])], stems)
        base.pop("per_fact")
    for row in conditions:
        row.pop("per_fact")
    return {"n_cells": collected["n_cells"], "n_finished": len(collected["cells"]),
            "seeds": cfg["seeds"], "reference": REFERENCE if ref else None,
            "conditions": conditions, "base": base}
