"""Experiment 1 end to end: generate data, finetune in one order, evaluate both orders.

A run directory holds everything one run produced::

    config.json      Exp1Config (model, data, finetune, eval settings)
    manifest.json    versions, git commit, seeds, dtype, device, timings per stage
    data/            the dataset in the paper's published layout (when generated)
    checkpoints/     epoch-NNN/: weights (safetensors), optimizer, scheduler, RNG state
    model/           the finetuned model (safetensors), loadable with interp.load_model
    train_log.json   loss per step
    reversed_train.jsonl   the reversed training copies (data.reverse_training != none)
    eval/base/, eval/finetuned/   records.jsonl (one line per prompt) and metrics.json;
                     reversed_records.jsonl and reversed_metrics.json for the queries in the
                     reversed language (experiments.mitigations.reverse_eval), when asked
    table1.md, figure4.png, figure4.svg
    analysis/        written by ``rct analyse RUN`` (figures, pages, summary.json/.md)

Each stage reads and writes only the run directory, so it can run on its own
(``rct finetune RUN``) and a finished stage is skipped when the run is resumed.

Example::

    cfg = preset("smoke")
    run_all(cfg, Path("runs/smoke"))
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.core.config import ConfigMixin, load_preset
from experiments.core.environment import environment, resolved_compute
from experiments.core.rundir import RunDir, RunDirError
from experiments.core.skips import DataWarning
from experiments.exp1.data import Exp1DataConfig, Exp1Dataset, generate_exp1, load_exp1, write_exp1
from experiments.exp1.evaluate import EvalConfig, evaluate_exp1, load_metrics
from experiments.exp1.generic import generate_generic, generic_documents, write_generic
from experiments.finetune import FinetuneConfig, finetune
from experiments.mitigations.exp1_hooks import evaluate_reversed_language, load_reversed_metrics, reversed_copies
from interp.fileio import write_json
from interp.models import ModelOptions, check_spec, load_model, save_model


@dataclass(frozen=True)
class Exp1Config(ConfigMixin):
    """Args:
        model: base model spec for :func:`interp.load_model`.
        model_options: dtype, device, attention implementation, weight processing, BOS.
        data: generator settings (used when ``data_dir`` is None).
        data_dir: an existing dataset folder in the paper's published layout, ours or the
            paper's own; None generates into ``RUN/data``.
        finetune: :class:`FinetuneConfig`.
        eval: :class:`EvalConfig`.
        preset: the preset this config started from (informational).
    """

    model: str = "smollm2-135m"
    model_options: ModelOptions = field(default_factory=ModelOptions)
    data: Exp1DataConfig = field(default_factory=Exp1DataConfig)
    data_dir: str | None = None
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    preset: str = "custom"


def preset(name: str) -> Exp1Config:
    """The preset ``experiments/presets/exp1/<name>.yaml`` (a file a user can copy and edit)."""
    return load_preset(Exp1Config, "exp1", name)


def data_dir(cfg: Exp1Config, run_dir: Path) -> Path:
    return Path(cfg.data_dir) if cfg.data_dir else run_dir / "data"


def read_config(run_dir: Path) -> Exp1Config:
    """The config of the experiment 1 run in ``run_dir``."""
    run = RunDir.existing(run_dir, "exp1")
    cfg = Exp1Config.from_dict(run.config_dict())
    run.check_unchanged(cfg.data_dir)
    return cfg


def validate(cfg: Exp1Config, strict: bool = False) -> list[dict[str, Any]]:
    """Everything checked before a run folder is created: the data folder (file and line of a
    bad record), the model spec, the device and precision. Returns the rows of ``data_dir``
    that will be skipped (``strict``: a bad row raises instead)."""
    skipped = load_exp1(cfg.data_dir, strict=strict).skipped if cfg.data_dir else []  # DatasetError: file:line
    check_spec(cfg.model)
    resolved_compute(cfg.model_options, cfg.finetune.precision)
    return skipped


def init_run(cfg: Exp1Config, run_dir: Path, resume: bool = False, strict: bool = False) -> RunDir:
    """Validate ``cfg``, then create ``run_dir`` (or continue it with ``resume``); see
    :class:`experiments.core.rundir.RunDir` for the rule. The rows of ``data_dir`` the loader
    skips are listed in the manifest (``data_skipped``); ``strict`` refuses them."""
    skipped = validate(cfg, strict)
    extra = {"data_skipped": skipped} if cfg.data_dir else {}
    return RunDir.open(run_dir, cfg, "exp1", resume=resume, data_dir=cfg.data_dir,
                       manifest={**manifest(cfg), **extra})


def manifest(cfg: Exp1Config) -> dict[str, Any]:
    """Versions, commit, seeds, dtype and device: what a rerun needs to match."""
    return {
        **environment(),
        "seeds": {"data": cfg.data.seed, "finetune": cfg.finetune.seed, "eval": cfg.eval.seed},
        "model": cfg.model, "model_options": cfg.model_options.to_dict(),
        **resolved_compute(cfg.model_options, cfg.finetune.precision),
    }


def load_dataset(cfg: Exp1Config, run_dir: Path) -> Exp1Dataset:
    """The run's dataset; rows of a ``data_dir`` skipped as when the run began (which warned)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load_exp1(data_dir(cfg, run_dir))


