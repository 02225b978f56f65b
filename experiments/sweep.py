"""Sweeps over experiment 1: a grid of config values times finetuning seeds, each cell an
independent run directory.

The paper sweeps learning rate and batch size (its Figures 6 and 7) and finetunes three seeds
per model size (its Table 3: correct vs random name on reverse prompts, one t-test and one KS
test per run). A sweep directory holds::

    config.json         the base config, the grid and the seeds (manifest.json: versions, stages)
    cells.json          the cell list
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
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from experiments import exp1
from experiments.core.config import ConfigMixin, build
from experiments.core.environment import environment, resolved_compute
from experiments.core.rundir import RunDir
from experiments.exp1.evaluate import evaluate_exp1
from interp.fileio import write_json

SEED_KEY = "finetune.seed"


@dataclass(frozen=True)
class Cell:
    name: str
    overrides: dict[str, Any]  # dotted config key -> value, the seed included


@dataclass(frozen=True)
class SweepConfig(ConfigMixin):
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
            for v in values:  # unknown keys and values of the wrong type fail here, by name
                build(exp1.Exp1Config, self.base, assign={key: v})

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
        assign = dict(cell.overrides)
        if self.shared_data and not self.base.data_dir:
            assign["data_dir"] = str((Path(sweep_dir) / "data").resolve())
        return build(exp1.Exp1Config, self.base, assign=assign)


def _fmt(v: Any) -> str:
    s = f"{v:g}" if isinstance(v, float) else str(v)
    return "".join(c if c.isalnum() or c in ".-+" else "_" for c in s)


def init_sweep(sweep: SweepConfig, sweep_dir: Path, resume: bool = False) -> SweepConfig:
    """Create the sweep directory (or continue it with ``resume`` and the same config), after
    validating the base config; writes ``cells.json``."""
    exp1.validate(sweep.base)
    run = RunDir.open(sweep_dir, sweep, "sweep", resume=resume, data_dir=sweep.base.data_dir,
                      manifest={**environment(), **resolved_compute(sweep.base.model_options,
                                                                    sweep.base.finetune.precision)})
    if not (run.path / "cells.json").exists():
        write_json(run.path / "cells.json", [{"name": c.name, "overrides": c.overrides} for c in sweep.cells()])
    return sweep


def read_sweep(sweep_dir: Path) -> SweepConfig:
    return SweepConfig.from_dict(RunDir.existing(sweep_dir, "sweep").config_dict())


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
    return run_cells(sweep, sweep_dir, shard=shard, progress=progress, evaluate_base=evaluate_base)


class CellPlan(Protocol):
    """What :func:`run_cells` needs of a plan of cells: a :class:`SweepConfig` (a grid times
    seeds) or :class:`experiments.mitigations.MitigationConfig` (named conditions times seeds)."""

    base: exp1.Exp1Config

    def cells(self) -> list[Cell]: ...

    def cell_config(self, cell: Cell, sweep_dir: Path) -> exp1.Exp1Config: ...

    @property
    def shared_data(self) -> bool: ...

    @property
    def shared_base(self) -> bool: ...


def run_cells(plan: CellPlan, sweep_dir: Path, shard: tuple[int, int] | None = None,
              progress: bool = True, evaluate_base: bool = True, tag: str = "sweep") -> list[str]:
    """The cells of a created directory (``sweep_dir``, opened by :func:`init_sweep` or the
    like), one after another, each an experiment 1 run in ``cells/<name>/``: the shared
    dataset first (``plan.shared_data``), then the base model once (``plan.shared_base``:
    ``base/``; otherwise each cell evaluates its own), then every cell of this shard. A
    finished cell is skipped (its checkpoints are deleted when it finishes; ``model/`` is
    kept); an interrupted one continues from its last checkpoint. Returns
    the names of the cells finished now."""
    sweep_dir = Path(sweep_dir)
    run = RunDir(sweep_dir)
    cells = plan.cells()
    todo = _parse_shard(shard, len(cells))
    with run.stage("generate") as info:
        if info is not None and plan.shared_data and not plan.base.data_dir:
            from experiments.exp1.data import generate_exp1, write_exp1

            write_exp1(generate_exp1(plan.base.data), sweep_dir / "data")
    shared_base = evaluate_base and plan.shared_base
    if shared_base:
        with run.stage("evaluate_base") as info:
            if info is not None:
                from experiments.exp1.data import generate_exp1, load_exp1
                from interp.models import load_model

                cfg = plan.cell_config(cells[0], sweep_dir)
                lm = load_model(cfg.model, cfg.model_options)
                dataset = load_exp1(cfg.data_dir) if cfg.data_dir else generate_exp1(cfg.data)
                evaluate_exp1(lm, dataset, cfg.eval, sweep_dir / "base", progress=progress)
    done = []
    for n, i in enumerate(todo, 1):
        cell = cells[i]
        run_dir = sweep_dir / "cells" / cell.name
        if (run_dir / "config.json").exists() and RunDir(run_dir).done("evaluate_finetuned"):
            continue
        if progress:
            print(f"[{tag}] cell {n}/{len(todo)}: {cell.name}", flush=True)
        exp1.init_run(plan.cell_config(cell, sweep_dir), run_dir, resume=True)
        which = ("finetuned",) if shared_base or not evaluate_base else ("base", "finetuned")
        exp1.run_stages(run_dir, which, progress=progress)
        # a finished cell needs no resume state; its optimizer state is twice the model's size
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        done.append(cell.name)
    return done


def collect(sweep_dir: Path) -> dict[str, Any]:
    """Every finished cell's finetuned metrics, keyed by cell name, plus the base metrics."""
    from experiments.exp1.evaluate import load_metrics

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
