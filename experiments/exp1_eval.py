"""Experiment 1 evaluation: exact match, log-probs, and the correct-vs-random name test.

For every evaluated test file (subset x direction):

- exact match as the paper defines it: the stripped, lower-cased greedy output starts with
  the stripped, lower-cased target. Decided from the teacher-forced scoring pass where
  possible (greedy decoding follows the target exactly as long as the argmax equals the next
  target token), with real greedy generation for the rest; the result is the same as
  generating every prompt (``EvalConfig(full_generations=True)``; tested);
- the target's log-prob (summed over its tokens, and per token);
- where the target is a name, the log-prob of a random *other trained name of the same
  subset*, one per fact (seeded, so the base and finetuned models see the same control), and
  a paired t-test and KS test over facts (each fact's prompts averaged first).

Example::

    metrics = evaluate_exp1(lm, load_exp1(run_dir / "data"), EvalConfig(), run_dir / "eval" / "finetuned")
    metrics["cells"]["p2d_reverse_prompts_test"]["exact_match"]
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from experiments.core.config import ConfigMixin
from analysis.stats import paired_tests, per_group_means
from interp.fileio import write_json, write_jsonl
from interp.generate import greedy_generate
from interp.scoring import score_continuations

if TYPE_CHECKING:
    from experiments.exp1_data import Exp1Dataset
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
            teacher-forced scoring pass decides exact match (see :func:`decide_exact_match`)
            and only undecided prompts are generated.
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


def exact_match(generated: str, target: str) -> bool:
    """The paper's exact match: stripped, lower-cased output starts with the stripped,
    lower-cased target."""
    return generated.strip().lower().startswith(target.strip().lower())


def decide_exact_match(lm: LoadedModel, target: str, target_ids: Sequence[int],
                       greedy_ids: Sequence[int]) -> tuple[bool | None, str]:
    """Exact match from one teacher-forced pass, without generating.

    ``greedy_ids[j]`` is the argmax after the prompt and the first ``j`` target tokens. Greedy
    decoding follows the target up to the first position where the argmax differs; the text
    decoded up to and including that token either already rules the match out, or (when it is
    still a prefix of the target, e.g. another tokenisation of it) leaves it undecided (None),
    for real generation to settle. Returns (decision, the greedy text seen so far).
    """
    want = target.strip().lower()
    eos = lm.tokenizer.eos_token_id
    for j, (t, g) in enumerate(zip(target_ids, greedy_ids)):
        if g == t:
            continue
        if g == eos:  # generation would stop here
            text = lm.tokenizer.decode(list(target_ids[:j]))
            return exact_match(text, target), text
        text = lm.tokenizer.decode(list(target_ids[:j]) + [g])
        seen = text.lstrip().lower()
        if seen.startswith(want):
            return True, text
        return (None if want.startswith(seen) else False), text
    return True, lm.tokenizer.decode(list(target_ids))


def random_other_names(dataset: Exp1Dataset, subset: str, seed: int) -> dict[int, str]:
    """One other trained name of the same subset per fact (seeded)."""
    facts = sorted((f for f in dataset.facts if f.subset == subset), key=lambda f: f.fact_id)
    rng = random.Random(f"{seed}-{subset}")
    out = {}
    for f in facts:
        others = [g.name for g in facts if g.name != f.name]
        if not others:
            raise ValueError(f"random-name control needs 2+ facts in subset {subset!r}")
        out[f.fact_id] = rng.choice(others)
    return out


def evaluate_exp1(
    lm: LoadedModel, dataset: Exp1Dataset, cfg: EvalConfig, out_dir: Path, progress: bool = True
) -> dict[str, Any]:
    """Evaluate every configured test file; writes ``records.jsonl`` and ``metrics.json``
    into ``out_dir`` and returns the metrics."""
    items: list[dict[str, Any]] = []
    for stem in cfg.files:
        if stem not in dataset.files:
            continue
        subset, direction, kind = CELLS[stem]
        control = random_other_names(dataset, subset, cfg.seed) \
            if kind == "name" and cfg.random_control else {}
        for ex in dataset.files[stem]:
            items.append({
                "file": stem, "line": ex.line, "fact_id": ex.fact_id, "subset": subset,
                "direction": direction, "target_kind": kind, "prompt": ex.prompt,
                "target": ex.completion,
                "random_name": control.get(ex.fact_id),
            })
    if not items:
        raise ValueError(f"no evaluation files found; expected some of {list(cfg.files)}")
    conts = [[it["target"]] + ([" " + it["random_name"]] if it["random_name"] else []) for it in items]
    scores = score_continuations(lm, [it["prompt"] for it in items], conts,
                                 batch_size=cfg.batch_size, progress=progress)
    undecided = []
    for i, (it, sc) in enumerate(zip(items, scores)):
        target = sc[0]
        it.update(target_logprob=target.total, target_logprob_per_token=target.total / len(target.token_ids),
                  n_target_tokens=len(target.token_ids))
        if len(sc) > 1:
            it["random_logprob"] = sc[1].total
        exact, seen = decide_exact_match(lm, it["target"], target.token_ids, target.greedy_ids)
        it.update(exact=exact, generation=seen, generation_kind="until_decided")
        if exact is None or cfg.full_generations:
            undecided.append(i)
    if undecided:  # greedy decoding proper, for the rare undecided prompts (or all, if asked)
        limits = [items[i]["n_target_tokens"] + cfg.extra_tokens for i in undecided]
        gens = greedy_generate(lm, [items[i]["prompt"] for i in undecided], max_new_tokens=limits,
                               batch_size=cfg.batch_size, progress=progress)
        for i, gen in zip(undecided, gens):
            items[i].update(exact=exact_match(gen.text, items[i]["target"]), generation=gen.text,
                            generation_kind="full")
    metrics = summarise(items)
    out_dir = Path(out_dir)
    write_jsonl(out_dir / "records.jsonl", items)
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
