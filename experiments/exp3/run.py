"""Experiment 3: instructions given in one order, questions asked in the other.

For each instruction order (``q2a``: question then answer; ``a2q``: answer then question; see
:mod:`experiments.exp3.data`) the base model is finetuned on the guidance documents and the
demonstrated question-answer pairs, then asked the held-out questions (``Q: <question> A:``).
The paper (its appendix C) finds held-out accuracy up to 88% from ``q2a`` instructions and
about 5% (chance for a plausible answer) from ``a2q`` ones.

A run directory holds::

    config.json, manifest.json
    q2a/ and a2q/    data/ (the dataset), checkpoints/, model/, train_log.json,
                     eval/{base,finetuned}/records.jsonl and metrics.json
    exp3.md, figure8.png, figure8.svg

Example::

    cfg = preset("smoke")
    print(run_exp3(cfg, Path("runs/exp3-smoke")))
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.core.config import ConfigMixin, load_preset
from experiments.core.rundir import RunDir
from experiments.core.controls import draw_controls
from experiments.core.evaluate import Item, evaluate, exact_match
from experiments.exp3.data import CATEGORIES, ORDERS, Exp3DataConfig, generate_exp3, load_exp3, write_exp3
from experiments.finetune import FinetuneConfig
from interp.fileio import write_json, write_jsonl, write_text
from interp.models import ModelOptions

TITLES = {"q2a": "QuestionToAnswer (same order as the query)", "a2q": "AnswerToQuestion (reverse order)"}


@dataclass(frozen=True)
class Exp3Config(ConfigMixin):
    """Args:
        model: base model spec.
        data: generator settings (the same pairs for both orders).
        orders: which instruction orders to run.
        finetune: finetuning settings (one run per order).
        batch_size, max_new_tokens: evaluation.
        n_realized_eval: demonstrated (trained) questions also asked, as a check that training took.
    """

    model: str = "smollm2-135m"
    model_options: ModelOptions = field(default_factory=ModelOptions)
    data: Exp3DataConfig = field(default_factory=Exp3DataConfig)
    orders: tuple[str, ...] = ORDERS
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    batch_size: int = 64
    max_new_tokens: int = 8
    n_realized_eval: int = 100
    preset: str = "custom"

    def __post_init__(self) -> None:
        bad = [o for o in self.orders if o not in ORDERS]
        if bad or not self.orders:
            raise ValueError(f"Exp3Config.orders: choose from {ORDERS}, got {list(self.orders)}")


def preset(name: str) -> Exp3Config:
    """The preset ``experiments/presets/exp3/<name>.yaml`` (a file a user can copy and edit)."""
    return load_preset(Exp3Config, "exp3", name)


def control_answer(row: dict[str, Any], pair: dict[str, Any] | None, seed: int) -> str | None:
    """Another answer of the question's category, drawn per question (seeded by the data seed
    and the question's id); None where the row has no known pair."""
    if pair is None:
        return None
    return draw_controls([(CATEGORIES.get(pair["category"], ()), {pair["answer"]})], seed * 1_000_003 + row["ids"])[0]


def evaluate_exp3(lm: Any, rows: list[dict[str, Any]], pairs_by_id: dict[int, dict[str, Any]],
                  cfg: Exp3Config) -> list[dict[str, Any]]:
    """Greedy answer (every question is generated, up to ``max_new_tokens``, stopping at a newline
    or the next "Q:"), exact match, whether the answer is a plausible one (any answer of the
    question's category) and the log-prob of the correct answer and of a control answer, per
    test row."""
    found = [pairs_by_id.get(r["ids"] if isinstance(r["ids"], int) else -1) for r in rows]
    controls = [control_answer(r, pair, cfg.data.seed) for r, pair in zip(rows, found)]
    items = [Item(r["prompt"], r["completion"], (" " + c,) if c is not None else ()) for r, c in zip(rows, controls)]
    results = evaluate(lm, items, batch_size=cfg.batch_size, generate_all=True, max_new_tokens=cfg.max_new_tokens,
                       stop_strings=("\n", " Q:"))
    out = []
    for r, pair, control, res in zip(rows, found, controls, results):
        options = CATEGORIES.get(pair["category"], ()) if pair else ()
        out.append({"id": r["ids"], "prompt": r["prompt"], "target": r["completion"].strip(),
                    "generated": res.generation, "exact": res.exact,
                    "plausible": any(exact_match(res.generation, o) for o in options) if options else None,
                    "logprob": res.logprob, "control": control,
                    "control_logprob": res.control_logprobs[0] if res.control_logprobs else None})
    return out


