"""How long ``load_model`` takes once the model cache exists (run it twice after a fresh
install: the first run builds the cache from the wheel's GGUF file).

    .venv/bin/python benchmarks/bench_load.py [--model smollm2-135m]
"""

from __future__ import annotations

import argparse
import time

t0 = time.perf_counter()
import torch  # noqa: E402
import transformers  # noqa: E402,F401

from interp import load_model  # noqa: E402
from interp.models import EMBEDDED_MODELS, cache_dir  # noqa: E402

IMPORT_S = time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    args = ap.parse_args()
    cached = args.model in EMBEDDED_MODELS and (cache_dir() / args.model / "model.safetensors").exists()
    t = time.perf_counter()
    lm = load_model(args.model)
    first = time.perf_counter() - t
    t = time.perf_counter()
    load_model(args.model)
    second = time.perf_counter() - t
    print(f"import torch + transformers + interp: {IMPORT_S:.2f} s ({torch.__version__})")
    print(f"load_model({args.model!r}), first in this process: {first:.2f} s "
          f"({'from the cache' if cached else 'cache built now'}); again: {second:.2f} s; "
          f"{sum(p.numel() for p in lm.hf.parameters()) / 1e6:.1f}M parameters")


if __name__ == "__main__":
    main()
