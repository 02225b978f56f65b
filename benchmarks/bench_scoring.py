"""Batched completion scoring vs one pair at a time, on the embedded model.

Scores the 600 held-out name prompts of experiment 1 (d2p_prompts_test and
p2d_reverse_prompts_test of the default dataset), checks that every method agrees with the
one-at-a-time baseline within 1e-4 nats, and prints a table of speed ratios.

    .venv/bin/python benchmarks/bench_scoring.py [--model smollm2-135m] [--n 600]
"""

from __future__ import annotations

import argparse
import time

import torch

from experiments.exp1_data import Exp1DataConfig, generate_exp1
from interp import load_model, score_completions
from interp.tokens import encode_pair


def pairs_600(n: int) -> list[tuple[str, str]]:
    ds = generate_exp1(Exp1DataConfig())
    rows = ds.files["d2p_prompts_test"] + ds.files["p2d_reverse_prompts_test"]
    return [(e.prompt, e.completion) for e in rows][:n]


@torch.no_grad()
def one_at_a_time(lm, pairs):
    """What a user writes without the toolkit: a full forward per pair."""
    out = []
    for prompt, completion in pairs:
        p, c = encode_pair(lm, prompt, completion)
        logp = torch.log_softmax(lm.hf(torch.tensor([p + c])).logits[0].float(), -1)
        out.append(sum(logp[len(p) - 1 + j, t].item() for j, t in enumerate(c)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=600)
    args = ap.parse_args()
    t0 = time.perf_counter()
    lm = load_model(args.model)
    load_s = time.perf_counter() - t0
    pairs = pairs_600(args.n)
    score_completions(lm, pairs[:8])  # warm-up
    rows = []
    t0 = time.perf_counter()
    ref = one_at_a_time(lm, pairs)
    base = time.perf_counter() - t0
    rows.append(("one at a time, full logits (baseline)", base, 0.0))
    for bs in (1, 32, 64):
        t0 = time.perf_counter()
        got = [s.total for s in score_completions(lm, pairs, batch_size=bs)]
        dt = time.perf_counter() - t0
        rows.append((f"score_completions batch_size={bs}", dt, max(abs(a - b) for a, b in zip(got, ref))))
    print(f"\nload_model({args.model!r}): {load_s:.2f} s (from the cache after the first load)")
    print(f"{len(pairs)} (prompt, completion) pairs, model {args.model}, "
          f"{torch.get_num_threads()} torch threads\n")
    print("| method | seconds | pairs/s | speed-up vs baseline | max abs diff (nats) |")
    print("|---|---|---|---|---|")
    for name, dt, diff in rows:
        print(f"| {name} | {dt:.1f} | {len(pairs) / dt:.1f} | {base / dt:.2f}x | {diff:.1e} |")
    worst = max(r[2] for r in rows)
    print(f"\nagreement within 1e-4: {'yes' if worst <= 1e-4 else 'NO'} (worst {worst:.1e})")


if __name__ == "__main__":
    main()
