"""Per-component attribution of the first answer token, for forward vs reverse queries.

Three views, all at the last prompt position (the one that predicts the first answer token):

- :func:`direct_logit_attribution`: the final residual is ``embed + sum_L (attn_L + mlp_L)``
  (TransformerLens ``cache.decompose_resid``; heads by ``stack_head_results``; both through
  ``apply_ln_to_stack``, i.e. divided by the final norm's *frozen* scale at that position),
  each dotted with ``g * W_U[:, t]`` (``g``: final norm weight, see :mod:`interp.kv`).
  For a LayerNorm model (GPT-2, GPT-NeoX) each part is centred over ``d_model`` first.
  Neurons by :func:`interp.kv.neuron_logit_contributions`. The parts plus the constant
  ``bias`` (``b_U[t]``, the final LayerNorm's bias term, attention and MLP output biases;
  zero for Llama) sum to the model's logit. Under ``fold_ln_center`` the logit is the
  centred one the bridge computes (log-probs are unchanged). ``contrast=True`` explains
  ``logit(answer) - logit(foil)`` instead. In a model with a norm after each sub-layer (Gemma 3)
  ``attn_out``/``mlp_out`` are those norms' outputs; heads and neurons, which come before
  them, are multiplied by the norm's gain and divided by its recorded scale
  (``attn_post_scale``, ``mlp_post_scale``), so they still sum to their layer.
- :func:`grad_x_act`: gradient of the recorded objective (see :mod:`interp.recording`) times
  the activation, per attention layer, MLP layer, head (via ``z``) and neuron; at the last
  prompt position, or summed over every recorded position (``pos="all"``).
- :func:`logit_lens`: log-prob of the first answer token after each layer, through the
  model's own final norm module (:func:`final_norm`; RMSNorm or LayerNorm) and unembedding.

:func:`compare` gives mean and spread per component for two query sets and a plain-text
summary (where forward recall is written; whether reverse queries have any writer).

Example::

    rec = record(lm, queries, attribution_hooks(lm), grad="first")
    dla = direct_logit_attribution(lm, rec)
    dla.total() - dla.logit          # ~0 (up to 1e-4)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from interp.hooks import check_fired, hook_name, layer_hooks
from interp.kv import (has_post_norms, neuron_logit_contributions, post_norm_gains, stack_layers,
                       unembed_bias, unembed_directions)

if TYPE_CHECKING:
    from interp.models import LoadedModel
    from interp.recording import Recording


def attribution_hooks(lm: LoadedModel) -> list[str]:
    """Every hook the analyses of this module read (record them at ``last``)."""
    n = lm.bridge.cfg.n_layers
    return ([hook_name("embed"), hook_name("final_scale")] + layer_hooks("attn_out", n)
            + layer_hooks("mlp_out", n) + layer_hooks("z", n) + layer_hooks("mlp_post", n)
            + layer_hooks("resid_post", n) + _post_scale_hooks(lm.bridge))


def _post_scale_hooks(bridge: Any) -> list[str]:
    """The post-sub-layer norms' scales, in a model that has those norms (Gemma 3)."""
    if not has_post_norms(bridge):
        return []
    n = bridge.cfg.n_layers
    return layer_hooks("attn_post_scale", n) + layer_hooks("mlp_post_scale", n)


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


def _cache(lm: LoadedModel, rec: Recording, hooks: list[str],
           extra: dict[str, Tensor] | None = None) -> Any:
    from transformer_lens.ActivationCache import ActivationCache

    check_fired(rec.hooks, hooks, "attribution (hooks not recorded)")
    acts = {h: rec.act(h, "last")[:, None] for h in hooks}  # [n, 1(pos), ...]
    acts.update({k: v[:, None] for k, v in (extra or {}).items()})
    return ActivationCache(acts, lm.bridge, has_batch_dim=True)


