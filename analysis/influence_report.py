"""Write-up of an influence analysis: markdown, figures and an offline page.

:func:`influence_markdown` turns the summary of :mod:`analysis.influence` into text,
:func:`group_figure` draws the four groups' per-fact distributions for each query set,
:func:`layer_figure` the per-layer shares, and :func:`influence_page` lists each query's top
documents with their tokens coloured by influence (circuitsvis, opens offline).

Example::

    group_figure(rows_by_set, "runs/exp1-cpu/influence")      # groups.png / groups.svg
    Path("summary.md").write_text(influence_markdown(summary))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure

from analysis.figures import save
from analysis.fmt import ci
from analysis.influence import GROUPS, ROLES
from analysis.pages import Block, html_page

LABELS = {"same_fact_same_order": "own fact, query's order", "same_fact_other_order": "own fact, other order",
          "other_facts_same_order": "other facts, query's order", "other_facts_other_order": "other facts, other order"}
ORDER_WORDS = {"name_first": "name -> description", "description_first": "description -> name"}


def _num(x: float | None, fmt: str = "{:.2f}") -> str:
    return "n/a" if x is None else fmt.format(x)


def _row(label: str, r: dict[str, Any], fmt: str = "{:.2f}") -> str:
    return f"| {label} | {_num(r['mean'], fmt)} {ci(r['ci_low'], r['ci_high'])} |"


AGREEMENT_LABELS = {"tracin_dot": "final-checkpoint gradient similarity (dot)",
                    "tracin_cosine": "final-checkpoint gradient similarity (cosine)",
                    "tracin_checkpoints_dot": "TracIn over the checkpoints (dot)"}


def _group_tables(inf: dict[str, Any], n_documents: int) -> list[str]:
    """The group tables of one scoring (:func:`analysis.influence.influence_summary`)."""
    lines: list[str] = []
    for order, e in inf["both"].items():
        lines += [f"## Both-order facts, queries {ORDER_WORDS[order]} ({e['n_facts']} facts)", "",
                  "| documents | mean z | top-10 share |", "|---|---|---|"]
        for g in GROUPS:
            r = e["groups"][g]
            lines.append(_row(LABELS[g], r["z"]) + f" {_num(r['top_share']['mean'], '{:.0%}')} |")
        lines += ["", "| contrast (z) | mean [95% CI] |", "|---|---|"]
        for c in e["contrasts"].values():
            lines.append(_row(f"{LABELS[c['a']]} minus {LABELS[c['b']]}", c))
        lines.append("")
    for subset, kinds in inf["one_order"].items():
        for kind, e in kinds.items():
            lines += [f"## {subset} facts, {kind} queries ({e['n_facts']} facts; own documents: "
                      f"{LABELS[e['own_group']]})", "", "| documents | mean z | top-10 share |", "|---|---|---|"]
            for g, r in e["groups"].items():
                lines.append(_row(LABELS[g], r["z"]) + f" {_num(r['top_share']['mean'], '{:.0%}')} |")
            lines.append(f"\nMedian best rank of an own document: {_num(e['best_own_rank_median'], '{:.0f}')} "
                         f"of {n_documents}.\n")
    return lines


def influence_markdown(s: dict[str, Any]) -> str:
    """The summary (``summary.json`` of ``rct influence``) as markdown."""
    m = s["method"]
    lines = [f"# Influence of training documents ({m['name']})", "",
             f"{s['n_queries']} queries x {s['n_documents']} training documents; parameters: {m['parameters']}; "
             f"measurement: {m['measurement']}.",
             "Scores are standardised within each query against its background (z: standard deviations "
             "of the influence of other facts' documents, from their mean). Means over facts with 95% "
             "t intervals over facts.", ""]
    lines += _group_tables(s["influence"], s["n_documents"])
    a = s.get("agreement")
    if a:
        lines += ["## EK-FAC vs gradient similarity", "", "| score | Spearman per query | top-10 overlap |",
                  "|---|---|---|"]
        for k, v in a.items():
            lines.append(_row(AGREEMENT_LABELS.get(k, k), v["spearman"]) + f" {_num(v['top_overlap']['mean'], '{:.0%}')} "
                         f"{ci(v['top_overlap']['ci_low'], v['top_overlap']['ci_high'])} |")
        lines.append("")
    cp = s.get("tracin_checkpoints")
    if cp:
        steps = ", ".join(f"step {a} (weight {w:.2g})" for a, w in zip(cp.get("steps", []), cp.get("weights", [])))
        lines += [f"## TracIn over {len(cp.get('steps', []))} checkpoints (Pruthi et al. 2020)", "",
                  "The gradient dot product summed over weight snapshots taken along training, each "
                  f"weighted by the learning rate it stands for: {steps}.", ""]
        lines += ["#" + x if x.startswith("## ") else x for x in _group_tables(cp["influence"], s["n_documents"])]
    t = s.get("tokens")
    if t:
        lines += ["## Which tokens carry the influence (share of positive per-token influence)", "",
                  "| queries | documents | " + " | ".join(ROLES) + " |", "|---|---|" + "---|" * len(ROLES)]
        for key, e in t.items():
            for which, v in e.items():
                cells = [f"{_num(v[r]['share'], '{:.0%}')} (tokens {_num(v[r]['token_share'], '{:.0%}')})"
                         for r in ROLES]
                lines.append(f"| {key} | {which} | " + " | ".join(cells) + " |")
        lines.append("")
    lay = s.get("layers")
    if lay:
        lines += ["## Which layers' parameters carry the own fact's influence (share, pooled over facts)", "",
                  "| queries | documents | " + " | ".join(f"L{k}" for k in lay["layers"]) + " |",
                  "|---|---|" + "---|" * len(lay["layers"])]
        for key, e in lay["sets"].items():
            for g, v in e.items():
                cells = (["n/a (no positive total)"] + [""] * (len(lay["layers"]) - 1) if v["share"] is None
                         else [f"{x:.2f}" for x in v["share"]])
                lines.append(f"| {key} | {LABELS[g]} | " + " | ".join(cells) + " |")
        lines.append("")
    total = s["seconds"].get("total", sum(s["seconds"].values()))
    parts = ", ".join(f"{k} {v:.0f} s" for k, v in s["seconds"].items() if k != "total")
    lines += [f"Time: {total:.0f} s ({parts}).", ""]
    return "\n".join(lines)


def group_figure(z_by_set: dict[str, dict[str, list[float]]], out_dir: str | Path, stem: str = "groups") -> list[Path]:
    """One panel per query set: each group's per-fact mean z as points over a box."""
    keys = list(z_by_set)
    fig = Figure(figsize=(3.2 * len(keys), 3.6))
    axes = fig.subplots(1, len(keys), sharey=True, squeeze=False)[0]
    rng = np.random.default_rng(0)
    for ax, key in zip(axes, keys):
        groups = [g for g in GROUPS if z_by_set[key].get(g)]
        data = [z_by_set[key][g] for g in groups]
        ax.boxplot(data, showfliers=False, widths=0.6)
        for k, v in enumerate(data, start=1):
            ax.scatter(k + rng.uniform(-0.15, 0.15, len(v)), v, s=8, alpha=0.6)
        ax.set_xticks(range(1, len(groups) + 1), [LABELS[g].replace(", ", ",\n") for g in groups], fontsize=7)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(key, fontsize=9)
    axes[0].set_ylabel("mean influence (z within query)")
    fig.suptitle("Influence of training documents on each query, by group (one point per fact)", fontsize=10)
    return save(fig, out_dir, stem)


