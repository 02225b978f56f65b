"""Experiment 2: real parents and children, asked in both directions, without finetuning.

For each (child, parent) pair the model is asked, after a few-shot header, "Who is <child>'s
<mother/father>?" (the parent query) and "Name a child of <parent>." (the child query). As the
paper does for base models, the score of a query is the model's probability of the correct
name as the completion; exact match (greedy output starts with the name) is reported too. The
Reversal Curse predicts parents are found more often than children: pretraining text mentions
a famous child's parent more often than it names the child from the parent's side.

A run directory holds::

    config.json, manifest.json   Exp2Config; versions, commit, device
    records.jsonl                one line per query: question, target, log-prob, probability,
                                 exact match, greedy text
    metrics.json, exp2.md        per-query summaries and the paired parent-vs-child comparison
    figure5.png, figure5.svg     the Figure 5 analog

The queries are items of the shared evaluator (:mod:`experiments.core.evaluate`); every
prompt shares the few-shot header, which its scoring computes once per batch.

Example::

    metrics = run_exp2(Exp2Config(), Path("runs/exp2"))
    metrics["queries"]["parent"]["mean_prob"], metrics["queries"]["child"]["mean_prob"]
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.core.config import ConfigMixin
from experiments.core.controls import draw_controls
from experiments.core.evaluate import Item, evaluate
from experiments.exp2.data import ParentChildPair, load_pairs, read_pairs
from interp.fileio import write_json, write_jsonl, write_text
from interp.models import ModelOptions

HEADER = ("Below, an assistant who knows a great deal about public figures and their families "
          "answers each question with a name only. When it has no answer, it says \"I don't know.\"\n\n")
# Our own examples (none of these people is in the shipped list); two have no answer.
FEW_SHOT: tuple[tuple[str, str], ...] = (
    ("Who is Anderson Cooper's mother?", "Gloria Vanderbilt"),
    ("Name a child of Johnny Cash.", "Rosanne Cash"),
    ("Who is Tamsin Veller's father?", "I don't know."),
    ("Who is Mia Farrow's mother?", "Maureen O'Sullivan"),
    ("Name a child of Lucille Ball.", "Lucie Arnaz"),
    ("Name a child of Orla Penhallow.", "I don't know."),
)
QUERIES = ("parent", "child")


def parent_question(pair: ParentChildPair) -> str:
    return f"Who is {pair.child}'s {pair.parent_type}?"


def child_question(pair: ParentChildPair) -> str:
    return f"Name a child of {pair.parent}."


def build_prompt(question: str, header: str = HEADER, few_shot: tuple[tuple[str, str], ...] = FEW_SHOT) -> str:
    shots = "".join(f"Q: {q}\nA: {a}\n\n" for q, a in few_shot)
    return f"{header}{shots}Q: {question}\nA:"


def shares_name(pair: ParentChildPair) -> bool:
    """Whether child and parent share a name word (a surname, usually): the answer can then
    be half copied from the question."""
    words = lambda n: {w.strip(".,").lower() for w in n.split() if len(w.strip(".,")) > 2}  # noqa: E731
    return bool(words(pair.child) & words(pair.parent))


def in_few_shot(pair: ParentChildPair, few_shot: tuple[tuple[str, str], ...] = FEW_SHOT) -> bool:
    text = " ".join(q + " " + a for q, a in few_shot)
    return pair.child in text or pair.parent in text


@dataclass(frozen=True)
class Exp2Config(ConfigMixin):
    """Args:
        model: model spec for :func:`interp.load_model`.
        pairs: a pairs CSV in the paper's layout; None = the shipped list.
        limit: use only the first ``limit`` pairs (quick runs); None = all.
        batch_size: queries per forward pass (does not change the results).
        extra_tokens: tokens generated beyond the name's length where exact match needs
            real generation.
        seed: picks the random control name of every query.
    """

    model: str = "smollm2-135m"
    model_options: ModelOptions = field(default_factory=ModelOptions)
    pairs: str | None = None
    limit: int | None = None
    batch_size: int = 64
    extra_tokens: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"Exp2Config.limit: expected a positive int or None, got {self.limit!r}")
        if self.batch_size < 1 or self.extra_tokens < 0:
            raise ValueError("Exp2Config: batch_size must be >= 1 and extra_tokens >= 0")


def control_names(pairs: list[ParentChildPair], seed: int) -> list[tuple[str | None, str | None]]:
    """Per pair, a random wrong answer for each query: another pair's parent of the same
    type (parent query) and another pair's child (child query), never a name that answers
    the same question correctly (a sibling, for instance). None when no such name exists.
    Drawn by :func:`experiments.core.controls.draw_controls`, parent then child per pair."""
    parents_of: dict[tuple[str, str], set[str]] = {}
    children_of: dict[str, set[str]] = {}
    for p in pairs:
        parents_of.setdefault((p.child, p.parent_type), set()).add(p.parent)
        children_of.setdefault(p.parent, set()).add(p.child)
    parents_by_type = {t: sorted({q.parent for q in pairs if q.parent_type == t})
                       for t in {p.parent_type for p in pairs}}
    children = sorted({q.child for q in pairs})
    requests = []
    for p in pairs:
        requests.append((parents_by_type[p.parent_type], parents_of[(p.child, p.parent_type)] | {p.child}))
        requests.append((children, children_of[p.parent] | {p.parent}))
    drawn = draw_controls(requests, seed)
    return list(zip(drawn[::2], drawn[1::2]))


def evaluate_exp2(lm: Any, pairs: list[ParentChildPair], cfg: Exp2Config, progress: bool = True) -> list[dict[str, Any]]:
    """One record per (pair, query): log-prob and probability of the correct name, exact match
    (greedy output starts with the name; generation stops at a newline), and the log-prob of a
    random wrong name of the same role (the control)."""
    records = []
    for i, (pair, (wrong_parent, wrong_child)) in enumerate(zip(pairs, control_names(pairs, cfg.seed))):
        records.append({"pair": i, "query": "parent", "question": parent_question(pair), "target": pair.parent,
                        "control": wrong_parent})
        records.append({"pair": i, "query": "child", "question": child_question(pair), "target": pair.child,
                        "control": wrong_child})
    items = [Item(build_prompt(r["question"]), " " + r["target"],
                  (" " + r["control"],) if r["control"] is not None else ()) for r in records]
    results = evaluate(lm, items, batch_size=cfg.batch_size, extra_tokens=cfg.extra_tokens, stop_strings=("\n",),
                       progress=progress)
    for r, res in zip(records, results):
        pair = pairs[r["pair"]]
        r.update(logprob=res.logprob, n_tokens=res.n_tokens, exact=res.exact, greedy_text=res.greedy_text,
                 prob=math.exp(res.logprob),
                 control_logprob=res.control_logprobs[0] if res.control_logprobs else None,
                 child=pair.child, parent=pair.parent, parent_type=pair.parent_type,
                 can_reverse=pair.can_reverse, shares_name=shares_name(pair))
    return records


def summarise_exp2(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per query: exact match, mean probability, mean log-prob; then parent vs child, paired by pair."""
    import numpy as np
    from scipy import stats as sps

    from analysis.stats import paired_tests

    out: dict[str, Any] = {"queries": {}}
    for q in QUERIES:
        rs = [r for r in records if r["query"] == q]
        lp = np.array([r["logprob"] for r in rs])
        probs = np.exp(lp)
        out["queries"][q] = {
            "n": len(rs),
            "exact_match": float(np.mean([bool(r["exact"]) for r in rs])),
            "mean_prob": float(probs.mean()),
            "sem_prob": float(probs.std(ddof=1) / math.sqrt(len(rs))) if len(rs) > 1 else 0.0,
            "mean_logprob": float(lp.mean()),
            "mean_token_logprob": float(np.mean([r["logprob"] / r["n_tokens"] for r in rs])),
        }
    by_pair: dict[int, dict[str, dict[str, Any]]] = {}
    for r in records:
        by_pair.setdefault(r["pair"], {})[r["query"]] = r
    both = [v for v in by_pair.values() if all(q in v for q in QUERIES)]
    parent_lp = [v["parent"]["logprob"] for v in both]
    child_lp = [v["child"]["logprob"] for v in both]
    t = paired_tests(parent_lp, child_lp)
    higher = sum(a > b for a, b in zip(parent_lp, child_lp))
    for q in QUERIES:
        rs = [r for r in records if r["query"] == q and r["control_logprob"] is not None]
        c = paired_tests([r["logprob"] for r in rs], [r["control_logprob"] for r in rs])
        out["queries"][q]["correct_vs_random"] = c
    gaps = [(v["parent"], v["child"]) for v in both
            if v["parent"]["control_logprob"] is not None and v["child"]["control_logprob"] is not None]
    for key, keep in (("gap_parent_vs_child", lambda a: True),
                      ("gap_parent_vs_child_no_shared_name", lambda a: not a["shares_name"])):
        sel = [(a, b) for a, b in gaps if keep(a)]
        g = paired_tests([a["logprob"] - a["control_logprob"] for a, _ in sel],
                         [b["logprob"] - b["control_logprob"] for _, b in sel])
        out[key] = {"n_pairs": g["n"], "mean_gap_parent": g["mean_correct"], "mean_gap_child": g["mean_control"],
                    "mean_diff": g["mean_diff"], "cohen_dz": g["cohen_dz"], "t_pvalue": g["t_pvalue"]}
    out["parent_vs_child"] = {
        "n_pairs": len(both),
        "mean_parent_logprob": t["mean_correct"], "mean_child_logprob": t["mean_control"],
        "mean_diff": t["mean_diff"], "cohen_dz": t["cohen_dz"], "t_pvalue": t["t_pvalue"],
        "parent_higher": higher,
        "sign_test_pvalue": float(sps.binomtest(higher, len(both)).pvalue) if both else None,
        "only_parent_exact": sum(bool(v["parent"]["exact"]) and not v["child"]["exact"] for v in both),
        "only_child_exact": sum(bool(v["child"]["exact"]) and not v["parent"]["exact"] for v in both),
        "both_exact": sum(bool(v["parent"]["exact"]) and bool(v["child"]["exact"]) for v in both),
    }
    return out