def _weight(bridge: Any, name: str) -> Tensor | None:
    """A bridge weight (``W_pos``, ``b_O``, ``b_out``) as fp32 on the CPU, None if absent."""
    try:
        w = getattr(bridge, name)
    except AttributeError:  # the architecture has no such weight (Llama: no W_pos, no biases)
        return None
    return None if w is None else w.detach().float().cpu()


def direct_logit_attribution(lm: LoadedModel, rec: Recording, contrast: bool = False) -> Attribution:
    """Direct logit attribution of the first answer token (or answer minus foil).

    Each part is the component's write at the last prompt position, centred over
    ``d_model`` for a LayerNorm model (the final norm's centring is linear), divided by the
    final norm's recorded scale and dotted with ``g * W_U[:, t]``. ``embed`` includes the
    learned position embedding (GPT-2). ``attn`` and ``mlp`` are the sums of their heads and
    neurons; constant terms go to ``bias``: ``b_U[t]``, the final norm's bias
    ``b . W_U[:, t]`` (LayerNorm) and each layer's attention and MLP output biases
    (``b_O``, ``b_out``; GPT-2, GPT-NeoX).
    """
    bridge = lm.bridge
    n_layers = bridge.cfg.n_layers
    hooks = ([hook_name("embed"), hook_name("final_scale")] + layer_hooks("attn_out", n_layers)
             + layer_hooks("mlp_out", n_layers) + layer_hooks("z", n_layers)
             + _post_scale_hooks(bridge))
    w_pos = _weight(bridge, "W_pos")  # [n_ctx, d_model]: learned positions (GPT-2), else None
    extra = {} if w_pos is None else {"hook_pos_embed": w_pos[rec.rows("last")[:, 1]]}  # [n, d_model]
    cache = _cache(lm, rec, hooks, extra)
    first = rec.stat("first_id")
    foil = rec.stat("foil_id") if contrast else None
    if foil is not None and bool((foil < 0).any()):
        raise ValueError("contrast=True needs a foil for every query")
    dirs = unembed_directions(bridge, first, foil)  # [n, d_model]
    centred = bridge.cfg.normalization_type in ("LN", "LNPre")
    dirs_c = dirs - dirs.mean(-1, keepdim=True) if centred else dirs  # x_c . d == x . d_c
    with torch.no_grad():
        resid, labels = cache.decompose_resid(layer=-1, apply_ln=True, return_labels=True)
        heads = cache.stack_head_results(layer=-1, apply_ln=True)[:, :, 0]  # [L*H, n, d_model]
    resid_dla = torch.einsum("cnd,nd->nc", resid[:, :, 0].float(), dirs)  # [n, 1 (+1) + 2L]
    head_dla = torch.einsum("cnd,nd->nc", heads.float(), dirs)  # [n, L*H]
    scale = rec.act(hook_name("final_scale"), "last").reshape(-1)  # [n]
    post = stack_layers(rec, "mlp_post", n_layers)  # [n, L, d_mlp]
    mlp_scale = None
    if has_post_norms(bridge):  # heads and neurons write through the post-norms (Gemma 3)
        attn_scale = stack_layers(rec, "attn_post_scale", n_layers).reshape(len(scale), n_layers)
        mlp_scale = stack_layers(rec, "mlp_post_scale", n_layers).reshape(len(scale), n_layers)
        gain = post_norm_gains(bridge, "attn")  # [L, d_model]
        head_dla = _through_post_norm(heads.float(), dirs, gain, attn_scale)
    neurons = neuron_logit_contributions(bridge, post, dirs_c, scale, mlp_scale)  # [n, L, d_mlp]
    attn = resid_dla[:, [labels.index(f"{L}_attn_out") for L in range(n_layers)]]  # [n, L]
    mlp = resid_dla[:, [labels.index(f"{L}_mlp_out") for L in range(n_layers)]]  # [n, L]
    embed = resid_dla[:, [i for i, lab in enumerate(labels) if lab in ("embed", "pos_embed")]].sum(1)
    bias = unembed_bias(bridge, first, foil) + _final_norm_bias(bridge, first, foil)  # [n]
    # Output biases: in hook_attn_out / hook_mlp_out, in no head or neuron; moved to `bias`.
    b_o, b_out = _weight(bridge, "b_O"), _weight(bridge, "b_out")  # [L, d_model] or None
    if b_o is not None:
        term = (dirs_c @ b_o.T) / scale[:, None]  # [n, L]
        attn, bias = attn - term, bias + term.sum(1)
    if b_out is not None:
        term = (dirs_c @ b_out.T) / scale[:, None]  # [n, L]
        mlp, bias = mlp - term, bias + term.sum(1)
    logit = rec.stat("first_logit") - (rec.stat("foil_logit") if contrast else 0.0)
    return Attribution("dla_contrast" if contrast else "dla", embed, attn, mlp,
                       head_dla.reshape(len(first), n_layers, -1), neurons, bias, logit)


