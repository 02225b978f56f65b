"""Experiment 1: fictitious people finetuned in one order, asked in both.

- ``run.py``: the config, presets and stages (generate, finetune, evaluate, report);
- ``schema.py``: the folder layout, subsets, orders and dataset types; ``words.json`` (read
  by ``words.py``): the word lists and templates; ``patterns.py``: descriptions read back and
  the lists checked; ``generator.py``: our generator; ``load.py``: the loader of the paper's
  folder layout; ``data.py``: all of these importable from one place; ``generic.py``: generic
  text about extra people (the from-scratch presets);
- ``evaluate.py``: the test items and their metrics, on :mod:`experiments.core.evaluate`;
- ``report.py``: the Table 1 and Figure 4 analogs; ``analyse.py``: ``rct analyse RUN``.

The run API is importable from the package: ``from experiments import exp1; exp1.preset("cpu")``.
"""

from experiments.exp1.run import (
    Exp1Config, data_dir, init_run, load_dataset, manifest, preset, read_config, run_all,
    run_stages, stage_evaluate, stage_finetune, stage_generate, stage_report, validate,
)

__all__ = [
    "Exp1Config", "data_dir", "init_run", "load_dataset", "manifest", "preset", "read_config",
    "run_all", "run_stages", "stage_evaluate", "stage_finetune", "stage_generate", "stage_report",
    "validate",
]
