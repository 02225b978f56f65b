"""Training-data attribution: which training documents make a query's answer likelier.

Two methods score every query against every training document, over the same parameters
(the linear layers of the MLP blocks, optionally attention too, of every ``layer_stride``-th
layer):

- :func:`ekfac_scores`: influence functions with an EK-FAC approximation of the Hessian
  (Grosse et al. 2023), computed by ``kronfluence``. The factors are fitted on the training
  documents with the loss training used (every token after BOS, or the completion only) and
  labels sampled from the model (the true Fisher). Fitting runs in data partitions saved one
  by one, so an interrupted fit resumes at the partition where it stopped.
- :func:`tracin_scores`: gradient similarity at the final checkpoint (TracIn with one
  checkpoint): the dot product of the per-document and per-query loss gradients, and their
  cosine. Gradients are recorded with forward hooks on the same linear layers (input
  activations and output gradients), and per-document dot products are formed from token
  Gram matrices without materialising a gradient per document.

Documents and queries are ``(ids, labels)`` pairs from :func:`interp.tokens.encode_documents`
(labels -100 where no loss is taken). A query's measurement is its loss (summed over its
labelled tokens); a training document's loss is summed likewise. A **positive score means
the document helps**: a gradient step on it lowers the query's loss. A document with no
labelled token scores exactly zero.

Example::

    from interp.tokens import encode_documents
    train = encode_documents(lm, [("Orla Quillmere is", " the composer of ...")], "sequence")
    queries = encode_documents(lm, [("The composer of ... is", " Orla Quillmere")], "completion")
    names = tracked_modules(lm.hf, layer_stride=2)
    ek = ekfac_scores(lm, train, queries, InfluenceConfig(), "runs/x/influence/.kronfluence")
    tr = tracin_scores(lm, train, queries, names)
    ek.total.shape, tr.dot.shape       # both [n_queries, n_documents]
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from interp.errors import RctError
from interp.precision import AUTOCAST_DTYPES, PRECISIONS, choose_precision
from interp.tokens import pad_id

if TYPE_CHECKING:
    from interp.models import LoadedModel

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
            1.5e-7 in float64. float64 doubles the covariances' memory (1.9 GB instead of
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


# ------------------------------------------------------------------ EK-FAC (kronfluence)


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


# ------------------------------------------------------------------ TracIn (own hooks)


@dataclass
class TracInScores:
    """``dot[q, d]`` (gradient dot product), ``cosine[q, d]``, ``per_layer[l, q, d]`` (dot
    product restricted to ``layers[l]``), and the gradient norms."""

    dot: torch.Tensor
    cosine: torch.Tensor
    per_layer: torch.Tensor
    layers: list[int]
    query_norm: torch.Tensor
    doc_norm: torch.Tensor
    precision: str = "fp32"


@dataclass
class _Grads:
    """Per tracked module: input activations and output gradients of the real (unpadded)
    tokens of a batch, with each token's sequence index."""

    acts: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor]
    seq: torch.Tensor
    n: int


