"""Finetune a causal LM on (prompt, completion) documents, resumably.

Full finetuning by default (LoRA with ``lora_rank > 0``), AdamW, warmup then linear decay,
gradient clipping, precision chosen by measurement (``auto``: bf16 autocast where the device
runs bf16 fast, fp16 with a gradient scaler on GPUs without bf16, else fp32; see
:mod:`interp.precision`), loss on the whole document (the paper's setting) or on the
completion only.

Batches are length-grouped: the epoch's order is a permutation drawn from
``torch.Generator().manual_seed(seed + e)``; within windows of ``length_window`` batches the
documents are sorted by length and cut into batches, and the batches are shuffled again with
the same generator. Batches then hold documents of similar length (little compute spent on
padding) and the order is still fixed by the seed: no other randomness enters, so a run
resumed from an epoch checkpoint ends bit-identical to one that never stopped.

Works under ``accelerate launch`` (DDP over GPUs or processes): each global batch of
``batch_size x num_processes`` documents is split between the processes, so ``batch_size``
is per process and a run on N processes sees the same global batches as one process with
``batch_size x N``. Checkpoints keep every process's RNG state.

Example::

    cfg = FinetuneConfig(lr=5e-5, batch_size=16, epochs=3)
    log = finetune(lm, [("Orla Quillmere is", " the composer of ...")], cfg, run_dir / "checkpoints")
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from experiments.core.config import ConfigMixin
from interp.fileio import atomic_dir
from interp.precision import AUTOCAST_DTYPES, PRECISIONS, Choice, choose_precision
from interp.tokens import Document, encode_documents, pad_batch, pad_id

if TYPE_CHECKING:
    from interp.models import LoadedModel

@dataclass(frozen=True)
class FinetuneConfig(ConfigMixin):
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
        precision: ``auto`` (by measurement, see :mod:`interp.precision`), ``bf16`` or
            ``fp16`` (autocast, fp32 master weights; fp16 with a gradient scaler) or ``fp32``.
        group_by_length: length-grouped batches (see the module docstring); False gives
            plain shuffled batches.
        length_window: batches per sorting window when grouping by length.
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
    precision: str = "auto"
    group_by_length: bool = True
    length_window: int = 16
    lora_rank: int = 0
    lora_alpha: float = 16.0
    keep_checkpoints: int = 1

    def __post_init__(self) -> None:
        checks = {
            "lr": self.lr > 0, "batch_size": self.batch_size >= 1, "epochs": self.epochs >= 1,
            "warmup_steps": self.warmup_steps >= 0, "schedule": self.schedule in ("linear", "constant"),
            "weight_decay": self.weight_decay >= 0, "max_grad_norm": self.max_grad_norm >= 0,
            "loss_on": self.loss_on in ("sequence", "completion"),
            "precision": self.precision in PRECISIONS, "lora_rank": self.lora_rank >= 0,
            "length_window": self.length_window >= 1,
            "keep_checkpoints": self.keep_checkpoints >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"FinetuneConfig: invalid {bad[0]}={getattr(self, bad[0])!r}")


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
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


def batch_order(lengths: Sequence[int], cfg: FinetuneConfig, epoch: int, global_batch: int
                ) -> list[list[int]]:
    """The epoch's global batches (lists of document indices), fixed by ``cfg.seed + epoch``.

    With ``cfg.group_by_length`` the shuffled order is cut into windows of
    ``length_window`` batches, each window sorted by length (longest first; ties keep the
    shuffled order) and cut into batches, and the batches are shuffled again.
    """
    gen = torch.Generator().manual_seed(cfg.seed + epoch)
    order = torch.randperm(len(lengths), generator=gen).tolist()
    if cfg.group_by_length:
        window = global_batch * cfg.length_window
        order = [i for w in range(0, len(order), window)
                 for i in sorted(order[w : w + window], key=lambda i: -lengths[i])]
    batches = [order[i : i + global_batch] for i in range(0, len(order), global_batch)]
    if cfg.group_by_length:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
    return batches


def padded_fraction(lengths: Sequence[int], batches: Sequence[Sequence[int]], n_proc: int = 1) -> float:
    """Share of the token positions in ``batches`` (split over ``n_proc`` processes as the
    loop splits them) that are padding."""
    real = total = 0
    for b in batches:
        for r in range(n_proc):
            part = [lengths[i] for i in b[r::n_proc]]
            if part:
                real += sum(part)
                total += max(part) * len(part)
    return 1.0 - real / total if total else 0.0


@dataclass
class _Trainer:
    """What :func:`finetune` sets up once and the epochs share."""

    acc: Any
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: Any
    params: list[torch.nn.Parameter]
    encoded: list[tuple[list[int], list[int]]]
    steps_per_epoch: int
    precision: Choice
    state: dict[str, Any]
    n_targets: list[int] = field(default_factory=list)  # loss tokens per document

    def __post_init__(self) -> None:
        self.n_targets = [_n_targets(labels) for _, labels in self.encoded]


def _checkpoint_paths(ckpt_dir: Path, epoch: int) -> tuple[Path, Path]:
    return ckpt_dir / f"epoch-{epoch:03d}", ckpt_dir / f".rng-epoch-{epoch:03d}"


def _save_checkpoint(ckpt_dir: Path, epoch: int, tr: _Trainer, keep: int) -> None:
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


def _load_checkpoint(path: Path, tr: _Trainer) -> dict[str, Any]:
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


def _setup(lm: LoadedModel, docs: Sequence[Document], cfg: FinetuneConfig) -> _Trainer:
    """Accelerator, (LoRA-wrapped) model, optimizer, schedule, scaler and encoded documents."""
    from accelerate import Accelerator

    if not docs:
        raise ValueError("finetune: no training documents")
    device = lm.device.type
    precision = choose_precision(cfg.precision, str(lm.device))
    if next(lm.hf.parameters()).dtype != torch.float32 and precision.value != "fp32":
        raise ValueError(f"finetune: {precision.value} autocast needs fp32 master weights; load "
                         f"the model with dtype float32 (it has {next(lm.hf.parameters()).dtype})")
    acc = Accelerator(cpu=device == "cpu")
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
    global_batch = cfg.batch_size * n_proc
    # every process takes the same number of steps: a last global batch too small to give
    # each process a document is dropped
    steps_per_epoch = len(encoded) // global_batch + (len(encoded) % global_batch >= n_proc)
    if steps_per_epoch == 0:
        raise ValueError(f"finetune: {len(encoded)} documents make no full step on {n_proc} processes")
    params = [p for p in model.parameters() if p.requires_grad]
    # the fused kernel (CPU and CUDA), as HF Trainer uses by default
    fused = {"fused": True} if device in ("cpu", "cuda") and _has_fused_adamw() else {}
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, steps_per_epoch * cfg.epochs))
    scaler = torch.amp.GradScaler(device) if precision.value == "fp16" else None
    model, opt = acc.prepare(model, opt)
    state: dict[str, Any] = {"epoch": 0, "step": 0, "losses": [], "seconds": 0.0}
    return _Trainer(acc, model, opt, sched, scaler, params, encoded, steps_per_epoch, precision, state)


def _n_targets(labels: Sequence[int]) -> int:
    """Tokens a document contributes to the loss (labels are shifted by one)."""
    return sum(1 for x in labels[1:] if x != -100)


def _step(tr: _Trainer, batch: Sequence[int], cfg: FinetuneConfig, pad: int) -> float:
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


def _epoch(tr: _Trainer, epoch: int, cfg: FinetuneConfig, pad: int, bar: Any,
           on_step: Callable[[dict[str, Any]], None] | None) -> None:
    """One pass over the documents: this process's share of each global batch."""
    acc, state = tr.acc, tr.state
    lengths = [len(ids) for ids, _ in tr.encoded]
    batches = batch_order(lengths, cfg, epoch, cfg.batch_size * acc.num_processes)[: tr.steps_per_epoch]
    state.setdefault("padded_fraction", []).append(round(padded_fraction(lengths, batches, acc.num_processes), 4))
    t0 = time.perf_counter()
    for batch in batches:
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
    tr = _setup(lm, docs, cfg)
    if resume and (last := latest_checkpoint(ckpt_dir)) is not None:
        tr.state = _load_checkpoint(last, tr)
        tr.acc.print(f"resumed from {last} (epoch {tr.state['epoch']}, step {tr.state['step']})")
    pad = pad_id(lm)
    total = tr.steps_per_epoch * cfg.epochs
    bar = tqdm(total=total, initial=tr.state["step"], desc=f"finetune ({tr.precision.value})",
               unit="step", disable=not progress or not tr.acc.is_main_process)
    for epoch in range(tr.state["epoch"], cfg.epochs):
        if tr.state.get("stopped_early"):
            break
        _epoch(tr, epoch, cfg, pad, bar, on_step)
        if on_epoch_end is not None:
            if on_epoch_end(tr.state):
                tr.state["stopped_early"] = tr.state["epoch"]
            tr.model.train()
        _save_checkpoint(ckpt_dir, epoch + 1, tr, cfg.keep_checkpoints)
    bar.close()
    return _finish(lm, tr, cfg)


def _finish(lm: LoadedModel, tr: _Trainer, cfg: FinetuneConfig) -> dict[str, Any]:
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
