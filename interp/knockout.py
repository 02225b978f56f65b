"""Attention knockout (Geva et al. 2023): which attention edges carry the answer to the last token?

For a query (prompt, answer), the last prompt token (where the answer's first token is read)
is stopped from attending to a set of earlier positions, in every attention layer of a window
of ``window`` layers centred on ``L`` (9 in Geva et al.). Edges (:data:`EDGES`):

- ``entity``: the last token -> every token of the prompt's entity;
- ``other``: the last token -> every other earlier token, except the first one (the BOS token,
  or the first word where a model has none: blocking the attention sink breaks any model,
  whatever it knows);
- ``self``: the last token -> itself.

Measured per knockout: the answer's first-token probability and the whole answer's
log-probability (the answer is teacher-forced; only the last prompt token's edges are cut, so
the later answer tokens see a changed last-token state but attend as usual). The drop from
the clean run says how much the answer travels along that edge in those layers.

Edges are cut through the attention mask: a forward pre-hook on each attention module of the
window adds ``-inf`` (the dtype's minimum) at the cut entries of the 4D mask the decoder layer
passes in (built causal where the layer passes none). The clean prefix before the last
prompt token is computed once and reused through the KV cache. Works for HF models whose
attention modules take ``attention_mask`` as a keyword (Llama, Qwen, Gemma, Mistral, ...).

Example::

    ko = attention_knockout(lm, queries, "description")
    ko.lp["entity"] - ko.lp_clean[:, None]        # [query, layer]: drop when entity edges are cut
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from interp.cross_patch import _answer_scores, _prefix_cache, _window, layer_list
from interp.recording import Query, _entity_positions
from interp.tokens import encode_pair
from interp.trace_sites import _cache_kw, _eval_no_grad, _parts

if TYPE_CHECKING:
    from interp.models import LoadedModel

EDGES = ("entity", "other", "self")


@dataclass(frozen=True)
class KnockoutConfig:
    """Args:
        window: attention layers cut together (centred on the layer; Geva et al. use 9).
        edges: which of :data:`EDGES` to cut, each on its own.
        layer_stride: centre windows on layers ``0, k, 2k, ...`` (and always the last layer).
        layers: centre windows on these layers instead (overrides ``layer_stride``).
        batch_size: knocked-out sequences per forward pass.
    """

    window: int = 9
    edges: tuple[str, ...] = EDGES
    layer_stride: int = 1
    batch_size: int = 64
    layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not self.edges or any(e not in EDGES for e in self.edges):
            raise ValueError(f"KnockoutConfig.edges: expected a non-empty subset of {EDGES}, got {self.edges!r}")
        for k in ("window", "layer_stride", "batch_size"):
            if getattr(self, k) < 1:
                raise ValueError(f"KnockoutConfig.{k} must be >= 1, got {getattr(self, k)}")


@dataclass
class Knockout:
    """Knockout results for ``n`` queries: ``lp[edge]`` / ``p_first[edge]`` ``[n, n_layers_cut]``
    (the window centred on ``layers[j]``), ``lp_clean`` / ``p_clean`` ``[n]``."""

    layers: list[int]
    lp: dict[str, Float[Tensor, "n layer"]]
    p_first: dict[str, Float[Tensor, "n layer"]]
    lp_clean: Float[Tensor, " n"]
    p_clean: Float[Tensor, " n"]
    meta: list[dict[str, Any]] = field(default_factory=list)
    config: KnockoutConfig = field(default_factory=KnockoutConfig)

    def effect(self, edge: str) -> Float[Tensor, "n layer"]:
        """Knocked-out minus clean whole-answer log-prob (nats; negative: the edge mattered)."""
        return self.lp[edge] - self.lp_clean[:, None]


def edge_keys(span: Sequence[int], n_prompt: int, edge: str) -> list[int]:
    """The key positions the last prompt token stops attending to when ``edge`` is cut."""
    last = n_prompt - 1
    if edge == "entity":
        return [p for p in span if p != last]
    if edge == "other":
        return [p for p in range(1, last) if p not in set(span)]
    if edge == "self":
        return [last]
    raise ValueError(f"edge_keys: unknown edge {edge!r}; expected one of {EDGES}")


def _mask_hook(cut: dict[int, list[int]], q_row: int, start: int, total: int):  # noqa: ANN202
    """A forward pre-hook (with kwargs) that cuts, for batch row ``r`` in ``cut``, the edges
    from query row ``q_row`` to the key positions ``cut[r]``."""
    def hook(mod: Any, args: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        hs = kwargs.get("hidden_states", args[0] if args else None)
        b, q_len = hs.shape[0], hs.shape[1]
        mask = kwargs.get("attention_mask")
        neg = torch.finfo(hs.dtype).min
        if mask is None:
            q_pos = torch.arange(start, start + q_len, device=hs.device)[:, None]
            k_pos = torch.arange(total, device=hs.device)[None, :]
            allowed = k_pos <= q_pos
            window = getattr(mod, "sliding_window", None)  # a sliding-window layer (Gemma)
            if window:
                allowed &= k_pos > q_pos - window
            mask = torch.where(allowed, 0.0, neg).to(hs.dtype)[None, None]
        elif mask.dtype == torch.bool:
            mask = torch.where(mask, 0.0, neg).to(hs.dtype)
        mask = mask.expand(b, -1, q_len, -1).clone()
        for r, keys in cut.items():
            if keys:
                mask[r, :, q_row, torch.tensor(keys, device=hs.device)] = neg
        kwargs["attention_mask"] = mask
        return args, kwargs
    return hook


def knock_query(lm: LoadedModel, q: Query, entity: str, config: KnockoutConfig | None = None,
                use_cache: bool = True) -> dict[str, Any]:
    """One query's knockouts (see :func:`attention_knockout`); plain tensors and lists."""
    cfg = config or KnockoutConfig()
    with _eval_no_grad(lm.hf):
        parts = _parts(lm.hf)
        attn = parts.attn
        n_layers = len(attn)
        layers = layer_list(cfg.layers, cfg.layer_stride, n_layers)
        p_ids, c_ids = encode_pair(lm, q.prompt, q.target)
        if not c_ids:
            raise ValueError(f"attention knockout: empty answer for {q.prompt!r}")
        span = _entity_positions(lm, q, entity, p_ids)
        if not span:
            raise ValueError(f"attention knockout: entity {entity!r} = {q.entities.get(entity)!r} is "
                             f"not in the prompt {q.prompt!r}")
        T = len(p_ids)
        ids = torch.tensor([p_ids + c_ids[:-1]], device=lm.device)
        total = ids.shape[1]
        start = T - 1 if use_cache else 0
        cache = _prefix_cache(lm, ids, start) if start > 0 else None
        variants = [(e, l0) for e in cfg.edges for l0 in layers]
        lp = {e: torch.empty(len(layers)) for e in cfg.edges}
        pf = {e: torch.empty(len(layers)) for e in cfg.edges}
        lp_clean, p_clean = _run(lm, ids, start, cache, c_ids, [(None, [])], parts.keep, total)
        for k in range(0, len(variants), cfg.batch_size):
            chunk = variants[k: k + cfg.batch_size]
            rows = [(e, _window(l0, cfg.window, n_layers)) for e, l0 in chunk]
            cut = [(edge_keys(span, T, e), ls) for e, ls in rows]
            a, b = _run(lm, ids, start, cache, c_ids, cut, parts.keep, total, attn, T - 1 - start)
            for j, (e, l0) in enumerate(chunk):
                lp[e][layers.index(l0)], pf[e][layers.index(l0)] = a[j], b[j]
        return {"layers": layers, "lp": lp, "p_first": pf, "lp_clean": float(lp_clean[0]),
                "p_clean": float(p_clean[0]), "span": span}


