"""The hook-name vocabulary: every TransformerLens hook point the toolkit reads, built here.

Sites (one name per concept, mapped to the TransformerLens 4.x ``TransformerBridge`` alias):

=============  ==================================  =====================================
site           hook name (layer ``L``)             shape per position
=============  ==================================  =====================================
``embed``      ``hook_embed``                      ``d_model``
``resid_pre``  ``blocks.L.hook_resid_pre``         ``d_model`` (input of block L)
``resid_mid``  ``blocks.L.hook_resid_mid``         ``d_model`` (after attention)
``resid_post`` ``blocks.L.hook_resid_post``        ``d_model`` (output of block L)
``attn_out``   ``blocks.L.hook_attn_out``          ``d_model``
``z``          ``blocks.L.attn.hook_z``            ``n_heads d_head`` (per-head output,
                                                   before ``W_O``; head result = z @ W_O[h])
``mlp_in``     ``blocks.L.mlp.hook_in``            ``d_model`` (normed MLP input)
``mlp_post``   ``blocks.L.mlp.hook_post``          ``d_mlp`` (for gated MLPs
                                                   ``act(gate(x)) * up(x)``, the input of
                                                   the down projection: the key coefficients)
``mlp_out``    ``blocks.L.hook_mlp_out``           ``d_model``
``final_scale````ln_final.hook_scale``             ``1`` (final-norm scale at the position)
``attn_post_scale`` ``blocks.L.ln1_post.hook_scale``  ``1`` (Gemma 3 only: the scale of the
                                                   norm after attention, whose output is
                                                   ``attn_out``)
``mlp_post_scale`` ``blocks.L.ln2_post.hook_scale``  ``1`` (Gemma 3 only: the same after the MLP)
=============  ==================================  =====================================

In a model with a norm after each sub-layer (Gemma 3), ``attn_out`` and ``mlp_out`` are the
post-norms' outputs, the tensors added to the residual; ``z`` and ``mlp_post`` come before them.

``blocks.L.mlp.hook_post`` is the same hook point as ``blocks.L.mlp.out.hook_in`` (the down
projection's input); :func:`check_mlp_post_is_down_input` asserts it on a given bridge.

Example::

    from interp.hooks import hook_name, layer_hooks
    hook_name("mlp_post", 3)            # 'blocks.3.mlp.hook_post'
    layer_hooks("resid_post", n_layers=2)
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Literal

Site = Literal["embed", "resid_pre", "resid_mid", "resid_post", "attn_out", "z", "mlp_in",
               "mlp_post", "mlp_out", "final_scale", "attn_post_scale", "mlp_post_scale"]

_TEMPLATES: dict[str, str] = {
    "embed": "hook_embed",
    "resid_pre": "blocks.{L}.hook_resid_pre",
    "resid_mid": "blocks.{L}.hook_resid_mid",
    "resid_post": "blocks.{L}.hook_resid_post",
    "attn_out": "blocks.{L}.hook_attn_out",
    "z": "blocks.{L}.attn.hook_z",
    "mlp_in": "blocks.{L}.mlp.hook_in",
    "mlp_post": "blocks.{L}.mlp.hook_post",
    "mlp_out": "blocks.{L}.hook_mlp_out",
    "final_scale": "ln_final.hook_scale",
    "attn_post_scale": "blocks.{L}.ln1_post.hook_scale",
    "mlp_post_scale": "blocks.{L}.ln2_post.hook_scale",
    "pattern": "blocks.{L}.attn.hook_pattern",
}
LAYERLESS = {"embed", "final_scale"}
SITES: tuple[str, ...] = tuple(s for s in _TEMPLATES if s != "pattern")
MLP_DOWN_INPUT = "blocks.{L}.mlp.out.hook_in"
# The bridge computes norm scales beside the HF forward (for the hook only): no gradient.
NO_GRAD_SITES = frozenset({"final_scale", "attn_post_scale", "mlp_post_scale"})


class HookNotFiredError(RuntimeError):
    """An analysis relied on a hook point that did not fire during the forward pass."""


def hook_name(site: str, layer: int | None = None) -> str:
    """The hook name for ``site`` (at ``layer`` unless the site is layer-less)."""
    if site not in _TEMPLATES:
        raise KeyError(f"unknown hook site {site!r}; known: {sorted(_TEMPLATES)}")
    if site in LAYERLESS:
        return _TEMPLATES[site]
    if layer is None or layer < 0:
        raise ValueError(f"site {site!r} needs a layer >= 0, got {layer!r}")
    return _TEMPLATES[site].format(L=layer)


def layer_hooks(site: str, n_layers: int, layers: Iterable[int] | None = None) -> list[str]:
    """``hook_name(site, L)`` for each layer (all by default)."""
    if site in LAYERLESS:
        return [hook_name(site)]
    return [hook_name(site, L) for L in (range(n_layers) if layers is None else layers)]


_PARSE = [(site, re.compile("^" + re.escape(t).replace(r"\{L\}", r"(\d+)") + "$"))
          for site, t in _TEMPLATES.items()]


def parse_hook(name: str) -> tuple[str, int | None]:
    """Inverse of :func:`hook_name`: ``'blocks.3.mlp.hook_post'`` -> ``('mlp_post', 3)``."""
    for site, rx in _PARSE:
        m = rx.match(name)
        if m:
            return site, (int(m.group(1)) if m.groups() else None)
    raise KeyError(f"{name!r} is not a hook name of interp.hooks")


def parse_hook_site(name: str) -> str | None:
    """The site of a hook name, or None for a hook outside this vocabulary."""
    try:
        return parse_hook(name)[0]
    except KeyError:
        return None


def check_hooks_exist(bridge: Any, names: Iterable[str]) -> None:
    """Raise KeyError naming any hook that the bridge does not have."""
    missing = [n for n in names if n not in bridge.hook_dict]
    if missing:
        n_layers = getattr(getattr(bridge, "cfg", None), "n_layers", None)
        for n in missing:  # a layer beyond the model's is the usual cause: say so
            try:
                site, layer = parse_hook(n)
            except KeyError:
                continue
            if layer is not None and n_layers is not None and layer >= n_layers:
                raise KeyError(f"hook {n!r}: layer {layer} out of range: the model has {n_layers} layers, "
                               f"0-{n_layers - 1}")
        raise KeyError(f"hook points not in this model: {missing[:5]}")


def check_fired(fired: Iterable[str], needed: Iterable[str], what: str = "analysis") -> None:
    """Raise :class:`HookNotFiredError` unless every needed hook fired."""
    fired_set = set(fired)
    missing = [n for n in needed if n not in fired_set]
    if missing:
        raise HookNotFiredError(f"{what}: hook points did not fire: {missing[:5]}"
                                f"{' ...' if len(missing) > 5 else ''}")


def check_mlp_post_is_down_input(bridge: Any, layer: int = 0) -> None:
    """Assert that ``mlp_post`` is the input of the MLP's down projection (``out``).

    For a gated MLP this is ``act(gate(x)) * up(x)``, whose entries multiply the rows of
    ``W_out``: the key coefficients of the key-value view.
    """
    post, down_in = hook_name("mlp_post", layer), MLP_DOWN_INPUT.format(L=layer)
    hd = bridge.hook_dict
    if post not in hd or down_in not in hd or hd[post] is not hd[down_in]:
        raise AssertionError(f"{post} is not the down projection's input {down_in} in this "
                             "bridge; the key-value analysis would read the wrong tensor")