def record_linear_grads(lm: LoadedModel, docs: Sequence[Doc], names: Sequence[str],
                        amp: torch.dtype | None = None) -> _Grads:
    """One forward and backward pass over ``docs`` (one batch): the inputs and the loss
    gradients of the outputs of the ``names`` linear layers, at the real tokens (in fp32;
    the passes under ``amp`` autocast when given). A layer's per-document weight gradient is
    ``sum_t grad_t^T act_t`` over the document's tokens."""
    from interp.tokens import pad_batch

    model = lm.hf
    mods = dict(model.named_modules())
    missing = [n for n in names if n not in mods]
    if missing:
        raise InfluenceError(f"influence: the model has no module {missing[0]!r}")
    ids, mask, _ = pad_batch([d[0] for d in docs], pad_id(lm), "right", lm.device)
    labels, _, _ = pad_batch([d[1] for d in docs], -100, "right", lm.device)
    real = mask.bool()
    acts: dict[str, torch.Tensor] = {}
    grads: dict[str, torch.Tensor] = {}

    def hook(name: str) -> Any:
        def fwd(_mod: torch.nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            acts[name] = inp[0].detach()[real].float()
            out.register_hook(lambda g: grads.__setitem__(name, g.detach()[real].float()))
        return fwd

    handles = [mods[n].register_forward_hook(hook(n)) for n in names]
    try:
        was_training = model.training
        model.eval()
        emb = model.get_input_embeddings()(ids).detach().requires_grad_(True)
        with torch.autocast(ids.device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
            logits = model(inputs_embeds=emb, attention_mask=mask, use_cache=False).logits[:, :-1].float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                                                 ignore_index=-100, reduction="sum")
        if loss.requires_grad:
            torch.autograd.grad(loss, emb)
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    seq = torch.arange(len(docs), device=ids.device)[:, None].expand_as(ids)[real]
    for n in names:  # no loss at all (every label masked): the gradients are zero
        grads.setdefault(n, torch.zeros(int(real.sum()), mods[n].out_features, device=ids.device))
    return _Grads(acts, grads, seq, len(docs))


def _pair_dots(a: _Grads, b: _Grads, name: str) -> torch.Tensor:
    """``[a.n, b.n]`` dot products of per-sequence weight gradients of one layer, from token
    Gram matrices: ``<G_i, G_j> = sum_{t in i, s in j} (x_t . x_s)(g_t . g_s)``."""
    k = (a.acts[name] @ b.acts[name].T) * (a.grads[name] @ b.grads[name].T)
    rows = torch.zeros(a.n, k.shape[1], dtype=k.dtype, device=k.device).index_add_(0, a.seq, k)
    return torch.zeros(a.n, b.n, dtype=k.dtype, device=k.device).index_add_(1, b.seq, rows)


def _self_dots(g: _Grads, name: str) -> torch.Tensor:
    """Squared norm of each sequence's weight gradient of one layer."""
    same = g.seq[:, None] == g.seq[None, :]
    k = (g.acts[name] @ g.acts[name].T) * (g.grads[name] @ g.grads[name].T) * same
    return torch.zeros(g.n, dtype=k.dtype, device=k.device).index_add_(0, g.seq, k.sum(1))


def tracin_scores(lm: LoadedModel, train: Sequence[Doc], queries: Sequence[Doc], names: Sequence[str],
                  batch_size: int = 16, progress: bool = True, precision: str = "fp32") -> TracInScores:
    """Gradient dot products and cosines of every query with every training document, over
    the ``names`` linear layers' weights, at the model's current weights. ``precision`` as
    in :class:`InfluenceConfig` (default fp32)."""
    _check_docs("training documents", train)
    _check_docs("queries", queries)
    names = list(names)
    layers = sorted({layer_of(n) for n in names})
    prec = choose_precision(precision, lm.device.type).value
    amp = AUTOCAST_DTYPES.get(prec)
    q = [record_linear_grads(lm, queries[i : i + batch_size], names, amp) for i in range(0, len(queries), batch_size)]
    q_norm = torch.cat([sum(_self_dots(g, n) for n in names) for g in q]).cpu()
    per_layer = torch.zeros(len(layers), len(queries), len(train))
    d_norm = torch.zeros(len(train))
    for start in tqdm(range(0, len(train), batch_size), desc="TracIn (training gradients)", disable=not progress):
        d = record_linear_grads(lm, train[start : start + batch_size], names, amp)
        for n in names:
            block = torch.cat([_pair_dots(g, d, n) for g in q]).cpu()
            per_layer[layers.index(layer_of(n)), :, start : start + d.n] += block
            d_norm[start : start + d.n] += _self_dots(d, n).cpu()
    dot = per_layer.sum(0)
    denom = q_norm.clamp_min(0).sqrt()[:, None] * d_norm.clamp_min(0).sqrt()[None, :]
    cosine = torch.where(denom > 0, dot / denom.clamp_min(1e-30), torch.zeros_like(dot))
    return TracInScores(dot, cosine, per_layer, layers, q_norm, d_norm, prec)
