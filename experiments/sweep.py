"""Sweeps over experiment 1: a grid of config values times finetuning seeds, each cell an
independent run directory.

The paper sweeps learning rate and batch size (its Figures 6 and 7) and finetunes three seeds
per model size (its Table 3: correct vs random name on reverse prompts, one t-test and one KS
test per run). A sweep directory holds::

    sweep.json          the base config, the grid, the seeds and the cell list
    data/               the dataset, generated once when no grid key changes it
    base/               the base model evaluated once on that dataset (records + metrics), unless
                        the grid changes the model (then each cell evaluates its own base model)
    cells/<name>/       one experiment 1 run directory per cell (config, manifest, model, eval)
    summary.json, sweep.md, heatmap.png|svg or lines.png|svg   written by report_sweep

Cells run one after another; ``shard=(k, n)`` runs every n-th cell starting at k (1-based),
so n machines can share a sweep directory or each take their own copy. A finished cell is
skipped on ``resume``; an interrupted one continues from its last checkpoint.

Example::

    sweep = SweepConfig(preset("smoke"), grid={"finetune.lr": [1e-3, 3e-3]}, seeds=[0, 1])
    run_sweep(sweep, Path("runs/sweep-smoke"))
    print(report_sweep(Path("runs/sweep-smoke")))
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments import exp1
from experiments.exp1_eval import evaluate_exp1
from interp.fileio import write_json

SEED_KEY = "finetune.seed"


@dataclass(frozen=True)
class Cell:
    name: str
    overrides: dict[str, Any]  # dotted config key -> value, the seed included


@dataclass(frozen=True)
class SweepConfig:
    """Args:
        base: the experiment 1 config every cell starts from.
        grid: dotted config key (as for ``--set``) -> values; cells are the product.
        seeds: finetuning seeds (``finetune.seed``); every grid point runs each.
    """

    base: exp1.Exp1Config
    grid: dict[str, list[Any]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("sweep: give at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"sweep: repeated seeds {self.seeds}")
        if SEED_KEY in self.grid:
            raise ValueError(f"sweep: set seeds with --seeds, not a grid over {SEED_KEY}")
        for key, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"sweep: grid key {key!r} needs a non-empty list of values")
            if len(set(map(json.dumps, values))) != len(values):
                raise ValueError(f"sweep: grid key {key!r} repeats a value: {values}")
            self.base.override([f"{key}={json.dumps(values[0])}"])  # unknown keys fail here, by name

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base.to_dict(), "grid": self.grid, "seeds": self.seeds}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepConfig:
        return cls(exp1.Exp1Config.from_dict(d["base"]), dict(d.get("grid", {})), list(d.get("seeds", [0])))

    @property
    def shared_data(self) -> bool:
        """One dataset for all cells unless a grid key changes it."""
        return not any(k.startswith("data.") or k == "data_dir" for k in self.grid)

    @property
    def shared_base(self) -> bool:
        """One base-model evaluation for all cells, unless a grid key changes the data or the
        base model (a sweep over ``model`` evaluates each base model in its own cell)."""
        return self.shared_data and not any(k == "model" or k.startswith("model_options") for k in self.grid)

    def cells(self) -> list[Cell]:
        keys = list(self.grid)
        short = {k: k.rsplit(".", 1)[-1] for k in keys}
        if len(set(short.values())) < len(keys):
            short = {k: k for k in keys}
        out = []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            for seed in self.seeds:
                over = dict(zip(keys, values))
                over[SEED_KEY] = seed
                parts = [f"{short[k]}-{_fmt(v)}" for k, v in zip(keys, values)] + [f"seed-{seed}"]
                out.append(Cell("__".join(parts), over))
        return out

    def cell_config(self, cell: Cell, sweep_dir: Path) -> exp1.Exp1Config:
        sets = [f"{k}={json.dumps(v)}" for k, v in cell.overrides.items()]
        if self.shared_data and not self.base.data_dir:
            sets.append(f"data_dir={json.dumps(str((Path(sweep_dir) / 'data').resolve()))}")
        cfg = self.base.override(sets)
        return cfg


def _fmt(v: Any) -> str:
    s = f"{v:g}" if isinstance(v, float) else str(v)
    return "".join(c if c.isalnum() or c in ".-+" else "_" for c in s)


def init_sweep(sweep: SweepConfig, sweep_dir: Path, resume: bool = False) -> SweepConfig:
    """Write ``sweep.json``; an existing sweep is continued only with ``resume`` and the same
    grid and base config."""
    sweep_dir = Path(sweep_dir)
    path = sweep_dir / "sweep.json"
    if path.exists():
        old = SweepConfig.from_dict(json.loads(path.read_text())["config"])
        if not resume:
            raise FileExistsError(f"{sweep_dir} already holds a sweep; pass --resume to continue it "
                                  "or choose another --out")
        if old.to_dict() != sweep.to_dict():
            raise ValueError(f"{sweep_dir} holds a sweep with a different config; choose another --out")
        return old
    if sweep_dir.exists() and any(sweep_dir.iterdir()):
        raise FileExistsError(f"{sweep_dir} exists and is not empty; choose another --out")
    write_json(path, {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config": sweep.to_dict(),
                      "cells": [{"name": c.name, "overrides": c.overrides} for c in sweep.cells()]})
    return sweep


def read_sweep(sweep_dir: Path) -> SweepConfig:
    path = Path(sweep_dir) / "sweep.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: create the sweep with `rct sweep --out {sweep_dir} ...`")
    return SweepConfig.from_dict(json.loads(path.read_text())["config"])


def _parse_shard(shard: tuple[int, int] | None, n_cells: int) -> list[int]:
    if shard is None:
        return list(range(n_cells))
    k, n = shard
    if not (n >= 1 and 1 <= k <= n):
        raise ValueError(f"shard {k}/{n}: expected 1 <= k <= n")
    return list(range(k - 1, n_cells, n))


def run_sweep(sweep: SweepConfig, sweep_dir: Path, resume: bool = False,
              shard: tuple[int, int] | None = None, progress: bool = True,
              evaluate_base: bool = True) -> list[str]:
    """Run every cell (or this shard's cells); returns the names of the cells finished now."""
    sweep_dir = Path(sweep_dir)
    sweep = init_sweep(sweep, sweep_dir, resume=resume)
    cells = sweep.cells()
    if sweep.shared_data and not sweep.base.data_dir and not (sweep_dir / "data" / "facts.jsonl").exists():
        from experiments.exp1_data import generate_exp1, write_exp1

        write_exp1(generate_exp1(sweep.base.data), sweep_dir / "data")
    if evaluate_base and sweep.shared_base and not (sweep_dir / "base" / "metrics.json").exists():
        from interp.models import load_model

        cfg = sweep.cell_config(cells[0], sweep_dir)
        lm = load_model(cfg.model, cfg.model_options)
        evaluate_exp1(lm, exp1.load_dataset(cfg, sweep_dir), cfg.eval, sweep_dir / "base", progress=progress)
    done = []
    todo = _parse_shard(shard, len(cells))
    for n, i in enumerate(todo, 1):
        cell = cells[i]
        run_dir = sweep_dir / "cells" / cell.name
        if (run_dir / "eval" / "finetuned" / "metrics.json").exists():
            continue
        if progress:
            print(f"[sweep] cell {n}/{len(todo)}: {cell.name}", flush=True)
        cfg = exp1.init_run(sweep.cell_config(cell, sweep_dir), run_dir, resume=True)
        exp1.stage_generate(run_dir)
        if not (run_dir / "model" / "config.json").exists():
            exp1.stage_finetune(run_dir, resume=True, progress=progress)
        which = ("finetuned",) if sweep.shared_base or not evaluate_base else ("base", "finetuned")
        exp1.stage_evaluate(run_dir, which, progress=progress)
        exp1.stage_report(run_dir)
        done.append(cell.name)
    return done


def collect(sweep_dir: Path) -> dict[str, Any]:
    """Every finished cell's finetuned metrics, keyed by cell name, plus the base metrics."""
    from experiments.exp1_eval import load_metrics

    sweep_dir = Path(sweep_dir)
    sweep = read_sweep(sweep_dir)
    rows = []
    for cell in sweep.cells():
        path = sweep_dir / "cells" / cell.name / "eval" / "finetuned"
        if (path / "metrics.json").exists():
            rows.append({"name": cell.name, "overrides": cell.overrides, "metrics": load_metrics(path)})
    base = load_metrics(sweep_dir / "base") if (sweep_dir / "base" / "metrics.json").exists() else None
    return {"config": sweep.to_dict(), "n_cells": len(sweep.cells()), "cells": rows, "base": base}


def report_sweep(sweep_dir: Path) -> str:
    """``sweep.md``, ``summary.json`` and the figures from the finished cells."""
    from experiments.sweep_report import write_sweep_report

    return write_sweep_report(collect(sweep_dir), Path(sweep_dir))
