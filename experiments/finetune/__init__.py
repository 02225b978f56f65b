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

Modules:
- :mod:`~experiments.finetune.config`: :class:`FinetuneConfig` and the learning-rate schedule;
- :mod:`~experiments.finetune.batches`: the epoch's batch order (:func:`batch_order`) and its
  padding (:func:`padded_fraction`);
- :mod:`~experiments.finetune.trainer`: the set-up under ``accelerate`` (model, LoRA,
  optimizer, scaler, encoded documents);
- :mod:`~experiments.finetune.checkpoint`: epoch checkpoints, written and resumed;
- :mod:`~experiments.finetune.loop`: :func:`finetune`, the epochs and the optimizer steps.

Everything a caller needs is importable from here: ``from experiments.finetune import
FinetuneConfig, finetune``.
"""

from experiments.finetune.batches import batch_order, padded_fraction
from experiments.finetune.checkpoint import latest_checkpoint
from experiments.finetune.config import FinetuneConfig
from experiments.finetune.loop import finetune
from interp.tokens import encode_documents  # importable from here, as it always was

__all__ = ["FinetuneConfig", "batch_order", "encode_documents", "finetune", "latest_checkpoint",
           "padded_fraction"]
