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
  a paired t-test and KS test over facts (each fact's prompts averaged first).

Example::

    metrics = evaluate_exp1(lm, load_exp1(run_dir / "data"), EvalConfig(), run_dir / "eval" / "finetuned")
    metrics["cells"]["p2d_reverse_prompts_test"]["exact_match"]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.core.config import ConfigMixin
from analysis.stats import paired_tests, per_group_means
from experiments.core.controls import draw_controls
from experiments.core.evaluate import Item, evaluate
from interp.fileio import write_json, write_jsonl

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
SUBSET_TITLES = {"p2d": "NameToDescription", "d2p": "DescriptionToName"}


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
        seed: seed of the random-name control.
        files: test-file stems to evaluate (those absent from the dataset are skipped).
    """

    batch_size: int = 32
    extra_tokens: int = 3
    full_generations: bool = False
    random_control: bool = True
    seed: int = 0
    files: tuple[str, ...] = tuple(CELLS)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"EvalConfig: batch_size must be >= 1, got {self.batch_size}")
        if self.extra_tokens < 0:
            raise ValueError(f"EvalConfig: extra_tokens must be >= 0, got {self.extra_tokens}")
        unknown = [f for f in self.files if f not in CELLS]
        if unknown:
            raise ValueError(f"EvalConfig: unknown files {unknown}; known: {list(CELLS)}")


def random_other_names(dataset: Exp1Dataset, subset: str, seed: int) -> dict[int, str]:
    """One other trained name of the same subset per fact (seeded; see
    :func:`experiments.core.controls.draw_controls`)."""
    facts = sorted((f for f in dataset.facts if f.subset == subset), key=lambda f: f.fact_id)
    names = [f.name for f in facts]
    drawn = draw_controls([(names, {f.name}) for f in facts], f"{seed}-{subset}")
    if None in drawn:
        raise ValueError(f"random-name control needs 2+ facts in subset {subset!r}")
    return {f.fact_id: name for f, name in zip(facts, drawn)}


def exp1_items(dataset: Exp1Dataset, cfg: EvalConfig) -> list[dict[str, Any]]:
    """One record per test prompt of the configured files: where it comes from, its prompt and
    target, and the random other name scored as its control (name targets only)."""
    records: list[dict[str, Any]] = []
    for stem in cfg.files:
        if stem not in dataset.files:
            continue
        subset, direction, kind = CELLS[stem]
        control = random_other_names(dataset, subset, cfg.seed) \
            if kind == "name" and cfg.random_control else {}
        for ex in dataset.files[stem]:
            records.append({
                "file": stem, "line": ex.line, "fact_id": ex.fact_id, "subset": subset,
                "direction": direction, "target_kind": kind, "prompt": ex.prompt,
                "target": ex.completion,
                "random_name": control.get(ex.fact_id),
            })
    if not records:
        raise ValueError(f"no evaluation files found; expected some of {list(cfg.files)}")
    return records


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
    for r, res in zip(records, results):
        r.update(target_logprob=res.logprob, target_logprob_per_token=res.logprob / res.n_tokens,
                 n_target_tokens=res.n_tokens)
        if res.control_logprobs:
            r["random_logprob"] = res.control_logprobs[0]
        r.update(exact=res.exact, generation=res.greedy_text,
                 generation_kind="until_decided" if res.generation is None else "full")
    metrics = summarise(records)
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
        cells[stem] = cell
    return {"cells": cells}


def load_metrics(out_dir: Path) -> dict[str, Any]:
    return json.loads((Path(out_dir) / "metrics.json").read_text())
