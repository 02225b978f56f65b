"""Time to Table 1: the experiment 1 CPU default end to end, a first run against a second one.

The base model's evaluation is the same for every run with the same model, data and
evaluation settings, so the second run reads it from the user cache
(``experiments.exp1.run.base_eval_key``). This runs ``rct exp1 --preset cpu`` twice in fresh
folders, one after the other in this invocation, with a fresh cache folder (so the first run
really computes it), and prints one table: each stage's seconds and share of the run, and the
second run against the first.

    .venv/bin/python benchmarks/bench_table1.py [--preset cpu] [--keep DIR]

Under ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2`` it
measures the code paths of a CPU without AVX-512 or native bf16 (the precision probe then
chooses fp32). About 2 x 10-25 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def one_run(preset: str, out: Path, cache: Path) -> tuple[float, dict[str, float]]:
    env = {**os.environ, "RCT_CACHE_DIR": str(cache)}
    env.pop("RCT_NO_BASE_CACHE", None)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "experiments.cli", "exp1", "--preset", preset, "--out", str(out),
                    "--quiet"], cwd=HERE.parent, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    return wall, {k: float(v.get("seconds", 0.0)) for k, v in stages.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cpu")
    p.add_argument("--keep", type=Path, default=None, help="keep the two run folders here")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = a.keep or Path(tmp)
        cache = Path(tmp) / "cache"
        # the embedded model's dequantised copy is reused (it is not what is measured)
        real = Path(os.environ.get("RCT_CACHE_DIR") or Path.home() / ".cache" / "reversal-curse-toolkit")
        cache.mkdir(parents=True)
        for name in ("smollm2-135m", "tiny-byte-tokenizer"):
            if (real / name).exists():
                os.symlink(real / name, cache / name)
        runs = [one_run(a.preset, root / f"run-{i}", cache) for i in (1, 2)]
    stages = list(dict.fromkeys(k for _, st in runs for k in st))
    print(f"| stage | first run (s) | share | second run (s) | share | second / first |")
    print("|---|---|---|---|---|---|")
    for k in stages:
        s1, s2 = runs[0][1].get(k, 0.0), runs[1][1].get(k, 0.0)
        print(f"| {k} | {s1:.1f} | {s1 / runs[0][0]:.0%} | {s2:.1f} | {s2 / runs[1][0]:.0%} | "
              f"{(s2 / s1) if s1 else float('nan'):.2f}x |")
    print(f"| **whole command** | {runs[0][0]:.1f} | 100% | {runs[1][0]:.1f} | 100% | {runs[1][0] / runs[0][0]:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
