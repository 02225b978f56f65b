"""The HF modules behind causal tracing's sites, and the hooks and modes tracing runs under.

:func:`site_modules` finds, in any HF causal LM with a ``layers``-style block list (Llama,
GPT-2, GPT-NeoX, ...), the module whose output is each site at each layer: the decoder
layer (``resid``, the residual stream after the block), its MLP (``mlp``) and its
attention (``attn``). In a model with a norm after each sub-layer (Gemma 3) the ``mlp`` and
``attn`` sites are those norms, whose outputs are what the residual receives (the bridge's
``hook_mlp_out`` and ``hook_attn_out``); :func:`attention_modules` gives the attention modules
themselves (for masks). The helpers here add and remove forward hooks, read and replace a
module's first output, and run a model in eval mode without gradients. Used by
:mod:`interp.trace`, which re-exports :func:`site_modules`.

Example::

    mods = site_modules(lm.hf)
    mods["mlp"][3]          # layer 3's MLP module; its output is the ``mlp`` site at layer 3
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor


def _layers(hf: torch.nn.Module) -> torch.nn.ModuleList:
    dec = hf.get_decoder() if hasattr(hf, "get_decoder") else None
    for owner in (dec, getattr(hf, "model", None), getattr(hf, "transformer", None),
                  getattr(hf, "gpt_neox", None)):
        for name in ("layers", "h", "blocks"):
            mods = getattr(owner, name, None) if owner is not None else None
            if isinstance(mods, torch.nn.ModuleList) and len(mods):
                return mods
    raise ValueError(f"causal tracing: cannot find the decoder layer list of {type(hf).__name__}")


# Gemma 2/3: the norm applied to each sub-layer's output before it joins the residual. (In
# Llama-style layers ``post_attention_layernorm`` is the MLP's *input* norm, so the MLP's
# post-norm must be present too for either to be taken.)
_POST_NORMS = {"mlp": "post_feedforward_layernorm", "attn": "post_attention_layernorm"}


def _submodule(layer: torch.nn.Module, kind: str) -> torch.nn.Module:
    if isinstance(getattr(layer, _POST_NORMS["mlp"], None), torch.nn.Module):
        return getattr(layer, _POST_NORMS[kind])
    return _attention(layer) if kind == "attn" else _named(layer, "mlp", ("mlp",))


def _attention(layer: torch.nn.Module) -> torch.nn.Module:
    return _named(layer, "attn", ("self_attn", "attn", "attention"))


def _named(layer: torch.nn.Module, kind: str, names: tuple[str, ...]) -> torch.nn.Module:
    for n in names:
        m = getattr(layer, n, None)
        if isinstance(m, torch.nn.Module):
            return m
    raise ValueError(f"causal tracing: no {kind} module in {type(layer).__name__} (looked for {names})")


def site_modules(hf: torch.nn.Module) -> dict[str, list[torch.nn.Module]]:
    """``{"resid": [layer 0, ...], "mlp": [...], "attn": [...]}``: the module whose output is
    each site at each layer."""
    layers = list(_layers(hf))
    return {"resid": layers, "mlp": [_submodule(x, "mlp") for x in layers],
            "attn": [_submodule(x, "attn") for x in layers]}


def attention_modules(hf: torch.nn.Module) -> list[torch.nn.Module]:
    """Each layer's attention module (the one that takes ``attention_mask``)."""
    return [_attention(x) for x in _layers(hf)]


def embed_scale(emb: torch.nn.Module) -> float:
    """The factor the embedding module multiplies its rows by (``sqrt(d_model)`` in Gemma),
    1 for a plain ``nn.Embedding``: noise added to its output is measured in these units."""
    return float(getattr(emb, "scalar_embed_scale", 1.0))


def _first(out: Any) -> Tensor:
    return out[0] if isinstance(out, tuple) else out


def _replace_first(out: Any, t: Tensor) -> Any:
    return (t, *out[1:]) if isinstance(out, tuple) else t


@contextmanager
def _hooks(pairs: Sequence[tuple[torch.nn.Module, Any]]) -> Iterator[None]:
    handles = [m.register_forward_hook(fn) for m, fn in pairs]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@dataclass(frozen=True)
class _Parts:
    """What tracing needs of a model: the site modules, the attention modules, the embedding
    and the standard deviation of its output rows, and whether the forward takes
    ``logits_to_keep``."""

    mods: dict[str, list[torch.nn.Module]]
    attn: list[torch.nn.Module]
    emb: torch.nn.Module
    emb_std: float
    keep: bool


def _parts(hf: torch.nn.Module) -> _Parts:
    emb = hf.get_input_embeddings()
    return _Parts(site_modules(hf), attention_modules(hf), emb,
                  float(emb.weight.detach().float().std()) * embed_scale(emb),
                  "logits_to_keep" in inspect.signature(hf.forward).parameters)


@contextmanager
def _eval_no_grad(hf: torch.nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) and no gradients; the module's mode is restored after."""
    was_training = hf.training
    hf.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        hf.train(was_training)


def new_kv_cache(hf: torch.nn.Module) -> Any:  # noqa: ARG001 - one place to change the cache kind
    """An empty KV cache that keeps every position in every layer, sliding-window layers
    included (the model's mask applies the window), so that key positions stay absolute: the
    knockout masks index them."""
    from transformers import DynamicCache

    return DynamicCache()


def _cache_kw(hf: torch.nn.Module) -> str:
    """The forward's KV-cache keyword (``cache`` in recent transformers, else ``past_key_values``)."""
    return "cache" if "cache" in inspect.signature(hf.forward).parameters else "past_key_values"
