"""Experiment 1 report: a Table 1 analog (Markdown) and a Figure 4 analog (matplotlib).

Both read the ``metrics.json`` written by :func:`experiments.exp1.evaluate.evaluate_exp1`, for
the base model ("before") and the finetuned one ("after").

Example::

    print(table1({"base": m0, "finetuned": m1}))
    figure4({"base": m0, "finetuned": m1}, run_dir / "figure4")   # figure4.png, figure4.svg
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from analysis.figures import save
from analysis.fmt import ci, pct, pvalue
from experiments.exp1.evaluate import CELLS, SUBSET_TITLES

LABELS = {"base": "before finetuning", "finetuned": "after finetuning"}


def table1(metrics: dict[str, dict[str, Any]], title: str = "Experiment 1") -> str:
    """Markdown: exact match per subset x direction, then correct vs random name log-probs."""
    labels = [lbl for lbl in ("base", "finetuned") if lbl in metrics]
    lines = [f"## {title}", "", "Exact match (greedy; output starts with the target):", ""]
    head = "| subset | " + " | ".join(f"{d} ({LABELS[lbl]})" for d in ("same direction", "reverse direction")
                                      for lbl in labels) + " |"
    lines += [head, "|" + "---|" * (1 + 2 * len(labels))]
    for subset in ("p2d", "d2p"):
        row = [SUBSET_TITLES[subset]]
        for direction in ("same", "reverse"):
            stem = next(s for s, v in CELLS.items() if v[:2] == (subset, direction))
            for lbl in labels:
                cell = metrics[lbl]["cells"].get(stem)
                row.append("n/a" if cell is None else f"{pct(cell['exact_match'])} (n={cell['n_prompts']})")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Log-prob of the correct name vs a random other trained name of the same subset "
              "(each fact's prompts averaged; paired t-test and KS test over facts):", "",
              "| model | query | n facts | correct | random | diff [95% CI] | d_z | t-test p | KS p |",
              "|---|---|---|---|---|---|---|---|---|"]
    for lbl in labels:
        for stem, cell in metrics[lbl]["cells"].items():
            t = cell.get("correct_vs_random")
            if not t:
                continue
            subset, direction, _ = CELLS[stem]
            query = f"{SUBSET_TITLES[subset]}, {direction} ({stem})"
            dz = "n/a" if t["cohen_dz"] is None else f"{t['cohen_dz']:.2f}"
            interval = ci(t.get("diff_ci95_low"), t.get("diff_ci95_high"))
            lines.append(f"| {LABELS[lbl]} | {query} | {t['n']} | {t['mean_correct']:.2f} | "
                         f"{t['mean_control']:.2f} | {t['mean_diff']:+.2f} {interval} | {dz} | "
                         f"{pvalue(t['t_pvalue'])} | {pvalue(t['ks_pvalue'])} |")
    return "\n".join(lines) + "\n"


def figure4(metrics: dict[str, dict[str, Any]], stem: str | Path) -> list[Path]:
    """Bars of mean log-prob, correct vs random name, per model and query (error bars: SEM
    over facts). Writes ``<stem>.png`` and ``<stem>.svg`` and returns their paths."""
    groups = []
    for lbl in ("base", "finetuned"):
        for file_stem, cell in metrics.get(lbl, {}).get("cells", {}).items():
            if "per_fact" in cell:
                subset, direction, _ = CELLS[file_stem]
                groups.append((f"{LABELS[lbl]}\n{SUBSET_TITLES[subset]}\n{direction} order", cell["per_fact"]))
    if not groups:
        raise ValueError("figure4: no correct-vs-random results in these metrics")
    fig = Figure(figsize=(1.8 + 1.6 * len(groups), 3.8))
    ax = fig.subplots()
    x = np.arange(len(groups))
    for k, (key, colour) in enumerate((("correct", "#3a6ea5"), ("random", "#c0c0c0"))):
        vals = [np.asarray(g[1][key]) for g in groups]
        means = [v.mean() for v in vals]
        sems = [v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0 for v in vals]
        ax.bar(x + (k - 0.5) * 0.38, means, 0.38, yerr=sems, capsize=3, color=colour,
               label=key.capitalize() + (" name" if key == "correct" else " other name"))
    ax.set_xticks(x, [g[0] for g in groups], fontsize=8)
    ax.set_ylabel("mean log-prob of the name (nats)")
    ax.axhline(0, color="black", lw=0.6)
    ax.legend(frameon=False, fontsize=8)
    ax.set_title("Correct vs random name, by query order", fontsize=10)
    fig.tight_layout()
    return save(fig, Path(stem).parent, Path(stem).name)
