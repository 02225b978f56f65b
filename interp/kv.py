"""MLP layers as key-value memories (Geva et al. 2021, 2022).

In layer ``L`` neuron ``m`` has a *key* (its rows of ``W_gate``/``W_in``), a *key
coefficient* at each position (``mlp_post[m]``: for a gated MLP ``act(gate(x)) * up(x)``,
the input of the down projection, see :mod:`interp.hooks`), and a *value vector*
``W_out[L, m]`` (a column of ``down_proj``) that the coefficient scales into the residual.

The final RMSNorm, handled explicitly:

- *direct contribution* of a neuron to token ``t``'s logit at a position:
  ``coef * (W_out[L, m] . (g * W_U[:, t])) / s`` with ``g`` the final norm's weight and
  ``s`` the final norm's actual scale at that position (``ln_final.hook_scale``, frozen, as
  in direct logit attribution). These sum over neurons to the layer's MLP attribution
  (no ``b_out`` in Llama models; a bias would be one more term).
- *promoted tokens* of a value vector: top entries of ``(g * W_out[L, m]) @ W_U`` (weight
  only: no scale, no coefficient); the ranking does not depend on a position.

``g * W_U`` is the bridge's ``ln_final`` weight times its ``W_U`` under every weight
processing (with folding, ``g`` is 1 and folded into ``W_U``). Gemma's norms scale by
``1 + w`` (:func:`norm_gain`), and its MLP output passes one more norm before the residual
(``ln2_post``, weight ``g2``, scale ``s2`` at the position): there a neuron's contribution is
``coef * ((g2 * W_out[L, m]) . (g * W_U[:, t])) / (s2 * s)``, and its promoted tokens rank
``(g * g2 * W_out[L, m]) @ W_U``.

Example::

    dirs = unembed_directions(lm.bridge, rec.stat("first_id"))              # [n, d_model]
    c = neuron_logit_contributions(lm.bridge, post, dirs, scale)            # [n, L, d_mlp]
    top_neurons(c.mean(0), k=10); promoted_tokens(lm, layer=5, neurons=[17, 99])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

if TYPE_CHECKING:
    from interp.models import LoadedModel
    from interp.recording import Recording


def norm_gain(bridge: Any, ln: Any) -> Float[Tensor, "d_model"]:
    """The elementwise gain a norm module of ``bridge`` applies: its weight, or ``1 + weight``
    for Gemma's RMSNorm (``cfg.rmsnorm_uses_offset``), ones when it has none."""
    w = getattr(getattr(ln, "_original_component", ln), "weight", None)
    if w is None:
        return torch.ones(bridge.cfg.d_model)
    w = w.detach().float().cpu()
    return 1.0 + w if getattr(bridge.cfg, "rmsnorm_uses_offset", False) else w


def final_norm_weight(bridge: Any) -> Float[Tensor, "d_model"]:
    """The final norm's elementwise gain ``g`` as the bridge applies it (ones if folded)."""
    return norm_gain(bridge, bridge.ln_final)


def post_norm_gains(bridge: Any, which: str) -> Float[Tensor, "layer d_model"] | None:
    """The gains of the norms after each layer's attention (``which="attn"``, ``ln1_post``)
    or MLP (``"mlp"``, ``ln2_post``) in a model that has them (Gemma 3), else None."""
    name = {"attn": "ln1_post", "mlp": "ln2_post"}[which]
    if not hasattr(bridge.blocks[0], name):
        return None
    return torch.stack([norm_gain(bridge, getattr(b, name)) for b in bridge.blocks])


def has_post_norms(bridge: Any) -> bool:
    """Whether each sub-layer's output passes a norm before the residual (Gemma 3)."""
    return hasattr(bridge.blocks[0], "ln2_post")


def unembed_directions(bridge: Any, tokens: Int[Tensor, "n"],
                       minus: Int[Tensor, "n"] | None = None) -> Float[Tensor, "n d_model"]:
    """``g * W_U[:, t]`` per query (minus the same for ``minus`` tokens when given)."""
    wu = bridge.W_U.detach().float().cpu() * final_norm_weight(bridge)[:, None]  # [d_model, vocab]
    dirs = wu[:, tokens.long()].T  # [n, d_model]
    if minus is not None:
        dirs = dirs - wu[:, minus.long()].T
    return dirs


def unembed_bias(bridge: Any, tokens: Int[Tensor, "n"],
                 minus: Int[Tensor, "n"] | None = None) -> Float[Tensor, "n"]:
    b = getattr(bridge, "b_U", None)
    if b is None:
        return torch.zeros(len(tokens))
    b = b.detach().float().cpu()
    return b[tokens.long()] - (b[minus.long()] if minus is not None else 0.0)


def stack_layers(rec: Recording, site: str, n_layers: int, pos: str = "last",
                 kind: str = "act") -> Tensor:
    """``[rows, n_layers, ...]`` from per-layer recorded tensors (``kind`` act or grad)."""
    from interp.hooks import hook_name

    get = rec.act if kind == "act" else rec.grad
    return torch.stack([get(hook_name(site, L), pos) for L in range(n_layers)], dim=1)


