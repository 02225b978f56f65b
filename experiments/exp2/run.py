"""Experiment 2: real parents and children, asked in both directions, without finetuning.

For each (child, parent) pair the model is asked, after a few-shot header, "Who is <child>'s
<mother/father>?" (the parent query) and "Name a child of <parent>." (the child query). The
Reversal Curse predicts parents are found more often than children: pretraining text mentions
a famous child's parent more often than it names the child from the parent's side. Each query
is scored by

- the rank of the correct name among other names of the same role, by the log-prob of each
  as the answer (:mod:`experiments.exp2.candidates`; the metric that escapes the floor of a
  small model's exact match);
- the probability of the correct name as the completion (the paper's score for base models),
  and against a random wrong name of the same role (the control);
- exact match (greedy output starts with the name) and, as an option, the paper's method for
  chat models: ``sample_k`` samples at temperature 1, a hit when any starts with the name.

Statistics are clustered by family (:mod:`experiments.exp2.summary`).

A run directory holds::

    config.json, manifest.json   Exp2Config; versions, commit, device, seeds
    records.jsonl                one line per query: question, target, log-prob, probability,
                                 exact match, greedy text, control, candidates and their
                                 log-probs, rank, family (and samples)
    metrics.json, exp2.md        per-query summaries and parent-vs-child differences, with
                                 family-clustered 95% CIs; the exploratory split, labelled
    figure5.png, figure5.svg     the Figure 5 analog

Log-prob, control and exact match come from the shared evaluator
(:mod:`experiments.core.evaluate`); the candidates and samples from key-value caches over the
shared few-shot header (:mod:`experiments.exp2.shared_prefix`).

Example::

    metrics = run_exp2(Exp2Config(), Path("runs/exp2"))
    metrics["parent_vs_child"]["diff"]["beaten"]   # parent minus child, with its 95% CI
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.core.config import ConfigMixin
from experiments.core.evaluate import Item, evaluate, exact_match
from experiments.exp2.candidates import candidate_names, control_names, families, rank_stats
from experiments.exp2.data import ParentChildPair, read_pairs
from experiments.exp2.report import exp2_markdown, figure5
from experiments.exp2.shared_prefix import sample_completions, score_candidates
from experiments.exp2.summary import summarise_exp2
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
        batch_size: queries per forward pass of the evaluator (does not change the results).
        extra_tokens: tokens generated beyond the name's length where exact match needs
            real generation (and the length of a sample beyond the name's).
        n_candidates: names each query's correct answer is ranked among, itself included
            (up to ``n_candidates - 1`` same-role wrong names, drawn with ``seed``); None =
            every same-role name in the list.
        sample_k: samples per query at ``sample_temperature`` (the paper's method for chat
            models: a hit when any sample starts with the name); 0 = off.
        sample_temperature: the sampling temperature (the paper's is 1).
        seed: picks the random control name, the candidates and the samples of every query.
    """

    model: str = "smollm2-135m"
    model_options: ModelOptions = field(default_factory=ModelOptions)
    pairs: str | None = None
    limit: int | None = None
    batch_size: int = 64
    extra_tokens: int = 4
    n_candidates: int | None = 20
    sample_k: int = 0
    sample_temperature: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"Exp2Config.limit: expected a positive int or None, got {self.limit!r}")
        if self.batch_size < 1 or self.extra_tokens < 0:
            raise ValueError("Exp2Config: batch_size must be >= 1 and extra_tokens >= 0")
        if self.n_candidates is not None and self.n_candidates < 2:
            raise ValueError(f"Exp2Config.n_candidates: expected an int >= 2 or None (all), got {self.n_candidates!r}")
        if self.sample_k < 0 or not self.sample_temperature > 0:
            raise ValueError(f"Exp2Config: sample_k must be >= 0 and sample_temperature > 0, got "
                             f"{self.sample_k!r} and {self.sample_temperature!r}")