def _run(lm: LoadedModel, ids: Tensor, start: int, cache: Any, answer: list[int],
         cuts: Sequence[tuple[Any, list[int]]], keep: bool, total: int,
         attn: Sequence[torch.nn.Module] = (), q_row: int = 0) -> tuple[Tensor, Tensor]:
    """Score the answer for each row; row ``r`` cuts the edges ``cuts[r][0]`` (key positions)
    in the attention layers ``cuts[r][1]``."""
    nv = len(cuts)
    by_layer: dict[int, dict[int, list[int]]] = {}
    for r, (keys, ls) in enumerate(cuts):
        for L in ls:
            by_layer.setdefault(L, {})[r] = list(keys)
    handles = [attn[L].register_forward_pre_hook(_mask_hook(c, q_row, start, total), with_kwargs=True)
               for L, c in by_layer.items()]
    n_ans = len(answer)
    kw: dict[str, Any] = {"logits_to_keep": n_ans} if keep else {}
    if cache is not None:
        c = copy.deepcopy(cache)
        c.batch_repeat_interleave(nv)
        kw.update({_cache_kw(lm.hf): c, "use_cache": True})
    try:
        logits = lm.hf(ids[:, start:].expand(nv, -1), **kw).logits[:, -n_ans:]
    finally:
        for h in handles:
            h.remove()
    return _answer_scores(logits, answer)


def attention_knockout(lm: LoadedModel, queries: Sequence[Query], entity: str,
                       config: KnockoutConfig | None = None, progress: bool = True,
                       use_cache: bool = True) -> Knockout:
    """Cut each edge of ``config`` in each window of layers, for each query;
    ``query.entities[entity]`` must occur in the prompt. See the module docstring."""
    cfg = config or KnockoutConfig()
    if not queries:
        raise ValueError("attention_knockout: no queries")
    rows = [knock_query(lm, q, entity, cfg, use_cache)
            for q in tqdm(queries, desc=f"attention knockout ({entity})", disable=not progress, unit="query")]
    return Knockout(rows[0]["layers"], {e: torch.stack([r["lp"][e] for r in rows]) for e in cfg.edges},
                    {e: torch.stack([r["p_first"][e] for r in rows]) for e in cfg.edges},
                    torch.tensor([r["lp_clean"] for r in rows]), torch.tensor([r["p_clean"] for r in rows]),
                    [dict(q.meta) for q in queries], cfg)
