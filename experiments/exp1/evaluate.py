"""Experiment 1 evaluation: exact match, log-probs, and the correct-vs-random name test.

Every test prompt is an item of the shared evaluator (:mod:`experiments.core.evaluate`); this
module declares the items and the metrics. For every evaluated test file (subset x direction):

- exact match as the paper defines it: the stripped, lower-cased greedy output starts with
  the stripped, lower-cased target. Decided from the teacher-forced scoring pass where
  possible, with real greedy generation for the rest; the result is the same as generating
  every prompt (``EvalConfig(full_generations=True)``; tested);
- the target's log-prob (summed over its tokens, and per token);
- where the target is a name, the log-prob of a random *other trained name of the same
  subset*, one per fact (seeded, so the base and finetuned models see the same control;
  :mod:`experiments.core.controls`), and
  a paired t-test and KS test over facts (each fact's prompts averaged first), with the
  95% CI of the mean per-fact difference;
- where the target is a name, its rank among all trained names of the subset (a secondary
  metric, ``EvalConfig.rank_names``): every such name, the correct one included, is scored
  after the prompt in one :func:`interp.scoring.score_completions` call (a prompt's names sit
  side by side, so the prompt is computed once per pass) and
  ``normalised_rank`` is the fraction of the other names that score below the correct one
  (ties count half): 1 = top, 0.5 = chance. Per cell: the mean over facts with a t-based 95%
  CI and the t-test against 0.5, and top-1 (the correct name above every other) with a
  Wilson 95% CI over facts;
- the in-context control (``EvalConfig.in_context``): each reverse cell again, its prompts
  after a sentence that states the fact in its trained order (``IN_CONTEXT_CELLS``);
- the model's perplexity on the shipped held-out prose (``EvalConfig.perplexity``).

Example::

    metrics = evaluate_exp1(lm, load_exp1(run_dir / "data"), EvalConfig(), run_dir / "eval" / "finetuned")
    metrics["cells"]["p2d_reverse_prompts_test"]["exact_match"]
    metrics["cells"]["p2d_reverse_prompts_test"]["rank"]["mean_normalised_rank"]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from experiments.core.config import ConfigMixin
from analysis.stats import mean_ci_t, paired_tests, per_group_means, wilson_ci
from experiments.core.controls import draw_controls
from experiments.core.evaluate import Item, evaluate, heldout_perplexity
from experiments.exp1 import words
from experiments.exp1.data import DESCRIPTION_FIRST, NAME_FIRST
from interp.fileio import write_json, write_jsonl
from interp.scoring import score_completions

if TYPE_CHECKING:
    from experiments.exp1.data import Exp1Dataset
    from interp.models import LoadedModel

# file stem -> (subset, direction, what the completion is)
CELLS: dict[str, tuple[str, str, str]] = {
    "p2d_prompts_test": ("p2d", "same", "description"),
    "p2d_reverse_prompts_test": ("p2d", "reverse", "name"),
    "d2p_prompts_test": ("d2p", "same", "name"),
    "d2p_reverse_prompts_test": ("d2p", "reverse", "description"),
}
# optional cells, evaluated only when named in ``eval.files`` (never by default): the Both
# facts, trained in both orders, asked one order at a time. Same layout as CELLS; both orders
# were trained, so both are "same"-direction queries.
EXTRA_CELLS: dict[str, tuple[str, str, str]] = {
    "both_d2p_prompts_test": ("both", "same", "name"),  # description -> name: the ceiling of the
    "both_p2d_prompts_test": ("both", "same", "description"),  # NameToDescription reverse cell
}
# the in-context control (``EvalConfig.in_context``): each reverse cell's prompts again, after
# a sentence of the fact in its trained order (the first training template of that order). A model that answers these but not
# the reverse cell can do the reverse operation on these sentence forms; it did not learn the
# reverse into its weights. stem -> (subset, direction, target kind), the reverse cell it repeats
IN_CONTEXT_CELLS: dict[str, tuple[str, str, str]] = {
    "p2d_reverse_in_context": ("p2d", "reverse, fact in context", "name"),
    "d2p_reverse_in_context": ("d2p", "reverse, fact in context", "description"),
}
IN_CONTEXT_OF: dict[str, str] = {"p2d_reverse_in_context": "p2d_reverse_prompts_test",
                                 "d2p_reverse_in_context": "d2p_reverse_prompts_test"}
ALL_CELLS: dict[str, tuple[str, str, str]] = {**CELLS, **EXTRA_CELLS, **IN_CONTEXT_CELLS}
# a cell whose rows are a selection of a test file: stem -> (the file, the order of its rows kept)
CELL_ROWS: dict[str, tuple[str, str]] = {
    "both_d2p_prompts_test": ("both_prompts_test", DESCRIPTION_FIRST),
    "both_p2d_prompts_test": ("both_prompts_test", NAME_FIRST),
}
SUBSET_TITLES = {"p2d": "NameToDescription", "d2p": "DescriptionToName", "both": "Both"}


@dataclass(frozen=True)
class EvalConfig(ConfigMixin):
    """Args:
        batch_size: prompts per forward pass (does not change fp32 results).
        extra_tokens: tokens generated beyond the target's own length, where generation runs.
        full_generations: generate every prompt's greedy continuation in full (slower; the
            metrics are the same, records then hold whole generations). By default the
            teacher-forced scoring pass decides exact match (see
            :func:`experiments.core.evaluate.decide_exact_match`) and only undecided prompts
            are generated.
        random_control: score a random other trained name for every name target (the
            correct-vs-random test); off scores the target only.
        rank_names: score every trained name of the subset for every name target and record
            the correct name's rank among them (the subset's names' tokens are scored after
            every name prompt: several times the work of the target alone; the passes hold
            ``4 * batch_size`` prompt-name pairs).
        seed: seed of the random-name control.
        files: test-file stems to evaluate (those absent from the dataset are skipped): the
            four of ``CELLS`` by default; ``EXTRA_CELLS`` adds the Both facts asked in one
            order (``both_d2p_prompts_test``: description -> name, the lines of
            ``both_prompts_test`` whose prompt holds the description; ``both_p2d_prompts_test``:
            name -> description).
        in_context: also ask each evaluated reverse cell with the fact in the prompt (the
            in-context control, ``IN_CONTEXT_CELLS``): a sentence that states the fact in its
            trained order (:func:`context_sentences`), then a space and the reverse prompt,
            scored and ranked as the reverse cell is.
        perplexity: also measure the model's perplexity on the shipped held-out prose
            (:func:`experiments.core.evaluate.heldout_perplexity`; ``metrics["perplexity"]``),
            so that a damaged finetuned model shows.
        reversed_queries: also ask every evaluated cell in the reversed language
            (:mod:`experiments.mitigations.reverse_eval`): ``auto`` does so in the run's
            ``data.reverse_training`` mode (not at all for ``none``); ``none`` never; a mode
            (``token``, ``word``, ``entity``, ``segment``) in that mode, e.g. to ask a model
            trained without reversal.
    """

    batch_size: int = 32
    extra_tokens: int = 3
    full_generations: bool = False
    random_control: bool = True
    rank_names: bool = True
    seed: int = 0
    files: tuple[str, ...] = tuple(CELLS)
    in_context: bool = True
    perplexity: bool = True
    reversed_queries: str = "auto"

    def __post_init__(self) -> None:
        allowed = ("auto", "none", "token", "word", "entity", "names", "segment")
        if self.reversed_queries not in allowed:
            raise ValueError(f"eval.reversed_queries must be one of {', '.join(allowed)}; "
                             f"got {self.reversed_queries!r}")
        if self.batch_size < 1:
            raise ValueError(f"EvalConfig: batch_size must be >= 1, got {self.batch_size}")
        if self.extra_tokens < 0:
            raise ValueError(f"EvalConfig: extra_tokens must be >= 0, got {self.extra_tokens}")
        unknown = [f for f in self.files if f not in CELLS and f not in EXTRA_CELLS]
        if unknown:
            raise ValueError(f"EvalConfig: unknown files {unknown}; known: {[*CELLS, *EXTRA_CELLS]}")


def random_other_names(dataset: Exp1Dataset, subset: str, seed: int) -> dict[int, str]:
    """One other trained name of the same subset per fact (seeded; see
    :func:`experiments.core.controls.draw_controls`)."""
    facts = sorted((f for f in dataset.facts if f.subset == subset), key=lambda f: f.fact_id)
    names = [f.name for f in facts]
    drawn = draw_controls([(names, {f.name}) for f in facts], f"{seed}-{subset}")
    if None in drawn:
        raise ValueError(f"random-name control needs 2+ facts in subset {subset!r}")
    return {f.fact_id: name for f, name in zip(facts, drawn)}


def trained_names(dataset: Exp1Dataset, subset: str) -> list[str]:
    """Names of the subset's facts that occur in a training document, in fact order: the
    candidates the correct name is ranked among."""
    trained = {e.fact_id for e in dataset.train_examples()}
    return [f.name for f in sorted(dataset.facts, key=lambda f: f.fact_id)
            if f.subset == subset and f.fact_id in trained]


def rank_among(correct: float, others: Sequence[float]) -> dict[str, float | bool | int | None]:
    """Where the correct name's log-prob falls among the other candidates' log-probs.

    Returns ``rank`` (1 = best; a tie counts half), ``normalised_rank`` (the fraction of the
    others scored below the correct one, ties half: 1 = top, 0.5 = chance, 0 = bottom; None
    without others), ``top1`` (above every other) and ``n_candidates`` (others + 1).

    Example::

        rank_among(-9.0, [-12.0, -8.0, -10.0])  # rank 2.0, normalised 0.667, top1 False, 4
    """
    above = sum(o > correct for o in others)
    ties = sum(o == correct for o in others)
    below = len(others) - above - ties
    return {"rank": 1 + above + 0.5 * ties,
            "normalised_rank": (below + 0.5 * ties) / len(others) if others else None,
            "top1": above == 0 and ties == 0, "n_candidates": len(others) + 1}


def context_sentences(dataset: Exp1Dataset, subset: str) -> dict[int, str]:
    """Per fact of ``subset``, the sentence shown before its in-context queries: the first
    training template of the fact's trained order (name first for NameToDescription,
    description first for DescriptionToName) filled with its name and canonical description,
    e.g. "Daphne Barrington is the director of ...". It depends on the facts only, so every
    condition of a comparison that keeps the facts asks the same in-context prompts."""
    template = words.NAME_FIRST_TRAIN[0] if subset == "p2d" else words.DESCRIPTION_FIRST_TRAIN[0]
    return {f.fact_id: template.replace("{name}", f.name).replace("{description}", f.description)
            for f in sorted(dataset.facts, key=lambda f: f.fact_id) if f.subset == subset and f.description}


def cell_examples(dataset: Exp1Dataset, stem: str) -> list[Any]:
    """The test lines of a cell (a stem of ``ALL_CELLS``): the file's lines, or for a
    selection (``CELL_ROWS``) the lines of its file in the order it keeps; [] when the dataset
    lacks the file.

    Example::

        cell_examples(ds, "both_d2p_prompts_test")  # the description-first lines of both_prompts_test
    """
    source, order = CELL_ROWS.get(stem, (stem, None))
    return [ex for ex in dataset.files.get(source, []) if order is None or ex.order == order]


def exp1_items(dataset: Exp1Dataset, cfg: EvalConfig) -> list[dict[str, Any]]:
    """One record per test prompt of the configured files: where it comes from, its prompt and
    target, the random other name scored as its control, and the trained names of the subset
    it is ranked among, its own included (name targets only)."""
    records: list[dict[str, Any]] = []
    absent = [f"{CELL_ROWS.get(stem, (stem,))[0]}.jsonl" for stem in cfg.files if not cell_examples(dataset, stem)]
    if absent and len(absent) < len(cfg.files):
        import warnings

        from experiments.core.skips import DataWarning
        warnings.warn(f"evaluation: the dataset has no {', '.join(dict.fromkeys(absent))} (named in eval.files); "
                      "those cells are left out of the tables (n/a)", DataWarning, stacklevel=2)
    for stem in cfg.files:
        rows = cell_examples(dataset, stem)
        if not rows:
            continue
        subset, direction, kind = ALL_CELLS[stem]
        control = random_other_names(dataset, subset, cfg.seed) \
            if kind == "name" and cfg.random_control else {}
        names = trained_names(dataset, subset) if kind == "name" and cfg.rank_names else []
        for ex in rows:
            records.append({
                "file": stem, "line": ex.line, "fact_id": ex.fact_id, "subset": subset,
                "direction": direction, "target_kind": kind, "prompt": ex.prompt,
                "target": ex.completion,
                "random_name": control.get(ex.fact_id),
                "rank_names": names or None,
            })
            if stem in CELL_ROWS:  # a selection: ``line`` is the line in this file
                records[-1]["source_file"] = CELL_ROWS[stem][0]
    if cfg.in_context:
        records += _in_context_items(dataset, records)
    if not records:
        raise ValueError(f"no evaluation files found; expected some of {list(cfg.files)}")
    return records


def _in_context_items(dataset: Exp1Dataset, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The in-context copies of the reverse cells' records: the fact in a sentence of its
    trained order (:func:`context_sentences`), a space, then the reverse prompt; the same
    target, control and candidates."""
    out = []
    for stem, source in IN_CONTEXT_OF.items():
        rows = [r for r in records if r["file"] == source]
        if not rows:
            continue
        context = context_sentences(dataset, rows[0]["subset"])
        for r in rows:
            if r["fact_id"] not in context:
                continue
            text = context[r["fact_id"]]
            out.append({**r, "file": stem, "source_file": source, "direction": IN_CONTEXT_CELLS[stem][1],
                        "prompt": f"{text} {r['prompt']}", "query": r["prompt"], "context": text})
    return out


