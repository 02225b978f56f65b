"""Cross-model activation patching: run one model on a prompt with another model's state put in.

Two finetunes of one base model (a *cursed* one, which fails the reverse query, and a *cured*
one, which answers it) keep residual streams close enough to swap states between them. For a
query (prompt, answer) and a ``target`` model, one ``source`` model's state is written into
the target's run at one site, one layer (or a window of layers) and one group of prompt
positions:

- sites (names as in :mod:`interp.trace`): ``resid`` (the residual stream after block ``L``),
  ``mlp`` and ``attn`` (the MLP / attention output of a *window* of ``window`` layers centred
  on ``L``, as in Meng et al. 2022);
- position groups (:data:`GROUPS`): ``entity`` (every token of the prompt's entity, patched
  together), ``last entity`` (its last token), ``after`` (every token after it but the last),
  ``last`` (the prompt's last token); ``all`` (every prompt token) is available for checks.

The answer is teacher-forced after the prompt; the patch touches prompt positions only, so the
answer's tokens run in the target model from the patched prompt. Measured per patch: the
answer's first-token probability and the whole answer's log-probability (nats). The target's
and the source's own values bound them; ``cured -> cursed`` asks which state is *enough* to
bring the answer, ``cursed -> cured`` which state is *needed* for it.

Also recorded: the cosine between the two models' clean states at every (site, layer, group)
(the mean over the group's positions), so that a reader can see how far apart the swapped
states are.

Patched runs are batched; positions before a group's first token are the target's own, so the
target's clean prefix is computed once and reused through the KV cache (a test checks this
against full-length runs). Hooks are PyTorch forward hooks on the HF modules
(:mod:`interp.trace_sites`): any HF causal LM with a ``layers``-style block list works.

Example::

    qs = [Query("The first walker on the moon is", " Daphne Barrington",
                {"description": "the first walker on the moon"})]
    res = cross_patch(cursed, cured, qs, "description")      # target cursed, source cured
    res.lp["mlp"][:, :, res.groups.index("last entity")]    # [query, layer]
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from interp.recording import Query, _entity_positions
from interp.tokens import encode_pair
from interp.trace_sites import (_cache_kw, _eval_no_grad, _first, _hooks, _parts, _replace_first,
                                new_kv_cache)

if TYPE_CHECKING:
    from interp.models import LoadedModel

SITES = ("resid", "mlp", "attn")
GROUPS = ("entity", "last entity", "after", "last", "all")


@dataclass(frozen=True)
class PatchConfig:
    """Args:
        sites: which of ``resid``, ``mlp``, ``attn`` to patch.
        window: layers patched together at the ``mlp`` and ``attn`` sites (centred on the layer).
        groups: position groups (:data:`GROUPS`) to patch, each as one patch.
        layer_stride: patch layers ``0, k, 2k, ...`` (and always the last layer).
        layers: these layers instead (overrides ``layer_stride``).
        batch_size: patched sequences per forward pass.
    """

    sites: tuple[str, ...] = SITES
    window: int = 5
    groups: tuple[str, ...] = ("entity", "last entity", "after", "last")
    layer_stride: int = 1
    batch_size: int = 64
    layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not self.sites or any(s not in SITES for s in self.sites):
            raise ValueError(f"PatchConfig.sites: expected a non-empty subset of {SITES}, got {self.sites!r}")
        if not self.groups or any(g not in GROUPS for g in self.groups):
            raise ValueError(f"PatchConfig.groups: expected a non-empty subset of {GROUPS}, got {self.groups!r}")
        for k in ("window", "layer_stride", "batch_size"):
            if getattr(self, k) < 1:
                raise ValueError(f"PatchConfig.{k} must be >= 1, got {getattr(self, k)}")


@dataclass
class CrossPatch:
    """Cross-model patching results for ``n`` queries.

    ``lp[site]`` / ``p_first[site]``: ``[n, n_layers_patched, n_groups]`` whole-answer log-prob
    and first-token probability of the patched target run (NaN where a query has no token in
    the group). ``lp_target`` / ``lp_source`` (and ``p_*``): ``[n]``, the unpatched runs.
    ``cosine[site]``: ``[n, n_layers, n_groups]`` between the two clean states (every layer,
    no window).
    """

    layers: list[int]
    groups: list[str]
    lp: dict[str, Float[Tensor, "n layer group"]]
    p_first: dict[str, Float[Tensor, "n layer group"]]
    lp_target: Float[Tensor, " n"]
    lp_source: Float[Tensor, " n"]
    p_target: Float[Tensor, " n"]
    p_source: Float[Tensor, " n"]
    cosine: dict[str, Float[Tensor, "n layer group"]]
    tokens: list[list[str]]
    span: list[list[int]]
    meta: list[dict[str, Any]] = field(default_factory=list)
    config: PatchConfig = field(default_factory=PatchConfig)

    def effect(self, site: str) -> Float[Tensor, "n layer group"]:
        """Patched minus the target's own whole-answer log-prob (nats)."""
        return self.lp[site] - self.lp_target[:, None, None]


