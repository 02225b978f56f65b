"""Choose the device and the numeric precision by what the machine can do, not by assumption.

Two decisions, each returned with its reason so that a run's manifest can say why:

- :func:`choose_device` turns ``auto`` into ``cuda``, then ``mps`` (Apple), then ``cpu``;
- :func:`choose_precision` turns ``auto`` into ``bf16`` autocast where the device runs bf16
  matmuls fast, ``fp16`` autocast (with a gradient scaler) on CUDA GPUs without bf16, and
  ``fp32`` otherwise. On a CPU the answer comes from :func:`probe_cpu_matmul`, a measured
  probe of small matmuls in each dtype (the median of 5 interleaved rounds, about 0.7 s; bf16
  only when it is at least :data:`FAST_BF16_RATIO` times fp32), cached per machine (``rct
  --precision-probe refresh`` measures again): CPUs without
  native bf16 (AVX2 only) run bf16 matmuls tens of times *slower* than fp32, and a feature
  flag does not always say which kind of CPU this is.

An explicit ``bf16``/``fp16``/``fp32`` always wins; an explicit ``bf16`` on a CPU where the
probe found bf16 more than :data:`SLOW_BF16_RATIO` times slower than fp32 prints a one-line
warning with the measured ratio.

Example::

    from interp.precision import choose_device, choose_precision
    dev = choose_device("auto")                 # Choice(value='cpu', reason='no CUDA or MPS device')
    prec = choose_precision("auto", dev.value)  # Choice(value='fp32', reason='cpu: bf16 matmul 0.02x fp32 ...')
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from interp.cache import cache_dir

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
PROBE_VERSION = 2  # 2: median of 5 interleaved rounds (1: one window per dtype)
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# bf16 autocast is chosen on a CPU when its matmuls run at least this much faster than fp32;
# below that the precision loss buys nothing.
FAST_BF16_RATIO = 1.3
# an explicit bf16 warns when bf16 matmuls are this many times slower than fp32
SLOW_BF16_RATIO = 3.0


@dataclass(frozen=True)
class Choice:
    """A resolved setting and why. ``probe`` holds the measurement it rests on, if any."""

    value: str
    reason: str
    requested: str = "auto"
    probe: dict[str, Any] | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def choose_device(requested: str = "auto") -> Choice:
    """``auto`` -> ``cuda`` (when torch sees a GPU), else ``mps``, else ``cpu``.

    An explicit device is checked: ``cuda``/``mps`` on a machine without one raises
    ``ValueError`` naming what torch sees.
    """
    if requested == "auto":
        if torch.cuda.is_available():
            return Choice("cuda", f"auto: CUDA device {torch.cuda.get_device_name(0)}", requested)
        if _mps_available():
            return Choice("mps", "auto: Apple MPS device (untested; ops missing there fall "
                                 "back to the CPU only with PYTORCH_ENABLE_MPS_FALLBACK=1)", requested)
        return Choice("cpu", "auto: no CUDA or MPS device", requested)
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} asked for, but torch sees no CUDA device "
                         f"(torch {torch.__version__}); use --device cpu or auto")
    if requested == "mps" and not _mps_available():
        raise ValueError("device 'mps' asked for, but torch sees no MPS device; use --device cpu or auto")
    return Choice(requested, "asked for", requested)


# ---------------------------------------------------------------------------- CPU probe

def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> str:
    """The CPU's feature flags (``/proc/cpuinfo``), sorted; empty where unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return " ".join(sorted(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return ""


def _probe_key() -> str:
    """What the probe's answer depends on: CPU model and flags, ISA limits, torch build, thread
    count, and the probe's own version (a better probe does not reuse an older one's guess)."""
    env = {k: os.environ.get(k) for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                                          "MKL_ENABLE_INSTRUCTIONS")}
    raw = json.dumps([PROBE_VERSION, _cpu_model(), _cpu_flags(), platform.machine(), torch.__version__,
                      torch.backends.cpu.get_cpu_capability(), torch.get_num_threads(), env])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _gflops(dtype: torch.dtype, n: int, seconds: float) -> float:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dtype)
    b = torch.randn(n, n, generator=g).to(dtype)
    a @ b  # warm-up (kernel selection, packing buffers)
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / max(time.perf_counter() - t0, 1e-9) / 1e9)
    return best


