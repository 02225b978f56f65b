"""The cell loop shared by sweeps and mitigation comparisons: a plan of cells, each an
independent experiment 1 run directory under ``cells/<name>/``.

A plan (:class:`CellPlan`) is a :class:`experiments.sweeps.SweepConfig` (a grid times seeds)
or a :class:`experiments.mitigations.MitigationConfig` (named conditions times seeds); both
set the finetuning seed through :data:`SEED_KEY`. :func:`run_cells` runs the cells of a
directory one after another; ``shard=(k, n)`` runs every n-th cell starting at k (1-based).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from experiments import exp1
from experiments.core.rundir import RunDir
from experiments.exp1.evaluate import evaluate_exp1

SEED_KEY = "finetune.seed"


@dataclass(frozen=True)
class Cell:
    name: str
    overrides: dict[str, Any]  # dotted config key -> value, the seed included


def _parse_shard(shard: tuple[int, int] | None, n_cells: int) -> list[int]:
    if shard is None:
        return list(range(n_cells))
    k, n = shard
    if not (n >= 1 and 1 <= k <= n):
        raise ValueError(f"shard {k}/{n}: expected 1 <= k <= n")
    return list(range(k - 1, n_cells, n))


class CellPlan(Protocol):
    """What :func:`run_cells` needs of a plan of cells: a :class:`experiments.sweeps.SweepConfig`
    (a grid times seeds) or :class:`experiments.mitigations.MitigationConfig` (named conditions
    times seeds)."""

    base: exp1.Exp1Config

    def cells(self) -> list[Cell]: ...

    def cell_config(self, cell: Cell, sweep_dir: Path) -> exp1.Exp1Config: ...

    @property
    def shared_data(self) -> bool: ...

    @property
    def shared_base(self) -> bool: ...


def run_cells(plan: CellPlan, sweep_dir: Path, shard: tuple[int, int] | None = None,
              progress: bool = True, evaluate_base: bool = True, tag: str = "sweep") -> list[str]:
    """The cells of a created directory (``sweep_dir``, opened by
    :func:`experiments.sweeps.init_sweep` or the like), one after another, each an experiment 1
    run in ``cells/<name>/``: the shared dataset first (``plan.shared_data``), then the base
    model once (``plan.shared_base``: ``base/``; otherwise each cell evaluates its own), then
    every cell of this shard. A finished cell is skipped (its checkpoints are deleted when it
    finishes; ``model/`` is kept); an interrupted one continues from its last checkpoint.
    Returns the names of the cells finished now."""
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
                from experiments.exp1.run import base_eval_key, copy_tree
                from interp.cache import cache_dir
                from interp.models import load_model

                cfg = plan.cell_config(cells[0], sweep_dir)
                key = base_eval_key(cfg, sweep_dir, "shared")
                cached = cache_dir() / "base-eval" / key if key else None
                if cached is not None and (cached / "metrics.json").is_file():
                    copy_tree(cached, sweep_dir / "base")  # the same model, data and settings: the same result
                    info["base_eval_cache"] = {"key": key, "hit": True}
                else:
                    lm = load_model(cfg.model, cfg.model_options)
                    dataset = load_exp1(cfg.data_dir) if cfg.data_dir else generate_exp1(cfg.data)
                    evaluate_exp1(lm, dataset, cfg.eval, sweep_dir / "base", progress=progress)
                    if cached is not None:
                        try:
                            copy_tree(sweep_dir / "base", cached)
                            info["base_eval_cache"] = {"key": key, "hit": False}
                        except OSError:  # a read-only cache is no reason to fail a run
                            pass
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