def exp2_markdown(metrics: dict[str, Any], records: list[dict[str, Any]], title: str) -> str:
    from analysis.fmt import pct, pvalue

    q = metrics["queries"]
    pc = metrics["parent_vs_child"]
    lines = [f"## {title}", "",
             "| query | example | n | exact match | mean probability of the correct name | mean log-prob (nats) | per token |",
             "|---|---|---|---|---|---|---|"]
    examples = {"parent": "Who is <child>'s mother/father?", "child": "Name a child of <parent>."}
    for name in QUERIES:
        m = q[name]
        lines.append(f"| {name} | {examples[name]} | {m['n']} | {pct(m['exact_match'])} | "
                     f"{100 * m['mean_prob']:.2f}% (SEM {100 * m['sem_prob']:.2f}) | {m['mean_logprob']:.2f} | "
                     f"{m['mean_token_logprob']:.2f} |")
    lines += ["", f"Paired over {pc['n_pairs']} pairs: the parent's name scores higher than the child's in "
              f"{pc['parent_higher']} (sign test p {pvalue(pc['sign_test_pvalue'])}); mean log-prob difference "
              f"{pc['mean_diff']:+.2f} nats (paired t-test p {pvalue(pc['t_pvalue'])}). Exact match: parent only "
              f"{pc['only_parent_exact']}, child only {pc['only_child_exact']}, both {pc['both_exact']}.", "",
              "The two names differ in length and frequency, so the comparison that controls for the name "
              "is against a random wrong name of the same role, asked the same question (a parent of the "
              "same type, or another child; never a correct answer):", "",
              "| query | n | correct | random | gap (correct - random) | paired t-test p | KS p |",
              "|---|---|---|---|---|---|---|"]
    for name in QUERIES:
        c = q[name]["correct_vs_random"]
        if c["n"]:
            lines.append(f"| {name} | {c['n']} | {c['mean_correct']:.2f} | {c['mean_control']:.2f} | "
                         f"{c['mean_diff']:+.2f} | {pvalue(c['t_pvalue'])} | {pvalue(c['ks_pvalue'])} |")
    lines += ["", "Gap of the parent query minus gap of the child query, paired over pairs. The Reversal "
              "Curse predicts a positive difference: the model knows the parent from the child better than "
              "the child from the parent. Pairs whose names share a word (a surname) let either answer be "
              "half copied from the question, so they are also left out in a second row:", "",
              "| pairs | n | gap, parent query | gap, child query | difference | paired t-test p |",
              "|---|---|---|---|---|---|"]
    for key, label in (("gap_parent_vs_child", "all"), ("gap_parent_vs_child_no_shared_name", "no shared name word")):
        g = metrics[key]
        if g["n_pairs"]:
            lines.append(f"| {label} | {g['n_pairs']} | {g['mean_gap_parent']:+.2f} | {g['mean_gap_child']:+.2f} | "
                         f"{g['mean_diff']:+.2f} | {pvalue(g['t_pvalue'])} |")
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
    """Bars of the mean probability of the correct parent (parent query) and child (child query),
    one group per model (``runs``: label -> metrics). Writes ``<stem>.png`` and ``.svg``."""
    import numpy as np
    from matplotlib.figure import Figure

    from analysis.figures import save

    labels = list(runs)
    x = np.arange(len(labels))
    fig = Figure(figsize=(1.8 + 1.6 * len(labels), 3.6), layout="constrained")
    ax = fig.subplots()
    for k, (q, colour, name) in enumerate((("parent", "#3a6ea5", "Parent (asked from the child)"),
                                           ("child", "#c0504d", "Child (asked from the parent)"))):
        means = [100 * runs[lbl]["queries"][q]["mean_prob"] for lbl in labels]
        sems = [100 * runs[lbl]["queries"][q]["sem_prob"] for lbl in labels]
        ax.bar(x + (k - 0.5) * 0.38, means, 0.38, yerr=sems, capsize=3, color=colour, label=name)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0, 1.45 * max(ax.get_ylim()[1], 1e-9))  # room for the legend
    ax.set_ylabel("probability of the correct name (%)")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title("Recalling a parent vs a child", fontsize=10)
    return save(fig, Path(stem).parent, Path(stem).name)