def measure_cpu_matmul(n: int = 384, seconds: float = 0.06, rounds: int = 5) -> dict[str, Any]:
    """GFLOP/s of an ``n x n`` matmul in fp32 and in bf16 on this CPU: ``rounds`` rounds, each
    the best of a short window per dtype, the two dtypes interleaved; the medians and the
    median of the per-round ratios (about 0.7 s). One noisy window (another process waking up)
    then cannot decide the precision of every later run."""
    import statistics

    fp32s, bf16s, ratios = [], [], []
    for _ in range(rounds):
        f, b = _gflops(torch.float32, n, seconds), _gflops(torch.bfloat16, n, seconds)
        fp32s.append(f)
        bf16s.append(b)
        ratios.append(b / max(f, 1e-9))
    return {"n": n, "threads": torch.get_num_threads(), "rounds": rounds,
            "fp32_gflops": round(statistics.median(fp32s), 1), "bf16_gflops": round(statistics.median(bf16s), 1),
            "bf16_over_fp32": round(statistics.median(ratios), 3),
            "ratios": [round(r, 3) for r in ratios], "version": PROBE_VERSION,
            "cpu": _cpu_model(), "capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__}


def probe_cache_file() -> Path:
    return cache_dir() / "precision-probe.json"


def probe_cpu_matmul(refresh: bool | None = None) -> dict[str, Any]:
    """:func:`measure_cpu_matmul`, cached per machine (CPU model and flags, ISA limits, torch
    version, thread count) in ``<cache>/precision-probe.json``. A cached answer says
    ``cached: true``. ``refresh`` (default: the environment variable ``RCT_PRECISION_PROBE``
    set to ``refresh``, which ``rct --precision-probe refresh`` sets) measures again and
    replaces the cached answer."""
    if refresh is None:
        refresh = os.environ.get("RCT_PRECISION_PROBE", "").lower() == "refresh"
    path, key = probe_cache_file(), _probe_key()
    cache: dict[str, Any] = {}
    if path.exists():
        try:
            cache = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            cache = {}
    if not refresh and isinstance(cache.get(key), dict):
        return {**cache[key], "cached": True}
    result = measure_cpu_matmul()
    cache[key] = result
    try:
        from interp.fileio import write_json

        write_json(path, cache)
    except OSError:  # a read-only cache is no reason to fail a run
        pass
    return {**result, "cached": False}


# ---------------------------------------------------------------------------- precision

def choose_precision(requested: str, device: str,
                     probe: Callable[[], dict[str, Any]] = probe_cpu_matmul,
                     cuda_bf16: Callable[[], bool] | None = None,
                     warn: Callable[[str], None] | None = None) -> Choice:
    """Resolve ``auto|bf16|fp16|fp32`` for ``device`` (a resolved device: cpu, cuda[:N], mps).

    Args:
        requested: what the config asks for.
        device: where the model runs.
        probe: the CPU matmul measurement (tests pass a fake).
        cuda_bf16: whether the GPU supports bf16 (default ``torch.cuda.is_bf16_supported``).
        warn: where the slow-bf16 warning goes (default: one line on stderr).
    Raises:
        ValueError: an unknown precision, or fp16 asked for on a CPU.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision: expected one of {list(PRECISIONS)}, got {requested!r}")
    kind = device.split(":")[0]
    if requested == "fp16" and kind == "cpu":
        raise ValueError("precision fp16 needs a CUDA or MPS device; on a CPU use auto, bf16 or fp32")
    if kind == "cuda":
        has_bf16 = (cuda_bf16 or torch.cuda.is_bf16_supported)()
        if requested != "auto":
            return Choice(requested, "asked for", requested)
        if has_bf16:
            return Choice("bf16", "auto: the GPU supports bf16", requested)
        return Choice("fp16", "auto: the GPU has no bf16; fp16 autocast with a gradient scaler", requested)
    if kind == "mps":
        if requested != "auto":
            return Choice(requested, "asked for", requested)
        return Choice("fp32", "auto: MPS mixed precision is untested here; fp32", requested)
    # CPU: by measurement
    if requested == "fp32":
        return Choice("fp32", "asked for", requested)
    measured = probe()
    ratio = float(measured["bf16_over_fp32"])
    numbers = (f"bf16 matmul {measured['bf16_gflops']:.0f} GFLOP/s vs fp32 "
               f"{measured['fp32_gflops']:.0f} ({ratio:.2f}x)")
    if requested == "bf16":
        if ratio * SLOW_BF16_RATIO < 1.0:
            (warn or _stderr)(f"warning: bf16 asked for on a CPU where bf16 matmuls run "
                              f"{1 / max(ratio, 1e-9):.0f}x slower than fp32 ({numbers}); "
                              "precision=auto would choose fp32")
        return Choice("bf16", f"asked for; cpu: {numbers}", requested, measured)
    if ratio >= FAST_BF16_RATIO:
        return Choice("bf16", f"auto: cpu runs bf16 fast, {numbers}", requested, measured)
    return Choice("fp32", f"auto: cpu has no fast bf16, {numbers}", requested, measured)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def choose_eval_dtype(requested: str, device: str, **kw: Any) -> Choice:
    """The parameter dtype for evaluation and analysis, by the same rule as training:
    ``auto`` gives ``bfloat16`` where bf16 is fast (``float16`` on a CUDA GPU without bf16),
    else ``float32``. An explicit dtype is kept; ``bfloat16`` on a CPU where bf16 is slow
    warns with the measured ratio."""
    names = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
    if requested == "auto":
        prec = choose_precision("auto", device, **kw)
        return Choice(names[prec.value], prec.reason, requested, prec.probe)
    if requested not in names.values():
        raise ValueError(f"dtype: expected auto or one of {sorted(names.values())}, got {requested!r}")
    if requested == "bfloat16" and device.split(":")[0] == "cpu":
        prec = choose_precision("bf16", device, **kw)  # warns where bf16 is slow
        return Choice(requested, prec.reason, requested, prec.probe)
    return Choice(requested, "asked for", requested)
