"""Influence functions with an EK-FAC approximation of the Hessian, through ``kronfluence``.

:func:`ekfac_scores` (Grosse et al. 2023) fits the curvature factors on the training
documents with the loss training used (every token after BOS, or the completion only) and
labels sampled from the model (the true Fisher), in data partitions saved one by one (an
interrupted fit resumes at the partition where it stopped), then scores every query against
every document: total, per layer and per document token. A positive score means the
document helps (see :mod:`interp.influence`, which re-exports the public names here).

Example::

    ek = ekfac_scores(lm, train, queries, InfluenceConfig(), "runs/x/influence/.kronfluence")
    ek.total.shape          # [n_queries, n_documents]
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch.utils.data import Dataset

from interp.influence_base import (COVARIANCE_DTYPES, Doc, InfluenceConfig, InfluenceError, _check_docs, layer_of,
                                   tracked_modules)
from interp.precision import AUTOCAST_DTYPES, choose_precision
from interp.tokens import pad_id

if TYPE_CHECKING:
    from interp.models import LoadedModel


class _Docs(Dataset):
    """Documents as padded tensors; ``length`` fixes the padded length (per-token scores are
    concatenated across batches, so every batch must have the same length)."""

    def __init__(self, docs: Sequence[Doc], pad: int, length: int, order: Sequence[int] | None = None):
        self.docs, self.pad, self.length = docs, pad, length
        self.order = list(order) if order is not None else list(range(len(docs)))

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        j = self.order[i]
        ids, labels = self.docs[j]
        n = self.length - len(ids)
        return {"input_ids": torch.tensor(ids + [self.pad] * n),
                "labels": torch.tensor(labels + [-100] * n),
                "attention_mask": torch.tensor([1] * len(ids) + [0] * n),
                "index": torch.tensor(j)}


def _draw(probs: torch.Tensor, seed: int, index: int) -> torch.Tensor:
    """One label per position from ``probs`` ``[pos, vocab]``, seeded by the document."""
    gen = torch.Generator(device=probs.device).manual_seed(seed * 1_000_003 + index)
    return torch.multinomial(probs, 1, generator=gen)[:, 0]


def _lm_task(names: list[str], seed: int) -> Any:
    from kronfluence.task import Task

    class LMTask(Task):
        """Summed token loss; with ``sample=True`` (the true Fisher) the labels are drawn from
        the model's own predictions, seeded per document (so batching changes nothing)."""

        def compute_train_loss(self, batch: dict[str, torch.Tensor], model: torch.nn.Module,
                               sample: bool = False) -> torch.Tensor:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           use_cache=False).logits[:, :-1].float()
            labels = batch["labels"][:, 1:]
            flat = logits.reshape(-1, logits.size(-1))
            if sample:
                with torch.no_grad():
                    probs = torch.softmax(logits, -1)
                    drawn = torch.stack([_draw(probs[b], seed, int(i)) for b, i in enumerate(batch["index"])])
                labels = torch.where(labels == -100, labels, drawn)
            return torch.nn.functional.cross_entropy(flat, labels.reshape(-1), ignore_index=-100, reduction="sum")

        def compute_measurement(self, batch: dict[str, torch.Tensor], model: torch.nn.Module) -> torch.Tensor:
            return self.compute_train_loss(batch, model)

        def get_influence_tracked_modules(self) -> list[str]:
            return names

        def get_attention_mask(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return batch["attention_mask"]

    return LMTask()


@dataclass
class EkfacScores:
    """``total[q, d]``; ``per_layer[l, q, d]`` for ``layers[l]``; ``per_token[q, d, t]`` (token
    ``t`` of document ``d``'s ids; padding is 0), when asked for."""

    total: torch.Tensor
    per_layer: torch.Tensor
    layers: list[int]
    modules: list[str]
    per_token: torch.Tensor | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    precision: str = "fp32"


def _fit_order(n: int, cfg: InfluenceConfig) -> list[int]:
    """Documents in a seeded random order, so that a capped fit sees every kind of document."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed)).tolist()


def ekfac_scores(lm: LoadedModel, train: Sequence[Doc], queries: Sequence[Doc], cfg: InfluenceConfig,
                 workdir: str | Path, *, per_token: bool = True, progress: bool = True) -> EkfacScores:
    """EK-FAC influence of every training document on every query (see the module docstring).

    ``workdir`` keeps kronfluence's factors (``factors_<key>``: reused when the settings and
    documents are the same, resumed partition by partition after an interruption); the raw
    score files are deleted once read.
    """
    import logging
    import shutil
    import time
    import warnings

    try:
        from kronfluence.analyzer import Analyzer, prepare_model
        from kronfluence.arguments import FactorArguments, ScoreArguments
        from kronfluence.utils.dataset import DataLoaderKwargs
    except ImportError as e:
        raise InfluenceError("influence: kronfluence is not installed; `bash scripts/setup.sh` installs it, or "
                             "`pip install --no-deps kronfluence==1.0.1 && pip install einconv opt-einsum` "
                             "(docs/install.md)") from e

    _check_docs("training documents", train)
    _check_docs("queries", queries)
    names = tracked_modules(lm.hf, cfg.modules, cfg.layer_stride)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(json.dumps([names, [list(d[0]) for d in train], [list(d[1]) for d in train]])
                            .encode()).hexdigest()[:8]
    precision = choose_precision(cfg.precision, lm.device.type).value
    amp = AUTOCAST_DTYPES.get(precision)
    factors_name = f"{cfg.key()}-{precision}-{digest}"
    task = _lm_task(names, cfg.seed)
    # kronfluence wraps the tracked layers in place and freezes every parameter: a copy keeps
    # the caller's model untouched
    model = prepare_model(copy.deepcopy(lm.hf).eval(), task)
    logging.getLogger("kronfluence").setLevel(logging.WARNING)
    analyzer = Analyzer("influence", model, task, cpu=lm.device.type == "cpu", disable_tqdm=not progress,
                        output_dir=str(workdir))
    analyzer.set_dataloader_kwargs(DataLoaderKwargs(num_workers=0))
    pad = pad_id(lm)
    fit_len = max(len(d[0]) for d in train)
    n_cov = len(train) if cfg.covariance_max_examples is None else min(cfg.covariance_max_examples, len(train))
    parts = max(1, min(cfg.partitions, n_cov // max(1, cfg.batch_size)))
    n_lambda = min(cfg.lambda_max_examples, len(train))
    cov_dtype = COVARIANCE_DTYPES[cfg.covariance_dtype]
    factor_args = FactorArguments(
        amp_dtype=amp, strategy=cfg.strategy, covariance_max_examples=n_cov, lambda_max_examples=n_lambda,
        activation_covariance_dtype=cov_dtype, gradient_covariance_dtype=cov_dtype,
        covariance_data_partitions=parts, lambda_data_partitions=max(1, min(parts, n_lambda // cfg.batch_size)))
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    # kronfluence builds torch.cuda.amp.GradScaler, deprecated in torch: one warning per pass
    warnings.filterwarnings("ignore", message=r".*torch\.cuda\.amp\.GradScaler", category=FutureWarning)
    analyzer.fit_all_factors(factors_name, dataset=_Docs(train, pad, fit_len, _fit_order(len(train), cfg)),
                             per_device_batch_size=cfg.batch_size, factor_args=factor_args)
    seconds["factors"] = time.perf_counter() - t0
    length = max(len(d[0]) for d in list(train) + list(queries))
    score_args = ScoreArguments(
        amp_dtype=amp, damping_factor=cfg.damping, query_gradient_low_rank=cfg.query_low_rank,
        compute_per_module_scores=True, compute_per_token_scores=per_token,
        query_gradient_accumulation_steps=max(1, -(-len(queries) // cfg.batch_size)))  # one pass over the documents
    t0 = time.perf_counter()
    scores_name = f"scores-{factors_name}"
    # the low-rank query approximation is a randomized SVD: seeded, so a rerun gives the same scores
    with torch.random.fork_rng(devices=[lm.device] if lm.device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        analyzer.compute_pairwise_scores(
            scores_name, factors_name, query_dataset=_Docs(queries, pad, length),
            train_dataset=_Docs(train, pad, length), per_device_query_batch_size=cfg.batch_size,
            per_device_train_batch_size=cfg.batch_size, score_args=score_args, overwrite_output_dir=True)
    seconds["scores"] = time.perf_counter() - t0
    raw = analyzer.load_pairwise_scores(scores_name)
    if raw is None:
        raise InfluenceError(f"influence: kronfluence wrote no scores under {workdir}")
    out = _reduce(raw, names, per_token, seconds)
    out.precision = precision
    shutil.rmtree(workdir / "influence" / f"scores_{scores_name}", ignore_errors=True)
    return out


def _reduce(raw: dict[str, torch.Tensor], names: list[str], per_token: bool, seconds: dict[str, float]
            ) -> EkfacScores:
    layers = sorted({layer_of(n) for n in names})
    first = raw[names[0]]
    per_layer = torch.zeros(len(layers), first.shape[0], first.shape[1], dtype=torch.float32)
    tokens = torch.zeros_like(first, dtype=torch.float32) if per_token else None
    for n in names:
        s = raw[n].float()
        if tokens is not None:
            tokens += s
            s = s.sum(-1)
        per_layer[layers.index(layer_of(n))] += s
    return EkfacScores(per_layer.sum(0), per_layer, layers, names, tokens, seconds)
