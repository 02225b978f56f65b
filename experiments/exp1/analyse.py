"""``rct analyse RUN``: look inside the model of a finished experiment 1 run.

:func:`run_inside_analysis` reads ``RUN/config.json`` (base model spec), the dataset
(``data_dir`` or ``RUN/data``) and the finetuned model (``RUN/model``), then runs
:func:`analysis.inside.inside_analysis`, which writes ``RUN/analysis``: figures (PNG + SVG),
offline HTML pages, ``summary.json`` and ``summary.md``.

Example::

    from experiments.exp1.analyse import run_inside_analysis
    summary = run_inside_analysis("runs/exp1-cpu", n_facts=10)
    print(summary["finetuned"]["dla_contrast"]["summary"])

CLI: ``rct analyse RUN [--n-facts N] [--trace-facts N] [--trace-templates 1] [--trace-noise 2] [--trace-min-p 0.05] [--sections causal_tracing,...] [--device cpu]`` (or ``python -m experiments.exp1.analyse RUN``).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from analysis.causal import CausalConfig
from experiments.core.rundir import RunDir
from interp.errors import RctError
from analysis.inside import InsideConfig, inside_analysis
from experiments.exp1.data import load_exp1
from interp.models import load_model


def run_inside_analysis(run_dir: str | Path, n_facts: int | None = None, device: str = "cpu",
                        progress: bool = True, config: InsideConfig | None = None,
                        causal: CausalConfig | None = CausalConfig()) -> dict[str, Any]:
    """Run the whole analysis on a finished experiment 1 run; returns the summary dict.
    ``causal=None`` skips the causal sections (tracing, weight reverts, probes, key-value, direction)."""
    run_dir = Path(run_dir)
    cfg = config or InsideConfig()
    if n_facts is not None:
        cfg = replace(cfg, n_facts=n_facts)
    if not (run_dir / "model" / "config.json").is_file():
        raise RctError(f"{run_dir} has no finetuned model yet (no {run_dir / 'model'}): finish the run first "
                       f"(rct finetune {run_dir}, or rct exp1 ... --resume)")
    run_cfg = RunDir.existing(run_dir, "exp1").config_dict()
    ds = load_exp1(Path(run_cfg["data_dir"]) if run_cfg.get("data_dir") else run_dir / "data")
    tuned = load_model(str(run_dir / "model"), device=device)
    base = load_model(run_cfg["model"], device=device)
    summary = inside_analysis(tuned, base, ds, run_dir / "analysis", run_dir=run_dir,
                              base_model=run_cfg["model"], config=cfg, progress=progress, causal=causal)
    from experiments.core.run_index import refresh_parent
    refresh_parent(run_dir / "analysis")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="analyse", description="Inside-the-model analysis of an exp1 run")
    p.add_argument("run", type=Path, help="experiment 1 run directory")
    p.add_argument("--n-facts", type=int, default=None, help="facts per subset (default: all in the attribution part, "
                   f"{CausalConfig.n_facts} in probes and key-value)")
    p.add_argument("--prompts-per-fact", type=int, default=1,
                   help="held-out prompts per fact and direction in the attribution part (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--trace-facts", type=int, default=CausalConfig.n_facts_trace,
                   help="facts per query set in causal tracing (default %(default)s)")
    p.add_argument("--trace-templates", type=int, default=CausalConfig.trace_templates,
                   help="prompts (templates) traced per fact, averaged per fact (default %(default)s)")
    p.add_argument("--trace-noise", type=int, default=CausalConfig().trace.n_noise,
                   help="noise samples per traced prompt (default %(default)s; Meng et al. use 10, "
                        "at 5x the tracing time)")
    p.add_argument("--trace-min-p", type=float, default=CausalConfig.min_clean_p,
                   help="trace a model's query set only when its answers' mean clean first-token "
                        "probability reaches this (default %(default)s; 0: trace every set)")
    p.add_argument("--sections", default=",".join(CausalConfig.sections),
                   help="causal sections to run, comma-separated, or 'none' (default: all)")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    for flag, v in (("--n-facts", a.n_facts), ("--prompts-per-fact", a.prompts_per_fact),
                    ("--batch-size", a.batch_size), ("--trace-facts", a.trace_facts)):
        if v is not None and v < 1:
            raise RctError(f"{flag} must be >= 1, got {v}")
    cfg = InsideConfig(n_facts=a.n_facts, prompts_per_fact=a.prompts_per_fact, batch_size=a.batch_size)
    sections = tuple(x for x in a.sections.split(",") if x and x != "none")
    try:
        n_causal = CausalConfig.n_facts if a.n_facts is None else a.n_facts
        if a.trace_noise < 1:
            raise ValueError(f"--trace-noise must be >= 1, got {a.trace_noise}")
        causal = (CausalConfig(n_facts_trace=a.trace_facts, trace_templates=a.trace_templates,
                               min_clean_p=a.trace_min_p,
                               trace=replace(CausalConfig().trace, n_noise=a.trace_noise),
                               n_facts=n_causal, sections=sections,
                               batch_size=a.batch_size) if sections else None)
    except ValueError as e:
        p.error(str(e))
    s = run_inside_analysis(a.run, device=a.device, progress=not a.quiet, config=cfg, causal=causal)
    print(s["finetuned"][s["finetuned"]["top_neurons"]["kind"]]["summary"])
    print(f"wrote {a.run / 'analysis'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
