"""Setting up a finetuning run under ``accelerate``: the accelerator, the (LoRA-wrapped)
model, AdamW, the schedule, the fp16 gradient scaler and the encoded documents, gathered in
a :class:`Trainer` that the epochs (:mod:`experiments.finetune.loop`) and the checkpoints
(:mod:`experiments.finetune.checkpoint`) share."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import torch

from experiments.finetune.batches import n_targets
from experiments.finetune.config import FinetuneConfig, lr_lambda
from interp.precision import Choice, choose_precision
from interp.tokens import Document, encode_documents

if TYPE_CHECKING:
    from interp.models import LoadedModel


@dataclass
class Trainer:
    """What :func:`experiments.finetune.finetune` sets up once and the epochs share."""

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
        self.n_targets = [n_targets(labels) for _, labels in self.encoded]


def _has_fused_adamw() -> bool:
    return "fused" in inspect.signature(torch.optim.AdamW).parameters


def setup(lm: LoadedModel, docs: Sequence[Document], cfg: FinetuneConfig) -> Trainer:
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
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, steps_per_epoch * cfg.epochs))
    scaler = torch.amp.GradScaler(device) if precision.value == "fp16" else None
    model, opt = acc.prepare(model, opt)
    state: dict[str, Any] = {"epoch": 0, "step": 0, "losses": [], "seconds": 0.0}
    return Trainer(acc, model, opt, sched, scaler, params, encoded, steps_per_epoch, precision, state)