def neuron_logit_contributions(
    bridge: Any, post: Float[Tensor, "n layer d_mlp"], dirs: Float[Tensor, "n d_model"],
    scale: Float[Tensor, "n"], post_scale: Float[Tensor, "n layer"] | None = None,
) -> Float[Tensor, "n layer d_mlp"]:
    """Direct contribution of each neuron to ``dirs`` (frozen final-norm ``scale``; in a model
    with post-MLP norms also their frozen scales ``post_scale``, recorded at
    ``mlp_post_scale``)."""
    w_out = bridge.W_out.detach().float().cpu()  # [layer, d_mlp, d_model]
    gains = post_norm_gains(bridge, "mlp")  # [layer, d_model] or None
    if gains is not None:
        if post_scale is None:
            raise ValueError("this model has a norm after each MLP: pass its recorded scales "
                             "(post_scale, site mlp_post_scale)")
        w_out = w_out * gains[:, None, :]
    value_dot = torch.einsum("lmd,nd->nlm", w_out, dirs)  # [n, layer, d_mlp]
    out = post * value_dot / scale[:, None, None]
    return out if gains is None else out / post_scale[:, :, None]


def layer_totals(contrib: Float[Tensor, "n layer d_mlp"]) -> Float[Tensor, "n layer"]:
    return contrib.sum(-1)


def top_neurons(contrib: Float[Tensor, "layer d_mlp"], k: int = 10,
                largest: bool = True) -> list[tuple[int, int, float]]:
    """The ``k`` (layer, neuron, value) with the largest (or smallest) values."""
    flat = einops.rearrange(contrib, "l m -> (l m)")
    vals, idx = flat.topk(min(k, flat.numel()), largest=largest)
    d_mlp = contrib.shape[1]
    return [(int(i) // d_mlp, int(i) % d_mlp, float(v)) for v, i in zip(vals, idx)]


def value_logits(bridge: Any, layer: int, neurons: Sequence[int]) -> Float[Tensor, "k vocab"]:
    """Weight-only vocabulary projection ``(g * W_out[layer, m]) @ W_U`` of value vectors."""
    w = bridge.W_out[layer, list(neurons)].detach().float().cpu()  # [k, d_model]
    wu = bridge.W_U.detach().float().cpu()  # [d_model, vocab]
    gains = post_norm_gains(bridge, "mlp")
    if gains is not None:  # the value passes the post-MLP norm's gain (Gemma 3)
        w = w * gains[layer]
    return (w * final_norm_weight(bridge)) @ wu


def promoted_tokens(lm: LoadedModel, layer: int, neurons: Sequence[int],
                    k: int = 10) -> list[list[tuple[str, float]]]:
    """Top ``k`` tokens each value vector promotes (weight only; see module docstring)."""
    logits = value_logits(lm.bridge, layer, neurons)  # [k_neurons, vocab]
    vals, idx = logits.topk(k, dim=-1)
    return [[(lm.tokenizer.decode([int(t)]), float(v)) for v, t in zip(vr, ir)]
            for vr, ir in zip(vals, idx)]


def target_promotion(bridge: Any, neurons: Sequence[tuple[int, int]], targets: Sequence[int],
                     k: int = 50) -> list[dict[str, float]]:
    """For each (layer, neuron): how strongly its value promotes the ``targets`` tokens.

    Returns per neuron ``z``: mean z-score of the targets in the value's vocabulary
    projection, ``top_k_frac``: share of targets among the ``k`` most promoted tokens.
    """
    out = []
    t = torch.tensor(sorted(set(targets)), dtype=torch.long)
    for layer, m in neurons:
        v = value_logits(bridge, layer, [m])[0]  # [vocab]
        z = (v - v.mean()) / (v.std() + 1e-12)
        top = set(v.topk(k).indices.tolist())
        out.append({"layer": layer, "neuron": m, "z": float(z[t].mean()),
                    "top_k_frac": sum(int(x) in top for x in t) / max(len(t), 1)})
    return out


MLP_WEIGHTS = ("W_gate", "W_in", "W_out")


def weight_deltas(base: Any, tuned: Any) -> dict[str, Tensor]:
    """Finetuned minus base MLP weights, summarised (two bridges of the same architecture).

    Returns ``rel_<W>`` ``[layer]`` (``||dW|| / ||W_base||``, Frobenius) for ``W_gate``,
    ``W_in``, ``W_out`` (when present) and ``neuron`` ``[layer, d_mlp]``: the norm of the
    change of each neuron's key rows and value vector together.
    """
    out: dict[str, Tensor] = {}
    per_neuron = None
    for name in MLP_WEIGHTS:
        if not hasattr(base, name):
            continue
        try:
            wb, wt = getattr(base, name).detach().float().cpu(), getattr(tuned, name).detach().float().cpu()
        except AttributeError:
            continue
        d = wt - wb  # W_gate/W_in: [layer, d_model, d_mlp]; W_out: [layer, d_mlp, d_model]
        out[f"rel_{name}"] = d.flatten(1).norm(dim=1) / wb.flatten(1).norm(dim=1).clamp_min(1e-12)
        sq = d.pow(2).sum(1) if name != "W_out" else d.pow(2).sum(2)  # [layer, d_mlp]
        per_neuron = sq if per_neuron is None else per_neuron + sq
    if per_neuron is None:
        raise ValueError("no MLP weights (W_gate, W_in, W_out) on these bridges")
    out["neuron"] = per_neuron.sqrt()
    return out


def key_response(rec: Recording, neurons: Sequence[tuple[int, int]],
                 positions: Sequence[str] = ("entity:name", "entity:description")) -> list[dict[str, Any]]:
    """Mean key coefficient (``mlp_post``) of each neuron over the rows of each position set."""
    from interp.hooks import hook_name

    out = []
    for layer, m in neurons:
        row: dict[str, Any] = {"layer": layer, "neuron": m}
        for pos in positions:
            a = rec.act(hook_name("mlp_post", layer), pos)[:, m]  # [rows]
            row[pos] = float(a.mean()) if len(a) else float("nan")
        out.append(row)
    return out
