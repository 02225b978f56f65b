"""Experiment 1 report: a Table 1 analog (Markdown) and a Figure 4 analog (matplotlib).

Both read the ``metrics.json`` written by :func:`experiments.exp1.evaluate.evaluate_exp1`, for
the base model ("before") and the finetuned one ("after"). Table 1 has four parts: exact
match; the correct-vs-random log-prob test per query (difference with its 95% CI, d_z,
p-values); the reverse difference next to the forward one, the reverse CI's upper end read as
a bound on the reverse effect (equivalence style: "at most X nats, Y% of the forward effect");
and the rank of the correct name among the subset's trained names. Where the cells were also
asked in the reversed language (reverse training, :mod:`experiments.mitigations.reverse_eval`), a
fifth part puts each cell's natural-order and reversed-language results side by side.

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
from experiments.exp1.evaluate import ALL_CELLS, CELLS, EXTRA_CELLS, IN_CONTEXT_CELLS, IN_CONTEXT_OF, SUBSET_TITLES

LABELS = {"base": "before finetuning", "finetuned": "after finetuning"}
# the two name cells with the same prompt form (description -> name): trained vs reverse order
FORWARD, REVERSE = "d2p_prompts_test", "p2d_reverse_prompts_test"
BOTH_QUERIES = {"both_d2p_prompts_test": "description -> name", "both_p2d_prompts_test": "name -> description"}


def table1(metrics: dict[str, dict[str, Any]], title: str = "Experiment 1",
           reversed_metrics: dict[str, dict[str, Any]] | None = None) -> str:
    """Markdown: exact match per subset x direction, then correct vs random name log-probs;
    with ``reversed_metrics`` (label -> ``reversed_metrics.json``), the reversed-language
    queries next to the natural ones."""
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
    for stem in EXTRA_CELLS:  # the Both facts asked in one order, where evaluated (both orders trained)
        if any(stem in metrics[lbl]["cells"] for lbl in labels):
            row = [f"{SUBSET_TITLES['both']}, {BOTH_QUERIES[stem]} ({stem})"]
            for lbl in labels:
                cell = metrics[lbl]["cells"].get(stem)
                row.append("n/a" if cell is None else f"{pct(cell['exact_match'])} (n={cell['n_prompts']})")
            lines.append("| " + " | ".join(row + ["-"] * len(labels)) + " |")
    lines += _in_context_lines(metrics, labels) + _perplexity_lines(metrics, labels)
    lines += ["", "Log-prob of the correct name vs a random other trained name of the same subset "
              "(each fact's prompts averaged; paired t-test and KS test over facts):", "",
              "| model | query | n facts | correct | random | diff [95% CI] | d_z | t-test p | KS p |",
              "|---|---|---|---|---|---|---|---|---|"]
    for lbl in labels:
        for stem, cell in metrics[lbl]["cells"].items():
            t = cell.get("correct_vs_random")
            if not t:
                continue
            subset, direction, _ = ALL_CELLS[stem]
            query = f"{SUBSET_TITLES[subset]}, {direction} ({stem})"
            dz = "n/a" if t["cohen_dz"] is None else f"{t['cohen_dz']:.2f}"
            interval = ci(t.get("diff_ci95_low"), t.get("diff_ci95_high"))
            lines.append(f"| {LABELS[lbl]} | {query} | {t['n']} | {t['mean_correct']:.2f} | "
                         f"{t['mean_control']:.2f} | {t['mean_diff']:+.2f} {interval} | {dz} | "
                         f"{pvalue(t['t_pvalue'])} | {pvalue(t['ks_pvalue'])} |")
    lines += _bound_lines(metrics, labels) + _rank_lines(metrics, labels)
    lines += _reversed_lines(metrics, reversed_metrics or {}, labels)
    return "\n".join(lines) + "\n"


def _in_context_lines(metrics: dict[str, dict[str, Any]], labels: list[str]) -> list[str]:
    """Exact match of each reverse cell next to its in-context control (the fact's training
    sentence before the reverse prompt)."""
    rows = []
    for stem, source in IN_CONTEXT_OF.items():
        if not any(stem in metrics[lbl]["cells"] for lbl in labels):
            continue
        row = [f"{SUBSET_TITLES[IN_CONTEXT_CELLS[stem][0]]}, reverse ({source})"]
        for key in (source, stem):
            for lbl in labels:
                cell = metrics[lbl]["cells"].get(key)
                row.append("n/a" if cell is None else f"{pct(cell['exact_match'])} (n={cell['n_prompts']})")
        rows.append("| " + " | ".join(row) + " |")
    if not rows:
        return []
    head = " | ".join(f"{what} ({LABELS[lbl]})" for what in ("reverse", "fact in context") for lbl in labels)
    return ["", "The in-context control: each reverse prompt again after a sentence that states the "
            "fact in its trained order. A model that answers in context but not from its weights "
            "can reverse these sentence forms; it did not learn the reverse. Exact match (the rank "
            "tables below include these cells):", "",
            f"| query | {head} |", "|" + "---|" * (1 + 2 * len(labels)), *rows]


def _perplexity_lines(metrics: dict[str, dict[str, Any]], labels: list[str]) -> list[str]:
    """Held-out perplexity before and after finetuning (where measured)."""
    found = {lbl: metrics[lbl]["perplexity"] for lbl in labels if "perplexity" in metrics[lbl]}
    if not found:
        return []
    parts = [f"{LABELS[lbl]} {p['perplexity']:.2f}" for lbl, p in found.items()]
    ratio = ""
    if len(found) == 2:
        ratio = f" (after / before: {found['finetuned']['perplexity'] / found['base']['perplexity']:.2f})"
    n = next(iter(found.values()))["n_tokens"]
    return ["", f"Perplexity on the shipped held-out prose ({n} tokens, "
            f"`experiments/data/heldout_prose.txt`): {', '.join(parts)}{ratio}. A large rise means the "
            "results describe a damaged model."]


def _diff(t: dict[str, Any] | None) -> str:
    if not t or t.get("mean_diff") is None:
        return "n/a"
    return f"{t['mean_diff']:+.2f} {ci(t.get('diff_ci95_low'), t.get('diff_ci95_high'))}".rstrip()


def reverse_bound(forward: dict[str, Any] | None, reverse: dict[str, Any] | None) -> float | None:
    """The reverse difference's 95% CI upper end as a fraction of the forward mean difference
    (correct minus random name, nats): the largest reverse preference for the correct name
    the data allow, relative to the trained direction's. None when either is missing or the
    forward effect is not established (its CI does not lie above 0).

    Example::

        reverse_bound({"mean_diff": 6.7, "diff_ci95_low": 5.5}, {"diff_ci95_high": 1.34})  # 0.2
    """
    if not forward or not reverse or reverse.get("diff_ci95_high") is None:
        return None
    low = forward.get("diff_ci95_low")
    return None if low is None or low <= 0 else reverse["diff_ci95_high"] / forward["mean_diff"]


def _bound_lines(metrics: dict[str, dict[str, Any]], labels: list[str]) -> list[str]:
    rows = []
    for lbl in labels:
        cells = metrics[lbl]["cells"]
        fwd, rev = (cells.get(s, {}).get("correct_vs_random") for s in (FORWARD, REVERSE))
        if not fwd and not rev:
            continue
        ratio = reverse_bound(fwd, rev)
        high = None if not rev else rev.get("diff_ci95_high")
        bound = "n/a" if high is None else f"{high:+.2f} nats" + ("" if ratio is None else f" ({pct(ratio)})")
        rows.append(f"| {LABELS[lbl]} | {_diff(fwd)} | {_diff(rev)} | {bound} |")
    if not rows:
        return []
    return ["", "The reverse effect next to the forward one, on the same prompt form (description -> "
            "name; correct minus random trained name, nats, mean over facts [95% CI]). The reverse "
            "CI's upper end bounds any preference for the correct name in the reverse order; where "
            "the forward effect is established (its CI above 0) the bound is also given as a "
            "percentage of it:", "",
            f"| model | forward: {SUBSET_TITLES['d2p']}, same order | reverse: "
            f"{SUBSET_TITLES['p2d']}, reverse order | reverse effect at most (of forward) |",
            "|---|---|---|---|", *rows]


def _rank_lines(metrics: dict[str, dict[str, Any]], labels: list[str]) -> list[str]:
    rows = []
    for lbl in labels:
        for stem, cell in metrics[lbl]["cells"].items():
            r = cell.get("rank")
            if not r:
                continue
            subset, direction, _ = ALL_CELLS[stem]
            rank = f"{r['mean_normalised_rank']:.3f}"
            if r["normalised_rank_ci95_low"] is not None:
                rank += f" [{r['normalised_rank_ci95_low']:.3f}, {r['normalised_rank_ci95_high']:.3f}]"
            top1 = pct(r["top1"])
            if r["top1_ci95_low"] is not None:
                top1 += f" [{pct(r['top1_ci95_low'])}, {pct(r['top1_ci95_high'])}]"
            rows.append(f"| {LABELS[lbl]} | {SUBSET_TITLES[subset]}, {direction} ({stem}) | {r['n_facts']} | "
                        f"{r['n_candidates']} | {rank} | {pvalue(r['normalised_rank_p_vs_chance'])} | "
                        f"{top1} | {pct(r['chance_top1'])} | {r['mean_rank']:.1f} |")
    if not rows:
        return []
    return ["", "Rank of the correct name among all trained names of its subset, by log-prob after "
            "the prompt. Normalised rank: the fraction of the other names scored below the correct "
            "one (1 = top, 0.5 = chance); each fact's prompts averaged, mean over facts with a "
            "t-based 95% CI and the t-test against 0.5. Top-1: the correct name above every other "
            "(Wilson 95% CI over facts):", "",
            "| model | query | n facts | candidates | normalised rank [95% CI] | p vs 0.5 | "
            "top-1 [95% CI] | chance top-1 | mean rank |",
            "|---|---|---|---|---|---|---|---|---|", *rows]


def _reversed_lines(metrics: dict[str, dict[str, Any]], reversed_metrics: dict[str, dict[str, Any]],
                    labels: list[str]) -> list[str]:
    rows, modes, skipped = [], set(), 0
    for lbl in labels:
        rev = reversed_metrics.get(lbl)
        if not rev:
            continue
        modes.add((rev["mode"], rev["query_mode"]))
        skipped += sum(rev.get("skipped", {}).values())
        for stem, cell in rev["cells"].items():
            nat = metrics[lbl]["cells"].get(stem, {})
            subset, direction, _ = ALL_CELLS[stem]
            exact_nat = "n/a" if not nat else f"{pct(nat['exact_match'])} (n={nat['n_prompts']})"
            rows.append(f"| {LABELS[lbl]} | {SUBSET_TITLES[subset]}, {direction} ({stem}) | {exact_nat} | "
                        f"{pct(cell['exact_match'])} (n={cell['n_prompts']}) | "
                        f"{_diff(nat.get('correct_vs_random'))} | {_diff(cell.get('correct_vs_random'))} |")
    if not rows:
        return []
    how = ", ".join(f"`{m}`" + ("" if m == q else f" (queries reversed by `{q}`)") for m, q in sorted(modes))
    note = [] if not skipped else ["", f"{skipped} source sentences held no whole-word answer and were "
                                   "skipped (`skipped` in `eval/*/reversed_metrics.json`)."]
    return ["", f"Natural-order queries next to queries in the reversed language ({how}): each cell's "
            "answer asked from the held-out sentence of the other order, the text after the answer "
            "reversed as the prompt and the reversed answer as the target (see docs/mitigations.md). "
            "Exact match, and correct minus random trained name (nats, mean over facts [95% CI]; "
            "name answers only):", "",
            "| model | query | exact, natural | exact, reversed | correct - random, natural | "
            "correct - random, reversed |",
            "|---|---|---|---|---|---|", *rows, *note]


def figure4(metrics: dict[str, dict[str, Any]], stem: str | Path) -> list[Path]:
    """Bars of mean log-prob, correct vs random name, per model and query (error bars: SEM
    over facts). Writes ``<stem>.png`` and ``<stem>.svg`` and returns their paths."""
    groups = []
    for lbl in ("base", "finetuned"):
        for file_stem, cell in metrics.get(lbl, {}).get("cells", {}).items():
            if "random" in cell.get("per_fact", {}) and file_stem not in IN_CONTEXT_CELLS:
                subset, direction, _ = ALL_CELLS[file_stem]
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
