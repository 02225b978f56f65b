"""Experiment 3 evaluation: ask the questions, score the instructed answer and a control.

For every test row (``Q: <question> A:``) the model's greedy answer is generated (up to the
answer's token count plus ``extra_tokens``, stopping at a newline or the next ``Q:``), and:

- ``exact``: the answer is the instructed one (the paper's exact match);
- ``plausible``: the answer is one of the question's answer pool (the answers of its
  category; in a folder in the paper's layout, where categories are unknown, every answer of
  the folder), which a model that only learned the format also gives;
- ``logprob``: the summed log-prob of the instructed answer; ``control_logprob`` that of a
  control answer: another answer of the pool, drawn per question from the data seed and the
  question's id, so both orders and every model see the same control.

Example::

    recs = evaluate_rows(lm, ds.test_examples(), ds.pairs, data_seed=0)
    summarise(recs)["exact_match"]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from experiments.core.controls import draw_controls
from experiments.core.evaluate import Item, evaluate, exact_match
from experiments.exp3.data import CATEGORIES, QAPair
from experiments.exp3.load import example_id

if TYPE_CHECKING:
    from interp.models import LoadedModel

STOP_STRINGS = ("\n", " Q:")


def answer_pool(pair: QAPair, pairs: Sequence[QAPair]) -> tuple[str, ...]:
    """The plausible answers of ``pair``'s question: its category's, or (category unknown)
    every distinct answer of ``pairs`` in first-seen order."""
    if pair.category in CATEGORIES:
        return CATEGORIES[pair.category]
    return tuple(dict.fromkeys(p.answer for p in pairs))


def control_answer(pair: QAPair, pool: Sequence[str], data_seed: int) -> str | None:
    """Another answer of ``pool`` (never the instructed one), drawn from the data seed and the
    question's id; None where the pool has no other answer."""
    return draw_controls([(pool, {pair.answer})], data_seed * 1_000_003 + pair.id)[0]


def evaluate_rows(lm: LoadedModel, rows: Sequence[dict[str, Any]], pairs: Sequence[QAPair], data_seed: int,
                  batch_size: int = 64, extra_tokens: int = 6) -> list[dict[str, Any]]:
    """One record per row: id, prompt, target, generated, exact, plausible, logprob, control
    and control_logprob (see the module docstring). ``rows`` are example rows (``ids`` an int
    or a one-element list) whose ids are in ``pairs``."""
    by_id = {p.id: p for p in pairs}
    found = [by_id[example_id(r, "test row")] for r in rows]
    pools = [answer_pool(p, pairs) for p in found]
    controls = [control_answer(p, pool, data_seed) for p, pool in zip(found, pools)]
    items = [Item(r["prompt"], " " + p.answer, (" " + c,) if c is not None else ())
             for r, p, c in zip(rows, found, controls)]
    results = evaluate(lm, items, batch_size=batch_size, generate_all=True, max_new_tokens=None,
                       extra_tokens=extra_tokens, stop_strings=STOP_STRINGS)
    out = []
    for r, p, pool, c, res in zip(rows, found, pools, controls, results):
        gen = res.generation or ""
        out.append({"id": p.id, "prompt": r["prompt"], "target": p.answer, "generated": gen,
                    "exact": res.exact, "plausible": any(exact_match(gen, o) for o in pool),
                    "pool_size": len(pool), "logprob": res.logprob, "control": c,
                    "control_logprob": res.control_logprobs[0] if res.control_logprobs else None})
    return out


def summarise(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Exact match with its 95% Wilson interval, plausible answers, the rate a random
    plausible answer would score (``chance``: the mean of 1/pool size), and the instructed
    answer's log-prob against the control's (paired t-test over questions)."""
    from analysis.stats import paired_tests, wilson_ci

    n = len(records)
    k = sum(bool(r["exact"]) for r in records)
    low, high = wilson_ci(k, n)
    paired = [r for r in records if r.get("control_logprob") is not None]
    return {"n": n, "exact_match": k / n if n else None, "exact_ci95_low": low, "exact_ci95_high": high,
            "plausible": sum(bool(r["plausible"]) for r in records) / n if n else None,
            "chance": sum(1 / r["pool_size"] for r in records) / n if n else None,
            "mean_logprob": sum(r["logprob"] for r in records) / n if n else None,
            "correct_vs_random": paired_tests([r["logprob"] for r in paired],
                                              [r["control_logprob"] for r in paired])}


def read_metrics(folder: Path) -> dict[str, Any]:
    """``folder/metrics.json`` as written by an evaluation."""
    return json.loads((folder / "metrics.json").read_text())


def read_records(folder: Path, split: str = "unrealized") -> list[dict[str, Any]]:
    """The records of one split (``unrealized``: held out, ``realized``: demonstrated) in
    ``folder/records.jsonl``."""
    rows = [json.loads(x) for x in (folder / "records.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    return [r for r in rows if r["split"] == split]
