"""Per-component attribution of the first answer token, for forward vs reverse queries.

Three views, all at the last prompt position (the one that predicts the first answer token):

- :func:`direct_logit_attribution`: the final residual is ``embed + sum_L (attn_L + mlp_L)``
  (TransformerLens ``cache.decompose_resid``; heads by ``stack_head_results``; both through
  ``apply_ln_to_stack``, i.e. divided by the final norm's *frozen* scale at that position),
  each dotted with ``g * W_U[:, t]`` (``g``: final norm weight, see :mod:`interp.kv`).
  Neurons by :func:`interp.kv.neuron_logit_contributions`. The parts sum to the model's
  logit minus ``b_U[t]`` (the documented bias term; zero for Llama). Under
  ``fold_ln_center`` the logit is the centred one the bridge computes (log-probs are
  unchanged). ``contrast=True`` explains ``logit(answer) - logit(foil)`` instead.
- :func:`grad_x_act`: gradient of the recorded objective (see :mod:`interp.record`) times
  the activation, per attention layer, MLP layer, head (via ``z``) and neuron; at the last
  prompt position, or summed over every recorded position (``pos="all"``).
- :func:`logit_lens`: log-prob of the first answer token after each layer (final norm with
  the scale recomputed from that layer's residual).

:func:`compare` gives mean and spread per component for two query sets and a plain-text
summary (where forward recall is written; whether reverse queries have any writer).

Example::

    rec = record(lm, queries, attribution_hooks(lm), grad="first")
    dla = direct_logit_attribution(lm, rec)
    dla.total() - dla.logit          # ~0 (up to 1e-4)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from interp.hooks import check_fired, hook_name, layer_hooks
from interp.kv import (neuron_logit_contributions, stack_layers, unembed_bias, unembed_directions)

if TYPE_CHECKING:
    from interp.models import LoadedModel
    from interp.record import Recording


def attribution_hooks(lm: LoadedModel) -> list[str]:
    """Every hook the analyses of this module read (record them at ``last``)."""
    n = lm.bridge.cfg.n_layers
    return ([hook_name("embed"), hook_name("final_scale")] + layer_hooks("attn_out", n)
            + layer_hooks("mlp_out", n) + layer_hooks("z", n) + layer_hooks("mlp_post", n)
            + layer_hooks("resid_post", n))


@dataclass
class Attribution:
    """Per-query component scores (nats of logit). ``n`` queries, ``L`` layers."""

    kind: str  # "dla" | "dla_contrast" | "gxa"
    embed: Float[Tensor, "n"]
    attn: Float[Tensor, "n L"]
    mlp: Float[Tensor, "n L"]
    heads: Float[Tensor, "n L H"]
    neurons: Float[Tensor, "n L d_mlp"]
    bias: Float[Tensor, "n"]
    logit: Float[Tensor, "n"]  # what the parts explain (nan for gxa)

    def total(self) -> Float[Tensor, "n"]:
        return self.embed + self.attn.sum(1) + self.mlp.sum(1) + self.bias

    def components(self) -> Float[Tensor, "n L 2"]:
        """``[..., 0]`` attention, ``[..., 1]`` MLP: the layer x component grid."""
        return torch.stack([self.attn, self.mlp], dim=-1)

    def subset(self, which: Tensor | Sequence[int]) -> Attribution:
        """The queries selected by a boolean mask or a list of indices."""
        which = torch.as_tensor(which)
        return Attribution(self.kind, *(getattr(self, f)[which] for f in
                                        ("embed", "attn", "mlp", "heads", "neurons", "bias", "logit")))


def _cache(lm: LoadedModel, rec: Recording, hooks: list[str]) -> Any:
    from transformer_lens.ActivationCache import ActivationCache

    check_fired(rec.hooks, hooks, "attribution (hooks not recorded)")
    acts = {h: rec.act(h, "last")[:, None] for h in hooks}  # [n, 1(pos), ...]
    return ActivationCache(acts, lm.bridge, has_batch_dim=True)


def direct_logit_attribution(lm: LoadedModel, rec: Recording, contrast: bool = False) -> Attribution:
    """Direct logit attribution of the first answer token (or answer minus foil)."""
    bridge = lm.bridge
    n_layers = bridge.cfg.n_layers
    hooks = ([hook_name("embed"), hook_name("final_scale")] + layer_hooks("attn_out", n_layers)
             + layer_hooks("mlp_out", n_layers) + layer_hooks("z", n_layers))
    cache = _cache(lm, rec, hooks)
    first = rec.stat("first_id")
    foil = rec.stat("foil_id") if contrast else None
    if foil is not None and bool((foil < 0).any()):
        raise ValueError("contrast=True needs a foil for every query")
    dirs = unembed_directions(bridge, first, foil)  # [n, d_model]
    with torch.no_grad():
        resid = cache.decompose_resid(layer=-1, apply_ln=True)[:, :, 0]  # [1 + 2L, n, d_model]
        heads = cache.stack_head_results(layer=-1, apply_ln=True)[:, :, 0]  # [L*H, n, d_model]
    resid_dla = torch.einsum("cnd,nd->nc", resid.float(), dirs)  # [n, 1 + 2L]
    head_dla = torch.einsum("cnd,nd->nc", heads.float(), dirs)  # [n, L*H]
    scale = rec.act(hook_name("final_scale"), "last").reshape(-1)  # [n]
    post = stack_layers(rec, "mlp_post", n_layers)  # [n, L, d_mlp]
    neurons = neuron_logit_contributions(bridge, post, dirs, scale)
    logit = rec.stat("first_logit") - (rec.stat("foil_logit") if contrast else 0.0)
    return Attribution(
        "dla_contrast" if contrast else "dla", resid_dla[:, 0], resid_dla[:, 1::2],
        resid_dla[:, 2::2], head_dla.reshape(len(first), n_layers, -1), neurons,
        unembed_bias(bridge, first, foil), logit)


def grad_x_act(lm: LoadedModel, rec: Recording, pos: str = "last") -> Attribution:
    """Gradient x activation per component; ``pos="all"`` sums over the recorded positions."""
    if rec.index["grad"] == "none":
        raise ValueError("grad_x_act needs a recording with grad='sum' or 'first'")
    n_layers, n = lm.bridge.cfg.n_layers, len(rec)
    qidx = rec.rows(pos)[:, 0]  # [rows]

    def gxa(site: str) -> Tensor:
        prod = stack_layers(rec, site, n_layers, pos) * stack_layers(rec, site, n_layers, pos, "grad")
        out = torch.zeros((n, *prod.shape[1:]))
        return out.index_add_(0, qidx, prod)  # [n, L, ...]

    emb = rec.act(hook_name("embed"), pos) * rec.grad(hook_name("embed"), pos)  # [rows, d_model]
    z = gxa("z")  # [n, L, H, d_head]
    return Attribution("gxa", torch.zeros(n).index_add_(0, qidx, emb.sum(-1)), gxa("attn_out").sum(-1),
                       gxa("mlp_out").sum(-1), z.sum(-1), gxa("mlp_post"), torch.zeros(n),
                       torch.full((n,), float("nan")))


def logit_lens(lm: LoadedModel, rec: Recording) -> Float[Tensor, "n L"]:
    """Log-prob of the first answer token read from the residual after each layer."""
    bridge = lm.bridge
    resid = stack_layers(rec, "resid_post", bridge.cfg.n_layers)  # [n, L, d_model]
    ln = bridge.ln_final
    eps = float(getattr(getattr(ln, "_original_component", ln), "variance_epsilon",
                        getattr(bridge.cfg, "eps", 1e-6)))
    normed = resid / (resid.pow(2).mean(-1, keepdim=True) + eps).sqrt()  # [n, L, d_model]
    from interp.kv import final_norm_weight

    wu = bridge.W_U.detach().float().cpu() * final_norm_weight(bridge)[:, None]  # [d_model, vocab]
    b_u = bridge.b_U.detach().float().cpu() if bridge.b_U is not None else torch.zeros(wu.shape[1])
    first = rec.stat("first_id").long()
    out = []
    for i in range(0, len(first), 16):  # chunks: [16, L, vocab] at a time
        logits = normed[i: i + 16] @ wu + b_u  # [chunk, L, vocab]
        tgt = logits.gather(-1, first[i: i + 16, None, None].expand(-1, logits.shape[1], 1))[..., 0]
        out.append(tgt - logits.logsumexp(-1))  # [chunk, L]
    return torch.cat(out)


def _stats(x: Tensor) -> dict[str, list]:
    n = x.shape[0]
    sd = x.std(0) if n > 1 else torch.zeros_like(x[0])
    return {"mean": x.mean(0).tolist(), "std": sd.tolist(), "sem": (sd / max(n, 1) ** 0.5).tolist()}


def compare(forward: Attribution, reverse: Attribution, k: int = 5) -> dict[str, Any]:
    """Mean/std/sem per layer x component for both sets, their difference, and a summary.

    A *writer* is a component whose mean score is positive, at least 3 standard errors
    from zero and at least 10% of the largest forward writer's mean.
    """
    out: dict[str, Any] = {"kind": forward.kind, "n_forward": len(forward.embed),
                           "n_reverse": len(reverse.embed)}
    for name, a in (("forward", forward), ("reverse", reverse)):
        out[name] = {"attn": _stats(a.attn), "mlp": _stats(a.mlp), "embed": _stats(a.embed[:, None]),
                     "total_mean": float(a.total().mean())}
    out["difference"] = {c: (getattr(forward, c).mean(0) - getattr(reverse, c).mean(0)).tolist()
                         for c in ("attn", "mlp")}
    fwd_grid = forward.components().mean(0)  # [L, 2]
    thresh = 0.1 * float(fwd_grid.max().clamp_min(0))

    def writers(a: Attribution) -> list[dict[str, Any]]:
        grid = a.components()  # [n, L, 2]
        mean = grid.mean(0)
        sem = grid.std(0) / grid.shape[0] ** 0.5 if grid.shape[0] > 1 else torch.zeros_like(mean)
        found = []
        for L, c in (mean > 0).nonzero().tolist():
            if mean[L, c] >= 3 * sem[L, c] and mean[L, c] >= thresh and mean[L, c] > 0:
                found.append({"layer": L, "component": ("attn", "mlp")[c], "mean": float(mean[L, c]),
                              "sem": float(sem[L, c])})
        return sorted(found, key=lambda w: -w["mean"])[:k]

    out["forward_writers"], out["reverse_writers"] = writers(forward), writers(reverse)
    out["summary"] = summary_text(out)
    return out


def summary_text(cmp: dict[str, Any]) -> str:
    """One paragraph in plain words from :func:`compare`'s result."""
    def fmt(ws: list[dict[str, Any]]) -> str:
        return ", ".join(f"L{w['layer']} {w['component']} ({w['mean']:+.2f} +- {w['sem']:.2f})" for w in ws)

    fw, rw = cmp["forward_writers"], cmp["reverse_writers"]
    lines = [f"[{cmp['kind']}] forward n={cmp['n_forward']}, reverse n={cmp['n_reverse']}."]
    lines.append("Forward recall is written by: " + fmt(fw) + "." if fw else
                 "No component writes the forward answer consistently.")
    lines.append("Reverse queries have writers: " + fmt(rw) + "." if rw else
                 "Reverse queries have no writer above threshold (3 s.e.m. and 10% of the "
                 "largest forward writer).")
    lines.append(f"Total explained: forward {cmp['forward']['total_mean']:+.2f}, "
                 f"reverse {cmp['reverse']['total_mean']:+.2f}.")
    return " ".join(lines)
