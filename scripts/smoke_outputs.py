#!/usr/bin/env python3
"""Run every ``rct`` command on its smoke settings and compare two such output trees.

Used to show that a refactor leaves every command's outputs byte-identical:

    python scripts/smoke_outputs.py run /tmp/base /tmp/smoke-base      # the code before
    python scripts/smoke_outputs.py run /work/main /tmp/smoke-main     # the code after
    python scripts/smoke_outputs.py compare /tmp/smoke-base /tmp/smoke-main

``run CODE_DIR OUT_DIR`` runs the commands one after the other with CODE_DIR first on
PYTHONPATH and as the working directory (so that CODE_DIR's packages are the ones imported,
whatever is installed), each as ``python -c "from experiments.cli import main; ..."`` (the
``rct`` entry point, so that ``sys.argv[0]`` does not depend on where the CLI module lives),
with a fixed environment (FIXED_ENV: offline hub, thread counts, PYTHONHASHSEED). The commands
run in one fixed folder (``--work``, default /tmp/rct-smoke-work; the fixture folders they
read are copied into it), which moves to OUT_DIR at the end: the absolute paths that runs
record, and the config hashes computed over them, are then the same for every run.
Each command's stdout goes to OUT_DIR/_stdout/NAME.txt (compared like every other file); its
stderr and the timings go to OUT_DIR/_logs/ (not compared: progress bars, warnings).

``compare A_DIR B_DIR`` compares the two trees file by file and exits 1 on any difference.
Before comparing, every text file has the code and output directories of its run replaced by
``<CODE>`` and ``<OUT>``; JSON/JSONL files also lose the keys in IGNORED_KEYS (at any depth);
a few explicit text patterns (TEXT_RULES) blank out timings; SVG files and HTML pages lose
matplotlib's date and the per-process random ids of matplotlib and circuitsvis (renumbered
in order of appearance); safetensors files are compared as parsed header + tensor bytes (the
header's metadata is written in random key order); the RNG-state files of the checkpoints
skip their tensor storages (the unseeded global torch generator). Every other file (PNG,
model weights, optimizer state, ...) must be byte-identical.

Standard library only (the commands themselves need the toolkit's environment: by default
the Python running this script; ``--python`` picks another).
"""

from __future__ import annotations

import argparse
import difflib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

# ---------------------------------------------------------------------------------------------
# the commands
# ---------------------------------------------------------------------------------------------

TINY_EXP2 = "tiny:n_layers=2,d_model=64,n_heads=4,n_kv_heads=2,d_mlp=96"  # as tests/test_exp2.py


def commands(out: Path) -> list[tuple[str, list[str]]]:
    """(name, rct argv) in the order they run; later commands read earlier outputs. Input
    folders are copied into ``out/_inputs`` first (INPUTS), so that every path a run records
    (``data_dir``, hence ``config_hash``) lies under ``out``."""
    exp1, staged, inputs = str(out / "exp1"), str(out / "staged"), out / "_inputs"
    return [
        ("exp1", ["exp1", "--preset", "smoke", "--out", exp1, "--quiet"]),
        ("init", ["init", "--preset", "smoke", "--out", staged]),
        ("generate", ["generate", staged, "--quiet"]),
        ("finetune", ["finetune", staged, "--quiet"]),
        ("evaluate", ["evaluate", staged, "--quiet"]),
        ("report", ["report", staged, "--quiet"]),
        ("analyse", ["analyse", exp1, "--n-facts", "2", "--trace-facts", "2", "--quiet"]),
        ("influence", ["influence", exp1, "--n-facts", "2", "--layer-stride", "1", "--precision", "fp32",
                       "--quiet"]),
        ("sweep", ["sweep", "--preset", "smoke", "--out", str(out / "sweep"), "--grid", "finetune.lr=1e-4,2e-4",
                   "--seeds", "0", "--quiet"]),
        ("sweep-report", ["sweep-report", str(out / "sweep")]),
        ("mitigations", ["mitigations", "--preset", "smoke", "--out", str(out / "mitigations"), "--quiet"]),
        ("mitigations-report", ["mitigations-report", str(out / "mitigations")]),
        ("exp2", ["exp2", "--out", str(out / "exp2"), "--model", TINY_EXP2, "--limit", "4", "--sample-k", "2",
                  "--quiet"]),
        ("exp3", ["exp3", "--preset", "smoke", "--out", str(out / "exp3"), "--quiet"]),
        ("exp3-data-a2q", ["exp3", "--preset", "smoke", "--data", str(inputs / "exp3_paper_a2q"), "--order", "a2q",
                           "--out", str(out / "exp3-data-a2q"), "--quiet"]),
        ("exp1-data-own", ["exp1", "--preset", "smoke", "--data", str(out / "exp1" / "data"),
                           "--out", str(out / "exp1-data-own"), "--quiet"]),
        ("exp1-data-fixture", ["exp1", "--preset", "smoke", "--data", str(inputs / "paper_layout_exp1"),
                               "--out", str(out / "exp1-data-fixture"), "--quiet"]),
    ]


