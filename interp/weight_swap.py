"""Parameter groups of a causal LM and swapping them between two models of the same shape.

:func:`param_groups` splits every parameter of a HF causal LM into ``(layer, kind)`` groups
(per layer ``attn``, ``mlp``, ``norm``; outside the layers ``embed``, ``final_norm``,
``other``); :func:`swapped` temporarily gives one model another's values of some groups, in
place, and puts its own back on exit. These are the mechanics under
:func:`interp.weights.localise` (which re-exports the public names here).

Example::

    groups = param_groups(tuned.hf)              # {(0, "attn"): [...], ..., (None, "embed"): [...]}
    with swapped(tuned.hf, base.hf, [(1, "mlp")]):   # layer 1's MLP back at its base values
        s = score_completions(tuned, pairs)
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Mapping

import torch
from torch import Tensor, nn

Group = tuple[int | None, str]  # (layer, kind), layer None outside the blocks
LAYER_KINDS = ("attn", "mlp", "norm")
NON_LAYER_KINDS = ("embed", "final_norm", "other")

_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks)\.(\d+)\.([^.]+)")
_MLP_NAMES = ("fc1", "fc2", "feed_forward", "ffn", "block_sparse_moe")
_EMBED_NAMES = ("wte", "wpe", "lm_head")


def _layer_kind(name: str, sub: str) -> str:
    if "norm" in sub or sub.startswith("ln"):
        return "norm"
    if "attn" in sub or "attention" in sub:
        return "attn"
    if "mlp" in sub or sub in _MLP_NAMES:
        return "mlp"
    raise ValueError(f"param_groups: cannot tell the kind of {name!r} (submodule {sub!r}): "
                     "expected attn/attention/self_attn, mlp, or a norm (norm, ln_*)")


def _non_layer_kind(name: str) -> str:
    parts = name.split(".")[:-1]
    if any("embed" in p or p in _EMBED_NAMES for p in parts):
        return "embed"
    if any("norm" in p or p.startswith("ln") for p in parts):
        return "final_norm"
    return "other"


def param_groups(model: nn.Module) -> dict[Group, list[str]]:
    """Every parameter name of a HF causal LM, grouped by ``(layer, kind)``.

    Per layer (``model.layers.L``, ``transformer.h.L``, ``gpt_neox.layers.L``, ``blocks.L``):
    ``attn`` (attn, attention, self_attn), ``mlp`` and ``norm`` (any ln_* or *norm* module).
    Outside the layers: ``(None, "embed")`` (token and position embeddings, unembedding),
    ``(None, "final_norm")`` and ``(None, "other")``. Tied weights appear once (under the
    name ``named_parameters`` keeps). Keys are ordered by layer, then kind; non-layer last.

    Raises:
        ValueError: no parameter sits in a numbered layer, or a layer parameter's kind is
            not recognised.
    """
    found: dict[Group, list[str]] = {}
    for name, _ in model.named_parameters():
        m = _LAYER.search(name)
        key = (int(m.group(1)), _layer_kind(name, m.group(2))) if m else (None, _non_layer_kind(name))
        found.setdefault(key, []).append(name)
    if not any(layer is not None for layer, _ in found):
        raise ValueError(f"param_groups: no parameter of {type(model).__name__} is in a numbered "
                         "layer (expected names like model.layers.0.*, transformer.h.0.*)")
    order = {k: i for i, k in enumerate(LAYER_KINDS + NON_LAYER_KINDS)}
    return dict(sorted(found.items(), key=lambda kv: (kv[0][0] is None, kv[0][0] or 0, order[kv[0][1]])))


def n_layers_of(groups: Mapping[Group, Any]) -> int:
    """Number of layers in a :func:`param_groups` mapping (highest layer index + 1)."""
    return 1 + max(layer for layer, _ in groups if layer is not None)


def _check_compatible(target: nn.Module, source: nn.Module) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    t, s = dict(target.named_parameters()), dict(source.named_parameters())
    for name in t:
        if name not in s:
            raise ValueError(f"models differ: parameter {name!r} of the target is not in the source")
        if t[name].shape != s[name].shape or t[name].dtype != s[name].dtype:
            raise ValueError(f"models differ at parameter {name!r}: target {tuple(t[name].shape)} "
                             f"{t[name].dtype}, source {tuple(s[name].shape)} {s[name].dtype} "
                             "(load both with the same architecture and dtype)")
    extra = [n for n in s if n not in t]
    if extra:
        raise ValueError(f"models differ: parameter {extra[0]!r} of the source is not in the target")
    return t, s


def _names(groups_map: Mapping[Group, list[str]], groups: Iterable[Group]) -> list[str]:
    out = []
    for g in groups:
        if g not in groups_map:
            raise ValueError(f"unknown parameter group {g!r}; groups are {list(groups_map)}")
        out += groups_map[g]
    return out


@contextmanager
def swapped(target_model: nn.Module, source_model: nn.Module, groups: Iterable[Group]) -> Iterator[nn.Module]:
    """Temporarily give ``target_model`` the source's values of the parameters in ``groups``
    (keys of :func:`param_groups`), copied in place; the target's own values come back on
    exit, also on an exception. The source is only read.

    Example::

        with swapped(tuned.hf, base.hf, [(1, "mlp")]):   # layer 1's MLP reverted
            s = score_completions(tuned, pairs)

    Raises:
        ValueError: the two models' parameter names, shapes or dtypes differ (the first
            mismatching parameter is named), or a group is unknown.
    """
    t, s = _check_compatible(target_model, source_model)
    names = _names(param_groups(target_model), groups)
    saved = {n: t[n].detach().clone() for n in names}
    try:
        with torch.no_grad():
            for n in names:
                t[n].data.copy_(s[n].data)
        yield target_model
    finally:
        with torch.no_grad():
            for n in names:
                t[n].data.copy_(saved[n])


class _Mixer:
    """Sets ``target``'s parameters, group by group, to tuned (cloned once) or base values."""

    def __init__(self, target: nn.Module, base: nn.Module, groups: dict[Group, list[str]]):
        self.t, self.b = _check_compatible(target, base)
        self.groups = groups
        self.tuned = {n: p.detach().clone() for n, p in self.t.items()}
        self.is_tuned = {g: True for g in groups}

    @torch.no_grad()
    def set(self, tuned_groups: frozenset[Group]) -> None:
        for g, names in self.groups.items():
            want = g in tuned_groups
            if want != self.is_tuned[g]:
                for n in names:
                    self.t[n].data.copy_((self.tuned if want else self.b)[n])
                self.is_tuned[g] = want