def _through_post_norm(heads: Tensor, dirs: Tensor, gain: Tensor, post_scale: Tensor) -> Tensor:
    """Head DLA ``[n, L*H]`` when each layer's summed head results pass a norm (gain
    ``[L, d_model]``, frozen scale ``[n, L]``) before the residual: ``heads`` is
    ``[L*H, n, d_model]`` already divided by the final norm's scale."""
    n_layers = gain.shape[0]
    h = heads.reshape(n_layers, -1, *heads.shape[1:])  # [L, H, n, d_model]
    out = torch.einsum("lhnd,ld,nd->nlh", h, gain, dirs) / post_scale[:, :, None]
    return out.reshape(out.shape[0], -1)


def _final_norm_bias(bridge: Any, tokens: Tensor, minus: Tensor | None) -> Float[Tensor, "n"]:
    """``b . W_U[:, t]`` for a final LayerNorm's bias ``b`` (zero for RMSNorm, and once
    weight processing has folded ``b`` into ``b_U``)."""
    ln = bridge.ln_final
    b = getattr(getattr(ln, "_original_component", ln), "bias", None)
    if b is None:
        return torch.zeros(len(tokens))
    wu = bridge.W_U.detach().float().cpu()  # [d_model, vocab]
    dirs = wu[:, tokens.long()].T - (wu[:, minus.long()].T if minus is not None else 0.0)
    return dirs @ b.detach().float().cpu()


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


def final_norm(lm: LoadedModel) -> torch.nn.Module:
    """The HF model's own final norm (``model.norm``, ``transformer.ln_f``,
    ``gpt_neox.final_layer_norm``, ...), found by the name of the module the bridge's
    ``ln_final`` wraps, else by the usual attribute names.

    It is taken from ``lm.hf``, whose weights no weight processing touches, so that it
    matches ``lm.hf.get_output_embeddings()`` under every ``processing`` (the bridge's own
    copy has the norm weight and bias folded into ``W_U`` under ``fold_ln``).
    """
    name = getattr(getattr(lm.bridge, "ln_final", None), "name", None)
    if name:
        try:
            return lm.hf.get_submodule(name)
        except AttributeError:
            pass
    base = getattr(lm.hf, getattr(lm.hf, "base_model_prefix", ""), lm.hf)  # the decoder stack
    for attr in ("norm", "ln_f", "final_layer_norm", "final_layernorm", "norm_f"):
        found = getattr(base, attr, None)
        if isinstance(found, torch.nn.Module):
            return found
    raise ValueError(f"{type(lm.hf).__name__}: cannot find the final norm module (the bridge's "
                     f"ln_final names {name!r})")


