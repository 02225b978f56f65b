"""Mitigations of the Reversal Curse compared on experiment 1: named conditions times seeds.

A condition is a name and the experiment 1 settings it changes (dotted keys, as for
``--set``): ``none`` changes nothing, ``word`` sets ``data.reverse_training: word``, and so on
(see docs/mitigations.md). Every condition runs with every seed (``finetune.seed``), each cell
an independent experiment 1 run, through the cell loop of :mod:`experiments.sweep`. A
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

Example::

    cfg = select(preset("smoke"), ["none", "word"])
    run_mitigations(cfg, Path("runs/mit-smoke"))
    print(report_mitigations(Path("runs/mit-smoke")))
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

from experiments import exp1
from experiments.core.config import ConfigError, ConfigMixin, build, load_preset
from experiments.core.environment import environment, resolved_compute
from experiments.core.rundir import RunDir, RunDirError
from experiments.sweep import SEED_KEY, Cell, run_cells
from interp.fileio import write_json

KIND = "mitigations"
# data settings that generate the dataset: no effect on an existing folder (data_dir)
GENERATOR_KEYS = ("data.n_facts", "data.n_paraphrases", "data.n_test_templates", "data.seed")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]*(_[A-Za-z0-9.+-]+)*")


@dataclass(frozen=True)
class ConditionCell(Cell):
    """A cell of the comparison: one condition with one seed."""

    condition: str
    seed: int


@dataclass(frozen=True)
class MitigationConfig(ConfigMixin):
    """Args:
        base: the experiment 1 config every condition starts from.
        conditions: condition name -> the settings it changes (dotted key -> value, as for
            ``--set``; ``{}`` for none), in display order. Names are folder names: letters,
            digits, ``.``, ``+``, ``-`` and single ``_``.
        seeds: finetuning seeds (``finetune.seed``); every condition runs each.
    """

    base: exp1.Exp1Config
    conditions: dict[str, dict[str, Any]] = field(default_factory=lambda: {"none": {}})
    seeds: list[int] = field(default_factory=lambda: [0])

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ConfigError("mitigations: give at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"mitigations: repeated seeds {list(self.seeds)}")
        if not self.conditions:
            raise ConfigError("mitigations: give at least one condition")
        for name, over in self.conditions.items():
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise ConfigError(f"mitigations: condition name {name!r}: use letters, digits, '.', '+', "
                                  "'-' and single '_' (it names a folder)")
            if not isinstance(over, dict):
                raise ConfigError(f"mitigations: condition {name!r}: expected a mapping of dotted config "
                                  f"keys to values, e.g. {{data.reverse_training: word}}; got {over!r}")
            for key, value in over.items():
                if key == SEED_KEY:
                    raise ConfigError(f"mitigations: condition {name!r}: set {SEED_KEY} with the seeds "
                                      "(--seeds), not in a condition")
                data_dir = over.get("data_dir", self.base.data_dir)
                if data_dir and key in GENERATOR_KEYS:
                    raise ConfigError(f"mitigations: condition {name!r}: {key} has no effect on an existing "
                                      f"dataset (data_dir {data_dir}); drop it or generate the data")
                try:  # an unknown key or a value of the wrong type fails here, named
                    build(exp1.Exp1Config, self.base, assign={key: value}, where=f"{key}={value!r}")
                except ConfigError as e:
                    raise ConfigError(f"mitigations: condition {name!r}: {e}") from None
            try:
                build(exp1.Exp1Config, self.base, assign=over, where="its settings together")
            except ConfigError as e:
                raise ConfigError(f"mitigations: condition {name!r}: {e}") from None

    # ------------------------------------------------------------------ the cells

    def cells(self) -> list[ConditionCell]:
        """Seed by seed, every condition in order: ``<condition>__seed-<s>``."""
        return [ConditionCell(f"{name}__seed-{seed}", {**over, SEED_KEY: seed}, name, seed)
                for seed in self.seeds for name, over in self.conditions.items()]

    def cell_config(self, cell: Cell, sweep_dir: Path | None = None) -> exp1.Exp1Config:
        return build(exp1.Exp1Config, self.base, assign=cell.overrides)

    def condition_config(self, name: str) -> exp1.Exp1Config:
        """The experiment 1 config of a condition at the first seed."""
        return self.cell_config(next(c for c in self.cells() if c.condition == name))

    @property
    def shared_data(self) -> bool:
        """Never one dataset for all: every cell generates (or reads) its own."""
        return False

    @cached_property
    def test_hashes(self) -> dict[str, str]:
        """Condition -> :func:`base_eval_hash` of its config."""
        return {name: base_eval_hash(self.condition_config(name)) for name in self.conditions}

    @property
    def shared_base(self) -> bool:
        """One base-model evaluation for all cells when every condition's base evaluation
        would read the same test lines, controls, model and settings (one hash)."""
        return len(set(self.test_hashes.values())) == 1


def base_eval_hash(cfg: exp1.Exp1Config) -> str:
    """SHA-256 of what evaluating the base model of ``cfg`` reads: the lines of every
    evaluated test cell with their random-name controls and rank candidates
    (:func:`experiments.exp1.evaluate.exp1_items`, from the generated data or ``data_dir``),
    the model and its options, and the evaluation settings (``eval.reversed_queries`` aside:
    the shared base model is asked in natural order only)."""
    from experiments.exp1.data import generate_exp1, load_exp1
    from experiments.exp1.evaluate import exp1_items

    dataset = load_exp1(cfg.data_dir) if cfg.data_dir else generate_exp1(cfg.data)
    settings = {k: v for k, v in cfg.eval.to_dict().items() if k != "reversed_queries"}
    blob = {"items": exp1_items(dataset, cfg.eval), "model": cfg.model,
            "model_options": cfg.model_options.to_dict(), "eval": settings}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def preset(name: str) -> MitigationConfig:
    """``experiments/presets/mitigations/<name>.yaml``."""
    return load_preset(MitigationConfig, KIND, name)


def select(cfg: MitigationConfig, names: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
           base: exp1.Exp1Config | None = None) -> MitigationConfig:
    """A copy with only the conditions ``names`` (in that order), other ``seeds`` or another
    ``base``; an unknown condition name is a :class:`ConfigError` with a "did you mean"."""
    conditions = dict(cfg.conditions)
    if names is not None:
        names = [n.strip() for n in names if n.strip()]
        if not names:
            raise ConfigError("--conditions: name at least one condition")
        for n in names:
            if n not in conditions:
                close = difflib.get_close_matches(n, list(conditions), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"--conditions: unknown condition {n!r}; the conditions are: "
                                  f"{', '.join(conditions)}{hint}")
        if len(set(names)) != len(names):
            raise ConfigError(f"--conditions: a condition is named twice in {','.join(names)}")
        conditions = {n: conditions[n] for n in names}
    return replace(cfg, conditions=conditions, seeds=list(cfg.seeds if seeds is None else seeds),
                   base=cfg.base if base is None else base)


# ---------------------------------------------------------------------- running


def init_mitigations(cfg: MitigationConfig, out: Path, resume: bool = False) -> RunDir:
    """Validate every condition's config, then create ``out`` (or continue it with
    ``resume`` and the same config); writes ``cells.json`` and ``test_files.json``."""
    for name in cfg.conditions:
        exp1.validate(cfg.condition_config(name))
    run = RunDir.open(out, cfg, KIND, resume=resume, data_dir=cfg.base.data_dir,
                      manifest={**environment(), **resolved_compute(cfg.base.model_options,
                                                                    cfg.base.finetune.precision)})
    if not (run.path / "cells.json").exists():
        write_json(run.path / "cells.json", [{"name": c.name, "condition": c.condition, "seed": c.seed,
                                              "overrides": c.overrides} for c in cfg.cells()])
    if not (run.path / "test_files.json").exists():
        write_json(run.path / "test_files.json", {"shared_base": cfg.shared_base, "hashes": cfg.test_hashes})
    return run


def run_mitigations(cfg: MitigationConfig, out: Path, resume: bool = False,
                    shard: tuple[int, int] | None = None, progress: bool = True) -> list[str]:
    """Run every cell (or this shard's); returns the names of the cells finished now."""
    out = Path(out)
    init_mitigations(cfg, out, resume=resume)
    return run_cells(cfg, out, shard=shard, progress=progress, tag=KIND)


def read_mitigations(out: Path) -> MitigationConfig:
    return MitigationConfig.from_dict(RunDir.existing(out, KIND).config_dict())


# ---------------------------------------------------------------------- collecting


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _facts(cfg: exp1.Exp1Config, run_dir: Path) -> dict[int, str]:
    """fact_id -> name in the dataset of a cell (its folder, else generated again)."""
    from experiments.exp1.data import generate_exp1

    folder = exp1.data_dir(cfg, run_dir)
    dataset = exp1.load_dataset(cfg, run_dir) if (folder / "facts.jsonl").exists() or cfg.data_dir \
        else generate_exp1(cfg.data)
    return {f.fact_id: f.name for f in dataset.facts}


def _slim(records: list[dict[str, Any]], names: dict[int, str]) -> list[dict[str, Any]]:
    """What the report reads of each record, the fact named (so facts pair across datasets)."""
    keep = ("file", "exact", "target_logprob", "random_logprob", "normalised_rank")
    return [{"fact": names[r["fact_id"]], **{k: r[k] for k in keep if k in r}} for r in records]


def collect(out: Path) -> dict[str, Any]:
    """The records of every finished cell (finetuned model; natural order and, where asked,
    the reversed language) and of the shared base model, each record reduced to its cell,
    fact name, exact match and log-probs."""
    out = Path(out)
    cfg = read_mitigations(out)
    cells = []
    for cell in cfg.cells():
        run_dir = out / "cells" / cell.name
        ev = run_dir / "eval" / "finetuned"
        if not (ev / "metrics.json").exists():
            continue
        names = _facts(cfg.cell_config(cell), run_dir)
        row: dict[str, Any] = {"name": cell.name, "condition": cell.condition, "seed": cell.seed,
                               "records": _slim(_records(ev / "records.jsonl"), names), "reversed": None}
        if (ev / "reversed_metrics.json").exists():
            mode = json.loads((ev / "reversed_metrics.json").read_text())
            row["reversed"] = {"mode": mode["mode"], "query_mode": mode["query_mode"],
                               "records": _slim(_records(ev / "reversed_records.jsonl"), names)}
        cells.append(row)
    base = None
    if (out / "base" / "records.jsonl").exists():
        first = cfg.cells()[0]
        base = _slim(_records(out / "base" / "records.jsonl"),
                     _facts(cfg.cell_config(first), out / "cells" / first.name))
    return {"config": cfg.to_dict(), "n_cells": len(cfg.cells()), "cells": cells, "base": base}


def report_mitigations(out: Path) -> str:
    """``mitigations.md``, ``summary.json`` and ``mitigations.png|svg`` from the finished cells."""
    from experiments.mitigations_report import write_report

    collected = collect(Path(out))
    if not collected["cells"]:
        raise RunDirError(f"no finished cells in {Path(out) / 'cells'}: run `rct mitigations --out {out}` first")
    return write_report(collected, Path(out))
