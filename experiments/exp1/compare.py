"""``rct compare CURSED_RUN CURED_RUN``: a cursed experiment 1 model against a cured one.

:func:`check_runs` refuses, in one line and before loading any model, two runs that differ in
their base model, their facts or their finetuning seed, or that have no finetuned model;
:func:`run_compare` then loads both finetuned models and runs
:func:`analysis.compare.compare_models` on the cursed run's query sets, writing
``OUT/summary.json``, ``summary.md``, figures and ``compare.html`` (default ``OUT``:
``CURED_RUN/compare``). The cells of ``rct mitigations`` are such runs: ``cells/none__seed-0`` is
cursed, ``cells/entity__seed-0`` and ``cells/names__seed-0`` are cured (same base, facts and seed).

Example::

    from experiments.exp1.compare import run_compare
    s = run_compare("runs/mit-cpu/cells/none__seed-0", "runs/mit-cpu/cells/entity__seed-0")
    s["patching"]["cured->cursed"]["p2d_reverse"]["restoring"][:3]

With the ``direction`` section the base model named in the runs' config is loaded too.

CLI: ``rct compare CURSED CURED [--out DIR] [--n-facts 20] [--sections patching,grafting,knockout,probes,direction]
[--layers 0,5,10 | --layer-stride 3] [--window 5] [--every-set] [--device cpu] [--quiet]``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from analysis.compare import SECTIONS, CompareConfig, compare_models


class RunMismatch(ValueError):
    """Two runs that cannot be compared (one line saying why)."""


def _run_config(run: Path) -> dict[str, Any]:
    path = run / "config.json"
    if not path.is_file():
        raise RunMismatch(f"{run}: not a run directory (no config.json)")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RunMismatch(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
    for key in ("model", "finetune", "data"):
        if key not in cfg:
            raise RunMismatch(f"{path}: no {key!r} field: not an experiment 1 run")
    if not (run / "model" / "config.json").is_file():
        raise RunMismatch(f"{run}: no finetuned model ({run / 'model'} is missing): finish the run first")
    return cfg


def _dataset(run: Path, cfg: dict[str, Any]) -> Any:
    from experiments.exp1.data import load_exp1

    return load_exp1(Path(cfg["data_dir"]) if cfg.get("data_dir") else run / "data")


def check_runs(cursed: str | Path, cured: str | Path) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """Both runs' configs and the cursed run's dataset; :class:`RunMismatch` (one line) when
    they differ in base model, facts or finetuning seed, or when either lacks its model."""
    cursed, cured = Path(cursed), Path(cured)
    a, b = _run_config(cursed), _run_config(cured)
    if a["model"] != b["model"]:
        raise RunMismatch(f"different base models: {cursed} has {a['model']!r}, {cured} has {b['model']!r}")
    sa, sb = a["finetune"].get("seed"), b["finetune"].get("seed")
    if sa != sb:
        raise RunMismatch(f"different finetuning seeds: {cursed} has {sa}, {cured} has {sb}")
    ds_a, ds_b = _dataset(cursed, a), _dataset(cured, b)
    fa = [(f.fact_id, f.name, f.description, f.subset) for f in ds_a.facts]
    fb = [(f.fact_id, f.name, f.description, f.subset) for f in ds_b.facts]
    if fa != fb:
        diff = next((i for i, (x, y) in enumerate(zip(fa, fb)) if x != y), min(len(fa), len(fb)))
        what = (f"fact {diff}: {fa[diff][1]!r} vs {fb[diff][1]!r}" if diff < min(len(fa), len(fb))
                else f"{len(fa)} vs {len(fb)} facts")
        raise RunMismatch(f"different facts: {cursed} and {cured} differ at {what}")
    return a, b, ds_a


def run_compare(cursed: str | Path, cured: str | Path, out: str | Path | None = None,
                config: CompareConfig | None = None, device: str = "cpu",
                progress: bool = True) -> dict[str, Any]:
    """Check the runs, load both finetuned models and compare them; returns the summary."""
    from analysis.compare_report import write_report
    from interp.models import load_model

    cursed, cured = Path(cursed), Path(cured)
    a, _, ds = check_runs(cursed, cured)
    out = Path(out) if out is not None else cured / "compare"
    opts = dict(a.get("model_options") or {})
    opts["device"] = device
    m_cursed = load_model(str(cursed / "model"), **_load_kw(opts))
    m_cured = load_model(str(cured / "model"), **_load_kw(opts))
    cfg = config or CompareConfig()
    m_base = load_model(a["model"], **_load_kw(opts)) if "direction" in cfg.sections else None
    summary = compare_models(m_cursed, m_cured, ds, None, cfg, progress, base=m_base)
    summary["runs"] = {"cursed": str(cursed), "cured": str(cured), "base_model": a["model"]}

    write_report(summary, out)
    from experiments.core.run_index import refresh_parent
    refresh_parent(out)
    return summary


def _load_kw(opts: dict[str, Any]) -> dict[str, Any]:
    return {k: opts[k] for k in ("device", "dtype") if k in opts}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``rct compare`` (shared by the ``rct`` subcommand and :func:`main`)."""
    p.add_argument("cursed", type=Path, help="run whose model fails the reverse query (e.g. cells/none__seed-0)")
    p.add_argument("cured", type=Path, help="run whose model answers it (e.g. cells/entity__seed-0)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: CURED/compare)")
    p.add_argument("--n-facts", type=int, default=CompareConfig.n_facts,
                   help="facts per query set (default %(default)s)")
    p.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of %(default)s")
    p.add_argument("--layers", default=None, help="patch / knock out around these layers only (comma-separated)")
    p.add_argument("--layer-stride", type=int, default=CompareConfig().patch.layer_stride,
                   help="patch / knock out windows centred on every k-th layer (default %(default)s)")
    p.add_argument("--window", type=int, default=None, help="MLP / attention patching window (default 5)")
    p.add_argument("--every-set", action="store_true",
                   help="also graft, and patch cursed->cured, on the trained sets (default: the reverse "
                        "sets only, where there is a cure to locate; about 10 more minutes on 2 cores)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="rct compare", description="Compare a cursed exp1 run with a cured one")
    add_arguments(p)
    return run_args(p.parse_args(argv))


def run_args(a: argparse.Namespace) -> int:
    """Run ``rct compare`` with parsed arguments; bad input: one line, exit status 2."""
    try:
        cfg = CompareConfig(n_facts=a.n_facts, sections=tuple(x for x in a.sections.split(",") if x))
        if a.every_set:
            cfg = replace(cfg, necessity_sets=cfg.sets, graft_sets=cfg.sets)
        cfg = replace(cfg, patch=replace(cfg.patch, layer_stride=a.layer_stride),
                      knockout=replace(cfg.knockout, layer_stride=a.layer_stride))
        if a.layers:
            try:
                layers = tuple(int(x) for x in a.layers.split(","))
            except ValueError:
                raise ValueError(f"--layers: expected comma-separated integers, got {a.layers!r}") from None
            cfg = replace(cfg, patch=replace(cfg.patch, layers=layers), knockout=replace(cfg.knockout, layers=layers))
        if a.window:
            cfg = replace(cfg, patch=replace(cfg.patch, window=a.window))
        s = run_compare(a.cursed, a.cured, a.out, cfg, device=a.device, progress=not a.quiet)
    except ValueError as e:  # RunMismatch, a bad option, a missing query set, a layer out of range
        print(f"rct compare: {e}")
        return 2
    print(f"wrote {Path(a.out) if a.out else a.cured / 'compare'} "
          f"({', '.join(f'{k} {v:.0f} s' for k, v in s['timing_s'].items())})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