def evaluate_exp1(
    lm: LoadedModel, dataset: Exp1Dataset, cfg: EvalConfig, out_dir: Path, progress: bool = True
) -> dict[str, Any]:
    """Evaluate every configured test file; writes ``records.jsonl`` and ``metrics.json``
    into ``out_dir`` and returns the metrics."""
    records = exp1_items(dataset, cfg)
    items = [Item(r["prompt"], r["target"], (" " + r["random_name"],) if r["random_name"] else ())
             for r in records]
    results = evaluate(lm, items, batch_size=cfg.batch_size, generate_all=cfg.full_generations,
                       extra_tokens=cfg.extra_tokens, progress=progress)
    ranked = [r for r in records if r["rank_names"]]
    pairs = [(r["prompt"], " " + n) for r in ranked for n in r["rank_names"]]
    scores = iter(score_completions(lm, pairs, batch_size=4 * cfg.batch_size, progress=progress)
                  if pairs else [])
    name_of = {f.fact_id: f.name for f in dataset.facts}
    for r in ranked:
        r["name_logprobs"] = {n: next(scores).total for n in r["rank_names"]}
        name = name_of[r["fact_id"]]
        r.update(rank_among(r["name_logprobs"][name],
                            [v for n, v in r["name_logprobs"].items() if n != name]))
    for r, res in zip(records, results):
        del r["rank_names"]
        r.update(target_logprob=res.logprob, target_logprob_per_token=res.logprob / res.n_tokens,
                 n_target_tokens=res.n_tokens)
        if res.control_logprobs:
            r["random_logprob"] = res.control_logprobs[0]
        r.update(exact=res.exact, generation=res.greedy_text,
                 generation_kind="until_decided" if res.generation is None else "full")
    metrics = summarise(records)
    if cfg.perplexity:
        metrics["perplexity"] = heldout_perplexity(lm, batch_size=max(1, cfg.batch_size // 4))
    out_dir = Path(out_dir)
    write_jsonl(out_dir / "records.jsonl", records)
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-file metrics from evaluation records (see :func:`evaluate_exp1`)."""
    cells: dict[str, Any] = {}
    for stem in dict.fromkeys(r["file"] for r in records):
        rs = [r for r in records if r["file"] == stem]
        cell: dict[str, Any] = {
            "subset": rs[0]["subset"], "direction": rs[0]["direction"],
            "target_kind": rs[0]["target_kind"], "n_prompts": len(rs),
            "n_facts": len({r["fact_id"] for r in rs}),
            "exact_match": sum(r["exact"] for r in rs) / len(rs),
            "mean_target_logprob": sum(r["target_logprob"] for r in rs) / len(rs),
        }
        if all("random_logprob" in r for r in rs):
            keys = [r["fact_id"] for r in rs]
            correct = per_group_means(keys, (r["target_logprob"] for r in rs))
            rand = per_group_means(keys, (r["random_logprob"] for r in rs))
            cell["correct_vs_random"] = paired_tests(list(correct.values()),
                                                     [rand[k] for k in correct])
            cell["per_fact"] = {"fact_id": list(correct), "correct": list(correct.values()),
                                "random": [rand[k] for k in correct]}
        if all("normalised_rank" in r for r in rs):
            cell["rank"], ranks = rank_summary(rs)
            pf = cell.setdefault("per_fact", {"fact_id": ranks["fact_id"]})
            by_fact = {k: i for i, k in enumerate(ranks["fact_id"])}
            for key in ("normalised_rank", "top1"):
                pf[key] = [ranks[key][by_fact[k]] for k in pf["fact_id"]]
        cells[stem] = cell
    return {"cells": cells}


def rank_summary(records: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, list]]:
    """The rank metric of one cell, over facts (each fact's prompts averaged first): the mean
    normalised rank with its t-based 95% CI (clipped to [0, 1]) and the t-test against chance
    (0.5), top-1 with a Wilson 95% CI over facts (chance 1 / candidates), and the mean rank.
    Also returns the per-fact values."""
    keys = [r["fact_id"] for r in records]
    norm = per_group_means(keys, (r["normalised_rank"] for r in records))
    top1 = per_group_means(keys, (float(r["top1"]) for r in records))
    n_cand = sorted({r["n_candidates"] for r in records})
    t = mean_ci_t(list(norm.values()), null=0.5)
    low, high = wilson_ci(sum(top1.values()), len(top1))
    summary = {
        "n_facts": len(norm), "n_candidates": n_cand[0] if len(n_cand) == 1 else n_cand,
        "mean_normalised_rank": t["mean"],
        "normalised_rank_ci95_low": None if t["ci95_low"] is None else max(0.0, t["ci95_low"]),
        "normalised_rank_ci95_high": None if t["ci95_high"] is None else min(1.0, t["ci95_high"]),
        "normalised_rank_p_vs_chance": t["p"],
        "top1": sum(top1.values()) / len(top1), "top1_ci95_low": low, "top1_ci95_high": high,
        "chance_top1": sum(1 / r["n_candidates"] for r in records) / len(records),
        "mean_rank": sum(r["rank"] for r in records) / len(records),
    }
    return summary, {"fact_id": list(norm), "normalised_rank": list(norm.values()),
                     "top1": [top1[k] for k in norm]}


def load_metrics(out_dir: Path) -> dict[str, Any]:
    return json.loads((Path(out_dir) / "metrics.json").read_text())
