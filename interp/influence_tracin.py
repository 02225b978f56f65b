"""Gradient similarity at the final checkpoint (TracIn with one checkpoint), with own hooks.

:func:`tracin_scores` gives the dot product of the per-document and per-query loss
gradients, and their cosine, over the weights of the tracked linear layers.
:func:`record_linear_grads` records them with forward hooks (each layer's input activations
and output gradients at the real tokens), and per-document dot products are formed from
token Gram matrices without materialising a gradient per document. A positive score means
the document helps (see :mod:`interp.influence`, which re-exports the public names here).

Example::

    tr = tracin_scores(lm, train, queries, tracked_modules(lm.hf))
    tr.dot.shape, tr.cosine.shape      # both [n_queries, n_documents]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from interp.influence_base import Doc, InfluenceError, _check_docs, layer_of
from interp.precision import AUTOCAST_DTYPES, choose_precision
from interp.tokens import pad_batch, pad_id

if TYPE_CHECKING:
    from interp.models import LoadedModel


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


def tracin_checkpoints(lm: LoadedModel, train: Sequence[Doc], queries: Sequence[Doc], names: Sequence[str],
                       checkpoints: Sequence[tuple[float, Callable[[torch.nn.Module], None]]],
                       batch_size: int = 16, progress: bool = True, precision: str = "fp32") -> TracInScores:
    """TracIn over several checkpoints (Pruthi et al. 2020, TracInCP): ``sum_i w_i *
    grad_i(query) . grad_i(document)``, each checkpoint ``(w_i, load_i)`` given by its weight
    (the learning rate summed over what it stands for) and a function that puts its weights
    into ``lm.hf``. ``dot`` and ``per_layer`` are the weighted sums; ``cosine`` the weighted
    mean of the per-checkpoint cosines; the norms the weighted sums of the squared norms. The
    model's own weights are put back afterwards. With one checkpoint of weight 1 at the current
    weights this is :func:`tracin_scores`."""
    if not checkpoints:
        raise InfluenceError("tracin_checkpoints: no checkpoints given")
    if any(not w >= 0 for w, _ in checkpoints) or not sum(w for w, _ in checkpoints) > 0:
        raise InfluenceError(f"tracin_checkpoints: weights must be >= 0 with a positive sum, got "
                             f"{[w for w, _ in checkpoints]}")
    own = {k: v.detach().clone() for k, v in lm.hf.state_dict().items()}
    total: TracInScores | None = None
    try:
        for i, (w, load) in enumerate(checkpoints):
            load(lm.hf)
            s = tracin_scores(lm, train, queries, names, batch_size, progress, precision)
            if progress:
                print(f"TracIn checkpoint {i + 1}/{len(checkpoints)} done (weight {w:.3g})")
            if total is None:
                total = TracInScores(w * s.dot, w * s.cosine, w * s.per_layer, s.layers, w * s.query_norm,
                                     w * s.doc_norm, s.precision)
            else:
                total.dot += w * s.dot
                total.cosine += w * s.cosine
                total.per_layer += w * s.per_layer
                total.query_norm += w * s.query_norm
                total.doc_norm += w * s.doc_norm
    finally:
        lm.hf.load_state_dict(own)
    assert total is not None
    total.cosine /= sum(w for w, _ in checkpoints)
    return total