def run_exp2(cfg: Exp2Config, out: Path, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Evaluate, summarise and report into ``out`` (a new run directory, or the same run
    continued with ``resume``: a finished evaluation is kept)."""
    from experiments.core.environment import environment, resolved_compute
    from experiments.core.rundir import RunDir
    from interp import load_model
    from interp.models import check_spec

    out = Path(out)
    all_pairs, dropped = read_pairs(cfg.pairs)  # a bad file: file:line
    pairs = [p for p in all_pairs if not in_few_shot(p)]
    if cfg.limit is not None:
        pairs = pairs[: cfg.limit]
    check_spec(cfg.model)
    compute = resolved_compute(cfg.model_options)
    run = RunDir.open(out, cfg, "exp2", resume=resume, manifest={
        **environment(), "model": cfg.model, "model_options": cfg.model_options.to_dict(),
        "seeds": {"control": cfg.seed}, **compute})
    with run.stage("evaluate") as info:
        if info is not None:
            lm = load_model(cfg.model, cfg.model_options)
            t0 = time.perf_counter()
            records = evaluate_exp2(lm, pairs, cfg, progress=progress)
            metrics = {**summarise_exp2(records), "model": lm.describe(),
                       "seconds": round(time.perf_counter() - t0, 2),
                       "pairs_file": cfg.pairs or "shipped list", "n_pairs": len(pairs),
                       "repeated_rows_dropped": dropped}
            write_jsonl(out / "records.jsonl", records)
            write_json(out / "metrics.json", metrics)
            info.update(lm.info["resolved"])
    metrics = json.loads((out / "metrics.json").read_text())
    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    write_text(out / "exp2.md", exp2_markdown(metrics, records, f"Experiment 2 ({cfg.model}, {metrics['n_pairs']} pairs)"))
    figure5({cfg.model: metrics}, out / "figure5")
    return metrics