def stage_generate(run_dir: Path) -> Path:
    """Write the generated dataset into ``RUN/data`` (skipped when present or external)."""
    cfg = read_config(run_dir)
    folder = data_dir(cfg, run_dir)
    if cfg.data_dir or (folder / "facts.jsonl").exists():
        return folder
    with RunDir(Path(run_dir)).stage("generate", redo=True):
        dataset = generate_exp1(cfg.data)
        if cfg.data.generic_facts:  # first: facts.jsonl marks the data as complete
            write_generic(generate_generic(dataset.facts, cfg.data), folder)
        write_exp1(dataset, folder)
    return folder


def stage_finetune(run_dir: Path, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Finetune the base model on all training documents; saves ``RUN/model``."""
    cfg = read_config(run_dir)
    dataset = load_dataset(cfg, run_dir)
    docs = [(e.prompt, e.completion) for e in dataset.train_examples()]
    # generic text about extra people (data.generic_facts; none by default)
    generic = generic_documents(cfg.data, dataset, data_dir(cfg, run_dir), run_dir / "generic")
    docs += generic
    # reversed copies of the training documents (data.reverse_training; none by default)
    reversed_docs = reversed_copies(cfg.data, dataset, run_dir / "reversed_train.jsonl")
    docs += reversed_docs
    lm = load_model(cfg.model, cfg.model_options.for_training())
    t0 = time.perf_counter()
    log = finetune(lm, docs, cfg.finetune, run_dir / "checkpoints", resume=resume, progress=progress)
    if not _main_process():  # under accelerate launch, one process writes the results
        return log
    save_model(lm, run_dir / "model")
    write_json(run_dir / "train_log.json", log)
    RunDir(Path(run_dir)).record_stage("finetune", {
        "seconds": round(time.perf_counter() - t0, 2), "steps": log["steps"], "documents": len(docs),
        "generic_documents": len(generic), "reversed_documents": len(reversed_docs),
        "precision": log["precision"], "padded_fraction": log["padded_fraction"],
        "num_processes": log["num_processes"], "model": lm.describe()})
    return log


def _main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


# bump when the evaluation writes something else for the same inputs
BASE_EVAL_VERSION = 1
_EVAL_SOURCES = ("experiments/exp1/evaluate.py", "experiments/mitigations/exp1_hooks.py", "interp/scoring.py",
                 "interp/generate.py", "interp/tokens.py", "interp/prefix_tree.py")


def base_eval_key(cfg: Exp1Config, run_dir: Path, kind: str = "run") -> str | None:
    """What the base model's evaluation depends on, hashed: the model spec and its resolved
    device and dtype, the CPU's kernels, the evaluation settings, the language of the reversed
    queries, every data file, the evaluation code and the torch / transformers versions. None
    (no caching) for a local model folder, whose contents could change under the same name,
    and when ``RCT_NO_BASE_CACHE=1``. ``kind``: ``run`` (an experiment 1 run's ``eval/base``)
    or ``shared`` (a sweep's or a mitigation comparison's ``base/``, which holds less)."""
    import hashlib
    import json
    import os

    import torch
    import transformers

    if os.environ.get("RCT_NO_BASE_CACHE") == "1" or Path(str(cfg.model)).expanduser().exists():
        return None
    root = Path(__file__).resolve().parents[2]
    code = {f: hashlib.sha256((root / f).read_bytes()).hexdigest() for f in _EVAL_SOURCES if (root / f).exists()}
    opts = cfg.model_options
    parts = {"version": BASE_EVAL_VERSION, "kind": kind, "model": cfg.model, "options": opts.to_dict(),
             "device": opts.resolved_device(), "dtype": opts.resolved_dtype().value,
             "cpu": torch.backends.cpu.get_cpu_capability(), "eval": cfg.eval.to_dict(),
             "reverse_training": cfg.data.reverse_training, "data": _data_identity(cfg, run_dir),
             "code": code, "torch": torch.__version__, "transformers": transformers.__version__}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _data_identity(cfg: Exp1Config, run_dir: Path) -> Any:
    """The data's hash: its files where they are on disk, else (data generated in memory, as
    a sweep's shared base evaluation does) the generator's settings and code."""
    import hashlib

    from experiments.core.rundir import hash_files

    folder = data_dir(cfg, run_dir)
    if folder.is_dir():
        return hash_files(folder)
    gen = Path(__file__).resolve().parent
    return {"generated": cfg.data.to_dict(),
            "code": {f.name: hashlib.sha256(f.read_bytes()).hexdigest()
                     for f in sorted(gen.glob("*.py")) + sorted(gen.glob("*.json"))}}


def copy_tree(src: Path, dst: Path) -> None:
    """``src``'s files into ``dst`` through a temporary folder renamed into place."""
    import shutil

    from interp.fileio import atomic_dir

    if dst.exists():
        shutil.rmtree(dst)
    with atomic_dir(dst) as tmp:
        for f in src.rglob("*"):
            if f.is_file():
                (tmp / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, tmp / f.relative_to(src))


def stage_evaluate(run_dir: Path, which: tuple[str, ...] = ("base", "finetuned"),
                   progress: bool = True) -> dict[str, Any]:
    """Evaluate the base model and/or the finetuned ``RUN/model`` on every test file. The base
    model's evaluation is the same for every run with the same model, data and evaluation
    settings: it is cached under the user cache (``<cache>/base-eval/<key>``, the key in the
    manifest's ``evaluate_base`` stage; :func:`base_eval_key`) and copied on later runs."""
    from interp.cache import cache_dir

    cfg = read_config(run_dir)
    dataset = load_dataset(cfg, run_dir)
    run = RunDir(Path(run_dir))
    out = {}
    for label in which:
        if label not in ("base", "finetuned"):
            raise RunDirError(f"evaluate: unknown model {label!r}; use base or finetuned")
        spec = cfg.model if label == "base" else str(run_dir / "model")
        if label == "finetuned" and not (run_dir / "model").exists():
            raise RunDirError(f"{run_dir / 'model'} not found: run `rct finetune {run_dir}` first")
        key = base_eval_key(cfg, run_dir) if label == "base" else None
        cached = cache_dir() / "base-eval" / key if key else None
        if cached is not None and (cached / "metrics.json").is_file():
            with run.stage("evaluate_base", redo=True) as info:
                copy_tree(cached, run_dir / "eval" / "base")
                out[label] = load_metrics(run_dir / "eval" / "base")
                info.update({"base_eval_cache": {"key": key, "hit": True}})
            continue
        lm = load_model(spec, cfg.model_options)
        with run.stage(f"evaluate_{label}", redo=True) as info:
            out[label] = evaluate_exp1(lm, dataset, cfg.eval, run_dir / "eval" / label, progress=progress)
            # the same cells asked in the reversed language, when asked (eval.reversed_queries)
            evaluate_reversed_language(lm, dataset, cfg.eval, cfg.data.reverse_training, run_dir / "eval" / label,
                                       progress=progress)
            info.update(lm.info["resolved"])
            if cached is not None:
                try:
                    copy_tree(run_dir / "eval" / "base", cached)
                    info["base_eval_cache"] = {"key": key, "hit": False}
                except OSError:  # a read-only cache is no reason to fail a run
                    pass
    return out


def stage_report(run_dir: Path) -> str:
    """Table 1 analog (Markdown) and Figure 4 analog (PNG + SVG) from the metrics."""
    from experiments.exp1.report import figure4, table1

    cfg = read_config(run_dir)
    metrics = {label: load_metrics(run_dir / "eval" / label) for label in ("base", "finetuned")
               if (run_dir / "eval" / label / "metrics.json").exists()}
    if not metrics:
        raise RunDirError(f"no metrics in {run_dir / 'eval'}: run `rct evaluate {run_dir}` first")
    reversed_metrics = {label: m for label in metrics
                        if (m := load_reversed_metrics(run_dir / "eval" / label)) is not None}
    text = table1(metrics, title=f"Experiment 1 ({cfg.preset} preset, {cfg.model})",
                  reversed_metrics=reversed_metrics)
    if cfg.preset == "smoke" and str(cfg.model).startswith("tiny:"):
        head, _, rest = text.partition("\n")
        text = (f"{head}\n\n> **A plumbing check, not a result.** The smoke preset finetunes a tiny random "
                "model for a few steps: it ranks every name about alike, in both directions, so these tables "
                "say nothing about the Reversal Curse. `rct exp1 --preset cpu` is the smallest real run.\n"
                f"{rest}")
    from interp.fileio import write_text

    write_text(run_dir / "table1.md", text)
    figure4(metrics, run_dir / "figure4")
    from experiments.core.run_index import write_index
    write_index(run_dir)
    return text


def run_stages(run_dir: Path, evaluate: tuple[str, ...] = ("base", "finetuned"), progress: bool = True) -> str:
    """The stages of a created run, each skipped when it finished earlier (finetuning goes on
    from its last checkpoint); returns the Table 1 text."""
    run = RunDir.existing(run_dir, "exp1")
    stage_generate(run.path)
    if not run.done("finetune"):
        stage_finetune(run.path, resume=True, progress=progress)
    todo = tuple(lbl for lbl in evaluate if not run.done(f"evaluate_{lbl}"))
    if todo:
        stage_evaluate(run.path, todo, progress=progress)
    return stage_report(run.path)


def run_all(cfg: Exp1Config, run_dir: Path, resume: bool = False, progress: bool = True, strict: bool = False) -> str:
    """Create the run (or continue it with ``resume``) and run every stage."""
    init_run(cfg, Path(run_dir), resume=resume, strict=strict)
    return run_stages(Path(run_dir), progress=progress)
