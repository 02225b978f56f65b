"""What both training-data attribution methods share: documents, settings, tracked layers.

A document or a query is an ``(ids, labels)`` pair (:data:`Doc`, from
:func:`interp.tokens.encode_documents`; labels -100 where no loss is taken).
:class:`InfluenceConfig` holds the settings, :func:`tracked_modules` names the linear layers
that are scored, :func:`layer_of` reads a layer index from a module name, and
:class:`InfluenceError` is what a model or input that cannot be scored raises. Used by
:mod:`interp.influence_ekfac` and :mod:`interp.influence_tracin`; import from
:mod:`interp.influence`, which re-exports the public names of all three.

Example::

    names = tracked_modules(lm.hf, "mlp", layer_stride=2)   # ["model.layers.0.mlp.gate_proj", ...]
    sorted({layer_of(n) for n in names})                   # [0, 2, ...]
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from interp.errors import RctError
from interp.precision import PRECISIONS

Doc = tuple[list[int], list[int]]  # (ids, labels), labels -100 where no loss is taken
MODULE_KINDS = ("mlp", "mlp+attn")
STRATEGIES = ("ekfac", "kfac", "diagonal", "identity")
COVARIANCE_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_MLP = re.compile(r"\.(mlp)\.")
_ATTN = re.compile(r"\.(self_attn|attention|attn)\.")
_LAYER = re.compile(r"\.(\d+)\.")


class InfluenceError(RctError, ValueError):
    """The model or the inputs cannot be scored (the message says why)."""


@dataclass(frozen=True)
class InfluenceConfig:
    """Args:
        modules: ``mlp`` (the MLP blocks' linear layers) or ``mlp+attn`` (attention too).
        layer_stride: track every ``layer_stride``-th layer, from layer 0.
        covariance_max_examples: documents the covariance factors are fitted on (None: all);
            drawn at random (``seed``) when fewer than all.
        lambda_max_examples: documents the eigenvalue correction is fitted on (the costly
            step: one rotation per document and module).
        query_low_rank: rank of each query gradient's approximation per module (None: full;
            memory grows with queries x parameters without it).
        damping: added to the curvature before inverting; None uses kronfluence's
            heuristic (0.1 x the mean eigenvalue), as Grosse et al. do.
        batch_size: documents per pass.
        partitions: data partitions of the factor fit (each saved when done: the resume unit).
        precision: forward and backward passes in ``fp32``, or under ``bf16``/``fp16``
            autocast; ``auto`` takes bf16 only where the device runs it fast (measured, see
            :mod:`interp.precision`). Scores are accumulated in fp32 either way.
        covariance_dtype: ``float64`` (default) or ``float32``: the dtype the curvature
            covariances are summed in (the eigendecomposition is float64 either way). A fp32
            sum over thousands of tokens depends on the order of the additions: on a tiny
            model, batch sizes 2 and 8 gave scores 8e-4 of the largest apart in fp32 and
            7.4e-8 in float64. float64 doubles the covariances' memory (1.9 GB instead of
            1.0 GB for all 30 MLP layers of the 135M model: 8.1M entries a layer).
        seed: draws the covariance subset and the sampled labels of the true Fisher.
    """

    strategy: str = "ekfac"
    modules: str = "mlp"
    layer_stride: int = 1
    covariance_max_examples: int | None = None
    lambda_max_examples: int = 64
    query_low_rank: int | None = 32
    damping: float | None = None
    batch_size: int = 16
    partitions: int = 4
    precision: str = "auto"
    covariance_dtype: str = "float64"
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "strategy": self.strategy in STRATEGIES, "modules": self.modules in MODULE_KINDS,
            "layer_stride": self.layer_stride >= 1,
            "covariance_max_examples": self.covariance_max_examples is None or self.covariance_max_examples >= 1,
            "lambda_max_examples": self.lambda_max_examples >= 1,
            "query_low_rank": self.query_low_rank is None or self.query_low_rank >= 1,
            "damping": self.damping is None or self.damping >= 0,
            "batch_size": self.batch_size >= 1, "partitions": self.partitions >= 1,
            "precision": self.precision in PRECISIONS,
            "covariance_dtype": self.covariance_dtype in COVARIANCE_DTYPES,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"InfluenceConfig: invalid {bad[0]}={getattr(self, bad[0])!r}")

    def key(self) -> str:
        """A short hash of the settings that change the factors (names the factor folder)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("query_low_rank", "batch_size")}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


def tracked_modules(model: torch.nn.Module, modules: str = "mlp", layer_stride: int = 1) -> list[str]:
    """Names of the ``nn.Linear`` layers scored: inside each tracked layer's MLP block (and its
    attention block with ``modules="mlp+attn"``), every ``layer_stride``-th layer from 0."""
    if modules not in MODULE_KINDS:
        raise ValueError(f"modules must be one of {MODULE_KINDS}, got {modules!r}")
    out = []
    for name, mod in model.named_modules():
        m = _LAYER.search(name)
        if not isinstance(mod, torch.nn.Linear) or m is None or int(m.group(1)) % layer_stride:
            continue
        if _MLP.search(name) or (modules == "mlp+attn" and _ATTN.search(name)):
            out.append(name)
    if not out:
        kinds = sorted({type(m).__name__ for n, m in model.named_modules() if _MLP.search(n + ".")})
        raise InfluenceError(
            f"influence: no nn.Linear layer found in the model's MLP blocks (found {kinds or 'no MLP'}); "
            "influence scores need nn.Linear layers (GPT-2's Conv1D layers are not supported)")
    return out


def layer_of(name: str) -> int:
    """The layer index in a module name (``model.layers.7.mlp.up_proj`` -> 7)."""
    m = _LAYER.search(name)
    if m is None:
        raise ValueError(f"no layer index in module name {name!r}")
    return int(m.group(1))


def _check_docs(what: str, docs: Sequence[Doc]) -> None:
    if not docs:
        raise InfluenceError(f"influence: no {what}")
    for i, (ids, labels) in enumerate(docs):
        if len(ids) != len(labels) or not ids:
            raise InfluenceError(f"influence: {what}[{i}] has {len(ids)} ids and {len(labels)} labels")
