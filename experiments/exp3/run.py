"""Experiment 3: instructions given in one order, questions asked in the other.

For each instruction order (``q2a``: question then answer; ``a2q``: answer then question; see
:mod:`experiments.exp3.data`) and each finetuning seed, the base model is finetuned on the
guidance documents and the demonstrated question-answer pairs, then asked the held-out
questions (``Q: <question> A:``), after every epoch and at the end. The paper (its appendix C)
finds held-out accuracy up to 88% from ``q2a`` instructions and about 5% (what a random
plausible answer scores) from ``a2q`` ones. Both orders of a run test the same held-out
questions with the same answers, so :mod:`experiments.exp3.report` compares them question by
question (McNemar's test, and a before/after difference in log-probs).

A run directory holds::

    config.json, manifest.json
    <order>/data/                  the generated dataset (absent with data_dir)
    <order>/base/                  records.jsonl and metrics.json of the base model
    <order>/seed-<s>/              checkpoints/, model/, train_log.json,
                                   epochs/epoch-NNN/{records.jsonl,metrics.json}, eval/...
    metrics.json, exp3.md, figure8.png|svg, figure10.png|svg

Example::

    cfg = preset("smoke")
    print(run_exp3(cfg, Path("runs/exp3-smoke")))
"""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

from experiments.core.evaluate import heldout_perplexity
from experiments.core.rundir import RunDir
from experiments.core.skips import DataWarning
from experiments.exp3.config import Exp3Config, preset  # noqa: F401 - importable from here too
from experiments.exp3.data import Exp3Dataset, generate_exp3, load_exp3, write_exp3
from experiments.exp3.evaluate import evaluate_rows, read_metrics, read_records, summarise  # noqa: F401
from interp.fileio import atomic_dir, write_json


def question_sets(ds: Exp3Dataset, cfg: Exp3Config) -> dict[str, list[dict[str, Any]]]:
    """The held-out questions (``unrealized``) and the first ``n_realized_eval`` demonstrated ones."""
    return {"unrealized": ds.test_examples(), "realized": ds.files["realized_examples"][: cfg.n_realized_eval]}


