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

Modules: ``cells.py`` the cell loop (shared with :mod:`experiments.mitigations`), ``run.py``
the config, running and collecting, ``report.py`` the tables and figures. The run API is
importable from the package: ``from experiments.sweeps import SweepConfig, run_sweep``.

Example::

    from experiments.exp1 import preset
    sweep = SweepConfig(preset("smoke"), grid={"finetune.lr": [1e-3, 3e-3]}, seeds=[0, 1])
    run_sweep(sweep, Path("runs/sweep-smoke"))
    print(report_sweep(Path("runs/sweep-smoke")))
"""

from experiments.sweeps.cells import SEED_KEY, Cell, CellPlan, run_cells
from experiments.sweeps.run import SweepConfig, collect, init_sweep, read_sweep, report_sweep, run_sweep

__all__ = [
    "SEED_KEY", "Cell", "CellPlan", "SweepConfig", "collect", "init_sweep", "read_sweep", "report_sweep",
    "run_cells", "run_sweep",
]
