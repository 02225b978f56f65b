"""Batched completion scoring vs one pair at a time, on the embedded model.

Two workloads of 600 (prompt, completion) pairs from the default experiment 1 dataset:

- ``distinct``: the 600 held-out name prompts (d2p_prompts_test + p2d_reverse_prompts_test),
  each with its correct name: 600 different prompts;
- ``eval``: the first 300 of them, each with its correct name and a random other name of the
  dataset, as the log-probability evaluation scores them.

Every method is checked against the one-at-a-time baseline (max abs difference of the summed
log-probs, nats; the goal is 1e-4) and a table of speed ratios is printed per workload.

    .venv/bin/python benchmarks/bench_scoring.py [--model smollm2-135m] [--workload distinct eval]
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from experiments.exp1.data import Exp1DataConfig, generate_exp1
from interp import load_model, score_completions
from interp.prefix_tree import PrefixTree
from interp.tokens import encode_pair


def workload(name: str, n: int = 600) -> list[tuple[str, str]]:
    ds = generate_exp1(Exp1DataConfig())
    rows = ds.files["d2p_prompts_test"] + ds.files["p2d_reverse_prompts_test"]
    if name == "distinct":
        return [(e.prompt, e.completion) for e in rows][:n]
    if name == "eval":
        rng = random.Random(0)
        names = sorted({e.completion for e in rows})
        pairs = []
        for e in rows[: n // 2]:
            pairs += [(e.prompt, e.completion), (e.prompt, rng.choice([x for x in names if x != e.completion]))]
        return pairs
    raise ValueError(f"unknown workload {name!r} (distinct, eval)")



@torch.no_grad()
def one_at_a_time(lm, pairs):
    """What a user writes without the toolkit: a full forward per pair."""
    out = []
    for prompt, completion in pairs:
        p, c = encode_pair(lm, prompt, completion)
        logp = torch.log_softmax(lm.hf(torch.tensor([p + c])).logits[0].float(), -1)
        out.append(sum(logp[len(p) - 1 + j, t].item() for j, t in enumerate(c)))
    return out


def bench(lm, name: str) -> None:
    pairs = workload(name)
    enc = [encode_pair(lm, p, c) for p, c in pairs]
    n_tokens = sum(len(p) + len(c) for p, c in enc)
    n_nodes = len(PrefixTree.build([(p + c)[:-1] for p, c in enc]))
    t0 = time.perf_counter()
    ref = one_at_a_time(lm, pairs)
    base = time.perf_counter() - t0
    rows = [("one at a time, full logits (baseline)", base, None)]
    methods = [
        ("`score_completions` padded batches, batch_size=64", dict(share_prefixes=False, batch_size=64)),
        ("`score_completions` prefix tree, batch_size=64 (default)", dict(batch_size=64)),
        ("`score_completions` prefix tree, batch_size=600", dict(batch_size=600)),
    ]
    for label, kw in methods:
        t0 = time.perf_counter()
        got = [s.total for s in score_completions(lm, pairs, **kw)]
        dt = time.perf_counter() - t0
        rows.append((label, dt, max(abs(a - b) for a, b in zip(got, ref))))
    print(f"\n### workload `{name}`: {len(pairs)} pairs, {len({p for p, _ in pairs})} distinct prompts, "
          f"{n_tokens} tokens; {n_nodes} distinct prefixes once the last token of each pair is dropped\n")
    print("| method | seconds | pairs/s | speed-up vs baseline | max abs diff vs baseline (nats) |")
    print("|---|---|---|---|---|")
    for label, dt, diff in rows:
        d = "-" if diff is None else f"{diff:.1e}"
        print(f"| {label} | {dt:.1f} | {len(pairs) / dt:.1f} | {base / dt:.2f}x | {d} |")
    worst = max(r[2] for r in rows[1:])
    print(f"\nagreement within 1e-4: {'yes' if worst <= 1e-4 else 'NO'} (worst {worst:.1e})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--workload", nargs="+", default=["distinct", "eval"], choices=["distinct", "eval"])
    args = ap.parse_args()
    lm = load_model(args.model)
    score_completions(lm, workload("distinct")[:8])  # warm-up
    print(f"model {args.model}, {lm.hf.dtype}, attention {lm.hf.config._attn_implementation}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in args.workload:
        bench(lm, name)


if __name__ == "__main__":
    main()
