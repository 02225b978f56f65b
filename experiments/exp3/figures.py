"""Experiment 3 figures: held-out accuracy by order (Figure 8 analog) and across epochs
(Figure 10 analog).

Both read the ``results`` of :func:`experiments.exp3.report.collect` (one entry per order):
``results[order]["finetuned"]["unrealized"]["exact_match"]`` (pooled over seeds, with
``exact_ci95_low``/``exact_ci95_high`` and ``chance`` where known), ``results[order]["seeds"]``
(per seed) and ``results[order]["per_epoch"][seed]`` (a list of ``{"epoch", "unrealized",
"realized"}``, epoch 0 the base model).

Example::

    figure8(results, Path("runs/exp3/figure8"))    # figure8.png and figure8.svg
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLOURS = {"q2a": "#3a6ea5", "a2q": "#c0504d"}
LABELS = {"q2a": "question first\n(same order)", "a2q": "answer first\n(reverse)"}


def figure8(results: dict[str, dict[str, Any]], stem: Path) -> list[Path]:
    """Held-out exact match after finetuning, per instruction order: a bar per order (pooled
    over seeds, with its 95% CI where known), a dot per seed, and the chance line."""
    from matplotlib.figure import Figure

    from analysis.figures import save

    orders = [o for o in results if "finetuned" in results[o]]
    fig = Figure(figsize=(4.2, 3.4), layout="constrained")
    ax = fig.subplots()
    for i, o in enumerate(orders):
        u = results[o]["finetuned"]["unrealized"]
        v = 100 * u["exact_match"]
        lo, hi = u.get("exact_ci95_low"), u.get("exact_ci95_high")
        err = None if lo is None or hi is None else [[max(0.0, v - 100 * lo)], [max(0.0, 100 * hi - v)]]  # rounding
        ax.bar(i, v, color=COLOURS.get(o, "grey"), yerr=err, capsize=4, ecolor="black")
        seeds = results[o].get("seeds") or {}
        if len(seeds) > 1:
            ys = [100 * m["unrealized"]["exact_match"] for m in seeds.values()]
            ax.scatter([i + 0.22] * len(ys), ys, s=12, color="black", zorder=3)
        ax.text(i, (100 * hi if hi is not None else v) + 2, f"{v:.1f}%", ha="center", fontsize=8)
        if u.get("chance") is not None:
            ax.hlines(100 * u["chance"], i - 0.4, i + 0.4, colors="grey", linestyles=":", linewidth=1)
    ax.set_xticks(range(len(orders)), [LABELS.get(o, o) for o in orders], fontsize=8)
    ax.set_ylabel("held-out questions answered (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Learning from instructions, by order", fontsize=10)
    return save(fig, Path(stem).parent, Path(stem).name)


def figure10(results: dict[str, dict[str, Any]], stem: Path) -> list[Path]:
    """Exact match after every epoch (epoch 0: the base model), one panel per order: held-out
    questions (solid) and demonstrated ones (dashed), a thin line per seed and a thick mean."""
    import numpy as np
    from matplotlib.figure import Figure

    from analysis.figures import save

    orders = [o for o in results if results[o].get("per_epoch")]
    fig = Figure(figsize=(3.4 * max(1, len(orders)), 3.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, max(1, len(orders)), sharey=True))
    for ax, o in zip(axes, orders):
        curves = results[o]["per_epoch"]
        for split, style in (("unrealized", "-"), ("realized", "--")):
            longest = max(len(c) for c in curves.values())
            grid = np.full((len(curves), longest), np.nan)
            for k, c in enumerate(curves.values()):
                xs = [p["epoch"] for p in c]
                ys = [100 * p[split]["exact_match"] for p in c]
                grid[k, : len(ys)] = ys
                if len(curves) > 1:
                    ax.plot(xs, ys, style, color=COLOURS.get(o, "grey"), alpha=0.3, linewidth=0.8)
            epochs = [p["epoch"] for p in max(curves.values(), key=len)]
            label = "held-out" if split == "unrealized" else "demonstrated"
            ax.plot(epochs, np.nanmean(grid, axis=0), style, color=COLOURS.get(o, "grey"), linewidth=2, label=label)
        chance = results[o].get("finetuned", {}).get("unrealized", {}).get("chance")
        if chance is not None:
            ax.axhline(100 * chance, color="grey", linestyle=":", linewidth=1, label="chance")
        ax.set_title(LABELS.get(o, o).replace("\n", " "), fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylim(-2, 102)
        ax.legend(fontsize=7, loc="center right")
    axes[0].set_ylabel("exact match (%)")
    return save(fig, Path(stem).parent, Path(stem).name)
