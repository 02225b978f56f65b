"""Run every benchmark side by side and print one table.

Each measurement runs in its own process (so its peak resident memory is its own, read with
``os.wait4``), one after the other in this one invocation, on the embedded model:

- training: the toolkit's loop vs Hugging Face ``Trainer`` on the same batches, fp32 and bf16
  autocast (``bench_train.py``), with MFU against the matmul peak measured in the same
  process; the bf16 row is skipped, with the measured reason, on a CPU without fast bf16;
- padding: plain shuffled batches vs length-grouped ones (the toolkit's default), fp32: the
  padded-token fraction before and after, and real tokens per second;
- evaluation: experiment 1 evaluation of 600 prompts, batched vs one at a time
  (``bench_eval.py``), with a check that the metrics are identical;
- recording: activations and gradients at all MLP layers vs a plain forward and backward
  (``bench_record.py``).

    .venv/bin/python benchmarks/run_all.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(script: str, *args: str) -> tuple[str, float, float]:
    """(stdout, seconds, peak RSS in MB) of one benchmark process."""
    with tempfile.TemporaryFile("w+") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, str(HERE / script), *args], stdout=out,
                                stderr=subprocess.DEVNULL, cwd=HERE.parent)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - t0
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(args)} failed ({proc.returncode}):\n{text[-2000:]}")
    return text, seconds, usage.ru_maxrss / 1024


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer steps and repeats (a check, not a measurement)")
    args = ap.parse_args()
    t_start = time.perf_counter()
    rows: list[tuple[str, str, str, str, str]] = []  # row, ours, baseline, ratio, peak memory
    steps = ["--steps", "4", "--warmup", "1"] if args.quick else []

    from interp.precision import SLOW_BF16_RATIO, probe_cpu_matmul

    probe = probe_cpu_matmul()
    peaks = f"fp32 {probe['fp32_gflops']:.0f}, bf16 {probe['bf16_gflops']:.0f} (probe, n={probe['n']})"
    for precision in ("fp32", "bf16"):
        if precision == "bf16" and probe["bf16_over_fp32"] * SLOW_BF16_RATIO < 1.0:
            rows.append(("training bf16", "skipped", "skipped",
                         f"bf16 matmuls run {1 / probe['bf16_over_fp32']:.0f}x slower than fp32 on this "
                         "CPU (no native bf16): this row would take hours; precision=auto trains in fp32", "-"))
            continue
        res = {}
        # alternate who goes first, so slow drift on a shared machine hits both
        for method in (("ours", "trainer") if precision == "fp32" else ("trainer", "ours")):
            text, _, rss = run("bench_train.py", "--method", method, "--precision", precision, *steps)
            res[method] = {**last_json(text), "rss": rss}
        o, b = res["ours"], res["trainer"]
        rows.append((
            f"training {precision} (tokens/s, batch 16, same batches)",
            f"{o['tokens_per_s']:.0f} tok/s; MFU {100 * o['mfu_vs_fp32_peak']:.0f}% of fp32 peak"
            + (f", {100 * o['mfu']:.0f}% of bf16 peak" if precision == "bf16" else ""),
            f"Trainer {b['tokens_per_s']:.0f} tok/s; MFU {100 * b['mfu_vs_fp32_peak']:.0f}% of fp32 peak",
            f"{o['tokens_per_s'] / b['tokens_per_s']:.2f}x",
            f"{o['rss']:.0f} / {b['rss']:.0f} MB"))
        if precision == "fp32":
            grouped = o
            text, _, rss = run("bench_train.py", "--method", "ours", "--precision", "fp32",
                               "--grouping", "off", *steps)
            plain = {**last_json(text), "rss": rss}
            rows.append((
                "padding: length-grouped vs plain shuffled batches (fp32, real tokens/s)",
                f"{100 * grouped['padded_fraction']:.1f}% padded; {grouped['real_tokens_per_s']:.0f} real tok/s",
                f"{100 * plain['padded_fraction']:.1f}% padded; {plain['real_tokens_per_s']:.0f} real tok/s",
                f"{grouped['real_tokens_per_s'] / plain['real_tokens_per_s']:.2f}x",
                f"{grouped['rss']:.0f} / {plain['rss']:.0f} MB"))

    run_dir = HERE.parent / "runs" / "exp1-cpu"  # a finetuned model makes exact matches happen
    tuned = ["--model", str(run_dir / "model"), "--data", str(run_dir / "data")] \
        if (run_dir / "model" / "config.json").exists() else []
    with tempfile.TemporaryDirectory() as tmp:
        rec = str(Path(tmp) / "records.jsonl")
        text, _, rss_t = run("bench_eval.py", "--method", "toolkit", "--records", rec, *tuned)
        tk = last_json(text)
        text, _, rss_b = run("bench_eval.py", "--method", "one_at_a_time", "--records", rec, *tuned)
        bl = last_json(text)
    same = bl["exact_flags_identical"] and bl["max_logprob_diff"] <= 1e-4
    who = f"{'finetuned' if tuned else 'base'} model, exact match {100 * bl['exact_match_toolkit']:.1f}%"
    for suffix, what in (("", "exact match + target log-prob"),
                         ("_with_control", "exact match + target and random-name log-probs")):
        ours, theirs = tk[f"toolkit_seconds{suffix}"], bl[f"one_at_a_time_seconds{suffix}"]
        rows.append((
            f"evaluation, {tk['n_prompts']} prompts: {what} ({who})",
            f"{ours:.1f} s", f"one at a time {theirs:.1f} s",
            f"{theirs / ours:.1f}x; metrics " + ("identical" if same else "DIFFER")
            + f" (max log-prob diff {bl['max_logprob_diff']:.1e})",
            f"{rss_t:.0f} / {rss_b:.0f} MB"))

    text, _, rss = run("bench_record.py", "--repeats", "2")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    ratio_line = next((ln for ln in lines if ln.startswith("record acts+grads")), "")
    base_line = next((ln for ln in lines if ln.startswith("hf fwd+bwd")), "")
    if ratio_line and base_line:
        rows.append(("recording acts+grads, all MLP layers",
                     f"{ratio_line.split()[-4]} s (median)", f"plain fwd+bwd {base_line.split()[-4]} s",
                     ratio_line.split()[-2], f"{rss:.0f} MB (both, one process)"))

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; "
          f"matmul peak measured: {peaks} GFLOP/s\n")
    print("| row | toolkit | baseline | ratio | peak RSS (toolkit / baseline) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if ratio_line:
        print("\nrecording detail (bench_record.py):\n" + "\n".join(lines))
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