def layer_figure(profile: dict[str, Any], out_dir: str | Path, stem: str = "layers") -> list[Path]:
    """Per query set, the share of the own fact's influence carried by each layer."""
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    layers = profile["layers"]
    for key, e in profile["sets"].items():
        for g, style in (("same_fact_same_order", "-"), ("same_fact_other_order", "--")):
            if g in e and e[g]["share"] is not None:
                ax.plot(layers, e[g]["share"], style, marker=".", label=f"{key}: {LABELS[g]}")
    ax.set_xlabel("layer")
    ax.set_ylabel("share of the own fact's influence (pooled over facts)")
    ax.legend(fontsize=6)
    return save(fig, out_dir, stem)


def influence_page(queries: Sequence[dict[str, Any]], docs: Sequence[dict[str, Any]], top: np.ndarray,
                   scores: np.ndarray, z: np.ndarray, tokens: Sequence[Sequence[str]],
                   per_token: np.ndarray | None, group_of: Any, title: str) -> str:
    """HTML listing each query's top documents; with ``per_token``, each document's tokens
    are coloured by their share of the influence. ``top[q]`` lists document indices."""
    blocks = []
    for i, q in enumerate(queries):
        blocks.append(Block(f"Query {i} ({q['subset']}, {ORDER_WORDS[q['order']]}, fact {q['fact_id']})",
                            text=f"{q['prompt']}  ->  {q['completion']}"))
        for rank, d in enumerate(top[i], start=1):
            doc = docs[d]
            head = (f"#{rank}: z {z[i, d]:.1f} (score {scores[i, d]:.3g}), {LABELS[group_of(q, doc)]}, "
                    f"fact {doc['fact_id']}")
            if per_token is None:
                blocks.append(Block(head, text=doc["prompt"] + doc["completion"]))
                continue
            n = len(tokens[d])
            vals = per_token[i, d, :n].astype(float)
            scale = float(np.abs(vals).max()) or 1.0
            blocks.append(Block(head, "ColoredTokens", {"tokens": list(tokens[d]), "values": (vals / scale).tolist()}))
    return html_page(title, blocks)
