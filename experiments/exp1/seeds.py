"""``rct exp1-seeds RUN... --out DIR``: experiment 1 runs that differ only in their finetuning
seed, pooled (:mod:`analysis.exp1_seeds`).

Every run must be a finished experiment 1 run (``eval/finetuned/metrics.json`` and
``records.jsonl``) whose config equals the first run's except for ``finetune.seed`` and
``finetune.snapshots`` (which saves weights, and changes no result); any other difference is
refused with the field named. Writes ``DIR/summary.json`` and ``DIR/summary.md`` (atomically)
and ``DIR/reverse.png|svg`` (the reverse preference per seed and pooled, with the margin).

Example::

    rct exp1 --preset cpu --set finetune.seed=1 --out runs/exp1-cpu-s1      # and seed 2
    rct exp1-seeds runs/exp1-cpu runs/exp1-cpu-s1 runs/exp1-cpu-s2 --out runs/exp1-cpu-seeds --margin 1
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from analysis.exp1_seeds import pool_runs, seeds_markdown
from experiments.core.config import first_difference
from interp.errors import RctError
from interp.fileio import write_json, write_text

FREE = {("finetune", "seed"), ("finetune", "snapshots")}


def read_run(run: Path) -> dict[str, Any]:
    """One run's seed, config, finetuned cells and exact match per fact."""
    cfg_path, metrics, records = run / "config.json", run / "eval/finetuned/metrics.json", run / "eval/finetuned/records.jsonl"
    for p in (cfg_path, metrics, records):
        if not p.exists():
            raise RctError(f"exp1-seeds: {run} is not a finished experiment 1 run ({p} is missing)")
    try:  # with today's defaults filled in, so that a run made before a field existed compares equal
        from experiments import exp1

        cfg = exp1.read_config(run).to_dict()
    except Exception:  # noqa: BLE001 - an unreadable config is compared as written
        cfg = json.loads(cfg_path.read_text())
    hits: dict[str, dict[int, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for n, line in enumerate(records.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            hits[r["file"]][int(r["fact_id"])].append(bool(r["exact"]))
        except (ValueError, KeyError) as e:
            raise RctError(f"exp1-seeds: {records} line {n}: not a record ({e})") from None
    exact = {cell: {f: sum(v) / len(v) for f, v in facts.items()} for cell, facts in hits.items()}
    return {"seed": cfg.get("finetune", {}).get("seed"), "config": cfg, "path": str(run),
            "cells": json.loads(metrics.read_text())["cells"], "exact_per_fact": exact}


def check_same(runs: Sequence[dict[str, Any]]) -> None:
    """Refuse runs whose configs differ in anything but the finetuning seed (and snapshots)."""
    def free(cfg: dict[str, Any]) -> dict[str, Any]:  # the fields allowed to differ, set alike
        return {**cfg, "finetune": {**cfg.get("finetune", {}), **{k: None for _, k in FREE}}}

    for r in runs[1:]:
        hit = first_difference(free(runs[0]["config"]), free(r["config"]))
        if hit:
            key, first, other = hit
            raise RctError(f"exp1-seeds: {r['path']} differs from {runs[0]['path']} in {key} "
                           f"({other!r} vs {first!r}); pool runs that differ only in finetune.seed")
    seeds = [r["seed"] for r in runs]
    if len(set(seeds)) != len(seeds):
        raise RctError(f"exp1-seeds: two runs have the same finetuning seed ({seeds})")


def reverse_figure(s: dict[str, Any], out: Path) -> None:
    """The reverse preference (correct - random, nats) per seed and pooled, with +-margin."""
    from matplotlib.figure import Figure

    from analysis.figures import save

    cells = [(c, e) for c, e in s["cells"].items() if "tost" in e]
    fig = Figure(figsize=(7, 1.6 + 0.6 * len(cells)))
    ax = fig.subplots()
    for k, (_, e) in enumerate(cells):
        d = e["diff"]
        ax.scatter(d["per_seed"], [k + 0.15] * len(d["per_seed"]), s=14, color="grey", label="one seed" if k == 0 else None)
        i = d["interval"]
        ax.errorbar([d["mean"]], [k], xerr=[[d["mean"] - i["ci_low"]], [i["ci_high"] - d["mean"]]], fmt="o",
                    color="C0", capsize=3, label="pooled, 95% CI" if k == 0 else None)
    m = s["margin_nats"]
    ax.axvspan(-m, m, color="C2", alpha=0.12, label=f"+-{m:g} nats (equivalence margin)")
    ax.axvline(0, color="black", lw=0.5)
    ax.set_yticks(range(len(cells)), [e["label"] for _, e in cells], fontsize=8)
    ax.set_ylim(-0.5, len(cells) - 0.3)
    ax.set_xlabel("log-prob of the correct name minus a random trained name (nats)")
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    fig.tight_layout()
    save(fig, out, "reverse")


def pool_dirs(dirs: Sequence[Path], out: Path, margin: float = 1.0) -> dict[str, Any]:
    """Read, check, pool and write; returns the summary."""
    if len(dirs) < 2:
        raise RctError("exp1-seeds: give at least two runs (one per finetuning seed)")
    if out.exists() and not out.is_dir():
        raise RctError(f"exp1-seeds: --out {out} is a file")
    runs = [read_run(Path(d)) for d in dirs]
    check_same(runs)
    s = pool_runs(runs, margin)
    s["runs"] = [r["path"] for r in runs]
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "summary.json", s)
    write_text(out / "summary.md", seeds_markdown(s))
    reverse_figure(s, out)
    return s


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", type=Path, help="experiment 1 run folders, one per finetuning seed")
    p.add_argument("--out", type=Path, required=True, help="folder for summary.json, summary.md, reverse.png")
    p.add_argument("--margin", type=float, default=1.0,
                   help="equivalence margin in nats for the reverse preference (default %(default)s)")


def run_args(args: argparse.Namespace) -> int:
    if not args.margin > 0:
        raise RctError(f"--margin must be a positive number of nats, got {args.margin}")
    s = pool_dirs(args.runs, args.out, args.margin)
    print(seeds_markdown(s), end="")
    print(f"wrote {args.out}")
    return 0