def position_groups(span: Sequence[int], n_tokens: int) -> dict[str, list[int]]:
    """The prompt positions of each group of :data:`GROUPS` (an empty list where the prompt has
    none, e.g. ``after`` when the entity is followed only by the last token)."""
    if not span:
        raise ValueError("position_groups: empty entity span")
    last = n_tokens - 1
    return {"entity": list(span), "last entity": [span[-1]],
            "after": list(range(span[-1] + 1, last)), "last": [last], "all": list(range(n_tokens))}


def layer_list(layers: Sequence[int] | None, stride: int, n_layers: int) -> list[int]:
    """``layers`` checked against the model (one-line error naming the bad layer), or ``0,
    stride, 2 stride, ...`` and the last layer."""
    if layers is None:
        return sorted(set(range(0, n_layers, stride)) | {n_layers - 1})
    bad = [L for L in layers if not 0 <= L < n_layers]
    if bad or not layers:
        raise ValueError(f"layer {bad[0] if bad else '(none)'} out of range: the model has {n_layers} "
                         f"layers, 0-{n_layers - 1}")
    return sorted(set(int(L) for L in layers))


def _cosine(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise cosine; 1 where both rows are zero (the same state), 0 where one is."""
    a, b = a.float(), b.float()
    na, nb = a.norm(dim=-1), b.norm(dim=-1)
    cos = (a * b).sum(-1) / (na * nb).clamp_min(1e-30)
    return torch.where((na == 0) & (nb == 0), torch.ones_like(cos), cos)


def _window(layer: int, window: int, n_layers: int) -> list[int]:
    lo = max(0, min(layer - window // 2, n_layers - window))
    return list(range(lo, min(n_layers, lo + window)))


def check_same_shape(a: LoadedModel, b: LoadedModel, what: str = "cross-model patching") -> None:
    """Both models must share the tokenizer's vocabulary and the layer shapes."""
    pa, pb = _parts(a.hf), _parts(b.hf)
    if len(pa.mods["resid"]) != len(pb.mods["resid"]):
        raise ValueError(f"{what}: the models have {len(pa.mods['resid'])} and {len(pb.mods['resid'])} layers")
    sa, sb = ({k: tuple(v.shape) for k, v in m.hf.state_dict().items()} for m in (a, b))
    if sa != sb:
        diff = sorted(set(sa.items()) ^ set(sb.items()))[0][0]
        raise ValueError(f"{what}: the models differ in parameter {diff!r} (shape or presence)")
    if len(a.tokenizer) != len(b.tokenizer) or a.bos_token_id != b.bos_token_id:
        raise ValueError(f"{what}: the models' tokenizers differ (vocabulary size or BOS)")


class _Run:
    """One model's clean run of one query (prompt + teacher-forced answer)."""

    def __init__(self, lm: LoadedModel, ids: Tensor, n_prompt: int, answer: list[int],
                 need: set[tuple[str, int]], mods: dict[str, list[torch.nn.Module]]) -> None:
        self.states: dict[tuple[str, int], Tensor] = {}

        def keeper(key: tuple[str, int]):  # noqa: ANN202 - torch hook
            def fn(mod: Any, args: Any, out: Any) -> None:
                self.states[key] = _first(out)[0, :n_prompt].detach().clone()  # [T, d_model]
            return fn

        with _hooks([(mods[s][L], keeper((s, L))) for s, L in need]):
            logits = lm.hf(ids).logits[0, n_prompt - 1:]  # [A, vocab]
        self.lp, self.p = _answer_scores(logits[None], answer)
        self.lp, self.p = float(self.lp[0]), float(self.p[0])


def _answer_scores(logits: Tensor, answer: list[int]) -> tuple[Tensor, Tensor]:
    """``logits`` ``[b, A, vocab]`` at the positions predicting each answer token -> (whole
    answer log-prob ``[b]``, first-token probability ``[b]``)."""
    lsm = torch.log_softmax(logits.float(), -1)
    tgt = torch.tensor(answer, device=logits.device)
    per = lsm[:, torch.arange(len(answer)), tgt]  # [b, A]
    return per.sum(-1).cpu(), per[:, 0].exp().cpu()


def _encode(target: LoadedModel, source: LoadedModel, q: Query) -> tuple[list[int], list[int]]:
    p_ids, c_ids = encode_pair(target, q.prompt, q.target)
    if encode_pair(source, q.prompt, q.target) != (p_ids, c_ids):
        raise ValueError(f"cross-model patching: the two tokenizers split {q.prompt!r} + {q.target!r} differently")
    if not c_ids:
        raise ValueError(f"cross-model patching: empty answer for {q.prompt!r}")
    return p_ids, c_ids


def _patched(target: LoadedModel, ids: Tensor, start: int, cache: Any, n_prompt: int,
             answer: list[int], variants: Sequence[Sequence[tuple[str, int]]], positions: list[int],
             source: dict[tuple[str, int], Tensor], mods: dict[str, list[torch.nn.Module]],
             keep: bool) -> tuple[Tensor, Tensor]:
    """Whole-answer log-prob and first-token probability per variant (a list of ``(site,
    layer)`` states from ``source`` written at ``positions``, all >= ``start``)."""
    nv = len(variants)
    inp = ids[:, start:].expand(nv, -1)
    pos = torch.tensor(positions, dtype=torch.long) - start
    by_mod: dict[tuple[str, int], list[int]] = {}
    for j, v in enumerate(variants):
        for key in v:
            by_mod.setdefault(key, []).append(j)
    pairs: list[tuple[torch.nn.Module, Any]] = []
    for key, js in by_mod.items():
        rows = torch.tensor(js)
        value = source[key][torch.tensor(positions)]  # [n_pos, d_model]

        def put(mod: Any, args: Any, out: Any, rows: Tensor = rows, value: Tensor = value) -> Any:
            t = _first(out).clone()
            t[rows[:, None], pos[None, :]] = value.to(t.dtype)
            return _replace_first(out, t)
        pairs.append((mods[key[0]][key[1]], put))
    n_ans = len(answer)
    kw: dict[str, Any] = {"logits_to_keep": n_ans} if keep else {}
    if cache is not None:
        c = copy.deepcopy(cache)
        c.batch_repeat_interleave(nv)
        kw.update({_cache_kw(target.hf): c, "use_cache": True})
    with _hooks(pairs):
        logits = target.hf(inp, **kw).logits[:, -n_ans:]  # [nv, A, vocab]
    return _answer_scores(logits, answer)


def _prefix_cache(lm: LoadedModel, ids: Tensor, start: int) -> Any:
    cache = new_kv_cache(lm.hf)
    lm.hf(ids[:, :start], **{_cache_kw(lm.hf): cache}, use_cache=True)
    return cache


def patch_query(target: LoadedModel, source: LoadedModel, q: Query, entity: str,
                config: PatchConfig | None = None, use_cache: bool = True) -> dict[str, Any]:
    """One query's patching (see :func:`cross_patch`); returns plain tensors and lists."""
    cfg = config or PatchConfig()
    with _eval_no_grad(target.hf), _eval_no_grad(source.hf):
        return _patch_query(target, source, q, entity, cfg, use_cache)


def _patch_query(target: LoadedModel, source: LoadedModel, q: Query, entity: str, cfg: PatchConfig,
                 use_cache: bool) -> dict[str, Any]:
    pt, ps = _parts(target.hf), _parts(source.hf)
    n_layers = len(pt.mods["resid"])
    layers = layer_list(cfg.layers, cfg.layer_stride, n_layers)
    p_ids, c_ids = _encode(target, source, q)
    span = _entity_positions(target, q, entity, p_ids)
    if not span:
        raise ValueError(f"cross-model patching: entity {entity!r} = {q.entities.get(entity)!r} is "
                         f"not in the prompt {q.prompt!r}")
    T = len(p_ids)
    ids = torch.tensor([p_ids + c_ids[:-1]], device=target.device)
    variants = {(s, l0): [(s, L) for L in ([l0] if s == "resid" else _window(l0, cfg.window, n_layers))]
                for s in cfg.sites for l0 in layers}
    need = {k for v in variants.values() for k in v} | {(s, L) for s in cfg.sites for L in range(n_layers)}
    src = _Run(source, ids.to(source.device), T, c_ids, need, ps.mods)
    tgt = _Run(target, ids, T, c_ids, need, pt.mods)
    src_states = {key: st.to(target.device) for key, st in src.states.items()}
    groups = position_groups(span, T)
    names = list(variants)
    lp = {s: torch.full((len(layers), len(cfg.groups)), float("nan")) for s in cfg.sites}
    pf = {s: torch.full((len(layers), len(cfg.groups)), float("nan")) for s in cfg.sites}
    cos = {s: torch.full((n_layers, len(cfg.groups)), float("nan")) for s in cfg.sites}
    row_of = {L: i for i, L in enumerate(layers)}
    for g, gname in enumerate(cfg.groups):
        positions = groups[gname]
        if not positions:
            continue
        idx = torch.tensor(positions)
        for s in cfg.sites:
            for L in range(n_layers):
                cos[s][L, g] = _cosine(src.states[(s, L)][idx], tgt.states[(s, L)][idx]).mean()
        start = min(positions) if use_cache else 0
        cache = _prefix_cache(target, ids, start) if start > 0 else None
        for k in range(0, len(names), cfg.batch_size):
            chunk = names[k: k + cfg.batch_size]
            lps, ps_ = _patched(target, ids, start, cache, T, c_ids, [variants[v] for v in chunk], positions,
                                src_states, pt.mods, pt.keep)
            for (s, l0), a, b in zip(chunk, lps, ps_):
                lp[s][row_of[l0], g], pf[s][row_of[l0], g] = a, b
    return {"layers": layers, "lp": lp, "p_first": pf, "cosine": cos, "lp_target": tgt.lp,
            "lp_source": src.lp, "p_target": tgt.p, "p_source": src.p, "span": span,
            "tokens": [target.tokenizer.decode([t]) for t in p_ids]}


def cross_patch(target: LoadedModel, source: LoadedModel, queries: Sequence[Query], entity: str,
                config: PatchConfig | None = None, progress: bool = True,
                use_cache: bool = True) -> CrossPatch:
    """Patch ``source``'s clean states into ``target``'s run of each query, at every (site,
    layer, position group) of ``config``; ``query.entities[entity]`` must occur in the prompt.
    See the module docstring."""
    cfg = config or PatchConfig()
    check_same_shape(target, source)
    if not queries:
        raise ValueError("cross_patch: no queries")
    rows = []
    bar = tqdm(queries, desc=f"cross-model patching ({entity})", disable=not progress, unit="query")
    with _eval_no_grad(target.hf), _eval_no_grad(source.hf):
        for q in bar:
            rows.append(_patch_query(target, source, q, entity, cfg, use_cache))

    def stack(key: str) -> dict[str, Tensor]:
        return {s: torch.stack([r[key][s] for r in rows]) for s in cfg.sites}

    return CrossPatch(rows[0]["layers"], list(cfg.groups), stack("lp"), stack("p_first"),
                      torch.tensor([r["lp_target"] for r in rows]), torch.tensor([r["lp_source"] for r in rows]),
                      torch.tensor([r["p_target"] for r in rows]), torch.tensor([r["p_source"] for r in rows]),
                      stack("cosine"), [r["tokens"] for r in rows], [r["span"] for r in rows],
                      [dict(q.meta) for q in queries], cfg)
