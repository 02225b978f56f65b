"""The training loop: :func:`finetune` runs the epochs over a :class:`Trainer`
(:mod:`experiments.finetune.trainer`), each optimizer step split between the processes,
with a checkpoint after every epoch (:mod:`experiments.finetune.checkpoint`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from experiments.finetune.batches import batch_order, padded_fraction
from experiments.finetune.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from experiments.finetune.config import FinetuneConfig
from experiments.finetune.snapshots import save_snapshot, snapshot_plan
from experiments.finetune.trainer import Trainer, setup
from interp.precision import AUTOCAST_DTYPES
from interp.tokens import Document, pad_batch, pad_id

if TYPE_CHECKING:
    from interp.models import LoadedModel


def _step(tr: Trainer, batch: Sequence[int], cfg: FinetuneConfig, pad: int) -> float:
    """One optimizer step on the global ``batch``, of which this process takes every
    ``num_processes``-th document; returns the loss over the whole global batch.

    Each process scales its token-mean loss by its share of the global batch's target
    tokens, so that DDP's gradient average equals the token-mean gradient of the whole
    batch: N processes train as one process with their global batch would.
    """
    acc = tr.acc
    idx = batch[acc.process_index :: acc.num_processes]
    ids, mask, _ = pad_batch([tr.encoded[i][0] for i in idx], pad, "right", acc.device)
    labels, _, _ = pad_batch([tr.encoded[i][1] for i in idx], -100, "right", acc.device)
    dtype = AUTOCAST_DTYPES.get(tr.precision.value)
    with torch.autocast(acc.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        loss = tr.model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss
    if acc.num_processes > 1:
        n_local = sum(tr.n_targets[i] for i in idx)
        n_global = sum(tr.n_targets[i] for i in batch)
        share = n_local * acc.num_processes / n_global
        loss_sum = acc.reduce(loss.detach() * n_local, reduction="sum")
        logged = (loss_sum / n_global).item()
        loss = loss * share
    else:
        logged = loss.item()
    acc.backward(tr.scaler.scale(loss) if tr.scaler is not None else loss)
    if tr.scaler is not None:
        tr.scaler.unscale_(tr.opt)
    if cfg.max_grad_norm:
        acc.clip_grad_norm_(tr.params, cfg.max_grad_norm)
    if tr.scaler is not None:
        tr.scaler.step(tr.opt)
        tr.scaler.update()
    else:
        tr.opt.step()
    tr.sched.step()
    tr.opt.zero_grad(set_to_none=True)
    return logged


def _epoch(tr: Trainer, epoch: int, cfg: FinetuneConfig, pad: int, bar: Any,
           on_step: Callable[[dict[str, Any]], None] | None, ckpt_dir: Path) -> None:
    """One pass over the documents: this process's share of each global batch."""
    acc, state = tr.acc, tr.state
    lengths = [len(ids) for ids, _ in tr.encoded]
    batches = batch_order(lengths, cfg, epoch, cfg.batch_size * acc.num_processes)[: tr.steps_per_epoch]
    state.setdefault("padded_fraction", []).append(round(padded_fraction(lengths, batches, acc.num_processes), 4))
    t0 = time.perf_counter()
    snaps = {e["step"]: e for e in snapshot_plan(cfg, tr.steps_per_epoch)} if cfg.snapshots else {}
    for batch in batches:
        if state["step"] in snaps and acc.is_main_process:
            save_snapshot(ckpt_dir, acc.unwrap_model(tr.model), snaps[state["step"]])
        t_step = time.perf_counter()
        loss = _step(tr, batch, cfg, pad)
        idx = batch[acc.process_index :: acc.num_processes]
        state["step"] += 1
        state["losses"].append(round(loss, 6))
        state.setdefault("step_seconds", []).append(round(time.perf_counter() - t_step, 4))
        state.setdefault("step_tokens", []).append(len(idx) * max(lengths[i] for i in idx))
        bar.update(1)
        bar.set_postfix(epoch=epoch + 1, loss=f"{loss:.3f}", lr=f"{tr.sched.get_last_lr()[0]:.1e}")
        if on_step is not None:
            on_step(state)
    state["epoch"] = epoch + 1
    state["seconds"] = round(state["seconds"] + time.perf_counter() - t0, 3)


def finetune(
    lm: LoadedModel,
    docs: Sequence[Document],
    cfg: FinetuneConfig,
    ckpt_dir: Path,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    on_epoch_end: Callable[[dict[str, Any]], bool | None] | None = None,
) -> dict[str, Any]:
    """Train ``lm.hf`` in place on ``docs``; returns the training log (loss per step, the
    precision chosen and why, padded-token fraction per epoch).

    Args:
        docs: (prompt, completion) training documents, or
            :class:`interp.tokens.TokenReversed` ones (token-level reverse training).
        ckpt_dir: where ``epoch-NNN`` checkpoints (weights, optimizer, scheduler, every
            process's RNG state) go.
        resume: continue from the latest complete checkpoint in ``ckpt_dir``.
        on_step: called with the running state after every optimizer step (progress
            reporting, tests that interrupt a run).
        on_epoch_end: called with the running state (``state["epoch"]`` epochs done) after
            every epoch, before its checkpoint is written; ``lm`` holds the weights trained so
            far (put back in train mode afterwards). A true return stops training there: the
            checkpoint records it (``stopped_early``), so a resumed run stops too.
    """
    ckpt_dir = Path(ckpt_dir)
    tr = setup(lm, docs, cfg)
    if resume and (last := latest_checkpoint(ckpt_dir)) is not None:
        tr.state = load_checkpoint(last, tr)
        tr.acc.print(f"resumed from {last} (epoch {tr.state['epoch']}, step {tr.state['step']})")
    pad = pad_id(lm)
    total = tr.steps_per_epoch * cfg.epochs
    bar = tqdm(total=total, initial=tr.state["step"], desc=f"finetune ({tr.precision.value})",
               unit="step", disable=not progress or not tr.acc.is_main_process)
    for epoch in range(tr.state["epoch"], cfg.epochs):
        if tr.state.get("stopped_early"):
            break
        _epoch(tr, epoch, cfg, pad, bar, on_step, ckpt_dir)
        if on_epoch_end is not None:
            if on_epoch_end(tr.state):
                tr.state["stopped_early"] = tr.state["epoch"]
            tr.model.train()
        save_checkpoint(ckpt_dir, epoch + 1, tr, cfg.keep_checkpoints)
    bar.close()
    return _finish(lm, tr, cfg)


def _finish(lm: LoadedModel, tr: Trainer, cfg: FinetuneConfig) -> dict[str, Any]:
    """Unwrap (and merge LoRA into) the model, hand it back to ``lm``, and build the log."""
    model = tr.acc.unwrap_model(tr.model)
    if cfg.lora_rank:
        model = model.merge_and_unload()
    model.eval()
    lm.set_hf(model)
    s = tr.state
    return {"steps": s["step"], "steps_per_epoch": tr.steps_per_epoch, "epochs": cfg.epochs,
            "seconds": s["seconds"], "losses": s["losses"],
            "final_loss": s["losses"][-1] if s["losses"] else None,
            "precision": tr.precision.to_dict(), "num_processes": tr.acc.num_processes,
            "padded_fraction": s.get("padded_fraction", []),
            "step_seconds": s.get("step_seconds", []), "step_tokens": s.get("step_tokens", []),
            **({"stopped_early": s["stopped_early"]} if s.get("stopped_early") else {})}
