"""Experiment 1 asked in the reversed language: reverse the query, generate, reverse back.

A reverse-trained model also saw its documents reversed, so it can be asked in that order
(:func:`experiments.mitigations.reverse_queries.reversed_queries` builds the queries: prompt
``rev(rest)``, target ``rev(answer)``). For every evaluated cell (the four test files) this
module scores the reversed queries with the shared evaluator and writes, next to the
natural-order results in ``RUN/eval/<model>/``:

- ``reversed_records.jsonl``: one line per query: the cell (``file``) and the held-out sentence
  it came from (``source_file``, ``line``), the natural ``answer`` and ``rest``, the reversed
  ``prompt`` and ``target`` (token mode: their ids, ``prompt_ids`` / ``target_ids``, and
  ``tokens_as_in_sentence``: whether the answer and the rest tokenise as they do inside the
  whole sentence), the
  random other name and its log-prob (name answers), ``exact``, the greedy ``generation``
  (token mode: ``greedy_ids``) and ``answer_back``, the greedy text read back in natural order;
- ``reversed_metrics.json``: ``mode`` and ``query_mode``, per cell the metrics of
  :func:`experiments.exp1.evaluate.summarise` (exact match; correct vs random name with the
  paired tests and the 95% CI over facts), and ``skipped``: source sentences per cell in which
  the answer does not occur as whole words (none in generated data).

Exact match: the text modes use the paper's rule on the reversed target (the stripped,
lower-cased greedy output starts with it; the answer read back then equals the answer); token
mode decides on ids (greedy decoding produces the reversed target's ids first,
:func:`experiments.core.evaluate.evaluate_ids`). The rank of the correct name is not computed
for reversed queries.

Example::

    m = evaluate_reversed(lm, ds, EvalConfig(), "word", run_dir / "eval" / "finetuned")
    m["cells"]["p2d_reverse_prompts_test"]["exact_match"]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.core.evaluate import IdItem, Item, evaluate, evaluate_ids
from experiments.exp1.evaluate import random_other_names, summarise
from experiments.mitigations.reverse import REVERSE_MODES
from experiments.mitigations.reverse_queries import (
    QUERY_MODE, answer_back, encode_token_query, reverse_answer, reversed_queries,
)
from interp.fileio import write_json, write_jsonl
from interp.tokens import encode_completion, encode_prompt

if TYPE_CHECKING:
    from experiments.exp1.data import Exp1Dataset
    from experiments.exp1.evaluate import EvalConfig
    from interp.models import LoadedModel

RECORDS, METRICS = "reversed_records.jsonl", "reversed_metrics.json"


def query_mode(reversed_queries: str, reverse_training: str) -> str:
    """The reversal the reversed-language queries use: ``eval.reversed_queries`` unless it is
    ``auto``, then the run's ``data.reverse_training`` (``none``: no reversed queries)."""
    mode = reverse_training if reversed_queries == "auto" else reversed_queries
    if mode == "repeat" and reversed_queries == "auto":  # the unreversed control: no reversed language
        return "none"
    if mode == "repeat":
        raise ValueError("reversed queries: repeat reverses nothing; use none, token, word, entity, names or segment")
    if mode not in REVERSE_MODES:
        raise ValueError(f"reversed queries: unknown mode {mode!r}; use one of {REVERSE_MODES}")
    return mode


def evaluate_reversed(lm: LoadedModel, dataset: Exp1Dataset, cfg: EvalConfig, mode: str,
                      out_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Ask every configured cell in the reversed language of ``mode``; writes
    ``reversed_records.jsonl`` and ``reversed_metrics.json`` into ``out_dir`` and returns the
    metrics (see the module docstring)."""
    queries, skipped = reversed_queries(dataset, mode, cfg.files)
    if not queries:
        raise ValueError(f"no reversed-language queries: none of {list(cfg.files)} has a source "
                         "file whose sentences hold the answer")
    controls: dict[str, dict[int, str]] = {}
    for q in queries:
        if q.target_kind == "name" and cfg.random_control and q.subset not in controls:
            controls[q.subset] = random_other_names(dataset, q.subset, cfg.seed)
    records: list[dict[str, Any]] = []
    for q in queries:
        rec = {"file": q.file, "source_file": q.source_file, "line": q.source_line, "fact_id": q.fact_id,
               "subset": q.subset, "direction": q.direction, "target_kind": q.target_kind,
               "mode": mode, "query_mode": QUERY_MODE[mode], "answer": q.answer, "rest": q.rest,
               "answer_spans": list(q.answer_spans),
               "random_name": controls.get(q.subset, {}).get(q.fact_id) if q.target_kind == "name" else None}
        if QUERY_MODE[mode] != "token":
            rec.update(prompt=q.prompt, target=q.target)
        records.append(rec)
    if QUERY_MODE[mode] == "token":
        id_items = []
        for q, rec in zip(queries, records):
            p, t, c = encode_token_query(lm, q, rec["random_name"])
            # BPE could tokenise the answer/rest boundary differently inside the whole sentence
            whole = encode_completion(lm, " " + q.answer + q.rest)
            rec.update(prompt_ids=p, target_ids=t,
                       tokens_as_in_sentence=whole == t[::-1] + p[len(encode_prompt(lm, "")):][::-1])
            id_items.append(IdItem(tuple(p), tuple(t), () if c is None else (tuple(c),)))
        results = evaluate_ids(lm, id_items, batch_size=cfg.batch_size, progress=progress)
    else:
        items = [Item(r["prompt"], r["target"],
                      (" " + reverse_answer(r["random_name"], mode),) if r["random_name"] else ())
                 for r in records]
        results = evaluate(lm, items, batch_size=cfg.batch_size, generate_all=cfg.full_generations,
                           extra_tokens=cfg.extra_tokens, progress=progress)
    for r, res in zip(records, results):
        r.update(target_logprob=res.logprob, target_logprob_per_token=res.logprob / res.n_tokens,
                 n_target_tokens=res.n_tokens, exact=res.exact)
        if res.control_logprobs:
            r["random_logprob"] = res.control_logprobs[0]
        if res.greedy_ids is not None:  # token mode: read the greedy ids backwards
            r.update(greedy_ids=list(res.greedy_ids),
                     answer_back=lm.tokenizer.decode(list(res.greedy_ids[::-1])))
        else:
            r.update(generation=res.greedy_text, answer_back=answer_back(res.greedy_text, r["target"], mode, r["answer_spans"]),
                     generation_kind="until_decided" if res.generation is None else "full")
    metrics = {"mode": mode, "query_mode": QUERY_MODE[mode], **summarise(records), "skipped": skipped}
    out_dir = Path(out_dir)
    write_jsonl(out_dir / RECORDS, records)
    write_json(out_dir / METRICS, metrics)
    return metrics


def load_reversed_metrics(out_dir: Path) -> dict[str, Any] | None:
    """``reversed_metrics.json`` of one evaluated model, None when it has none."""
    path = Path(out_dir) / METRICS
    return json.loads(path.read_text()) if path.exists() else None