def evaluate_exp2(lm: Any, pairs: list[ParentChildPair], cfg: Exp2Config, progress: bool = True,
                  timings: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """One record per (pair, query): log-prob and probability of the correct name, exact match
    (greedy output starts with the name; generation stops at a newline), the log-prob of a
    random wrong name of the same role (the control), the correct name's rank among
    ``cfg.n_candidates`` same-role names (:mod:`experiments.exp2.candidates`), and, with
    ``cfg.sample_k``, ``k`` temperature samples and whether any starts with the name.
    ``timings``, when given, receives the seconds each step took."""
    timings = {} if timings is None else timings
    t0 = time.perf_counter()
    records = []
    fams = families(pairs)
    wrong = candidate_names(pairs, cfg.n_candidates, cfg.seed)
    for i, (pair, (wrong_parent, wrong_child)) in enumerate(zip(pairs, control_names(pairs, cfg.seed))):
        for query, question, target, control, others in (
                ("parent", parent_question(pair), pair.parent, wrong_parent, wrong[i][0]),
                ("child", child_question(pair), pair.child, wrong_child, wrong[i][1])):
            records.append({"pair": i, "query": query, "question": question, "target": target,
                            "control": control, "candidates": others, "family": fams[i],
                            "child": pair.child, "parent": pair.parent, "parent_type": pair.parent_type,
                            "can_reverse": pair.can_reverse, "shares_name": shares_name(pair)})
    prompts = [build_prompt(r["question"]) for r in records]
    items = [Item(p, " " + r["target"], (" " + r["control"],) if r["control"] is not None else ())
             for p, r in zip(prompts, records)]
    results = evaluate(lm, items, batch_size=cfg.batch_size, extra_tokens=cfg.extra_tokens, stop_strings=("\n",),
                       progress=progress)
    timings["evaluate"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    # the correct name first, then the wrong ones; all of a query's candidates in one batch
    ranked = score_candidates(lm, prompts, [[" " + n for n in (r["target"], *r["candidates"])] for r in records],
                              progress=progress)
    for r, res, lps in zip(records, results, ranked):
        r.update(logprob=res.logprob, n_tokens=res.n_tokens, exact=res.exact, greedy_text=res.greedy_text,
                 prob=math.exp(res.logprob),
                 control_logprob=res.control_logprobs[0] if res.control_logprobs else None,
                 candidate_logprobs=lps[1:], ranked_logprob=lps[0], **rank_stats(lps[0], lps[1:]))
    timings["rank"] = round(time.perf_counter() - t0, 2)
    if cfg.sample_k:
        t0 = time.perf_counter()
        limits = [res.n_tokens + cfg.extra_tokens for res in results]
        samples = sample_completions(lm, prompts, cfg.sample_k, limits, seed=cfg.seed,
                                     temperature=cfg.sample_temperature, stop_strings=("\n",), progress=progress)
        for r, s in zip(records, samples):
            r.update(samples=s, sample_hit=any_sample_matches(s, r["target"]))
        timings["sample"] = round(time.perf_counter() - t0, 2)
    return records


def any_sample_matches(samples: list[str], target: str) -> bool:
    """The paper's sampled accuracy: some sample starts with the target (as exact match)."""
    return any(exact_match(s, target) for s in samples)


def run_exp2(cfg: Exp2Config, out: Path, resume: bool = False, progress: bool = True,
             strict: bool = False) -> dict[str, Any]:
    """Evaluate, summarise and report into ``out`` (a new run directory, or the same run
    continued with ``resume``: a finished evaluation is kept). Malformed rows of the pairs
    file are skipped with a warning and listed in the manifest (``data_skipped``); ``strict``
    refuses the file instead."""
    from experiments.core.environment import environment, resolved_compute
    from experiments.core.rundir import RunDir
    from experiments.core.skips import Skips
    from interp import load_model
    from interp.models import check_spec

    out = Path(out)
    skips = Skips(strict)
    all_pairs, dropped = read_pairs(cfg.pairs, skips)  # a bad file: file:line
    pairs = [p for p in all_pairs if not in_few_shot(p)]
    if cfg.limit is not None:
        pairs = pairs[: cfg.limit]
    check_spec(cfg.model)
    compute = resolved_compute(cfg.model_options)
    run = RunDir.open(out, cfg, "exp2", resume=resume, manifest={
        **environment(), "model": cfg.model, "model_options": cfg.model_options.to_dict(),
        "seeds": {"control": cfg.seed, "candidates": cfg.seed, "sampling": cfg.seed, "bootstrap": cfg.seed},
        **compute, "data_skipped": skips.records()})
    with run.stage("evaluate") as info:
        if info is not None:
            lm = load_model(cfg.model, cfg.model_options)
            t0 = time.perf_counter()
            steps: dict[str, float] = {}
            records = evaluate_exp2(lm, pairs, cfg, progress=progress, timings=steps)
            metrics = {**summarise_exp2(records, seed=cfg.seed), "model": lm.describe(),
                       "seconds": round(time.perf_counter() - t0, 2), "seconds_by_step": steps,
                       "pairs_file": cfg.pairs or "shipped list", "n_pairs": len(pairs),
                       "repeated_rows_dropped": dropped, "n_candidates": cfg.n_candidates,
                       "sampling": {"k": cfg.sample_k, "temperature": cfg.sample_temperature, "seed": cfg.seed,
                                    "per_prompt_seed": "numpy SeedSequence([seed, query index])"}
                       if cfg.sample_k else None}
            write_jsonl(out / "records.jsonl", records)
            write_json(out / "metrics.json", metrics)
            info.update(lm.info["resolved"])
    metrics = json.loads((out / "metrics.json").read_text())
    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    write_text(out / "exp2.md", exp2_markdown(metrics, records, f"Experiment 2 ({cfg.model}, {metrics['n_pairs']} pairs)"))
    figure5({cfg.model: metrics}, out / "figure5")
    from experiments.core.run_index import write_index
    write_index(out)
    return metrics
