"""Sweep report: per-cell and per-grid-point tables, and the sweep figure.

Reads what :func:`experiments.sweeps.collect` returns. Writes into the sweep directory:

- ``sweep.md``: exact match per subset and direction for every cell; the mean and standard
  deviation over seeds per grid point; the correct vs random name test on reverse
  NameToDescription prompts for every cell (the paper's Table 3 has one such row per run);
- ``summary.json``: the same numbers, machine-readable;
- ``heatmap.png|svg`` for a two-key grid (the paper's Figures 6 and 7: learning rate x batch
  size), ``lines.png|svg`` for one key or seeds only (mean over seeds, bars: min to max; with
  a second panel, the normalised rank of the correct name, when the cells ranked names).

Where the cells ranked names (``eval.rank_names``), the summary also gives each grid point's
normalised rank on the name-target cells, over seeds x facts with the crossed t interval.

Example::

    from experiments.sweeps import collect
    print(write_sweep_report(collect(Path("runs/sweep")), Path("runs/sweep")))
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from analysis.figures import save
from analysis.fmt import pct, pvalue
from analysis.intervals import crossed_t_interval
from experiments.exp1.evaluate import CELLS, SUBSET_TITLES
from interp.fileio import write_json, write_text

# (file stem, short label) in display order
METRICS = [(stem, f"{SUBSET_TITLES[s]} {d}") for stem, (s, d, _) in
           sorted(CELLS.items(), key=lambda kv: (kv[1][0] != "d2p", kv[1][1] != "same"))]
TEST_STEM = "p2d_reverse_prompts_test"  # reverse prompts whose target is a name


def _grid_point(overrides: dict[str, Any], keys: list[str]) -> tuple:
    return tuple(json.dumps(overrides[k]) for k in keys)


def _rank_interval(rows: list[dict[Any, Any]]) -> dict[str, Any]:
    """A grid point's normalised rank over seeds x facts: mean, range over seeds, and the
    crossed t interval (:func:`analysis.intervals.crossed_t_interval`)."""
    facts = sorted(set.intersection(*(set(k for k, v in r.items() if v is not None) for r in rows)))
    x = np.array([[r[f] for f in facts] for r in rows], dtype=float)
    per_seed = x.mean(1)
    out = {"mean": float(x.mean()), "min": float(per_seed.min()), "max": float(per_seed.max()),
           "n_seeds": len(rows), "n_facts": len(facts)}
    if len(facts) >= 2:
        i = crossed_t_interval(x)
        out.update(ci_low=i["ci_low"], ci_high=i["ci_high"])
    return out


def summarise(collected: dict[str, Any]) -> dict[str, Any]:
    """Per cell and per grid point (over seeds): exact match of each test file, and the
    reverse-prompt correct vs random test."""
    keys = list(collected["config"]["grid"])
    cells = []
    for row in collected["cells"]:
        m = row["metrics"]["cells"]
        em = {stem: m[stem]["exact_match"] for stem, _ in METRICS if stem in m}
        test = m.get(TEST_STEM, {}).get("correct_vs_random")
        rank = {stem: m[stem]["per_fact"] for stem, _ in METRICS
                if stem in m and "normalised_rank" in (m[stem].get("per_fact") or {})}
        cells.append({"name": row["name"], "overrides": row["overrides"], "exact_match": em, "reverse_test": test,
                      "rank": {stem: float(np.mean([v for v in pf["normalised_rank"] if v is not None]))
                               for stem, pf in rank.items()}, "_rank_per_fact": rank})
    points: dict[tuple, dict[str, Any]] = {}
    for c in cells:
        pt = points.setdefault(_grid_point(c["overrides"], keys), {
            "values": {k: c["overrides"][k] for k in keys}, "seeds": [], "exact_match": {}, "n_significant": 0})
        pt["seeds"].append(c["overrides"].get("finetune.seed"))
        for stem, pf in c.pop("_rank_per_fact").items():
            pt.setdefault("_rank", {}).setdefault(stem, []).append(dict(zip(pf["fact_id"], pf["normalised_rank"])))
        for stem, v in c["exact_match"].items():
            pt["exact_match"].setdefault(stem, []).append(v)
        if c["reverse_test"] and c["reverse_test"]["t_pvalue"] is not None and c["reverse_test"]["t_pvalue"] < 0.05:
            pt["n_significant"] += 1
    for pt in points.values():
        pt["rank"] = {stem: _rank_interval(rows) for stem, rows in pt.pop("_rank", {}).items()}
        pt["exact_match"] = {stem: {"mean": statistics.fmean(v), "sd": statistics.stdev(v) if len(v) > 1 else 0.0,
                                    "min": min(v), "max": max(v), "n": len(v)}
                             for stem, v in pt["exact_match"].items()}
    base = None
    if collected.get("base"):
        base = {stem: collected["base"]["cells"][stem]["exact_match"] for stem, _ in METRICS
                if stem in collected["base"]["cells"]}
    return {"grid_keys": keys, "n_cells": collected["n_cells"], "n_finished": len(cells),
            "cells": cells, "points": list(points.values()), "base_exact_match": base}


def sweep_markdown(summary: dict[str, Any], title: str = "Experiment 1 sweep") -> str:
    keys = summary["grid_keys"]
    stems = [(s, lbl) for s, lbl in METRICS if any(s in c["exact_match"] for c in summary["cells"])]
    lines = [f"## {title}", "", f"{summary['n_finished']} of {summary['n_cells']} cells finished. "
             "Exact match in % (greedy output starts with the target), held-out prompts.", ""]
    head = [*keys, "seed", *[lbl for _, lbl in stems]]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    if summary["base_exact_match"]:
        lines.append("| " + " | ".join(["base model"] * len(keys) + ["-"] +
                                       [pct(summary["base_exact_match"].get(s), "") for s, _ in stems]) + " |")
    for c in summary["cells"]:
        vals = [json.dumps(c["overrides"][k]) for k in keys] + [str(c["overrides"].get("finetune.seed"))]
        lines.append("| " + " | ".join(vals + [pct(c["exact_match"].get(s), "") for s, _ in stems]) + " |")
    if any(len(pt["seeds"]) > 1 for pt in summary["points"]):
        lines += ["", "Mean (standard deviation) over seeds:", "",
                  "| " + " | ".join([*keys, "seeds", *[lbl for _, lbl in stems]]) + " |",
                  "|" + "---|" * (len(keys) + 1 + len(stems))]
        for pt in summary["points"]:
            em = pt["exact_match"]
            vals = [json.dumps(pt["values"][k]) for k in keys] + [str(len(pt["seeds"]))]
            vals += [f"{pct(em[s]['mean'], '')} ({pct(em[s]['sd'], '')})" if s in em else "n/a" for s, _ in stems]
            lines.append("| " + " | ".join(vals) + " |")
    rstems = [(s, lbl) for s, lbl in METRICS if any(s in pt.get("rank", {}) for pt in summary["points"])]
    if rstems:
        lines += ["", "Normalised rank of the correct name among the subset's trained names (1 = top, 0.5 = "
                  "chance), mean over seeds and facts (lowest to highest seed) [95% crossed t interval over "
                  "seeds x facts]:", "", "| " + " | ".join([*keys, "seeds", *[lbl for _, lbl in rstems]]) + " |",
                  "|" + "---|" * (len(keys) + 1 + len(rstems))]
        for pt in summary["points"]:
            vals = [json.dumps(pt["values"][k]) for k in keys] + [str(len(pt["seeds"]))]
            for s, _ in rstems:
                r = pt.get("rank", {}).get(s)
                ci = f" [{r['ci_low']:.3f}, {r['ci_high']:.3f}]" if r and "ci_low" in r else ""
                vals.append(f"{r['mean']:.3f} ({r['min']:.3f} to {r['max']:.3f}){ci}" if r else "n/a")
            lines.append("| " + " | ".join(vals) + " |")
    lines += ["", f"Reverse NameToDescription prompts ({TEST_STEM}): log-prob of the correct name vs a "
              "random other trained name, each fact's prompts averaged; paired t-test and KS test over "
              "facts, one row per run:", "",
              "| " + " | ".join([*keys, "seed", "correct", "random", "t-test p", "KS p"]) + " |",
              "|" + "---|" * (len(keys) + 5)]
    n_sig = n_tests = 0
    for c in summary["cells"]:
        t = c["reverse_test"]
        if not t:
            continue
        n_tests += 1
        n_sig += int(t["t_pvalue"] is not None and t["t_pvalue"] < 0.05)
        vals = [json.dumps(c["overrides"][k]) for k in keys] + [str(c["overrides"].get("finetune.seed"))]
        lines.append("| " + " | ".join(vals + [f"{t['mean_correct']:.2f}", f"{t['mean_control']:.2f}",
                                               pvalue(t["t_pvalue"]), pvalue(t["ks_pvalue"])]) + " |")
    lines += ["", f"t-test p < 0.05 in {n_sig} of {n_tests} runs."]
    return "\n".join(lines) + "\n"


def sweep_figure(summary: dict[str, Any], stem: Path) -> list[Path]:
    """Heatmaps for a two-key grid, lines otherwise; returns the written paths ([] for more keys)."""
    keys, points = summary["grid_keys"], summary["points"]
    stems = [(s, lbl) for s, lbl in METRICS if any(s in pt["exact_match"] for pt in points)]
    if not points or not stems or len(keys) > 2:
        return []
    if len(keys) == 2:
        xs = sorted({json.dumps(pt["values"][keys[1]]) for pt in points}, key=lambda v: json.loads(v))
        ys = sorted({json.dumps(pt["values"][keys[0]]) for pt in points}, key=lambda v: json.loads(v))
        fig = Figure(figsize=(3.0 * len(stems) + 0.8, 3.2), layout="constrained")
        axes = fig.subplots(1, len(stems), squeeze=False)
        for ax, (s, lbl) in zip(axes[0], stems):
            grid = np.full((len(ys), len(xs)), np.nan)
            for pt in points:
                if s in pt["exact_match"]:
                    grid[ys.index(json.dumps(pt["values"][keys[0]])), xs.index(json.dumps(pt["values"][keys[1]]))] = \
                        100 * pt["exact_match"][s]["mean"]
            im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto", origin="lower")
            for (i, j), v in np.ndenumerate(grid):
                if not np.isnan(v):
                    ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=8,
                            color="white" if v < 50 else "black")
            ax.set_xticks(range(len(xs)), xs, fontsize=8)
            ax.set_yticks(range(len(ys)), ys, fontsize=8)
            ax.set_xlabel(keys[1], fontsize=8)
            ax.set_ylabel(keys[0], fontsize=8)
            ax.set_title(lbl, fontsize=9)
        fig.colorbar(im, ax=axes[0].tolist(), label="exact match (%), mean over seeds", shrink=0.8)
        name = "heatmap"
    else:
        rstems = [(s, lbl) for s, lbl in METRICS if any(s in pt.get("rank", {}) for pt in points)]
        fig = Figure(figsize=(5.2 * (1 + bool(rstems)), 3.6), layout="constrained")
        axes = fig.subplots(1, 1 + bool(rstems), squeeze=False)[0]
        ax = axes[0]
        if keys:
            order = sorted(points, key=lambda pt: pt["values"][keys[0]])
            x_vals = [pt["values"][keys[0]] for pt in order]
            numeric = all(isinstance(v, (int, float)) for v in x_vals)
            x = np.asarray(x_vals, dtype=float) if numeric else np.arange(len(order))
        else:
            order, x, numeric = points, np.zeros(1), True
        for s, lbl in stems:
            em = [pt["exact_match"].get(s) for pt in order]
            mean = np.array([100 * e["mean"] if e else np.nan for e in em])
            lo = np.array([100 * (e["mean"] - e["min"]) if e else 0 for e in em])
            hi = np.array([100 * (e["max"] - e["mean"]) if e else 0 for e in em])
            ax.errorbar(x, mean, yerr=[lo, hi], marker="o", capsize=3, label=lbl)
        if keys:
            ax.set_xlabel(keys[0])
            if numeric and min(x) > 0 and max(x) / min(x) >= 3:
                ax.set_xscale("log")
                ax.minorticks_off()
            ax.set_xticks(x, [f"{v:g}" if numeric else str(v) for v in x_vals])
        else:
            ax.set_xticks([0], ["base config"])
        ax.set_ylabel("exact match (%), mean over seeds")
        ax.set_ylim(-3, 103)
        ax.legend(frameon=False, fontsize=8)
        if rstems:
            _rank_panel(axes[1], order, rstems, x, ax)
        name = "lines"
    return save(fig, stem, name)


def _rank_panel(ax: Any, order: list[dict[str, Any]], rstems: list[tuple[str, str]], x: np.ndarray, like: Any) -> None:
    """Normalised rank per grid point (mean over seeds and facts, bars: 95% crossed interval)."""
    for s, lbl in rstems:
        r = [pt.get("rank", {}).get(s) for pt in order]
        mean = np.array([e["mean"] if e else np.nan for e in r])
        lo = np.array([e["mean"] - e.get("ci_low", e["mean"]) if e else 0 for e in r])
        hi = np.array([e.get("ci_high", e["mean"]) - e["mean"] if e else 0 for e in r])
        ax.errorbar(x, mean, yerr=[lo, hi], marker="o", capsize=3, label=lbl)
    ax.axhline(0.5, color="grey", lw=0.6, ls="--", label="chance")
    ax.set_xscale(like.get_xscale())
    ax.set_xticks(like.get_xticks(), [t.get_text() for t in like.get_xticklabels()])
    ax.set_xlabel(like.get_xlabel())
    ax.set_ylabel("normalised rank of the correct name")
    ax.set_ylim(0, 1.02)
    ax.legend(frameon=False, fontsize=8)


def write_sweep_report(collected: dict[str, Any], sweep_dir: Path) -> str:
    summary = summarise(collected)
    if not summary["cells"]:
        raise FileNotFoundError(f"no finished cells in {sweep_dir / 'cells'}: run `rct sweep` first")
    base = collected["config"]["base"]
    text = sweep_markdown(summary, title=f"Experiment 1 sweep ({base['preset']} preset, {base['model']})")
    write_json(sweep_dir / "summary.json", summary)
    write_text(sweep_dir / "sweep.md", text)
    sweep_figure(summary, sweep_dir)
    return text
