"""The order of the training documents: each epoch's global batches, fixed by the seed
(length-grouped or plainly shuffled), and what they cost in padding and loss tokens."""

from __future__ import annotations

from typing import Sequence

import torch

from experiments.finetune.config import FinetuneConfig


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


def n_targets(labels: Sequence[int]) -> int:
    """Tokens a document contributes to the loss (labels are shifted by one)."""
    return sum(1 for x in labels[1:] if x != -100)
