"""Running a mitigation comparison (every cell an experiment 1 run, through the cell loop of
:mod:`experiments.sweeps.cells`) and collecting its finished cells for the report
(:mod:`experiments.mitigations.summary`, :mod:`experiments.mitigations.report`).

Example::

    run_mitigations(select(preset("smoke"), ["none", "word"]), Path("runs/mit-smoke"))
    print(report_mitigations(Path("runs/mit-smoke")))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from experiments import exp1
from experiments.core.environment import environment, resolved_compute
from experiments.core.rundir import RunDir, RunDirError
from experiments.mitigations.config import KIND, MitigationConfig
from experiments.sweeps.cells import run_cells
from interp.fileio import write_json


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
    from experiments.mitigations.report import write_report

    collected = collect(Path(out))
    if not collected["cells"]:
        raise RunDirError(f"no finished cells in {Path(out) / 'cells'}: run `rct mitigations --out {out}` first")
    return write_report(collected, Path(out))
