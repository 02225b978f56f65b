"""Epoch checkpoints of a finetuning run, written and read back so that a resumed run ends
bit-identical to one that never stopped: weights, optimizer, scheduler, gradient scaler, the
running state, and every process's RNG state, in one atomic ``epoch-NNN`` folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from interp.fileio import atomic_dir

if TYPE_CHECKING:
    from experiments.finetune.trainer import Trainer


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    """The newest complete ``epoch-NNN`` checkpoint in ``ckpt_dir``; None when there is none."""
    done = sorted(p for p in ckpt_dir.glob("epoch-*") if (p / "state.json").exists())
    return done[-1] if done else None


def _rng_state() -> dict[str, Any]:
    """This process's RNG state: the CPU generator and, where present, the CUDA ones."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _checkpoint_paths(ckpt_dir: Path, epoch: int) -> tuple[Path, Path]:
    return ckpt_dir / f"epoch-{epoch:03d}", ckpt_dir / f".rng-epoch-{epoch:03d}"


def save_checkpoint(ckpt_dir: Path, epoch: int, tr: Trainer, keep: int) -> None:
    """Every process writes its RNG state; the main process writes weights, optimizer,
    scheduler, scaler and state, and moves the RNG files in, all in one atomic folder."""
    from safetensors.torch import save_model

    from interp.fileio import write_json

    acc = tr.acc
    final, rng_dir = _checkpoint_paths(ckpt_dir, epoch)
    rng_dir.mkdir(parents=True, exist_ok=True)
    tmp_rng = rng_dir / f".rank-{acc.process_index}.pt.tmp"
    torch.save(_rng_state(), tmp_rng)
    os.replace(tmp_rng, rng_dir / f"rank-{acc.process_index}.pt")
    acc.wait_for_everyone()
    if acc.is_main_process:
        with atomic_dir(final) as tmp:
            save_model(acc.unwrap_model(tr.model), str(tmp / "model.safetensors"))
            blob = {"optimizer": tr.opt.state_dict(), "scheduler": tr.sched.state_dict()}
            if tr.scaler is not None:
                blob["scaler"] = tr.scaler.state_dict()
            torch.save(blob, tmp / "trainer_state.pt")
            shutil.move(str(rng_dir), str(tmp / "rng"))
            write_json(tmp / "state.json", {**tr.state, "num_processes": acc.num_processes})
        for old in sorted(ckpt_dir.glob("epoch-*"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in ckpt_dir.glob(".*"):  # temp folders of an interrupted write
            shutil.rmtree(stale, ignore_errors=True)
    acc.wait_for_everyone()


def load_checkpoint(path: Path, tr: Trainer) -> dict[str, Any]:
    """Load the checkpoint at ``path`` into ``tr`` (weights, optimizer, scheduler, scaler and
    this process's RNG state); returns the running state it recorded."""
    from safetensors.torch import load_model

    model = tr.acc.unwrap_model(tr.model)
    load_model(model, str(path / "model.safetensors"), device=str(next(model.parameters()).device))
    blob = torch.load(path / "trainer_state.pt", weights_only=True, map_location="cpu")
    tr.opt.load_state_dict(blob["optimizer"])
    tr.sched.load_state_dict(blob["scheduler"])
    if tr.scaler is not None and "scaler" in blob:
        tr.scaler.load_state_dict(blob["scaler"])
    rng = path / "rng" / f"rank-{tr.acc.process_index}.pt"
    if rng.exists():
        _set_rng_state(torch.load(rng, weights_only=True, map_location="cpu"))
    elif (path / "trainer_state.pt").exists() and "torch_rng" in blob:  # older checkpoints
        torch.set_rng_state(blob["torch_rng"])
    state = json.loads((path / "state.json").read_text())
    saved_procs = state.pop("num_processes", 1)
    if saved_procs != tr.acc.num_processes:
        raise ValueError(f"{path} was written by {saved_procs} process(es); resume it with the "
                         f"same number (now {tr.acc.num_processes})")
    return state
