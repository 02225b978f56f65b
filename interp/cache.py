"""The per-user cache folder: what the toolkit builds once per machine and reuses.

The embedded model's dequantised safetensors (:mod:`interp.models`), the byte-level tokenizer
of the tiny models (:mod:`interp.tiny`) and the CPU precision probe (:mod:`interp.precision`)
live under :func:`cache_dir`; ``$RCT_CACHE_DIR`` moves it (tests point it at a temporary folder).

Example::

    from interp.cache import cache_dir
    cache_dir() / "precision-probe.json"
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Per-user cache folder (``$RCT_CACHE_DIR``, else ``~/.cache/reversal-curse-toolkit``)."""
    root = os.environ.get("RCT_CACHE_DIR") or Path.home() / ".cache" / "reversal-curse-toolkit"
    return Path(root)