def logit_lens(lm: LoadedModel, rec: Recording, chunk: int = 16) -> Float[Tensor, "n L"]:
    """Log-prob of the first answer token read from the residual after each layer.

    Each recorded ``resid_post`` (last prompt position) goes through the model's own final
    norm (:func:`final_norm`: RMSNorm for Llama, LayerNorm with centring and bias for GPT-2
    and GPT-NeoX) and its unembedding (with its bias, if any), in fp32 on the CPU. At the
    last layer this is the model's own log-prob (``rec.stat("first_logprob")``).
    """
    n_layers = lm.bridge.cfg.n_layers
    check_fired(rec.hooks, layer_hooks("resid_post", n_layers), "logit_lens (hooks not recorded)")
    resid = stack_layers(rec, "resid_post", n_layers)  # [n, L, d_model]
    norm = copy.deepcopy(final_norm(lm)).to(device="cpu", dtype=torch.float32)
    unembed = lm.hf.get_output_embeddings()
    w_u = unembed.weight.detach().float().cpu()  # [vocab, d_model]
    b_u = getattr(unembed, "bias", None)
    b_u = None if b_u is None else b_u.detach().float().cpu()  # [vocab]
    first = rec.stat("first_id").long()
    out = []
    with torch.no_grad():
        for i in range(0, len(first), chunk):  # [chunk, L, vocab] at a time
            logits = torch.nn.functional.linear(norm(resid[i: i + chunk]), w_u, b_u)  # [chunk, L, vocab]
            tgt = logits.gather(-1, first[i: i + chunk, None, None].expand(-1, n_layers, 1))[..., 0]
            out.append(tgt - logits.logsumexp(-1))  # [chunk, L]
    return torch.cat(out)


MIN_QUERIES = 3
"""Fewest queries per set for which :func:`compare` tests writers (a standard error needs a spread)."""


def _stats(x: Tensor) -> dict[str, list]:
    n = x.shape[0]
    sd = x.std(0) if n > 1 else torch.full_like(x[0], float("nan"))  # one query has no spread to report
    return {"mean": x.mean(0).tolist(), "std": sd.tolist(), "sem": (sd / max(n, 1) ** 0.5).tolist()}


def compare(forward: Attribution, reverse: Attribution, k: int = 5) -> dict[str, Any]:
    """Mean/std/sem per layer x component for both sets, their difference, and a summary.

    A *writer* is a component whose mean score is positive, at least 3 standard errors
    from zero and at least 10% of the largest forward writer's mean. A set of fewer than
    :data:`MIN_QUERIES` queries has no standard error worth the name: its spread is NaN, its
    writers are not tested (``writers_tested`` False) and a warning says so.
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

    out["writers_tested"] = {}
    for name, a in (("forward", forward), ("reverse", reverse)):
        out["writers_tested"][name] = len(a.embed) >= MIN_QUERIES
        if len(a.embed) < MIN_QUERIES:
            import warnings

            warnings.warn(f"compare(): the {name} set has {len(a.embed)} quer{'y' if len(a.embed) == 1 else 'ies'}; "
                          f"writers need at least {MIN_QUERIES} for a standard error, so none are tested there",
                          stacklevel=2)

    def writers(a: Attribution) -> list[dict[str, Any]]:
        grid = a.components()  # [n, L, 2]
        if grid.shape[0] < MIN_QUERIES:
            return []
        mean = grid.mean(0)
        sem = grid.std(0) / grid.shape[0] ** 0.5
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
    tested = cmp.get("writers_tested", {"forward": True, "reverse": True})
    lines = [f"[{cmp['kind']}] forward n={cmp['n_forward']}, reverse n={cmp['n_reverse']}."]
    if not tested["forward"]:
        lines.append(f"Forward writers not tested (n={cmp['n_forward']} < {MIN_QUERIES}).")
    else:
        lines.append("Forward recall is written by: " + fmt(fw) + "." if fw else
                     "No component writes the forward answer consistently.")
    if not tested["reverse"]:
        lines.append(f"Reverse writers not tested (n={cmp['n_reverse']} < {MIN_QUERIES}).")
    else:
        lines.append("Reverse queries have writers: " + fmt(rw) + "." if rw else
                     "Reverse queries have no writer above threshold (3 s.e.m. and 10% of the "
                     "largest forward writer).")
    lines.append(f"Total explained: forward {cmp['forward']['total_mean']:+.2f}, "
                 f"reverse {cmp['reverse']['total_mean']:+.2f}.")
    return " ".join(lines)
