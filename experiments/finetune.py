"""Finetune a causal LM on (prompt, completion) documents, resumably.

Full finetuning by default (LoRA with ``lora_rank > 0``), AdamW, warmup then linear decay,
gradient clipping, bf16 autocast or fp32, loss on the whole document (the paper's setting) or
on the completion only. The data order of epoch ``e`` is a permutation drawn from
``torch.Generator().manual_seed(seed + e)``; no other randomness enters, so a run resumed from
an epoch checkpoint ends bit-identical to one that never stopped.

Works under ``accelerate launch`` (DDP over GPUs or processes): each process takes every
``num_processes``-th batch, so ``batch_size`` is per process.

Example::

    cfg = FinetuneConfig(lr=5e-5, batch_size=16, epochs=3)
    log = finetune(lm, [("Orla Quillmere is", " the composer of ...")], cfg, run_dir / "checkpoints")
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
from tqdm.auto import tqdm

from interp.fileio import atomic_dir
from interp.tokens import encode_pair, pad_batch, pad_id

if TYPE_CHECKING:
    from interp.models import LoadedModel

FAULT_ENV = "RCT_FAULT_AFTER_STEPS"  # tests: hard-exit after N optimizer steps, like a kill -9


@dataclass(frozen=True)
class FinetuneConfig:
    """Args:
        lr: peak AdamW learning rate.
        batch_size: documents per optimizer step (per process under accelerate).
        epochs: passes over the training documents.
        warmup_steps: linear warmup from 0 to ``lr``.
        schedule: ``linear`` (decay to 0 at the end) or ``constant`` after warmup.
        weight_decay: AdamW weight decay.
        max_grad_norm: gradient clipping (0 disables).
        seed: data-order seed (and LoRA init).
        loss_on: ``sequence`` (every token after BOS, as the paper) or ``completion``.
        precision: ``bf16`` (autocast, fp32 master weights) or ``fp32``.
        lora_rank: 0 for full finetuning, else LoRA rank on all linear layers.
        lora_alpha: LoRA scaling numerator.
        keep_checkpoints: epoch checkpoints kept on disk (older ones are deleted).
    """

    lr: float = 5e-5
    batch_size: int = 16
    epochs: int = 1
    warmup_steps: int = 10
    schedule: str = "linear"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    loss_on: str = "sequence"
    precision: str = "bf16"
    lora_rank: int = 0
    lora_alpha: float = 16.0
    keep_checkpoints: int = 1

    def __post_init__(self) -> None:
        checks = {
            "lr": self.lr > 0, "batch_size": self.batch_size >= 1, "epochs": self.epochs >= 1,
            "warmup_steps": self.warmup_steps >= 0, "schedule": self.schedule in ("linear", "constant"),
            "weight_decay": self.weight_decay >= 0, "max_grad_norm": self.max_grad_norm >= 0,
            "loss_on": self.loss_on in ("sequence", "completion"),
            "precision": self.precision in ("bf16", "fp32"), "lora_rank": self.lora_rank >= 0,
            "keep_checkpoints": self.keep_checkpoints >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"FinetuneConfig: invalid {bad[0]}={getattr(self, bad[0])!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FinetuneConfig:
        return cls(**d)


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    done = sorted(p for p in ckpt_dir.glob("epoch-*") if (p / "state.json").exists())
    return done[-1] if done else None


def _save_checkpoint(ckpt_dir: Path, epoch: int, model: torch.nn.Module, opt: torch.optim.Optimizer,
                     sched: torch.optim.lr_scheduler.LRScheduler, state: dict[str, Any], keep: int) -> None:
    from safetensors.torch import save_model

    with atomic_dir(ckpt_dir / f"epoch-{epoch:03d}") as tmp:
        save_model(model, str(tmp / "model.safetensors"))
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "torch_rng": torch.get_rng_state()}, tmp / "trainer_state.pt")
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
    for old in sorted(ckpt_dir.glob("epoch-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer,
                     sched: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    from safetensors.torch import load_model

    load_model(model, str(path / "model.safetensors"), device=str(next(model.parameters()).device))
    blob = torch.load(path / "trainer_state.pt", weights_only=True, map_location="cpu")
    opt.load_state_dict(blob["optimizer"])
    sched.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["torch_rng"])
    return json.loads((path / "state.json").read_text())


def _lr_lambda(cfg: FinetuneConfig, total: int):
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / (cfg.warmup_steps + 1)
        if cfg.schedule == "constant":
            return 1.0
        return max(0.0, (total - step) / max(1, total - cfg.warmup_steps))
    return f


def _has_fused_adamw() -> bool:
    return "fused" in inspect.signature(torch.optim.AdamW).parameters


def encode_documents(lm: LoadedModel, docs: Sequence[tuple[str, str]], loss_on: str
                     ) -> list[tuple[list[int], list[int]]]:
    """(ids, labels) per document; labels are -100 where no loss is taken."""
    out = []
    for prompt, completion in docs:
        p, c = encode_pair(lm, prompt, completion)
        ids = p + c
        if loss_on == "sequence":
            labels = [-100] + ids[1:] if lm.bos_token_id is not None else list(ids)
        else:
            labels = [-100] * len(p) + c
        out.append((ids, labels))
    return out


def finetune(
    lm: LoadedModel,
    docs: Sequence[tuple[str, str]],
    cfg: FinetuneConfig,
    ckpt_dir: Path,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``lm.hf`` in place on ``docs``; returns the training log (loss per step).

    Args:
        docs: (prompt, completion) training documents.
        ckpt_dir: where ``epoch-NNN`` checkpoints (weights, optimizer, scheduler, RNG) go.
        resume: continue from the latest complete checkpoint in ``ckpt_dir``.
    """
    from accelerate import Accelerator

    if not docs:
        raise ValueError("finetune: no training documents")
    ckpt_dir = Path(ckpt_dir)
    acc = Accelerator(cpu=lm.device.type == "cpu")
    model = lm.hf
    if cfg.lora_rank:
        from peft import LoraConfig, get_peft_model

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = get_peft_model(model, LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha,
                                                     target_modules="all-linear", lora_dropout=0.0))
    model.train()
    encoded = encode_documents(lm, docs, cfg.loss_on)
    n_proc = acc.num_processes
    # every process must take the same number of steps: drop the ragged tail under DDP
    steps_per_epoch = math.ceil(len(encoded) / cfg.batch_size) // n_proc
    if steps_per_epoch == 0:
        raise ValueError(f"finetune: {len(encoded)} documents make no full step on {n_proc} processes")
    total = steps_per_epoch * cfg.epochs
    params = [p for p in model.parameters() if p.requires_grad]
    # the fused kernel (CPU and CUDA), as HF Trainer uses by default
    fused = {"fused": True} if lm.device.type in ("cpu", "cuda") and _has_fused_adamw() else {}
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, total))
    model, opt = acc.prepare(model, opt)

    state: dict[str, Any] = {"epoch": 0, "step": 0, "losses": [], "seconds": 0.0}
    if resume and (last := latest_checkpoint(ckpt_dir)) is not None:
        state = _load_checkpoint(last, acc.unwrap_model(model), opt, sched)
        acc.print(f"resumed from {last} (epoch {state['epoch']}, step {state['step']})")
    fault = int(os.environ.get(FAULT_ENV, "0"))
    pad = pad_id(lm)
    bar = tqdm(total=total, initial=state["step"], desc="finetune", unit="step",
               disable=not progress or not acc.is_main_process)
    for epoch in range(state["epoch"], cfg.epochs):
        t0 = time.perf_counter()
        order = torch.randperm(len(encoded), generator=torch.Generator().manual_seed(cfg.seed + epoch))
        batches = [order[i : i + cfg.batch_size].tolist() for i in range(0, len(order), cfg.batch_size)]
        for idx in batches[acc.process_index : steps_per_epoch * n_proc : n_proc]:
            t_step = time.perf_counter()
            ids, mask, _ = pad_batch([encoded[i][0] for i in idx], pad, "right", acc.device)
            labels, _, _ = pad_batch([encoded[i][1] for i in idx], -100, "right", acc.device)
            with torch.autocast(lm.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                loss = model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss
            acc.backward(loss)
            if cfg.max_grad_norm:
                acc.clip_grad_norm_(params, cfg.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            state["step"] += 1
            state["losses"].append(round(loss.item(), 6))
            state.setdefault("step_seconds", []).append(round(time.perf_counter() - t_step, 4))
            state.setdefault("step_tokens", []).append(int(ids.numel()))
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}", lr=f"{sched.get_last_lr()[0]:.1e}")
            if fault and state["step"] >= fault:
                os._exit(137)
        state["epoch"] = epoch + 1
        state["seconds"] = round(state["seconds"] + time.perf_counter() - t0, 3)
        acc.wait_for_everyone()
        if acc.is_main_process:
            _save_checkpoint(ckpt_dir, epoch + 1, acc.unwrap_model(model), opt, sched, state,
                             cfg.keep_checkpoints)
    bar.close()
    model = acc.unwrap_model(model)
    if cfg.lora_rank:
        model = model.merge_and_unload()
    model.eval()
    lm.hf = model
    return {"steps": state["step"], "steps_per_epoch": steps_per_epoch, "epochs": cfg.epochs,
            "seconds": state["seconds"], "losses": state["losses"],
            "final_loss": state["losses"][-1] if state["losses"] else None,
            "step_seconds": state.get("step_seconds", []), "step_tokens": state.get("step_tokens", [])}
