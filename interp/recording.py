"""Record activations (and gradients of the target's log-prob) at chosen hook points.

A :class:`Query` is a prompt, a target completion, and optionally named entity strings that
occur verbatim in the prompt (``{"name": ..., "description": ...}``) and a foil (a wrong
answer, for "correct minus random"). :func:`record` runs batches of ``prompt + target``
token sequences (tokenised by :mod:`interp.tokens`, right-padded by ``pad_batch``) through
``lm.bridge`` and keeps, inside each hook, only the rows asked for:

- ``"all"``: every real token of ``prompt + target`` (padding never stored);
- ``"last"``: the last prompt token (the position that predicts the first target token);
- ``"entity:<label>"``: the prompt tokens overlapping ``query.entities[label]``
  (found with ``str.find`` and :func:`interp.tokens.token_span`; none if absent).

Each position set is stored as ``rows`` (``[n_rows, 2]``: query index, token position),
sorted by query then position, and one ``[n_rows, *hook_shape]`` tensor per hook. With
``grad="sum"`` (log-prob of the whole target) or ``grad="first"`` (its first token) the
gradient of that objective w.r.t. each recorded activation is stored too (each query's
gradient is that of its own log-prob: sequences in a batch do not interact). Parameters get
no gradients while recording (cheaper than a training backward pass).

With right padding, real tokens sit at positions ``0..len-1`` with the same position ids as
alone, and causal attention never sees the padding after them: results do not depend on
the batch (tested).

Example::

    rec = record(lm, [Query("The capital of France is", " Paris")],
                 hooks=layer_hooks("mlp_post", 30), positions=("last",), grad="first")
    rec.act("blocks.3.mlp.hook_post").shape   # [n_queries, d_mlp]
    rec.save(run_dir / "rec"); Recording.load(run_dir / "rec")
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TYPE_CHECKING, Any, Literal, Mapping, Sequence

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from interp.fileio import atomic_dir
from interp.hooks import NO_GRAD_SITES, check_fired, check_hooks_exist, hook_name, parse_hook_site
from interp.first_token import FUNCTION_WORDS, _warn_uninformative_first_token  # noqa: F401
from interp.tokens import encode_pair, encode_with_offsets, pad_batch, pad_id, token_span

if TYPE_CHECKING:
    from interp.models import LoadedModel

Grad = Literal["none", "sum", "first", "metric"]


@dataclass(frozen=True)
class MetricInput:
    """What a custom metric (``record(..., grad="metric", metric=fn)``) sees for one query:
    ``logits`` ``[n_tokens, vocab]`` over its prompt and teacher-forced target (no padding),
    ``prompt_len``, ``target_ids`` and the :class:`Query`. ``fn`` returns a scalar tensor
    built from ``logits`` (the gradient flows from it)."""

    logits: torch.Tensor
    prompt_len: int
    target_ids: list[int]
    query: Query

    def last(self) -> torch.Tensor:
        """The logits at the last prompt token (they predict the target's first token)."""
        return self.logits[self.prompt_len - 1]

    def target_logprobs(self) -> torch.Tensor:
        """``[n_target]``: log-prob of each target token (teacher forced)."""
        lp = torch.log_softmax(self.logits.float(), -1)
        cols = torch.arange(self.prompt_len - 1, self.prompt_len - 1 + len(self.target_ids), device=lp.device)
        return lp[cols, torch.tensor(self.target_ids, device=lp.device)]


def logit_difference(lm: LoadedModel, a: str, b: str) -> Callable[[MetricInput], torch.Tensor]:
    """A metric for ``record(..., grad="metric")``: logit of ``a``'s first token minus ``b``'s
    at the last prompt token (``a``, ``b`` tokenised as completions, with their leading space)."""
    ta, tb = _first_token(lm, a), _first_token(lm, b)
    if ta == tb:
        raise ValueError(f"logit_difference: {a!r} and {b!r} start with the same token; the difference is 0")
    return lambda m: m.last()[ta] - m.last()[tb]
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Query:
    """One question to the model.

    Args:
        prompt: the prompt text.
        target: the answer, usually starting with a space.
        entities: label -> a string occurring verbatim in ``prompt`` (positions ``entity:label``).
        foil: an alternative answer (e.g. another trained name) for contrastive attribution.
        meta: JSON-serialisable metadata kept in the index (fact id, direction, ...).
    """

    prompt: str
    target: str
    entities: Mapping[str, str] = field(default_factory=dict)
    foil: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


def _check_positions(positions: Sequence[str]) -> None:
    for p in positions:
        if p not in ("all", "last") and not (p.startswith("entity:") and len(p) > 7):
            raise ValueError(f"position set {p!r}: expected all, last or entity:<label>")


@dataclass
class Recording:
    """Recorded rows per position set. ``tensors`` keys: ``rows|<pos>``, ``act|<pos>|<hook>``,
    ``grad|<pos>|<hook>``, and per-query ``query|<stat>`` (``target_logprob``,
    ``first_logprob``, ``first_logit``, ``foil_logit``, ``first_id``, ``foil_id``)."""

    index: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    @property
    def hooks(self) -> list[str]:
        return list(self.index["hooks"])

    @property
    def queries(self) -> list[dict[str, Any]]:
        return list(self.index["queries"])

    def __len__(self) -> int:
        return len(self.index["queries"])

    def rows(self, pos: str = "last") -> torch.Tensor:
        """``[n_rows, 2]`` (query index, token position)."""
        return self._get(f"rows|{pos}")

    def act(self, hook: str, pos: str = "last") -> torch.Tensor:
        """``[n_rows, *hook_shape]``; for ``pos="last"`` row i is query i."""
        return self._get(f"act|{pos}|{hook}")

    def grad(self, hook: str, pos: str = "last") -> torch.Tensor:
        """Gradient of the recorded objective, like :meth:`act` (not for norm scales)."""
        if self.index["grad"] == "none":
            raise KeyError("this recording has no gradients (grad='none')")
        if parse_hook_site(hook) in NO_GRAD_SITES:
            raise KeyError(f"{hook}: the bridge computes norm scales outside the autograd graph")
        return self._get(f"grad|{pos}|{hook}")

    def stat(self, name: str) -> torch.Tensor:
        """Per-query values, ``[n_queries]``."""
        return self._get(f"query|{name}")

    def _get(self, key: str) -> torch.Tensor:
        if key not in self.tensors:
            raise KeyError(f"{key!r} was not recorded; have {sorted(self.tensors)[:8]} ...")
        return self.tensors[key]

    def save(self, folder: str | Path) -> Path:
        """Write ``tensors.safetensors`` and ``index.json`` (atomically, as a folder)."""
        folder = Path(folder)
        with atomic_dir(folder) as tmp:
            save_file({k: v.contiguous() for k, v in self.tensors.items()},
                      str(tmp / "tensors.safetensors"))
            (tmp / "index.json").write_text(json.dumps(self.index, indent=1))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Recording:
        folder = Path(folder)
        index = json.loads((folder / "index.json").read_text())
        if index.get("format") != FORMAT_VERSION:
            raise ValueError(f"{folder}: recording format {index.get('format')!r}, "
                             f"expected {FORMAT_VERSION}")
        return cls(index, load_file(str(folder / "tensors.safetensors")))


def _check_entity(queries: Sequence[Query], label: str) -> None:
    """``entity:<label>`` rows come from the queries whose prompt holds that entity: none at
    all is an error (a mistyped label, or entities never set), some missing a warning naming
    the first, so that an empty or short recording never passes silently."""
    why = []
    for i, q in enumerate(queries):
        if label not in q.entities:
            why.append(f"query {i} ({q.prompt!r}) has no entity labelled {label!r} "
                       f"(its labels: {sorted(q.entities) or 'none'})")
        elif q.entities[label] not in q.prompt:
            why.append(f"query {i}: entity {label!r} = {q.entities[label]!r} does not occur in its prompt "
                       f"{q.prompt!r}")
    if len(why) == len(queries):
        raise ValueError(f"positions 'entity:{label}': no query has that entity in its prompt; {why[0]}; "
                         "set it with Query(..., entities={label: text})")
    if why:
        import warnings

        warnings.warn(f"positions 'entity:{label}': {len(why)} of {len(queries)} queries give no rows; "
                      f"first: {why[0]}", stacklevel=3)


def _grad_hooks(hooks: Sequence[str]) -> list[str]:
    """Hooks that carry a gradient (a norm's scale is computed beside the graph, not in it)."""
    return [h for h in hooks if parse_hook_site(h) not in NO_GRAD_SITES]


def _first_token(lm: LoadedModel, text: str) -> int:
    return encode_pair(lm, "", text)[1][0]


def _entity_positions(lm: LoadedModel, q: Query, label: str, prompt_ids: list[int]) -> list[int]:
    text = q.entities.get(label)
    if not text:
        return []
    start = q.prompt.find(text)
    if start < 0:
        return []
    ids, offsets = encode_with_offsets(lm, q.prompt)
    if ids != prompt_ids:
        raise AssertionError(f"offset tokenisation differs from encode_prompt for {q.prompt!r}")
    return token_span(offsets, start, start + len(text))


def record(
    lm: LoadedModel,
    queries: Sequence[Query],
    hooks: Sequence[str],
    positions: Sequence[str] = ("last",),
    grad: Grad = "none",
    batch_size: int = 16,
    progress: bool = False,
    metric: Callable[[MetricInput], torch.Tensor] | None = None,
) -> Recording:
    """Record ``hooks`` at ``positions`` for each query; see the module docstring.

    Args:
        hooks: hook names from :mod:`interp.hooks` (checked to exist and to fire).
        positions: position sets (``all``, ``last``, ``entity:<label>``).
        grad: ``none``, ``sum`` (d log p(target) / d act), ``first`` (first target token) or
            ``metric`` (d metric / d act, with ``metric``).
        batch_size: sequences per pass; does not change the results.
        metric: with ``grad="metric"``, a function of :class:`MetricInput` returning a scalar
            tensor (a logit difference, several tokens' log-probs...); its value per query is
            the statistic ``metric``. :func:`logit_difference` builds the common one.
    """
    _check_positions(positions)
    if grad not in ("none", "sum", "first", "metric"):
        raise ValueError(f"grad: expected none, sum, first or metric, got {grad!r}")
    if (grad == "metric") != (metric is not None):
        raise ValueError("grad='metric' needs metric=fn, and metric=fn needs grad='metric'")
    if not queries:
        raise ValueError("record: no queries")
    bridge = lm.bridge
    hooks = list(dict.fromkeys(hooks))
    bad = [h for h in hooks if parse_hook_site(h) == "pattern"]
    if bad:
        raise ValueError(f"record() keeps [batch, pos, ...] tensors; {bad[0]} is [batch, head, "
                         "q, k]: use analysis.pages.attention_pattern")
    check_hooks_exist(bridge, hooks)
    empty = [i for i, q in enumerate(queries) if not q.prompt.strip()]
    if empty:
        raise ValueError(f"query {empty[0]}: empty prompt; the answer would be scored from the BOS token "
                         "alone, which says nothing about a fact")
    for pos in positions:
        if pos.startswith("entity:"):
            _check_entity(queries, pos[7:])
    encoded = [encode_pair(lm, q.prompt, q.target) for q in queries]
    if grad in ("none", "first"):
        _warn_uninformative_first_token(lm, [c for _, c in encoded])
    foils = [_first_token(lm, q.foil) if q.foil else -1 for q in queries]
    order = sorted(range(len(queries)), key=lambda i: -sum(map(len, encoded[i])))
    parts: dict[str, list[torch.Tensor]] = {}
    stats: dict[str, torch.Tensor] = {k: torch.zeros(len(queries)) for k in
                                      ("target_logprob", "first_logprob", "first_logit", "foil_logit")}
    if metric is not None:
        stats["metric"] = torch.zeros(len(queries))
    device = lm.device
    bar = tqdm(total=len(queries), desc="recording", disable=not progress, unit="query")
    params = [p for p in bridge.parameters() if p.requires_grad]
    try:
        for p in params:  # activation gradients only: no weight gradients
            p.requires_grad_(False)
        for start in range(0, len(order), batch_size):
            idx = order[start: start + batch_size]
            _record_batch(lm, queries, encoded, foils, idx, hooks, positions, grad, parts, stats, device, metric)
            bar.update(len(idx))
    finally:
        for p in params:
            p.requires_grad_(True)
        bar.close()
    tensors: dict[str, torch.Tensor] = {}
    for pos in positions:
        rows = torch.cat(parts[f"rows|{pos}"])  # [n_rows, 2]
        perm = torch.argsort(rows[:, 0] * 1_000_000 + rows[:, 1])
        tensors[f"rows|{pos}"] = rows[perm]
        for kind in ("act", "grad") if grad != "none" else ("act",):
            for h in hooks if kind == "act" else _grad_hooks(hooks):
                tensors[f"{kind}|{pos}|{h}"] = torch.cat(parts[f"{kind}|{pos}|{h}"])[perm]
    for k, v in stats.items():
        tensors[f"query|{k}"] = v
    tensors["query|first_id"] = torch.tensor([c[0] for _, c in encoded])
    tensors["query|foil_id"] = torch.tensor(foils)
    index = {
        "format": FORMAT_VERSION, "model": lm.name, "processing": lm.options.processing,
        "hooks": hooks, "positions": list(positions), "grad": grad,
        "queries": [{"prompt": q.prompt, "target": q.target, "foil": q.foil,
                     "entities": dict(q.entities), "meta": dict(q.meta),
                     "prompt_len": len(p), "target_ids": c} for q, (p, c) in zip(queries, encoded)],
    }
    return Recording(index, tensors)


def _record_batch(
    lm: LoadedModel, queries: Sequence[Query], encoded: list[tuple[list[int], list[int]]],
    foils: list[int], idx: list[int], hooks: list[str], positions: Sequence[str], grad: Grad,
    parts: dict[str, list[torch.Tensor]], stats: dict[str, torch.Tensor], device: torch.device,
    metric: Callable[[MetricInput], torch.Tensor] | None = None,
) -> None:
    bridge = lm.bridge
    seqs = [encoded[i][0] + encoded[i][1] for i in idx]
    ids, mask, _ = pad_batch(seqs, pad_id(lm), "right", device)  # [batch, pos] each
    # rows per position set, as (batch row, token position) index tensors
    sel: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for pos in positions:
        pairs: list[tuple[int, int]] = []
        for r, i in enumerate(idx):
            p_ids, c_ids = encoded[i]
            if pos == "all":
                pairs += [(r, t) for t in range(len(p_ids) + len(c_ids))]
            elif pos == "last":
                pairs.append((r, len(p_ids) - 1))
            else:
                pairs += [(r, t) for t in _entity_positions(lm, queries[i], pos[7:], p_ids)]
        b = torch.tensor([x for x, _ in pairs], dtype=torch.long)
        t = torch.tensor([y for _, y in pairs], dtype=torch.long)
        sel[pos] = (b.to(device), t.to(device))
        glob = torch.tensor([idx[x] for x in b.tolist()], dtype=torch.long)
        parts.setdefault(f"rows|{pos}", []).append(torch.stack([glob, t], dim=1).reshape(-1, 2))
    fired: set[str] = set()
    grads_out: dict[str, torch.Tensor] = {}

    def make_hook(name: str):  # noqa: ANN202 - TransformerLens hook signature
        def fn(act: torch.Tensor, hook: Any) -> torch.Tensor:
            fired.add(name)
            for pos, (b, t) in sel.items():
                parts.setdefault(f"act|{pos}|{name}", []).append(act[b, t].detach().float().cpu())
            if grad != "none" and act.requires_grad:
                def on_grad(g: torch.Tensor) -> None:  # g: like act, [batch, pos, ...]
                    for pos, (b, t) in sel.items():
                        grads_out[f"grad|{pos}|{name}"] = g[b, t].detach().float().cpu()
                act.register_hook(on_grad)
            # Return the very tensor: the bridge then computes on it (for hook_z it would
            # otherwise continue from an unhooked view, and no gradient would reach it).
            return act
        return fn

    def make_leaf(x: torch.Tensor, hook: Any) -> torch.Tensor:
        return x.detach().requires_grad_(True)  # parameters are frozen: start the graph here

    fwd = ([(hook_name("embed"), make_leaf)] if grad != "none" else [])
    fwd += [(h, make_hook(h)) for h in hooks]
    with torch.set_grad_enabled(grad != "none"), bridge.hooks(fwd_hooks=fwd):
        logits = bridge(ids, attention_mask=mask)  # [batch, pos, vocab]
        logp = torch.log_softmax(logits.float(), dim=-1)
        per_query = []
        for r, i in enumerate(idx):
            p_ids, c_ids = encoded[i]
            n = 1 if grad == "first" else len(c_ids)
            cols = torch.arange(len(p_ids) - 1, len(p_ids) - 1 + len(c_ids), device=device)
            tok_lp = logp[r, cols, torch.tensor(c_ids, device=device)]  # [n_target]
            if metric is not None:
                value = metric(MetricInput(logits[r, : len(p_ids) + len(c_ids)], len(p_ids), list(c_ids), queries[i]))
                if not isinstance(value, torch.Tensor) or value.numel() != 1:
                    raise ValueError(f"metric: expected a scalar tensor for query {i}, got {type(value).__name__}")
                per_query.append(value.reshape(()).float())
                stats["metric"][i] = float(value.detach())
            else:
                per_query.append(tok_lp[:n].sum())
            stats["target_logprob"][i] = float(tok_lp.detach().sum())
            stats["first_logprob"][i] = float(tok_lp[0].detach())
            stats["first_logit"][i] = float(logits[r, len(p_ids) - 1, c_ids[0]].detach())
            if foils[i] >= 0:
                stats["foil_logit"][i] = float(logits[r, len(p_ids) - 1, foils[i]].detach())
        if grad != "none":
            torch.stack(per_query).sum().backward()
    check_fired(fired, hooks, "record")
    if grad != "none":
        check_fired({k.split("|")[2] for k in grads_out}, _grad_hooks(hooks), "record (gradients)")
        for k, v in grads_out.items():
            parts.setdefault(k, []).append(v)