INPUTS = ["tests/fixtures/exp3_paper_a2q", "tests/fixtures/paper_layout_exp1"]  # relative to CODE_DIR
ENTRY = "import sys; from experiments.cli import main; sys.exit(main(sys.argv[1:]))"
# fixed so that two runs see the same environment (threads change float reduction orders)
FIXED_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONHASHSEED": "0",
             "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "TOKENIZERS_PARALLELISM": "false"}


def cmd_run(a: argparse.Namespace) -> int:
    code, final = Path(a.code_dir).resolve(), Path(a.out_dir).resolve()
    out = Path(a.work).resolve()  # the commands run here, then the tree moves to OUT_DIR
    if not (code / "experiments" / "cli.py").exists() and not (code / "experiments" / "cli").is_dir():
        print(f"{code}: no experiments/cli here", file=sys.stderr)
        return 2
    for d, what in ((final, "OUT_DIR"), (out, "--work")):
        if d.exists() and any(d.iterdir()):
            print(f"{d} ({what}): exists and is not empty (run directories refuse to be overwritten; "
                  "another run in progress?)", file=sys.stderr)
            return 2
    if final == out or final.is_relative_to(out) or out.is_relative_to(final):
        print("OUT_DIR and --work must be apart", file=sys.stderr)
        return 2
    (out / "_stdout").mkdir(parents=True, exist_ok=True)
    (out / "_logs").mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update({k: os.environ.get(f"SMOKE_{k}", v) for k, v in FIXED_ENV.items()})
    env["PYTHONPATH"] = os.pathsep.join([str(code)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.pop("PYTHONSTARTUP", None)

    check = subprocess.run([a.python, "-c", "import experiments, interp, analysis as x; "
                            "print(experiments.__file__); print(interp.__file__); print(x.__file__)"],
                           cwd=code, env=env, capture_output=True, text=True)
    files = check.stdout.split()
    if check.returncode or not files or not all(Path(f).resolve().is_relative_to(code) for f in files):
        print(f"the packages do not import from {code}:\n{check.stdout}{check.stderr}", file=sys.stderr)
        return 2
    print(f"code {code} (packages: {', '.join(files)})\nwork {out} (moved to {final} at the end)\n"
          f"python {a.python}")
    print("env: " + " ".join(f"{k}={env[k]}" for k in FIXED_ENV))

    for rel in INPUTS:
        shutil.copytree(code / rel, out / "_inputs" / Path(rel).name)
    todo = commands(out)
    if a.only:
        names = a.only.split(",")
        unknown = set(names) - {n for n, _ in todo}
        if unknown:
            print(f"--only: unknown {sorted(unknown)}; known: {[n for n, _ in todo]}", file=sys.stderr)
            return 2
        todo = [(n, c) for n, c in todo if n in names]
    times, failed = {}, []
    for name, argv in todo:
        t0 = time.perf_counter()
        with open(out / "_stdout" / f"{name}.txt", "wb") as so, open(out / "_logs" / f"{name}.stderr.txt", "wb") as se:
            rc = subprocess.run([a.python, "-c", ENTRY, *argv], cwd=code, env=env, stdout=so, stderr=se).returncode
        times[name] = round(time.perf_counter() - t0, 1)
        print(f"{name:20s} {times[name]:7.1f} s  {'ok' if rc == 0 else f'FAILED (exit {rc})'}  rct {' '.join(argv)}",
              flush=True)
        if rc:
            failed.append(name)
            tail = (out / "_logs" / f"{name}.stderr.txt").read_text(errors="replace").strip().splitlines()[-5:]
            print("    " + "\n    ".join(tail))
    total = round(sum(times.values()), 1)
    print(f"total {total} s; {len(todo) - len(failed)}/{len(todo)} commands ok")
    (out / "_logs" / "run.json").write_text(json.dumps(
        {"code_dir": str(code), "out_dir": str(final), "work_dir": str(out), "python": a.python, "packages": files,
         "env": {k: env[k] for k in FIXED_ENV}, "commands": {n: c for n, c in todo}, "seconds": times,
         "failed": failed}, indent=1))
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        final.rmdir()  # empty (checked above)
    shutil.move(str(out), str(final))
    print(f"outputs in {final}")
    return 1 if failed else 0


# ---------------------------------------------------------------------------------------------
# the comparison
# ---------------------------------------------------------------------------------------------

# JSON keys dropped at any depth before comparing: wall-clock times and durations, the code
# version, and the interpreter/package versions and machine (recorded by every manifest).
IGNORED_KEYS = frozenset({
    "created", "finished",                                        # timestamps
    "seconds", "step_seconds", "seconds_by_step", "timings", "causal_seconds",  # durations
    "git_commit", "git_dirty",                                    # code version
    "python", "platform", "versions",                             # interpreter, machine, packages
    "fp32_gflops", "bf16_gflops", "bf16_over_fp32",               # measured speed (precision probe)
})
# (pattern, replacement) applied to every text file after the directory placeholders
TEXT_RULES = [
    (re.compile(r"Time: \d+ s \([^)\n]*\)\."), "Time: <T>."),      # influence summary.md
    (re.compile(r"^Took \d+(\.\d+)? s\.$", re.M), "Took <T>."),      # analysis summary.md
    (re.compile(r"^Seconds per section: .*$", re.M), "Seconds per section: <T>"),  # analysis summary.md
]
# SVG files and HTML pages (which inline SVG figures and circuitsvis widgets)
SVG_RULES = [
    (re.compile(r"<dc:date>[^<]*</dc:date>"), "<dc:date/>"),      # matplotlib's save time
]
# ids that differ from process to process, renumbered in order of first appearance:
# matplotlib's clip paths, markers, hatches and images (a hash salted per process, rcParams
# svg.hashsalt) and circuitsvis's <div> ids (random)
SVG_ID = re.compile(r"(?<=id=\")(p|m|h|image)[0-9a-f]{10}(?=\")|(?<=#)(p|m|h|image)[0-9a-f]{10}(?=[\")])"
                    r"|(circuits-vis-)[0-9a-f]{12}\b")
# torch.save'd RNG states of the finetuning checkpoints: the process-wide torch generator,
# never seeded by the toolkit, which this torch build seeds at random on import
# (python -c "import torch; print(torch.initial_seed())" differs from run to run). Its tensor
# storages (and the archive's serialization_id, derived from them) are skipped; the pickle
# (keys, dtypes, shapes) and the member list must match.
RNG_FILE = re.compile(r"(^|/)rng/rank-\d+\.pt$")
RNG_VOLATILE_MEMBER = re.compile(r"/data/\d+$|/\.data/serialization_id$")
SKIP_DIRS = {"_logs"}
TEXT_SUFFIXES = {".json", ".jsonl", ".md", ".txt", ".csv", ".tsv", ".html", ".htm", ".svg", ".yaml", ".yml",
                 ".tex", ".log", ".js", ".css", ".py"}


def placeholders(root: Path) -> list[tuple[str, str]]:
    info = root / "_logs" / "run.json"
    meta = json.loads(info.read_text()) if info.exists() else {}
    pairs = [(meta.get("out_dir", str(root.resolve())), "<OUT>"), (str(root.resolve()), "<OUT>")]
    if meta.get("work_dir"):
        pairs.append((meta["work_dir"], "<OUT>"))
    if meta.get("code_dir"):
        pairs.append((meta["code_dir"], "<CODE>"))
    return sorted(set(pairs), key=lambda p: -len(p[0]))  # longest prefix first


def norm_text(text: str, subs: list[tuple[str, str]], svg: bool = False) -> str:
    for old, new in subs:
        text = text.replace(old, new)
    for pat, rep in TEXT_RULES:
        text = pat.sub(rep, text)
    if svg:
        for pat, rep in SVG_RULES:
            text = pat.sub(rep, text)
        ids: dict[str, str] = {}
        text = SVG_ID.sub(lambda m: ids.setdefault(m.group(0), f"{m.group(m.lastindex)}<id{len(ids)}>"), text)
    return text


def strip_keys(x):
    if isinstance(x, dict):
        return {k: strip_keys(v) for k, v in x.items() if k not in IGNORED_KEYS}
    if isinstance(x, list):
        return [strip_keys(v) for v in x]
    return x


def json_diffs(a, b, path: str = "$") -> list[str]:
    if type(a) is not type(b):
        return [f"{path}: {json.dumps(a)[:120]} != {json.dumps(b)[:120]}"]
    if isinstance(a, dict):
        out = [f"{path}.{k}: only in {'A' if k in a else 'B'}" for k in sorted(set(a) ^ set(b))]
        for k in a:
            if k in b:
                out += json_diffs(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list):
        out = [f"{path}: length {len(a)} != {len(b)}"] if len(a) != len(b) else []
        for i, (x, y) in enumerate(zip(a, b)):
            out += json_diffs(x, y, f"{path}[{i}]")
        return out
    return [] if a == b else [f"{path}: {json.dumps(a)[:120]} != {json.dumps(b)[:120]}"]


def load_json_values(text: str, lines: bool):
    if lines:
        return [json.loads(x) for x in text.splitlines() if x.strip()]
    return json.loads(text)


def is_text(path: Path, data: bytes) -> bool:
    if path.suffix.lower() not in TEXT_SUFFIXES and b"\0" in data[:8192]:
        return False
    if path.suffix.lower() not in TEXT_SUFFIXES and path.suffix:
        return False
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def compare_file(rel: str, pa: Path, pb: Path, subs_a, subs_b, n_show: int) -> list[str]:
    da, db = pa.read_bytes(), pb.read_bytes()
    if not (is_text(pa, da) and is_text(pb, db)):
        return binary_diff(rel, da, db)
    svg = pa.suffix.lower() in (".svg", ".html", ".htm")
    ta, tb = norm_text(da.decode(), subs_a, svg), norm_text(db.decode(), subs_b, svg)
    if ta == tb:
        return []
    if pa.suffix.lower() in (".json", ".jsonl"):
        try:
            ja = strip_keys(load_json_values(ta, pa.suffix.lower() == ".jsonl"))
            jb = strip_keys(load_json_values(tb, pa.suffix.lower() == ".jsonl"))
        except ValueError as e:
            return [f"not valid JSON ({e}); compared as text"] + text_diff(ta, tb, n_show)
        return json_diffs(ja, jb)[:n_show]
    return text_diff(ta, tb, n_show)


def first_difference(da: bytes, db: bytes) -> str:
    at = next((i for i, (x, y) in enumerate(zip(da, db)) if x != y), min(len(da), len(db)))
    return f"{len(da)} vs {len(db)} bytes, first difference at byte {at}"


def safetensors_parts(data: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def binary_diff(rel: str, da: bytes, db: bytes) -> list[str]:
    if da == db:
        return []
    if rel.endswith(".safetensors"):  # the same header in another order and the same data: equal
        try:
            (ha, xa), (hb, xb) = safetensors_parts(da), safetensors_parts(db)
        except ValueError as e:
            return [f"safetensors: unreadable header ({e}); {first_difference(da, db)}"]
        out = [f"safetensors header: {d}" for d in json_diffs(ha, hb)]
        if xa != xb:
            out.append(f"safetensors tensor data: {first_difference(xa, xb)}")
        return out
    if RNG_FILE.search(rel) and zipfile.is_zipfile(io.BytesIO(da)) and zipfile.is_zipfile(io.BytesIO(db)):
        za, zb = zipfile.ZipFile(io.BytesIO(da)), zipfile.ZipFile(io.BytesIO(db))
        if za.namelist() != zb.namelist():
            return [f"torch archive members: {za.namelist()} != {zb.namelist()}"]
        return [f"torch archive member {n}: {first_difference(za.read(n), zb.read(n))}" for n in za.namelist()
                if not RNG_VOLATILE_MEMBER.search(n) and za.read(n) != zb.read(n)]
    return [f"binary: {first_difference(da, db)}"]


def text_diff(ta: str, tb: str, n_show: int) -> list[str]:
    lines = [x for x in difflib.unified_diff(ta.splitlines(), tb.splitlines(), "A", "B", n=0, lineterm="")
             if not x.startswith(("---", "+++"))]
    return [x[:200] for x in lines[: 2 * n_show]]


def tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and p.relative_to(root).parts[0] not in SKIP_DIRS}


def cmd_compare(a: argparse.Namespace) -> int:
    ra, rb = Path(a.a_dir).resolve(), Path(a.b_dir).resolve()
    print(f"ignored JSON keys (any depth): {', '.join(sorted(IGNORED_KEYS))}")
    print("text normalisation: code dir -> <CODE>, out dir -> <OUT> (all text files); "
          + "; ".join(f"/{p.pattern}/ -> {r!r}" for p, r in TEXT_RULES))
    print("SVG: " + "; ".join(f"/{p.pattern}/ -> {r!r}" for p, r in SVG_RULES)
          + f"; ids /{SVG_ID.pattern}/ renumbered in order of appearance (also in HTML pages)")
    print("*.safetensors: header parsed (metadata key order free), tensor bytes identical; "
          f"/{RNG_FILE.pattern}/: storages skipped (unseeded torch RNG state); every other file byte for byte")
    print(f"not compared: {', '.join(sorted(SKIP_DIRS))}/ (stderr, timings)")
    sa, sb = placeholders(ra), placeholders(rb)
    fa, fb = tree(ra), tree(rb)
    bad = 0
    for rel in sorted(fa - fb):
        print(f"ONLY IN A: {rel}")
        bad += 1
    for rel in sorted(fb - fa):
        print(f"ONLY IN B: {rel}")
        bad += 1
    same = 0
    for rel in sorted(fa & fb):
        diffs = compare_file(rel, ra / rel, rb / rel, sa, sb, a.show)
        if diffs:
            bad += 1
            print(f"DIFFERS: {rel}")
            for line in diffs:
                print(f"    {line}")
        else:
            same += 1
    print(f"{same} files identical, {bad} differences ({len(fa)} files in A, {len(fb)} in B)")
    if not fa:
        print("A is empty")
        return 1
    print("IDENTICAL" if not bad else "DIFFERENT")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="run every rct command on smoke settings into OUT_DIR")
    p.add_argument("code_dir")
    p.add_argument("out_dir")
    p.add_argument("--python", default=sys.executable, help="interpreter with the toolkit's dependencies")
    p.add_argument("--only", metavar="NAME,...", help="run only these commands (for debugging)")
    p.add_argument("--work", default="/tmp/rct-smoke-work",
                   help="where the commands run (default %(default)s; moved to OUT_DIR at the end): the same "
                        "path for every run, so that recorded paths and config hashes match")
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("compare", help="compare two output trees of `run`")
    p.add_argument("a_dir")
    p.add_argument("b_dir")
    p.add_argument("--show", type=int, default=8, help="differences shown per file")
    p.set_defaults(fn=cmd_compare)
    a = ap.parse_args(argv)
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