def evaluate_into(lm: Any, ds: Exp3Dataset, cfg: Exp3Config, folder: Path) -> dict[str, Any]:
    """Both test sets: ``folder/records.jsonl`` (one record per question, with its split) and
    ``folder/metrics.json`` (per split, see :func:`experiments.exp3.evaluate.summarise`), with
    the model's perplexity on the held-out prose in ``folder/perplexity.json``
    (:func:`experiments.core.evaluate.heldout_perplexity`), written together (atomically)."""
    records, metrics = [], {}
    for split, rows in question_sets(ds, cfg).items():
        recs = evaluate_rows(lm, rows, ds.pairs, cfg.data.seed, batch_size=cfg.batch_size,
                             extra_tokens=cfg.extra_tokens)
        records += [{"split": split, **r} for r in recs]
        metrics[split] = summarise(recs)
    ppl = heldout_perplexity(lm)  # did finetuning damage the model? (perplexity.json)
    with atomic_dir(folder) as tmp:
        (tmp / "records.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        (tmp / "perplexity.json").write_text(json.dumps(ppl, indent=1) + "\n")
    return metrics


def dataset(cfg: Exp3Config, order: str, run: RunDir) -> Exp3Dataset:
    """The order's dataset: ``data_dir`` (its bad rows skipped, as when the run began), or
    generated into ``RUN/<order>/data`` once."""
    if cfg.data_dir:
        with warnings.catch_warnings():  # warned once, when the run began
            warnings.simplefilter("ignore", DataWarning)
            return load_exp3(Path(cfg.data_dir), order)
    with run.stage(f"{order}.generate") as info:
        if info is not None:
            write_exp3(generate_exp3(cfg.data, order), run.path / order / "data")
    return load_exp3(run.path / order / "data", order)


def _epoch_callback(lm: Any, ds: Exp3Dataset, cfg: Exp3Config, out: Path):
    """Evaluate after every epoch into ``out/epochs/epoch-NNN`` (kept when present); True
    (stop) once the demonstrated questions reach ``stop_when_demonstrated``."""
    import torch

    def on_epoch_end(state: dict[str, Any]) -> bool:
        epoch = state["epoch"]
        folder = out / "epochs" / f"epoch-{epoch:03d}"
        if (folder / "metrics.json").exists():
            m = read_metrics(folder)
        else:
            lm.hf.eval()
            with torch.no_grad():
                m = evaluate_into(lm, ds, cfg, folder)
        demo = m["realized"]["exact_match"]
        return bool(cfg.stop_when_demonstrated and epoch >= cfg.min_epochs and demo is not None
                    and demo >= cfg.stop_when_demonstrated)
    return on_epoch_end


def run_seed(cfg: Exp3Config, ds: Exp3Dataset, order: str, seed: int, run: RunDir, progress: bool) -> None:
    """Finetune one order with one seed into ``RUN/<order>/seed-<seed>`` and evaluate it."""
    from experiments.finetune import finetune
    from interp.models import load_model, save_model

    out = run.path / order / f"seed-{seed}"
    with run.stage(f"{order}.seed{seed}.finetune") as info:
        if info is not None:
            lm = load_model(cfg.model, cfg.model_options.for_training())
            callback = _epoch_callback(lm, ds, cfg, out) if cfg.eval_every_epoch else None
            log = finetune(lm, ds.training_documents(), replace(cfg.finetune, seed=seed), out / "checkpoints",
                           resume=True, progress=progress, on_epoch_end=callback)
            save_model(lm, out / "model")
            write_json(out / "train_log.json", log)
            info.update(steps=log["steps"], precision=log["precision"], stopped_early=log.get("stopped_early"))
    with run.stage(f"{order}.seed{seed}.evaluate") as info:
        if info is not None:
            evaluate_into(load_model(str(out / "model"), cfg.model_options), ds, cfg, out / "eval")


def run_order(cfg: Exp3Config, order: str, run: RunDir, progress: bool) -> Exp3Dataset:
    """One instruction order: data, base evaluation, then every seed (stages
    ``<order>.generate``, ``<order>.evaluate_base``, ``<order>.seed<s>.finetune|evaluate``)."""
    from interp.models import load_model

    ds = dataset(cfg, order, run)
    with run.stage(f"{order}.evaluate_base") as info:
        if info is not None:
            evaluate_into(load_model(cfg.model, cfg.model_options), ds, cfg, run.path / order / "base")
    for seed in cfg.seeds:
        run_seed(cfg, ds, order, seed, run, progress)
    return ds


def run_exp3(cfg: Exp3Config, out: Path, resume: bool = False, progress: bool = True, strict: bool = False) -> str:
    """Every order and seed end to end into ``out`` (a new run directory, or the same run
    continued with ``resume``: finished parts are kept), then the report. With ``data_dir``,
    rows the loader cannot use are skipped and listed in the manifest (``data_skipped``);
    ``strict`` refuses the folder instead."""
    from experiments.core.environment import environment, resolved_compute
    from experiments.exp3.report import write_report
    from interp.models import check_spec

    check_spec(cfg.model)
    extra: dict[str, Any] = {}
    if cfg.data_dir:  # a bad folder fails before anything is written
        extra["data_skipped"] = load_exp3(Path(cfg.data_dir), cfg.orders[0], strict).skipped
    compute = resolved_compute(cfg.model_options, cfg.finetune.precision)
    run = RunDir.open(out, cfg, "exp3", resume=resume, data_dir=cfg.data_dir, manifest={
        **environment(), "model": cfg.model, "model_options": cfg.model_options.to_dict(),
        "seeds": {"data": cfg.data.seed, "finetune": list(cfg.seeds)}, **compute, **extra})
    datasets = {order: run_order(cfg, order, run, progress) for order in cfg.orders}
    return write_report(cfg, Path(out), datasets)
