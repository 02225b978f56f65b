"""Weight snapshots along training, for TracIn over several checkpoints (Pruthi et al. 2020).

With ``finetune.snapshots: K`` (K >= 1), training saves the model's weights at the start of
``K`` equal stretches of its steps (step 0, the base weights, is the first) under
``CKPT_DIR/snapshots/step-NNNNN/``: ``model.safetensors`` (weights only, fp32) and
``snapshot.json`` (``step``, ``steps``, ``lr_sum``, ``weight``). A snapshot stands for the
stretch of steps up to the next one; its ``weight`` is the sum of the learning rates over that
stretch divided by the steps per epoch, i.e. the learning rate each document's gradient was
taken with, summed over the times it was seen in the stretch. TracIn is then
``sum_i weight_i * grad_i(query) . grad_i(document)``
(:func:`interp.influence_tracin.tracin_checkpoints`).

Example::

    from experiments.finetune.snapshots import list_snapshots
    for path, meta in list_snapshots("runs/exp1-cpu/checkpoints"):
        print(meta["step"], meta["weight"])
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from experiments.finetune.config import FinetuneConfig, lr_lambda


def snapshot_steps(total: int, k: int) -> list[int]:
    """The steps (0-based, before the step runs) at which ``k`` snapshots of a ``total``-step
    run are taken: the starts of ``k`` equal stretches, step 0 first."""
    if k < 1 or total < 1:
        return []
    return sorted({i * total // k for i in range(k)})


def snapshot_plan(cfg: FinetuneConfig, steps_per_epoch: int) -> list[dict[str, Any]]:
    """One entry per snapshot: ``step``, ``steps`` (the stretch it stands for), ``lr_sum`` and
    ``weight`` (``lr_sum / steps_per_epoch``)."""
    total = steps_per_epoch * cfg.epochs
    steps = snapshot_steps(total, cfg.snapshots)
    f = lr_lambda(cfg, total)
    plan = []
    for i, s in enumerate(steps):
        end = steps[i + 1] if i + 1 < len(steps) else total
        lr_sum = sum(cfg.lr * f(t) for t in range(s, end))
        plan.append({"step": s, "steps": end - s, "lr_sum": lr_sum, "weight": lr_sum / steps_per_epoch})
    return plan


def save_snapshot(ckpt_dir: Path, model: torch.nn.Module, entry: dict[str, Any]) -> Path:
    """Write one snapshot atomically (a temporary folder renamed into place). Tied weights
    are stored once; ``snapshot.json`` names their aliases."""
    from safetensors.torch import save_file

    final = Path(ckpt_dir) / "snapshots" / f"step-{entry['step']:05d}"
    if (final / "snapshot.json").exists():
        return final
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state: dict[str, torch.Tensor] = {}
    first: dict[tuple[int, tuple[int, ...]], str] = {}
    tied: dict[str, str] = {}
    for k, v in model.state_dict().items():
        key = (v.data_ptr(), tuple(v.shape))
        if key in first:
            tied[k] = first[key]
            continue
        first[key] = k
        state[k] = v.detach().float().cpu().contiguous()
    save_file(state, str(tmp / "model.safetensors"))
    (tmp / "snapshot.json").write_text(json.dumps({**entry, "tied": tied}, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def list_snapshots(ckpt_dir: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """The complete snapshots under ``CKPT_DIR/snapshots``, by step."""
    root = Path(ckpt_dir) / "snapshots"
    out = []
    for p in sorted(root.glob("step-*")):
        if (p / "snapshot.json").exists() and not p.name.endswith(".tmp"):
            out.append((p, json.loads((p / "snapshot.json").read_text())))
    return out


def load_snapshot(model: torch.nn.Module, path: str | Path) -> None:
    """Put a snapshot's weights into ``model`` (same architecture; tied weights follow the
    weight they are tied to)."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = json.loads((path / "snapshot.json").read_text())
    state = load_file(str(path / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if m not in meta.get("tied", {})]
    if missing or unexpected:
        raise ValueError(f"snapshot {path}: its weights do not match the model (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
