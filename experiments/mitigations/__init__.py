"""Mitigations of the Reversal Curse compared on experiment 1: named conditions times seeds.

A condition is a name and the experiment 1 settings it changes (dotted keys, as for
``--set``): ``none`` changes nothing, ``word`` sets ``data.reverse_training: word``, and so on
(see docs/mitigations.md). Every condition runs with every seed (``finetune.seed``), each cell
an independent experiment 1 run, through the cell loop of :mod:`experiments.sweeps.cells`. A
mitigation directory holds::

    config.json       MitigationConfig: the base config, the conditions, the seeds
    manifest.json     versions, device and precision, finished stages
    cells.json        the cells: name, condition, seed, overrides
    test_files.json   per condition, a content hash of what evaluating its base model reads
                      (the test lines of every evaluated cell, their controls, the model and
                      the evaluation settings); one hash for all -> the base model once
    base/             the base model evaluated once (records + metrics), when the hashes agree
    cells/<condition>__seed-<s>/   one experiment 1 run directory per cell; each generates
                      its own data (the conditions change it) and, without base/, evaluates
                      its own base model
    mitigations.md, summary.json, mitigations.png|svg   written by report_mitigations

Cells run seed by seed (every condition of the first seed, then the next seed), so an
interrupted comparison already holds whole seeds. ``shard=(k, n)`` runs every n-th cell from
k (1-based); ``resume`` skips finished cells and continues an interrupted one.

Modules, along the ideas:

- ``config.py``: :class:`MitigationConfig` (conditions x seeds), :func:`preset`, :func:`select`;
- ``run.py``: creating and running a mitigation directory, :func:`collect`,
  :func:`report_mitigations`;
- ``summary.py`` (the statistics over facts) and ``report.py`` (table, reading, figure);
- ``reverse.py``: the reverse-training transforms and the reversed training copies;
- ``reverse_queries.py`` and ``reverse_eval.py``: the queries in the reversed language and
  their evaluation;
- ``exp1_hooks.py``: the only module :mod:`experiments.exp1` imports (reversed copies,
  evaluation in the reversed language, its metrics).

The run API is importable from the package (loaded on first use, so that importing
``exp1_hooks`` from experiment 1 loads nothing else of the package):
``from experiments.mitigations import MitigationConfig, preset, select, run_mitigations``.

Example::

    cfg = select(preset("smoke"), ["none", "word"])
    run_mitigations(cfg, Path("runs/mit-smoke"))
    print(report_mitigations(Path("runs/mit-smoke")))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from experiments.mitigations.config import (
        GENERATOR_KEYS, KIND, ConditionCell, MitigationConfig, base_eval_hash, preset, select,
    )
    from experiments.mitigations.run import (
        collect, init_mitigations, read_mitigations, report_mitigations, run_mitigations,
    )

# public name -> the module of this package that defines it
_EXPORTS = {
    "GENERATOR_KEYS": "config", "KIND": "config", "ConditionCell": "config", "MitigationConfig": "config",
    "base_eval_hash": "config", "preset": "config", "select": "config",
    "collect": "run", "init_mitigations": "run", "read_mitigations": "run", "report_mitigations": "run",
    "run_mitigations": "run",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    """The run API, imported from its module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
