"""Command line: ``rct <command>`` (or ``python -m experiments.cli <command>``).

    rct exp1 --preset cpu --out runs/exp1-cpu      # all of experiment 1, prints Table 1
    rct exp1 --preset smoke --out runs/smoke --data path/to/june_version_7921032488
    rct init --preset cpu --out RUN [--set finetune.epochs=2 ...]
    rct generate RUN | rct finetune RUN [--resume] | rct evaluate RUN [--which base]
    rct report RUN | rct analyse RUN | rct compare CURSED CURED | rct influence RUN [--n-facts 15]
    rct compare-seeds CMP_SEED0 CMP_SEED1 CMP_SEED2 --out runs/cmp-pooled
    rct exp1-seeds RUN_SEED0 RUN_SEED1 RUN_SEED2 --out runs/exp1-seeds [--margin 1]
    rct sweep --preset cpu --out runs/sweep --grid finetune.lr=2e-5,5e-5 --seeds 0,1,2
    rct sweep-report runs/sweep
    rct mitigations --preset mitigation --out runs/mit [--seeds 0,1,2] [--conditions none,word]
    rct mitigations-report runs/mit
    rct exp2 --out runs/exp2 [--model smollm2-135m] [--pairs parent_child_pairs.csv]
    rct exp3 --preset cpu --out runs/exp3 [--set finetune.epochs=3]

Each command is a plain function below (``cmd_*``), separate from argument parsing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from experiments import exp1
from experiments.core.config import build, load_preset, preset_names
from experiments.core.environment import quiet_libraries
from experiments.core.skips import one_line_data_warnings
from interp.errors import RctError


def _assignments(args: argparse.Namespace) -> dict[str, object]:
    """Typed values from dedicated flags (not parsed: a model path stays a string)."""
    out: dict[str, object] = {}
    if getattr(args, "model", None):
        out["model"] = args.model
    if getattr(args, "data", None):
        out["data_dir"] = str(Path(args.data).resolve())
    for key in ("device", "dtype"):
        if getattr(args, key, None):
            out[f"model_options.{key}"] = getattr(args, key)
    return out


def _config(args: argparse.Namespace, experiment: str = "exp1", cls: type = exp1.Exp1Config):
    """Preset (or ``--config FILE``), then ``--set`` overrides, then the dedicated flags."""
    base = args.config if getattr(args, "config", None) else load_preset(cls, experiment, args.preset)
    return build(cls, base, args.set or [], _assignments(args))


def cmd_exp1(args: argparse.Namespace) -> int:
    text = exp1.run_all(_config(args), Path(args.out), resume=args.resume, progress=not args.quiet,
                        strict=args.strict)
    print(text)
    print(f"run directory: {args.out}")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    exp1.init_run(_config(args), Path(args.out), resume=args.resume, strict=args.strict)
    print(f"initialised {args.out}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    print(f"data in {exp1.stage_generate(Path(args.run))}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    log = exp1.stage_finetune(Path(args.run), resume=args.resume, progress=not args.quiet)
    print(f"finetuned {log['steps']} steps, final loss {log['final_loss']}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    exp1.stage_evaluate(Path(args.run), tuple(args.which), progress=not args.quiet)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    print(exp1.stage_report(Path(args.run)))
    return 0


def _grid_values(item: str) -> tuple[str, list]:
    """``KEY=V1,V2,...`` -> (key, values), values parsed as YAML like ``--set`` values."""
    from omegaconf import OmegaConf

    key, sep, raw = item.partition("=")
    if not sep or not raw or not key:
        raise RctError(f"--grid {item!r}: expected KEY=V1,V2,... (e.g. finetune.lr=1e-5,5e-5)")
    try:
        values = OmegaConf.to_container(OmegaConf.from_dotlist([f"v={raw if raw.startswith('[') else f'[{raw}]'}"]))["v"]
    except Exception as e:  # noqa: BLE001 - YAML errors of many kinds: one line out
        raise RctError(f"--grid {item!r}: cannot parse the values ({str(e).splitlines()[0]})") from None
    return key, values


def _seeds(text: str | None) -> list[int] | None:
    """``--seeds 0,1,2`` -> [0, 1, 2] (None when not given)."""
    try:
        return [int(s) for s in text.split(",")] if text else None
    except ValueError:
        raise RctError(f"--seeds {text!r}: expected integers separated by commas, e.g. 0,1,2") from None


def _shard(text: str | None) -> tuple[int, int] | None:
    """``--shard K/N`` -> (K, N) (None when not given)."""
    if not text:
        return None
    k, sep, n = text.partition("/")
    if not sep or not k.isdigit() or not n.isdigit() or not 1 <= int(k) <= int(n):
        raise RctError(f"--shard {text!r}: expected K/N with 1 <= K <= N, e.g. 1/2")
    return int(k), int(n)


def cmd_sweep(args: argparse.Namespace) -> int:
    from experiments.sweeps import SweepConfig, report_sweep, run_sweep

    grid = {}
    for item in args.grid or []:
        key, values = _grid_values(item)
        if key in grid:
            raise RctError(f"--grid {item!r}: key {key!r} given twice")
        grid[key] = values
    seeds = _seeds(args.seeds) or [0]
    shard = _shard(args.shard)
    sweep = SweepConfig(_config(args), grid, seeds)
    run_sweep(sweep, Path(args.out), resume=args.resume, shard=shard, progress=not args.quiet,
              evaluate_base=not args.no_base)
    print(report_sweep(Path(args.out)))
    print(f"sweep directory: {args.out}")
    return 0


def cmd_sweep_report(args: argparse.Namespace) -> int:
    from experiments.sweeps import report_sweep

    print(report_sweep(Path(args.sweep)))
    return 0


def cmd_mitigations(args: argparse.Namespace) -> int:
    from experiments.mitigations import MitigationConfig, report_mitigations, run_mitigations, select

    cfg = build(MitigationConfig, args.config) if args.config else load_preset(MitigationConfig, "mitigations",
                                                                                args.preset)
    base = build(exp1.Exp1Config, cfg.base, args.set or [], _assignments(args))  # --set: keys of the base
    names = args.conditions.split(",") if args.conditions is not None else None
    cfg = select(cfg, names, _seeds(args.seeds), base)
    run_mitigations(cfg, Path(args.out), resume=args.resume, shard=_shard(args.shard), progress=not args.quiet)
    print(report_mitigations(Path(args.out)))
    print(f"mitigation directory: {args.out}")
    return 0


def cmd_mitigations_report(args: argparse.Namespace) -> int:
    from experiments.mitigations import report_mitigations

    print(report_mitigations(Path(args.run)))
    return 0


def cmd_exp2(args: argparse.Namespace) -> int:
    from experiments.exp2 import Exp2Config, run_exp2

    assign = _assignments(args)
    for key in ("limit", "batch_size", "seed", "sample_k"):
        if getattr(args, key) is not None:
            assign[key] = getattr(args, key)
    if args.n_candidates is not None:
        assign["n_candidates"] = None if args.n_candidates == "all" else args.n_candidates
    if args.pairs:
        assign["pairs"] = str(Path(args.pairs).resolve())
    cfg = build(Exp2Config, args.config, args.set or [], assign)
    run_exp2(cfg, Path(args.out), resume=args.resume, progress=not args.quiet, strict=args.strict)
    print((Path(args.out) / "exp2.md").read_text())
    print(f"run directory: {args.out}")
    return 0


def cmd_exp3(args: argparse.Namespace) -> int:
    from experiments.exp3 import Exp3Config, run_exp3

    if args.data and not args.order:
        raise RctError("--data needs --order q2a|a2q (the instruction order of the folder)")
    base = args.config if args.config else load_preset(Exp3Config, "exp3", args.preset)
    assign = _assignments(args)  # --data -> data_dir
    if args.order:
        assign["orders"] = [args.order]
    cfg = build(Exp3Config, base, args.set or [], assign)
    print(run_exp3(cfg, Path(args.out), resume=args.resume, progress=not args.quiet, strict=args.strict))
    print(f"run directory: {args.out}")
    return 0


def cmd_analyse(args: argparse.Namespace) -> int:
    from experiments.exp1.analyse import main as analyse_main
    from experiments.core.rundir import RunDir

    RunDir.existing(args.run, "exp1")  # a file or a non-run: one line
    return analyse_main([args.run, *args.rest])


def cmd_compare(args: argparse.Namespace) -> int:
    from experiments.exp1.compare import run_args

    return run_args(args)


def cmd_compare_seeds(args: argparse.Namespace) -> int:
    from analysis.compare_pool import pool_dirs, summary_markdown

    try:
        pooled = pool_dirs(args.dirs, args.out)
    except ValueError as e:
        print(f"rct compare-seeds: {e}", file=sys.stderr)
        return 2
    print(summary_markdown(pooled), end="")
    print(f"wrote {args.out}")
    return 0


def cmd_influence(args: argparse.Namespace) -> int:
    from experiments.core.rundir import RunDir
    from experiments.exp1.influence import main as influence_main

    RunDir.existing(args.run, "exp1")  # a file or a non-run: one line
    return influence_main([args.run, *args.rest])


STRICT_HELP = ("refuse a data folder or file with any bad row (default: skip single bad rows of published data "
               "with a warning and list them in the manifest)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rct", description="Reversal Curse toolkit")
    ap.add_argument("--debug", action="store_true", help="show the traceback of every error")
    sub = ap.add_subparsers(dest="command", required=True)

    def config_args(p: argparse.ArgumentParser, experiment: str = "exp1", default: str = "cpu") -> None:
        p.add_argument("--preset", default=default, choices=preset_names(experiment),
                       help=f"a file in experiments/presets/{experiment}/ (default: {default})")
        p.add_argument("--config", metavar="FILE", help="a YAML/JSON config (a copied preset) instead of --preset")
        p.add_argument("--out", required=True, help="run directory")
        p.add_argument("--resume", action="store_true", help="continue the run in --out (same config)")
        p.add_argument("--model", help="base model spec (default: the preset's)")
        if experiment in ("exp1", "mitigations"):
            p.add_argument("--data", help="dataset folder in the paper's layout (default: generate)")
        p.add_argument("--device", help="auto (cuda, then mps, then cpu), cpu, cuda[:N], mps")
        p.add_argument("--dtype", help="float32, bfloat16, float16, auto (bf16 where fast)")
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a config field, e.g. finetune.epochs=2 (repeatable)")

    p = sub.add_parser("exp1", help="experiment 1 end to end")
    config_args(p)
    p.add_argument("--strict", action="store_true", help=STRICT_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(fn=cmd_exp1)
    p = sub.add_parser("init", help="create a run directory (config + manifest)")
    config_args(p)
    p.add_argument("--strict", action="store_true", help=STRICT_HELP)
    p.set_defaults(fn=cmd_init)
    for name, fn, hlp in (("generate", cmd_generate, "write the dataset into RUN/data"),
                          ("finetune", cmd_finetune, "finetune; saves RUN/model"),
                          ("evaluate", cmd_evaluate, "evaluate base and/or finetuned model"),
                          ("report", cmd_report, "Table 1 and Figure 4 analogs")):
        p = sub.add_parser(name, help=hlp)
        p.add_argument("run", help="run directory")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        if name == "finetune":
            p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
        if name == "evaluate":
            p.add_argument("--which", nargs="+", default=["base", "finetuned"], choices=["base", "finetuned"])
        p.set_defaults(fn=fn)
    p = sub.add_parser("sweep", help="experiment 1 over a grid of config values x finetuning seeds")
    config_args(p)
    p.add_argument("--grid", action="append", metavar="KEY=V1,V2,...",
                   help="a config key and its values, e.g. finetune.lr=1e-5,5e-5 (repeatable; cells are the product)")
    p.add_argument("--seeds", metavar="S1,S2,...", help="finetuning seeds run at every grid point (default 0)")
    p.add_argument("--shard", metavar="K/N", help="run only cells K, K+N, K+2N, ... (1-based)")
    p.add_argument("--no-base", action="store_true", help="skip evaluating the base model once")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(fn=cmd_sweep)
    p = sub.add_parser("sweep-report", help="tables and figure of a sweep's finished cells")
    p.add_argument("sweep", help="sweep directory")
    p.set_defaults(fn=cmd_sweep_report)
    p = sub.add_parser("mitigations", help="compare mitigations on experiment 1: named conditions x seeds, one table")
    config_args(p, "mitigations", default="mitigation")
    p.add_argument("--conditions", metavar="NAME,...", help="run only these conditions of the preset, in this "
                   "order (default: all)")
    p.add_argument("--seeds", metavar="S1,S2,...", help="finetuning seeds run for every condition (default: the "
                   "preset's)")
    p.add_argument("--shard", metavar="K/N", help="run only cells K, K+N, K+2N, ... (1-based)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(fn=cmd_mitigations)
    p = sub.add_parser("mitigations-report", help="table and figure of a mitigation comparison's finished cells")
    p.add_argument("run", help="mitigation directory")
    p.set_defaults(fn=cmd_mitigations_report)
    p = sub.add_parser("exp2", help="experiment 2: real parents and children, both directions, no finetuning")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (same config)")
    p.add_argument("--config", metavar="FILE", help="a YAML/JSON experiment 2 config")
    p.add_argument("--model", help="model spec (default: smollm2-135m)")
    p.add_argument("--pairs", help="parent_child_pairs.csv in the paper's layout (default: the shipped list)")
    p.add_argument("--strict", action="store_true", help=STRICT_HELP)
    p.add_argument("--limit", type=int, help="only the first N pairs")
    p.add_argument("--batch-size", type=int, help="queries per forward pass (default 64)")
    p.add_argument("--seed", type=int, help="picks the random control names, candidates and samples (default 0)")
    p.add_argument("--n-candidates", metavar="N|all", type=lambda v: v if v == "all" else int(v),
                   help="names each correct answer is ranked among, itself included (default 20; all = every "
                        "same-role name)")
    p.add_argument("--sample-k", type=int, help="samples per query at temperature 1, a hit when any starts with "
                   "the name (default 0: off)")
    p.add_argument("--device", help="auto (cuda, then mps, then cpu), cpu, cuda[:N], mps")
    p.add_argument("--dtype", help="float32, bfloat16, float16, auto (bf16 where fast)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(fn=cmd_exp2)
    p = sub.add_parser("exp3", help="experiment 3: instructions in one order, questions in the other")
    config_args(p, "exp3")
    p.add_argument("--data", help="a folder in the paper's layout (realized_examples.jsonl, unrealized_examples.jsonl, "
                   "guidances.jsonl, all.jsonl) instead of generating")
    p.add_argument("--order", choices=["q2a", "a2q"], help="run only this instruction order (the folder's, with --data)")
    p.add_argument("--strict", action="store_true", help=STRICT_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(fn=cmd_exp3)
    p = sub.add_parser("analyse", help="look inside the finetuned model (figures and pages)")
    p.add_argument("run", help="run directory")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options of the analysis (see --help)")
    p.set_defaults(fn=cmd_analyse)
    p = sub.add_parser("compare", help="a cursed run against a cured one: patching, grafting, knockout")
    from experiments.exp1.compare import add_arguments as compare_arguments
    compare_arguments(p)
    p.set_defaults(fn=cmd_compare)
    p = sub.add_parser("compare-seeds", help="pool rct compare outputs of several seeds (same facts)")
    p.add_argument("dirs", nargs="+", type=Path, help="rct compare output folders, the first seed first")
    p.add_argument("--out", type=Path, required=True, help="folder for the pooled summary.json and summary.md")
    p.set_defaults(fn=cmd_compare_seeds)
    from experiments.exp1 import seeds
    p = sub.add_parser("exp1-seeds", help="pool experiment 1 runs that differ only in their finetuning seed")
    seeds.add_arguments(p)
    p.set_defaults(fn=seeds.run_args)
    p = sub.add_parser("influence", help="which training documents teach which direction (influence functions)")
    p.add_argument("run", help="run directory")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options of the influence analysis (see --help)")
    p.set_defaults(fn=cmd_influence)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run one command. Errors the user can fix (:class:`interp.errors.RctError`) print one
    line and exit 2; anything else keeps its traceback. ``--debug`` shows every traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line
    if "--precision-probe" in argv:  # accepted anywhere too: `--precision-probe refresh`
        i = argv.index("--precision-probe")
        value = argv[i + 1] if i + 1 < len(argv) else ""
        if value != "refresh":
            print(f"rct: error: --precision-probe: expected 'refresh', got {value!r}", file=sys.stderr)
            return 2
        os.environ["RCT_PRECISION_PROBE"] = "refresh"
        del argv[i: i + 2]
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    args.debug = debug
    one_line_data_warnings()
    if getattr(args, "quiet", False) or "--quiet" in (getattr(args, "rest", None) or []):
        quiet_libraries()
    try:
        out = getattr(args, "out", None)
        if getattr(args, "resume", False) and out is not None and not Path(out).exists():
            # scripts/exp1.sh passes --resume on a first run too: start one, but say so, so that
            # a mistyped path is not mistaken for the run it was meant to continue
            print(f"rct {args.command}: --resume: {out} does not exist yet; starting a new run there",
                  file=sys.stderr)
        return args.fn(args)
    except RctError as e:
        if args.debug:
            raise
        print(f"rct {args.command}: error: {e}", file=sys.stderr)
        return 2
    except NotImplementedError as e:
        if args.debug or "mps" not in str(e).lower():
            raise
        op = str(e).splitlines()[0][:300]
        print(f"rct {args.command}: error: an op is missing on Apple MPS ({op}); rerun with "
              "PYTORCH_ENABLE_MPS_FALLBACK=1 to run it on the CPU, or with --device cpu",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
