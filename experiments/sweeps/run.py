"""A sweep: its config (a grid of config values times finetuning seeds), creating and running
its directory through the cell loop of :mod:`experiments.sweeps.cells`, and collecting the
finished cells for :mod:`experiments.sweeps.report` (the layout is in :mod:`experiments.sweeps`).

Example::

    sweep = SweepConfig(preset("smoke"), grid={"finetune.lr": [1e-3, 3e-3]}, seeds=[0, 1])
    run_sweep(sweep, Path("runs/sweep-smoke"))
    print(report_sweep(Path("runs/sweep-smoke")))
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments import exp1
from experiments.core.config import ConfigMixin, build
from experiments.core.environment import environment, resolved_compute
from experiments.core.rundir import RunDir
from experiments.sweeps.cells import SEED_KEY, Cell, run_cells
from interp.fileio import write_json


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


def run_sweep(sweep: SweepConfig, sweep_dir: Path, resume: bool = False,
              shard: tuple[int, int] | None = None, progress: bool = True,
              evaluate_base: bool = True) -> list[str]:
    """Run every cell (or this shard's cells); returns the names of the cells finished now."""
    sweep_dir = Path(sweep_dir)
    sweep = init_sweep(sweep, sweep_dir, resume=resume)
    return run_cells(sweep, sweep_dir, shard=shard, progress=progress, evaluate_base=evaluate_base)


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
    from experiments.sweeps.report import write_sweep_report

    from experiments.core.run_index import write_index

    text = write_sweep_report(collect(sweep_dir), Path(sweep_dir))
    write_index(sweep_dir)
    return text
