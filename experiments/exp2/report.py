"""Experiment 2 report: the Markdown page of a run (``exp2.md``) and the Figure 5 analog.

Example::

    text = exp2_markdown(metrics, records, "Experiment 2 (smollm2-135m, 156 pairs)")
    figure5({"smollm2-135m": metrics}, "runs/exp2/figure5")   # figure5.png, figure5.svg
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from analysis.fmt import pct, pvalue
from experiments.exp2.summary import QUERIES

EXAMPLES = {"parent": "Who is <child>'s mother/father?", "child": "Name a child of <parent>."}
LABELS = {"beaten": "fraction of wrong names ranked below the correct one (chance 0.5)",
          "top1": "top-1 among the candidates", "logprob": "log-prob of the correct name (nats)",
          "prob": "probability of the correct name", "exact_match": "exact match (greedy)",
          "gap_vs_random": "log-prob, correct minus a random same-role name (nats)",
          "sample_hit": "any temperature sample starts with the name"}
PERCENT = {"top1", "exact_match", "sample_hit", "prob"}


def _val(m: dict[str, Any] | None, metric: str, signed: bool = False) -> str:
    """``mean [low, high]``: percentages for rates, two decimals for nats, three for fractions."""
    if not m or m.get("mean") is None:
        return "n/a"
    scale, digits, unit = (100, 2, "%") if metric in PERCENT else (1, 3 if metric == "beaten" else 2, "")
    signed = signed or metric == "gap_vs_random"

    def f(x: float) -> str:
        x = round(scale * x, digits) + 0.0  # no "-0.00"
        return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"
    return f"{f(m['mean'])}{unit} [{f(m['low'])}, {f(m['high'])}]"


def exp2_markdown(metrics: dict[str, Any], records: list[dict[str, Any]], title: str) -> str:
    q, pc = metrics["queries"], metrics["parent_vs_child"]
    sampled = "sample_hit" in q["parent"]
    sampling = metrics.get("sampling") or {}
    lines = [f"## {title}", "",
             f"{pc['n_pairs']} pairs (one mother or father row each) of {pc['n_children']} children in "
             f"{pc['n_families']} families (people linked by a pair). Every interval is a 95% bootstrap CI "
             f"that resamples families with all their rows ({metrics['clustering']['n_boot']} resamples), so "
             "a child's two rows, or three questions about one mother, count as one unit.", "",
             "The rank metric: the correct name's log-prob as the answer, ranked among other names of the "
             "same role asked the same question (other mothers for a mother query, other fathers for a "
             "father query, other children for a child query; never a name that also answers it).", "",
             "| query | example | n | candidates per query | wrong names ranked below the correct one "
             "(chance 0.500) | top-1 (chance) | mean rank |", "|---|---|---|---|---|---|---|"]
    for name in QUERIES:
        m = q[name]
        if "beaten" in m:
            lines.append(f"| {name} | {EXAMPLES[name]} | {m['n']} | {m['mean_n_candidates']:.1f} | "
                         f"{_val(m['beaten'], 'beaten')} | {_val(m['top1'], 'top1')} ({pct(m['chance_top1'])}) | "
                         f"{m['mean_rank']:.1f} |")
    lines += ["", "| query | exact match (greedy) | probability of the correct name | mean log-prob (nats) | "
              "per token | correct minus random same-role name (nats) |"
              + (f" any of {sampling.get('k')} samples at temperature {sampling.get('temperature', 1):g} |"
                 if sampled else ""),
              "|---|---|---|---|---|---|" + ("---|" if sampled else "")]
    for name in QUERIES:
        m = q[name]
        lines.append(f"| {name} | {_val(m['exact_match'], 'exact_match')} | {_val(m['prob'], 'prob')} | "
                     f"{_val(m['logprob'], 'logprob')} | {m['mean_token_logprob']:.2f} | "
                     f"{_val(m.get('gap_vs_random'), 'gap_vs_random')} |"
                     + (f" {_val(m['sample_hit'], 'sample_hit')} |" if sampled else ""))
    lines += ["", "Parent query minus child query of the same pair. The Reversal Curse predicts positive "
              "differences (the parent is recalled from the child better than the child from the parent):", "",
              "| metric | parent minus child [95% CI] | pairs: parent higher / child higher / tie |", "|---|---|---|"]
    for metric, d in pc["diff"].items():
        if metric == "prob":
            continue
        h = pc["parent_higher"][metric]
        lines.append(f"| {LABELS[metric]} | {_val(d, metric, signed=True)} | {h['parent']} / {h['child']} / "
                     f"{h['tie']} |")
    e = pc["exact"]
    lines += ["", f"Exact match by pair: parent only {e['only_parent']}, child only {e['only_child']}, "
              f"both {e['both']}.", ""]
    x = metrics.get("exploratory_shared_name")
    if x and x["tests"]:
        lines += ["### Exploratory: pairs whose names share a word", "",
                  "Chosen after seeing the data, so not a confirmatory result: when child and parent share a "
                  "name word (usually the surname), half of either answer can be copied from the question. "
                  f"p-values are cluster sign-flip tests, Holm-adjusted over the {x['n_tests']} tests below; the "
                  "CIs are not adjusted.", "",
                  "| pairs | metric | n pairs (families) | parent minus child [95% CI] | p | Holm p |",
                  "|---|---|---|---|---|---|"]
        for t in x["tests"]:
            lines.append(f"| {t['subset']} | {LABELS[t['metric']]} | {t['n_pairs']} ({t['n_families']}) | "
                         f"{_val(t, t['metric'], signed=True)} | {pvalue(t['p'])} | {pvalue(t['p_holm'])} |")
        lines.append("")
    found = [r for r in records if r["query"] == "parent" and r["exact"]]
    if found:
        child_of = {(r["child"], r["parent"]): r for r in records if r["query"] == "child"}
        lines += ["Parents found by greedy decoding, and what the child query gave:", "",
                  "| child | parent | child query greedy output |", "|---|---|---|"]
        for r in found[:20]:
            c = child_of[(r["child"], r["parent"])]
            lines.append(f"| {r['child']} | {r['parent']} | {c['greedy_text'].strip()[:40]!r}"
                         f"{' (correct)' if c['exact'] else ''} |")
    return "\n".join(lines) + "\n"


def figure5(runs: dict[str, dict[str, Any]], stem: str | Path) -> list[Path]:
    """Bars of the mean probability of the correct parent (parent query) and child (child
    query), one group per model (``runs``: label -> metrics), with the family-clustered 95%
    CI as error bars (the SEM for metrics without one). Writes ``<stem>.png`` and ``.svg``."""
    import numpy as np
    from matplotlib.figure import Figure

    from analysis.figures import save

    labels = list(runs)
    x = np.arange(len(labels))
    fig = Figure(figsize=(1.8 + 1.6 * len(labels), 3.6), layout="constrained")
    ax = fig.subplots()
    for k, (q, colour, name) in enumerate((("parent", "#3a6ea5", "Parent (asked from the child)"),
                                           ("child", "#c0504d", "Child (asked from the parent)"))):
        means, errs = [], [[], []]
        for lbl in labels:
            m = runs[lbl]["queries"][q]
            ci = m.get("prob")
            means.append(100 * (ci["mean"] if ci else m["mean_prob"]))
            errs[0].append(100 * (ci["mean"] - ci["low"]) if ci else 100 * m["sem_prob"])
            errs[1].append(100 * (ci["high"] - ci["mean"]) if ci else 100 * m["sem_prob"])
        ax.bar(x + (k - 0.5) * 0.38, means, 0.38, yerr=errs, capsize=3, color=colour, label=name)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0, 1.45 * max(ax.get_ylim()[1], 1e-9))  # room for the legend
    ax.set_ylabel("probability of the correct name (%)")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title("Recalling a parent vs a child (95% CI by family)", fontsize=10)
    return save(fig, Path(stem).parent, Path(stem).name)
