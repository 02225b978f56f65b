"""A mitigation comparison's config: named conditions (each the experiment 1 settings it
changes) times seeds, with the checks of a condition, its cells and the base-evaluation hash
(the layout of a mitigation directory is in :mod:`experiments.mitigations`).

Example::

    cfg = select(preset("smoke"), ["none", "word"])
    [c.name for c in cfg.cells()]  # ['none__seed-0', 'word__seed-0']
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
from experiments.sweeps.cells import SEED_KEY, Cell

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

