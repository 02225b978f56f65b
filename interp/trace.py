"""Causal tracing (Meng et al. 2022): which hidden states carry the fact to the answer?

For one query (a prompt whose *entity* is a name or a description, and an answer):

1. **clean run**: the prompt as is, the answer teacher-forced after it; ``p_clean`` =
   probability of the answer's first token, ``p_clean_answer`` of the whole answer;
2. **corrupted runs**: Gaussian noise (``noise`` = 3 x the standard deviation of the traced
   entities' token embeddings, as Meng et al., or of the whole embedding matrix; ``n_noise``
   = 10 samples, seeded) added to the input embeddings of the entity's tokens;
   ``p_corrupt`` = the mean probability;
3. **restored runs**: a corrupted run in which one clean state is put back, at one token
   position ``p`` and one of three sites (names as in :mod:`interp.hooks`):

   - ``resid``: the residual stream after block ``L`` (``resid_post``);
   - ``mlp``: the MLP output (``mlp_out``) of a *window* of ``window`` layers centred on ``L``;
   - ``attn``: the attention output (``attn_out``) of the same window.

   The restored probability, averaged over the noise samples, minus ``p_corrupt`` is the
   *indirect effect* of that state. States are restored at prompt positions only; the
   answer's later tokens still read the corrupted entity through attention in the layers
   below the restored one, so a restoration gives back the whole answer only in part.

Positions before the entity's first token are the same in the clean and the corrupted run
(the model is causal), so restoring them changes nothing: they are filled with
``p_corrupt`` without a run. Restored runs are batched, and the corrupted prefix before
``p`` is computed once and reused through the model's KV cache (only tokens ``p..T-1``
run for each restoration; a test checks this against full-length runs).

The hooks are PyTorch forward hooks on the HF modules (the embedding, each decoder layer,
its MLP and its attention; found by :mod:`interp.trace_sites`), so any HF causal LM with a
``layers``-style block list works; a test checks that these modules' outputs are the
bridge's ``resid_post``, ``mlp_out`` and ``attn_out`` hook values.

Example::

    from interp.trace import TraceConfig, causal_trace
    tr = causal_trace(lm, [Query("The Eiffel Tower is in", " Paris",
                                 {"name": "The Eiffel Tower"})], entity="name",
                      config=TraceConfig(n_noise=3, positions="key"))
    tr.effect("mlp")[0]          # [layers, columns]: indirect effect of restoring the MLPs
    tr.columns[0]                # the token position and category of each column
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Sequence

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from interp.recording import Query, _entity_positions
from interp.tokens import encode_pair
from interp.trace_sites import (_cache_kw, _eval_no_grad, _first, _hooks, _Parts, _parts, _replace_first,
                                embed_scale, new_kv_cache, site_modules)  # noqa: F401 - site_modules re-exported

if TYPE_CHECKING:
    from interp.models import LoadedModel

SITES = ("resid", "mlp", "attn")
# Position categories (Meng et al.'s figure 1), in prompt order.
CATEGORIES = ("first entity", "middle entity", "last entity", "first after", "further", "last")


@dataclass(frozen=True)
class TraceConfig:
    """Args:
        noise: standard deviation of the embedding noise, in units of ``noise_reference``'s
            standard deviation (Meng et al. use 3).
        noise_reference: ``entity`` (the embeddings of the traced entities' tokens, over
            every query of the call: Meng et al.'s subject embeddings) or ``matrix`` (the
            whole embedding matrix).
        n_noise: noise samples per query; restored probabilities are averaged over them
            (Meng et al. use 10).
        window: layers restored together at the ``mlp`` and ``attn`` sites (centred on the
            layer; Meng et al. use 10 for a 48-layer model).
        sites: which of ``resid``, ``mlp``, ``attn`` to trace.
        positions: ``all`` (every token from the entity's first to the last) or ``key``
            (the entity's last token, the first token after it, and the last token).
        layer_stride: trace layers ``0, k, 2k, ...`` (and always the last layer).
        batch_size: restored sequences per forward pass.
        seed: the noise; query ``i`` gets its own stream, so a model and its base see the
            same noise.
    """

    noise: float = 3.0
    noise_reference: Literal["entity", "matrix"] = "entity"
    n_noise: int = 10
    window: int = 5
    sites: tuple[str, ...] = SITES
    positions: Literal["all", "key"] = "all"
    layer_stride: int = 1
    batch_size: int = 96
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [s for s in self.sites if s not in SITES]
        if bad or not self.sites:
            raise ValueError(f"TraceConfig.sites: expected a non-empty subset of {SITES}, got {self.sites!r}")
        if self.noise_reference not in ("entity", "matrix"):
            raise ValueError(f"TraceConfig.noise_reference: expected 'entity' or 'matrix', got {self.noise_reference!r}")
        if self.positions not in ("all", "key"):
            raise ValueError(f"TraceConfig.positions: expected 'all' or 'key', got {self.positions!r}")
        for k in ("n_noise", "window", "layer_stride", "batch_size"):
            if getattr(self, k) < 1:
                raise ValueError(f"TraceConfig.{k} must be >= 1, got {getattr(self, k)}")
        if not self.noise >= 0:
            raise ValueError(f"TraceConfig.noise must be >= 0, got {self.noise}")


@dataclass
class Trace:
    """Causal tracing results for ``n`` queries.

    ``prob[site]`` is ``[n, n_layers_traced, n_columns]`` (NaN where a query has fewer
    columns): the restored probability of the answer's first token; ``prob_answer[site]`` the
    same for the whole answer (teacher-forced, the product of its tokens' probabilities);
    ``columns[i]`` lists query ``i``'s columns as ``(token position, category)``;
    ``tokens[i]`` its prompt tokens as strings; ``span[i]`` the entity's token positions;
    ``noise_std`` the noise's standard deviation in embedding units.
    """

    layers: list[int]
    prob: dict[str, Float[Tensor, "n layer col"]]
    p_clean: Float[Tensor, "n"]
    p_corrupt: Float[Tensor, "n"]
    columns: list[list[tuple[int, str]]]
    tokens: list[list[str]]
    span: list[list[int]]
    meta: list[dict[str, Any]] = field(default_factory=list)
    config: TraceConfig = field(default_factory=TraceConfig)
    prob_answer: dict[str, Float[Tensor, "n layer col"]] = field(default_factory=dict)
    p_clean_answer: Float[Tensor, "n"] | None = None
    p_corrupt_answer: Float[Tensor, "n"] | None = None
    noise_std: float | None = None

    def effect(self, site: str, answer: bool = False) -> Float[Tensor, "n layer col"]:
        """Indirect effect: restored probability minus the corrupted probability (of the first
        token, or with ``answer`` of the whole answer)."""
        if answer:
            return self.prob_answer[site] - self.p_corrupt_answer[:, None, None]
        return self.prob[site] - self.p_corrupt[:, None, None]

    def by_category(self, site: str, relative: bool = False, answer: bool = False) -> Float[Tensor, "n layer 6"]:
        """The indirect effect averaged within each of :data:`CATEGORIES` (NaN where a query
        has no such token). ``relative`` divides by ``p_clean - p_corrupt``; ``answer``: of
        the whole answer."""
        eff = self.effect(site, answer)
        out = torch.full((eff.shape[0], eff.shape[1], len(CATEGORIES)), float("nan"))
        for i, cols in enumerate(self.columns):
            for c, cat in enumerate(CATEGORIES):
                idx = [j for j, (_, k) in enumerate(cols) if k == cat]
                if idx:
                    out[i, :, c] = eff[i][:, idx].mean(-1)
        if relative:
            gap = (self.p_clean_answer - self.p_corrupt_answer) if answer else (self.p_clean - self.p_corrupt)
            out = out / gap[:, None, None]
        return out


def _categories(span: list[int], n_tokens: int) -> dict[int, str]:
    first, last = span[0], span[-1]
    cat = {}
    for p in range(first, n_tokens):
        if p == n_tokens - 1:
            cat[p] = "last"
        elif p == first:
            cat[p] = "first entity"
        elif p < last:
            cat[p] = "middle entity"
        elif p == last:
            cat[p] = "last entity"
        elif p == last + 1:
            cat[p] = "first after"
        else:
            cat[p] = "further"
    if last == n_tokens - 1 and last != first:
        cat[last] = "last"  # the entity ends the prompt: its last token is the last token
    return cat


def _window(layer: int, window: int, n_layers: int) -> list[int]:
    lo = max(0, layer - window // 2)
    return list(range(lo, min(n_layers, lo + window)))


# --- tracing ----------------------------------------------------------------------------------

def causal_trace(lm: LoadedModel, queries: Sequence[Query], entity: str,
                 config: TraceConfig | None = None, progress: bool = True,
                 use_cache: bool = True) -> Trace:
    """Trace each query; the entity ``query.entities[entity]`` (which must occur in the
    prompt) is the corrupted span. See the module docstring.

    Args:
        entity: the entity label to corrupt (e.g. ``"name"`` or ``"description"``).
        use_cache: reuse the corrupted prefix through the KV cache (same numbers, faster).
    """
    cfg = config or TraceConfig()
    parts = _noise_parts(lm, queries, entity, cfg)
    n_layers = len(parts.mods["resid"])
    layers = sorted(set(range(0, n_layers, cfg.layer_stride)) | {n_layers - 1})
    n_col = 0
    rows: list[dict[str, Any]] = []
    bar = tqdm(queries, desc=f"causal tracing ({entity})", disable=not progress, unit="query")
    with _eval_no_grad(lm.hf):
        for i, q in enumerate(bar):
            rows.append(_trace_query(lm, q, entity, cfg, parts, layers, i, use_cache))
            n_col = max(n_col, len(rows[-1]["columns"]))
    prob = {s: torch.full((len(rows), len(layers), n_col), float("nan")) for s in cfg.sites}
    prob_answer = {s: torch.full((len(rows), len(layers), n_col), float("nan")) for s in cfg.sites}
    for i, r in enumerate(rows):
        for s in cfg.sites:
            prob[s][i, :, : r["prob"][s].shape[1]] = r["prob"][s]
            prob_answer[s][i, :, : r["prob_answer"][s].shape[1]] = r["prob_answer"][s]
    return Trace(layers, prob, torch.tensor([r["p_clean"] for r in rows]),
                 torch.tensor([r["p_corrupt"] for r in rows]), [r["columns"] for r in rows],
                 [r["tokens"] for r in rows], [r["span"] for r in rows],
                 [dict(q.meta) for q in queries], cfg, prob_answer,
                 torch.tensor([r["p_clean_answer"] for r in rows]),
                 torch.tensor([r["p_corrupt_answer"] for r in rows]), parts.emb_std)


def _noise_parts(lm: LoadedModel, queries: Sequence[Query], entity: str, cfg: TraceConfig) -> _Parts:
    """The tracing parts, with ``emb_std`` the standard deviation the noise is measured in:
    of the whole embedding matrix, or (``noise_reference="entity"``) of the embeddings of
    every entity token of ``queries``."""
    parts = _parts(lm.hf)
    if cfg.noise_reference == "matrix":
        return parts
    ids: list[int] = []
    for q in queries:
        p_ids, _ = encode_pair(lm, q.prompt, q.target)
        span = _entity_positions(lm, q, entity, p_ids)
        if not span:
            raise ValueError(f"causal tracing: entity {entity!r} = {q.entities.get(entity)!r} is "
                             f"not in the prompt {q.prompt!r}")
        ids += [p_ids[j] for j in span]
    vecs = parts.emb.weight.detach()[torch.tensor(ids, device=parts.emb.weight.device)].float()
    return replace(parts, emb_std=float(vecs.std()) * embed_scale(parts.emb))


class _Runner:
    """One query's clean states, noise and restored runs."""

    def __init__(self, lm: LoadedModel, q: Query, entity: str, cfg: TraceConfig, parts: _Parts,
                 index: int, need: set[tuple[str, int]]) -> None:
        self.lm, self.cfg, self.mods, self.emb, self.keep = lm, cfg, parts.mods, parts.emb, parts.keep
        mods, emb = parts.mods, parts.emb
        p_ids, c_ids = encode_pair(lm, q.prompt, q.target)
        self.span = _entity_positions(lm, q, entity, p_ids)
        if not self.span:
            raise ValueError(f"causal tracing: entity {entity!r} = {q.entities.get(entity)!r} is "
                             f"not in the prompt {q.prompt!r}")
        if not c_ids:
            raise ValueError(f"causal tracing: empty answer for {q.prompt!r}")
        self.p_ids, self.answer, self.answer_ids = p_ids, c_ids[0], c_ids
        dev = lm.device
        self.ids = torch.tensor([p_ids + c_ids[:-1]], device=dev)  # [1, T + A - 1], answer teacher-forced
        self.clean: dict[tuple[str, int], Tensor] = {}

        def keeper(key: tuple[str, int]):  # noqa: ANN202 - torch hook
            def fn(mod: Any, args: Any, out: Any) -> None:
                self.clean[key] = _first(out)[0].detach().clone()  # [T, d_model]
            return fn

        with _hooks([(mods[s][L], keeper((s, L))) for s, L in need]):
            logits = lm.hf(self.ids).logits[:, len(p_ids) - 1:]  # [1, A, vocab]
        first, whole = self._probs(logits)
        self.p_clean, self.p_clean_answer = float(first[0]), float(whole[0])
        if not math.isfinite(self.p_clean):
            raise FloatingPointError(f"causal tracing: non-finite clean probability for {q.prompt!r}")
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + index)
        self.noise = (torch.randn(cfg.n_noise, len(self.span), emb.weight.shape[1], generator=gen)
                      * cfg.noise * parts.emb_std).to(dev, emb.weight.dtype)  # [n_noise, span, d_model]
        self.span_t = torch.tensor(self.span, device=dev)

    def _probs(self, logits: Tensor) -> tuple[Tensor, Tensor]:
        """``logits`` ``[b, A, vocab]`` predicting the answer's tokens -> (first-token
        probability, whole-answer probability), each ``[b]``."""
        lsm = torch.log_softmax(logits.float(), -1)
        tgt = torch.tensor(self.answer_ids, device=logits.device)
        per = lsm[:, torch.arange(len(self.answer_ids)), tgt]  # [b, A]
        return per[:, 0].exp(), per.sum(-1).exp()

    def _corrupt(self, start: int, repeat: int) -> Any:
        def fn(mod: Any, args: Any, out: Tensor) -> Tensor:  # out: [b, T - start, d_model]
            pos = self.span_t - start
            ok = (pos >= 0) & (pos < out.shape[1])
            out = out.clone()
            out[:, pos[ok]] += self.noise[:, ok].repeat_interleave(repeat, 0)
            return out
        return fn

    def prefix_cache(self, start: int) -> Any:
        """The corrupted runs of tokens ``0..start-1`` (one per noise sample), as a KV cache."""
        cache = new_kv_cache(self.lm.hf)
        with _hooks([(self.emb, self._corrupt(0, 1))]):
            self.lm.hf(self.ids[:, :start].expand(self.cfg.n_noise, -1), **{_cache_kw(self.lm.hf): cache},
                       use_cache=True)
        return cache

    def run(self, variants: Sequence[Sequence[tuple[str, int]]], positions: Sequence[int],
            start: int = 0, cache: Any = None) -> Tensor:
        """Mean restored probability (over noise) per variant, of the first answer token and of
        the whole answer (``[nv]`` each); a variant is the list of ``(site, layer)`` states
        restored at every one of ``positions`` (all >= ``start``). With ``cache``
        (:meth:`prefix_cache` of ``start``) only tokens ``start..`` run."""
        nv = max(len(variants), 1)
        n_noise = self.cfg.n_noise
        inp = self.ids[:, start:].expand(n_noise * nv, -1)  # row = noise sample * nv + variant
        pos = torch.tensor(positions, dtype=torch.long) - start
        pairs: list[tuple[torch.nn.Module, Any]] = [(self.emb, self._corrupt(start, nv))]
        by_mod: dict[tuple[str, int], list[int]] = {}
        for j, v in enumerate(variants):
            for key in v:
                by_mod.setdefault(key, []).append(j)
        for key, js in by_mod.items():
            rows = torch.tensor([k * nv + j for k in range(n_noise) for j in js])
            value = self.clean[key][torch.tensor(positions)]  # [n_pos, d_model]

            def restore(mod: Any, args: Any, out: Any, rows: Tensor = rows, value: Tensor = value) -> Any:
                t = _first(out).clone()
                t[rows[:, None], pos[None, :]] = value  # broadcast over the rows
                return _replace_first(out, t)
            pairs.append((self.mods[key[0]][key[1]], restore))
        n_ans = len(self.answer_ids)
        kw: dict[str, Any] = {"logits_to_keep": n_ans} if self.keep else {}
        if cache is not None:
            c = copy.deepcopy(cache)
            c.batch_repeat_interleave(nv)
            kw.update({_cache_kw(self.lm.hf): c, "use_cache": True})
        with _hooks(pairs):
            logits = self.lm.hf(inp, **kw).logits[:, -n_ans:]  # [rows, A, vocab]
        first, whole = self._probs(logits)
        return first.view(n_noise, nv).mean(0).cpu(), whole.view(n_noise, nv).mean(0).cpu()


def _trace_query(lm: LoadedModel, q: Query, entity: str, cfg: TraceConfig, parts: _Parts,
                 layers: list[int], index: int, use_cache: bool) -> dict[str, Any]:
    n_layers = len(parts.mods["resid"])
    groups = {(s, l0): [(s, L) for L in ([l0] if s == "resid" else _window(l0, cfg.window, n_layers))]
              for s in cfg.sites for l0 in layers}
    need = {k for g in groups.values() for k in g}
    r = _Runner(lm, q, entity, cfg, parts, index, need)
    n_tok, span = len(r.p_ids), r.span
    c_first, c_whole = r.run([], [])
    p_corrupt, p_corrupt_answer = float(c_first.mean()), float(c_whole.mean())
    cats = _categories(span, n_tok)
    if cfg.positions == "all":
        cols = [(p, cats[p]) for p in range(span[0], n_tok)]
    else:
        key_pos = {span[-1], min(span[-1] + 1, n_tok - 1), n_tok - 1}
        cols = [(p, cats[p]) for p in sorted(key_pos)]
    variants = list(groups)
    per_batch = max(1, cfg.batch_size // cfg.n_noise)
    prob = {s: torch.empty(len(layers), len(cols)) for s in cfg.sites}
    prob_answer = {s: torch.empty(len(layers), len(cols)) for s in cfg.sites}
    for c, (p, _) in enumerate(cols):
        cached = use_cache and p > 0
        cache = r.prefix_cache(p) if cached else None
        outs = [r.run([groups[v] for v in variants[k: k + per_batch]], [p],
                      start=p if cached else 0, cache=cache)
                for k in range(0, len(variants), per_batch)]
        first, whole = torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])
        for s in cfg.sites:
            rows = [j for j, (s2, _) in enumerate(variants) if s2 == s]
            prob[s][:, c], prob_answer[s][:, c] = first[rows], whole[rows]
    tokens = [lm.tokenizer.decode([t]) for t in r.p_ids]
    return {"prob": prob, "prob_answer": prob_answer, "p_clean": r.p_clean, "p_corrupt": p_corrupt,
            "p_clean_answer": r.p_clean_answer, "p_corrupt_answer": p_corrupt_answer, "columns": cols,
            "tokens": tokens, "span": span}


def restored_probability(lm: LoadedModel, q: Query, entity: str,
                         restore: Sequence[tuple[str, int]], positions: Sequence[int] | None = None,
                         config: TraceConfig | None = None) -> tuple[float, float, float]:
    """``(p_clean, p_corrupt, p_restored)`` for one query, restoring every ``(site, layer)``
    in ``restore`` (site-level, no window) at ``positions`` (default: every prompt token).
    Restoring the residual stream of any layer at every position gives back ``p_clean``."""
    cfg = config or TraceConfig()
    with _eval_no_grad(lm.hf):
        r = _Runner(lm, q, entity, cfg, _noise_parts(lm, [q], entity, cfg), 0, set(restore))
        pos = list(range(len(r.p_ids))) if positions is None else list(positions)
        return r.p_clean, float(r.run([], [])[0].mean()), float(r.run([list(restore)], pos)[0][0])
