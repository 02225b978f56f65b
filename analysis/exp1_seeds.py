"""Experiment 1 over several finetuning seeds: every cell's mean and range over seeds, with
intervals that count both seeds and facts, and an equivalence test on the reverse preference.

:func:`pool_runs` takes, per seed, the finetuned model's cells (``eval/finetuned/metrics.json``
of an experiment 1 run: each cell's ``per_fact`` correct and random log-probs and ranks) and
each cell's exact match per fact. It returns, per cell:

- ``exact_match``, ``normalised_rank``, ``diff`` (correct minus random trained name, nats):
  the value of each seed, their mean and range, and the crossed t interval over the
  ``[seed, fact]`` table (:func:`analysis.intervals.crossed_t_interval`);
- for reverse cells, ``tost``: two one-sided tests that the correct name's advantage lies
  within ``+-margin`` nats (:func:`analysis.intervals.tost`), with ``bound``, the smallest
  margin the data exclude.

:func:`seeds_markdown` writes it up. Statistics are over facts (each fact's prompts averaged
first), never over prompts.

Example::

    s = pool_runs([{"seed": 0, "cells": m0, "exact_per_fact": e0}, ...], margin=1.0)
    s["cells"]["p2d_reverse_prompts_test"]["tost"]["bound"]
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from analysis.intervals import crossed_t_interval, tost

MEASURES = ("exact_match", "normalised_rank", "diff")
LABELS = {"p2d_prompts_test": "NameToDescription, same order", "p2d_reverse_prompts_test":
          "NameToDescription, reverse", "d2p_prompts_test": "DescriptionToName, same order",
          "d2p_reverse_prompts_test": "DescriptionToName, reverse",
          "p2d_reverse_in_context": "NameToDescription, reverse, fact in context",
          "d2p_reverse_in_context": "DescriptionToName, reverse, fact in context"}


def _table(runs: Sequence[dict[str, Any]], cell: str, measure: str) -> tuple[np.ndarray, list[int]] | None:
    """The ``[seed, fact]`` table of one measure (facts in every seed, in fact-id order)."""
    rows = []
    for r in runs:
        c = r["cells"].get(cell)
        if c is None:
            return None
        if measure == "exact_match":
            vals = {int(k): float(v) for k, v in r["exact_per_fact"].get(cell, {}).items()}
        else:
            pf = c.get("per_fact")
            if not pf:
                return None
            key = "normalised_rank" if measure == "normalised_rank" else None
            if key is not None and key not in pf:
                return None
            src = pf[key] if key else [a - b for a, b in zip(pf["correct"], pf["random"])]
            vals = {int(f): float(v) for f, v in zip(pf["fact_id"], src) if v is not None}
        rows.append(vals)
    facts = sorted(set.intersection(*(set(v) for v in rows)))
    if len(facts) < 2:
        return None
    return np.array([[v[f] for f in facts] for v in rows]), facts


def _bounded(i: dict[str, Any], measure: str) -> dict[str, Any]:
    """A proportion's or a rank's interval, clipped to [0, 1] (``clipped`` says so)."""
    if measure == "diff":
        return i
    lo, hi = max(0.0, i["ci_low"]), min(1.0, i["ci_high"])
    return {**i, "ci_low": lo, "ci_high": hi, "clipped": (lo, hi) != (i["ci_low"], i["ci_high"])}


def pool_runs(runs: Sequence[dict[str, Any]], margin: float = 1.0) -> dict[str, Any]:
    """Pool experiment 1 runs that differ only in their finetuning seed (see module docstring).
    Each entry of ``runs``: ``seed``, ``cells`` (``metrics.json``'s ``cells``) and
    ``exact_per_fact`` (``{cell: {fact_id: exact-match rate over its prompts}}``)."""
    if len(runs) < 1:
        raise ValueError("pool_runs: no runs")
    if not margin > 0:
        raise ValueError(f"pool_runs: the equivalence margin must be positive, got {margin}")
    out: dict[str, Any] = {"seeds": [r["seed"] for r in runs], "margin_nats": margin, "cells": {}}
    for cell in runs[0]["cells"]:
        e: dict[str, Any] = {"label": LABELS.get(cell, cell), "direction": runs[0]["cells"][cell].get("direction")}
        for measure in MEASURES:
            t = _table(runs, cell, measure)
            if t is None:
                continue
            x, facts = t
            per_seed = x.mean(1)
            e[measure] = {"per_seed": per_seed.tolist(), "mean": float(x.mean()), "min": float(per_seed.min()),
                          "max": float(per_seed.max()), "n_facts": len(facts),
                          "interval": _bounded(crossed_t_interval(x), measure)}
            if measure == "diff" and cell.endswith("_reverse_prompts_test"):
                e["tost"] = tost(x, margin)
        out["cells"][cell] = e
    return out


def _ci(i: dict[str, Any] | None, fmt: str) -> str:
    if not i:
        return "(no spread)"
    return f"[{fmt.format(i['ci_low'])}, {fmt.format(i['ci_high'])}]"


def seeds_markdown(s: dict[str, Any], title: str = "Experiment 1 over finetuning seeds") -> str:
    """The pooled result as markdown: one table of cells, then the equivalence tests."""
    seeds = ", ".join(str(x) for x in s["seeds"])
    lines = [f"# {title}", "", f"Finetuning seeds {seeds}; means over seeds and facts, 95% intervals from the "
             "crossed t interval over the [seed, fact] table (both sources of variation; exact match and rank "
             "clipped to [0, 1]); range: the lowest and highest seed.", "",
             "| query | exact match (range) [95% CI] | normalised rank (range) [95% CI] | "
             "correct - random name, nats (range) [95% CI] |", "|---|---|---|---|"]
    for cell, e in s["cells"].items():
        cols = []
        for m, fmt, scale in (("exact_match", "{:.1f}%", 100), ("normalised_rank", "{:.3f}", 1), ("diff", "{:+.2f}", 1)):
            v = e.get(m)
            if v is None:
                cols.append("n/a")
                continue
            i = v["interval"]
            i = i and {"ci_low": i["ci_low"] * scale, "ci_high": i["ci_high"] * scale}
            cols.append(f"{fmt.format(v['mean'] * scale)} ({fmt.format(v['min'] * scale)} to "
                        f"{fmt.format(v['max'] * scale)}) {_ci(i, fmt)}")
        lines.append(f"| {e['label']} ({cell}) | " + " | ".join(cols) + " |")
    lines += ["", f"Equivalence (two one-sided tests, level 0.05): is the correct name's advantage over a random "
              f"trained name within +-{s['margin_nats']:g} nats? `bound`: the smallest margin the data exclude.", "",
              "| reverse query | mean [95% CI] | TOST p at +-{:g} | equivalent | smallest margin excluded |".format(
                  s["margin_nats"]), "|---|---|---|---|---|"]
    for cell, e in s["cells"].items():
        t = e.get("tost")
        if t is None:
            continue
        lines.append(f"| {e['label']} | {e['diff']['mean']:+.2f} {_ci(e['diff']['interval'], '{:+.2f}')} | "
                     f"{t['p']:.2g} | {'yes' if t['equivalent'] else 'no'} | {t['bound']:.2f} nats |")
    return "\n".join(lines) + "\n"
