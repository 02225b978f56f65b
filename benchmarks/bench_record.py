"""Cost of recording activations + gradients at every MLP layer vs a plain forward+backward.

On the embedded model (SmolLM2-135M, fp32, CPU by default), one batch of ``--batch``
(prompt, target) pairs of about ``--tokens`` tokens:

- ``hf fwd+bwd``: the HF model, log-prob of the targets, ``backward()`` (parameter grads:
  what a training step costs before the optimizer);
- ``bridge fwd+bwd``: the same through the TransformerLens bridge;
- ``record acts``: :func:`interp.recording.record`, every ``mlp_post`` at all positions;
- ``record acts+grads``: the same with ``grad="sum"`` (activation gradients only).

Methods run interleaved, round by round (a shared CPU's noise then hits all alike); prints
median and minimum seconds and the ratios to ``hf fwd+bwd`` (goal <= 1.5x).

    python benchmarks/bench_record.py [--model smollm2-135m] [--batch 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from interp.hooks import layer_hooks
from interp.models import load_model
from interp.recording import Query, record
from interp.tokens import encode_pair, pad_batch, pad_id

WORDS = ("the quiet composer of the northern river songs was known to many as a patient "
         "teacher who wrote letters every winter about distant glass towers").split()


def make_queries(n: int, n_words: int) -> list[Query]:
    out = []
    for i in range(n):
        words = [WORDS[(i * 7 + j) % len(WORDS)] for j in range(n_words)]
        out.append(Query(" ".join(words).capitalize() + " is", f" Name{i} Surname"))
    return out


def timed_rounds(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call, the methods interleaved round by round (fair under shared-CPU noise)."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--words", type=int, default=24, help="prompt length in words")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    lm = load_model(a.model, device=a.device)
    queries = make_queries(a.batch, a.words)
    enc = [encode_pair(lm, q.prompt, q.target) for q in queries]
    ids, mask, _ = pad_batch([pp + c for pp, c in enc], pad_id(lm), "right", lm.device)
    n_layers = lm.bridge.cfg.n_layers
    hooks = layer_hooks("mlp_post", n_layers)

    def objective(logits: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits.float(), -1)  # [batch, pos, vocab]
        return sum(logp[r, len(pp) - 1 + j, c[j]] for r, (pp, c) in enumerate(enc) for j in range(len(c)))

    def hf_step() -> None:
        lm.hf.zero_grad(set_to_none=True)
        objective(lm.hf(input_ids=ids, attention_mask=mask).logits).backward()

    def bridge_step() -> None:
        lm.hf.zero_grad(set_to_none=True)
        objective(lm.bridge(ids, attention_mask=mask)).backward()

    times = timed_rounds({
        "hf fwd+bwd (param grads)": hf_step,
        "bridge fwd+bwd (param grads)": bridge_step,
        "record acts (all MLP layers)": lambda: record(lm, queries, hooks, ("all",), "none",
                                                       batch_size=a.batch),
        "record acts+grads (all MLP layers)": lambda: record(lm, queries, hooks, ("all",), "sum",
                                                             batch_size=a.batch),
    }, a.repeats)
    lm.hf.zero_grad(set_to_none=True)
    base_med = statistics.median(times["hf fwd+bwd (param grads)"])
    base_min = min(times["hf fwd+bwd (param grads)"])
    print(f"model {lm.name}, {n_layers} layers, batch {a.batch} x {ids.shape[1]} tokens, "
          f"{torch.get_num_threads()} threads, device {a.device}, {a.repeats} interleaved rounds")
    print(f"{'':38s} {'median s':>9s} {'min s':>7s} {'x hf (median)':>14s} {'x hf (min)':>11s}")
    for name, ts in times.items():
        med, lo = statistics.median(ts), min(ts)
        print(f"{name:38s} {med:9.3f} {lo:7.3f} {med / base_med:13.2f}x {lo / base_min:10.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
