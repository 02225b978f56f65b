"""The finetuning settings (:class:`FinetuneConfig`) and the learning-rate schedule they
give (:func:`lr_lambda`)."""

from __future__ import annotations

from dataclasses import dataclass

from experiments.core.config import ConfigMixin
from interp.precision import PRECISIONS


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
        group_by_length: length-grouped batches (see :mod:`experiments.finetune`); False
            gives plain shuffled batches.
        length_window: batches per sorting window when grouping by length.
        lora_rank: 0 for full finetuning, else LoRA rank on all linear layers.
        lora_alpha: LoRA scaling numerator.
        keep_checkpoints: epoch checkpoints kept on disk (older ones are deleted).
        snapshots: weight snapshots saved at the starts of this many equal stretches of
            training (0: none), for TracIn over several checkpoints
            (:mod:`experiments.finetune.snapshots`); full finetuning only.
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
    snapshots: int = 0

    def __post_init__(self) -> None:
        checks = {
            "lr": self.lr > 0, "batch_size": self.batch_size >= 1, "epochs": self.epochs >= 1,
            "warmup_steps": self.warmup_steps >= 0, "schedule": self.schedule in ("linear", "constant"),
            "weight_decay": self.weight_decay >= 0, "max_grad_norm": self.max_grad_norm >= 0,
            "loss_on": self.loss_on in ("sequence", "completion"),
            "precision": self.precision in PRECISIONS, "lora_rank": self.lora_rank >= 0,
            "length_window": self.length_window >= 1,
            "keep_checkpoints": self.keep_checkpoints >= 1,
            "snapshots": self.snapshots >= 0 and not (self.snapshots and self.lora_rank),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"FinetuneConfig: invalid {bad[0]}={getattr(self, bad[0])!r}")


def lr_lambda(cfg: FinetuneConfig, total: int):
    """The multiplier of ``cfg.lr`` at each of ``total`` steps: linear warmup over
    ``cfg.warmup_steps``, then constant or a linear decay to 0 (``cfg.schedule``)."""
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / (cfg.warmup_steps + 1)
        if cfg.schedule == "constant":
            return 1.0
        return max(0.0, (total - step) / max(1, total - cfg.warmup_steps))
    return f