def summarise_exp3(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Exact match, plausible answers, and the correct answer's log-prob against another answer
    of the same category (paired t-test and KS test over questions)."""
    from analysis.stats import paired_tests

    n = len(records)
    plaus = [r["plausible"] for r in records if r["plausible"] is not None]
    paired = [r for r in records if r.get("control_logprob") is not None]
    return {"n": n, "exact_match": sum(r["exact"] for r in records) / n if n else None,
            "plausible": sum(plaus) / len(plaus) if plaus else None,
            "mean_logprob": sum(r["logprob"] for r in records) / n if n else None,
            "correct_vs_random": paired_tests([r["logprob"] for r in paired],
                                              [r["control_logprob"] for r in paired])}


def _run_order(cfg: Exp3Config, order: str, run: RunDir, progress: bool) -> dict[str, Any]:
    """One instruction order in ``RUN/<order>/``: data, base evaluation, finetuning, finetuned
    evaluation, each a stage of the run (``<order>.<stage>`` in the manifest)."""
    from experiments.finetune import finetune
    from interp.models import load_model, save_model

    out = run.path / order
    with run.stage(f"{order}.generate") as info:
        if info is not None:
            write_exp3(generate_exp3(cfg.data, order), out / "data")
    ds = load_exp3(out / "data", order)
    pairs_by_id = {p["id"]: p for p in ds.files.get("pairs", [])}
    tests = {"unrealized": ds.test_examples(),
             "realized": ds.files["realized_examples"][: cfg.n_realized_eval]}
    results: dict[str, Any] = {}
    for label in ("base", "finetuned"):
        if label == "finetuned":
            with run.stage(f"{order}.finetune") as info:
                if info is not None:
                    lm = load_model(cfg.model, cfg.model_options.for_training())
                    log = finetune(lm, ds.training_documents(), cfg.finetune, out / "checkpoints",
                                   resume=True, progress=progress)
                    save_model(lm, out / "model")
                    write_json(out / "train_log.json", log)
                    info.update(steps=log["steps"], precision=log["precision"])
        with run.stage(f"{order}.evaluate_{label}") as info:
            if info is not None:
                lm = load_model(cfg.model if label == "base" else str(out / "model"), cfg.model_options)
                records, metrics = [], {}
                for split, rows in tests.items():
                    recs = evaluate_exp3(lm, rows, pairs_by_id, cfg)
                    records += [{"split": split, **r} for r in recs]
                    metrics[split] = summarise_exp3(recs)
                write_jsonl(out / "eval" / label / "records.jsonl", records)
                write_json(out / "eval" / label / "metrics.json", metrics)
        results[label] = json.loads((out / "eval" / label / "metrics.json").read_text())
    return results


def exp3_markdown(results: dict[str, dict[str, Any]], title: str) -> str:
    from analysis.fmt import pct, pvalue

    lines = [f"## {title}", "",
             "| instructions | model | held-out questions: exact match | plausible answer | "
             "log-prob: correct answer | another answer of the category | t-test p | "
             "demonstrated questions: exact match |",
             "|---|---|---|---|---|---|---|---|"]
    for order, res in results.items():
        for label in ("base", "finetuned"):
            m = res.get(label)
            if not m:
                continue
            u, r = m["unrealized"], m["realized"]
            c = u.get("correct_vs_random") or {}
            ctrl = "n/a" if c.get("mean_control") is None else f"{c['mean_control']:.2f}"
            lines.append(f"| {TITLES[order]} | {label} | {pct(u['exact_match'])} (n={u['n']}) | {pct(u['plausible'])} | "
                         f"{u['mean_logprob']:.2f} | {ctrl} | {pvalue(c.get('t_pvalue'))} | "
                         f"{pct(r['exact_match'])} (n={r['n']}) |")
    lines += ["", "A plausible answer is any answer of the question's category (16 or more per category, so "
              "a random plausible answer is right about 6% of the time). The log-prob columns compare, per "
              "held-out question, the instructed answer with another answer of the same category (paired "
              "t-test over questions): a model that learned from the instruction prefers the instructed one."]
    return "\n".join(lines) + "\n"


def figure8(results: dict[str, dict[str, Any]], stem: Path) -> list[Path]:
    """Held-out exact match after finetuning, per instruction order (the Figure 8 analog)."""
    from matplotlib.figure import Figure

    from analysis.figures import save

    orders = [o for o in results if "finetuned" in results[o]]
    fig = Figure(figsize=(4.2, 3.4), layout="constrained")
    ax = fig.subplots()
    vals = [100 * results[o]["finetuned"]["unrealized"]["exact_match"] for o in orders]
    ax.bar(range(len(orders)), vals, color=["#3a6ea5" if o == "q2a" else "#c0504d" for o in orders])
    for i, v in enumerate(vals):
        ax.text(i, v + 1, f"{v:.1f}%", ha="center", fontsize=8)
    ax.set_xticks(range(len(orders)), ["question first\n(same order)" if o == "q2a" else "answer first\n(reverse)"
                                        for o in orders], fontsize=8)
    ax.set_ylabel("held-out questions answered (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Learning from instructions, by order", fontsize=10)
    return save(fig, Path(stem).parent, Path(stem).name)


def run_exp3(cfg: Exp3Config, out: Path, resume: bool = False, progress: bool = True) -> str:
    """Both orders end to end into ``out`` (a new run directory, or the same run continued
    with ``resume``: finished parts are kept)."""
    from experiments.core.environment import environment, resolved_compute
    from interp.models import check_spec

    check_spec(cfg.model)
    compute = resolved_compute(cfg.model_options, cfg.finetune.precision)
    run = RunDir.open(out, cfg, "exp3", resume=resume, manifest={
        **environment(), "model": cfg.model, "model_options": cfg.model_options.to_dict(),
        "seeds": {"data": cfg.data.seed, "finetune": cfg.finetune.seed}, **compute})
    out = Path(out)
    results = {order: _run_order(cfg, order, run, progress) for order in cfg.orders}
    text = exp3_markdown(results, f"Experiment 3 ({cfg.preset} preset, {cfg.model})")
    write_text(out / "exp3.md", text)
    write_json(out / "metrics.json", results)
    figure8(results, out / "figure8")
    return text
