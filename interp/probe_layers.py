"""Linear probes at every layer of a model: record the residual stream at one position per
query, then run :mod:`interp.probe_fit`'s leave-template-out or transfer probe per layer.

Layer -1 is ``hook_embed``; layer ``L >= 0`` is ``blocks.L.hook_resid_post``. Import from
:mod:`interp.probe` (which re-exports everything here).

Example::

    res = layer_probes(lm, queries, "entity:description:last")   # a ProbeResult
    print(fmt_result(res))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Hashable, Mapping, Sequence

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from interp.hooks import hook_name
from interp.probe_fit import EMBED_LAYER, ProbeScore, Scheme, probe_accuracy, transfer_accuracy
from interp.recording import Query, record

if TYPE_CHECKING:
    from interp.models import LoadedModel


@dataclass(frozen=True)
class ProbeResult:
    """Probe accuracy per layer (layer -1 is ``hook_embed``, L >= 0 ``blocks.L.hook_resid_post``).

    Args:
        kind: ``cross_template`` (:func:`layer_probes`) or ``transfer`` (:func:`layer_transfer`).
        position: the position probed (``"train_pos -> test_pos"`` for transfer).
        layers: the layers, in order.
        accuracy, ci_low, ci_high: per layer (see :class:`ProbeScore`).
        chance: ``1 / n_classes``.
        n_examples, n_facts, n_templates, n_classes: of the (test) examples.
        facts: the fact of each (test) example.
        correct: per layer, per example 0/1 (for paired bootstraps across conditions).
        shuffled, shuffled_ci_low, shuffled_ci_high: the shuffled-label control per layer
            (empty when the control was not run).
    """

    kind: str
    position: str
    layers: tuple[int, ...]
    accuracy: tuple[float, ...]
    ci_low: tuple[float, ...]
    ci_high: tuple[float, ...]
    chance: float
    n_examples: int
    n_facts: int
    n_templates: int
    n_classes: int
    facts: tuple[Any, ...]
    correct: tuple[tuple[int, ...], ...]
    shuffled: tuple[float, ...] = ()
    shuffled_ci_low: tuple[float, ...] = ()
    shuffled_ci_high: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.layers)
        for name in ("accuracy", "ci_low", "ci_high", "correct"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"ProbeResult.{name}: {len(getattr(self, name))} values for {n} layers")
        for name in ("shuffled", "shuffled_ci_low", "shuffled_ci_high"):
            if len(getattr(self, name)) not in (0, n):
                raise ValueError(f"ProbeResult.{name}: expected 0 or {n} values")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (tuples become lists)."""
        def lst(v: Any) -> Any:
            return [lst(x) for x in v] if isinstance(v, (list, tuple)) else v
        return {k: lst(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProbeResult:
        def tup(v: Any) -> Any:
            return tuple(tup(x) for x in v) if isinstance(v, (list, tuple)) else v
        return cls(**{k: tup(v) for k, v in d.items()})


def _parse_position(position: str) -> tuple[str | None, str]:
    """``last`` -> (None, 'last'); ``entity:<label>:last|first`` -> (label, 'last'|'first')."""
    if position == "last":
        return None, "last"
    parts = position.split(":")
    if len(parts) == 3 and parts[0] == "entity" and parts[1] and parts[2] in ("last", "first"):
        return parts[1], parts[2]
    raise ValueError(f"probe position {position!r}: expected 'last' or 'entity:<label>:last' "
                     "(or ':first'); a probe needs one row per query")


def _layer_hooks(n_layers: int, layers: Sequence[int] | None) -> dict[int, str]:
    layers = list(range(EMBED_LAYER, n_layers)) if layers is None else list(layers)
    bad = [L for L in layers if not EMBED_LAYER <= L < n_layers]
    if bad or not layers:
        raise ValueError(f"layers: expected values in -1..{n_layers - 1} (-1 = hook_embed), got {layers}")
    return {L: hook_name("embed") if L == EMBED_LAYER else hook_name("resid_post", L) for L in layers}


def probe_features(lm: LoadedModel, queries: Sequence[Query], position: str,
                   layers: Sequence[int] | None = None, *, batch_size: int = 16,
                   progress: bool = False) -> dict[int, Float[Tensor, "n d_model"]]:
    """The residual stream at one position per query, per layer (-1 = ``hook_embed``).

    ``position``: ``last`` (last prompt token) or ``entity:<label>:last`` (``:first``): the
    last (first) prompt token overlapping ``query.entities[label]``. Every query must contain
    that entity (ValueError naming the first that does not).
    """
    label, which = _parse_position(position)
    hooks = _layer_hooks(lm.bridge.cfg.n_layers, layers)
    if not queries:
        raise ValueError("probe_features: no queries")
    if label is not None:
        for i, q in enumerate(queries):
            text = q.entities.get(label)
            if not text or text not in q.prompt:
                raise ValueError(f"query {i} ({q.prompt!r}) has no entity {label!r} in its prompt "
                                 f"(entities: {dict(q.entities)})")
    rec_pos = "last" if label is None else f"entity:{label}"
    rec = record(lm, queries, list(hooks.values()), positions=(rec_pos,),
                 batch_size=batch_size, progress=progress)
    rows = rec.rows(rec_pos)  # [n_rows, 2] (query, token position), sorted
    counts = torch.bincount(rows[:, 0], minlength=len(queries))  # [n_queries]
    if (counts == 0).any():
        i = int((counts == 0).nonzero()[0])
        raise ValueError(f"query {i} ({queries[i].prompt!r}): no token at position {position!r}")
    ends = counts.cumsum(0) - 1  # [n_queries] row of each query's last token
    pick = ends if which == "last" else ends - counts + 1
    return {L: rec.act(h, rec_pos)[pick] for L, h in hooks.items()}  # each [n_queries, d_model]


def _meta(queries: Sequence[Query], key: str, what: str) -> list[Any]:
    out = []
    for i, q in enumerate(queries):
        if key not in q.meta:
            raise ValueError(f"query {i} ({q.prompt!r}) has no meta[{key!r}] ({what}); "
                             f"meta keys: {sorted(q.meta)}")
        out.append(q.meta[key])
    return out


def _collect(kind: str, position: str, scores: dict[int, ProbeScore],
             controls: dict[int, ProbeScore]) -> ProbeResult:
    layers = tuple(scores)
    first = scores[layers[0]]
    ctl = [controls[L] for L in layers] if controls else []
    return ProbeResult(
        kind=kind, position=position, layers=layers,
        accuracy=tuple(scores[L].accuracy for L in layers),
        ci_low=tuple(scores[L].ci_low for L in layers),
        ci_high=tuple(scores[L].ci_high for L in layers),
        chance=first.chance, n_examples=first.n_examples, n_facts=first.n_facts,
        n_templates=first.n_templates, n_classes=first.n_classes,
        facts=tuple(v.item() if isinstance(v, np.generic) else v for v in first.facts.tolist()),
        correct=tuple(tuple(int(c) for c in scores[L].correct) for L in layers),
        shuffled=tuple(c.accuracy for c in ctl), shuffled_ci_low=tuple(c.ci_low for c in ctl),
        shuffled_ci_high=tuple(c.ci_high for c in ctl),
    )


def probes_on_features(
    feats: Mapping[int, Tensor], y: Sequence[Hashable], templates: Sequence[Hashable],
    facts: Sequence[Hashable] | None = None, *, position: str = "", control: bool = True,
    scheme: Scheme = "leave_template_out", n_folds: int | None = None, l2: float = 1e-2,
    seed: int = 0, progress: bool = False,
) -> ProbeResult:
    """:func:`probe_accuracy` per layer of ``feats`` (from :func:`probe_features`), so that one
    recording serves several probes."""
    scores, controls = {}, {}
    for L, X in tqdm(feats.items(), desc="probing", disable=not progress, unit="layer"):
        kw = dict(scheme=scheme, n_folds=n_folds, l2=l2, seed=seed)
        scores[L] = probe_accuracy(X, y, templates, facts, **kw)
        if control:
            controls[L] = probe_accuracy(X, y, templates, facts, shuffle_labels=True, **kw)
    return _collect("cross_template", position, scores, controls)


def transfer_on_features(
    train: Mapping[int, Tensor], y_train: Sequence[Hashable], test: Mapping[int, Tensor],
    y_test: Sequence[Hashable], facts: Sequence[Hashable] | None = None, *,
    templates_test: Sequence[Hashable] | None = None, position: str = "", control: bool = True,
    l2: float = 1e-2, seed: int = 0, progress: bool = False,
) -> ProbeResult:
    """:func:`transfer_accuracy` per layer (the layers of ``train``, also in ``test``)."""
    scores, controls = {}, {}
    for L in tqdm(train, desc="probing", disable=not progress, unit="layer"):
        kw = dict(templates_test=templates_test, l2=l2, seed=seed)
        scores[L] = transfer_accuracy(train[L], y_train, test[L], y_test, facts, **kw)
        if control:
            controls[L] = transfer_accuracy(train[L], y_train, test[L], y_test, facts,
                                            shuffle_labels=True, **kw)
    return _collect("transfer", position, scores, controls)


def layer_probes(
    lm: LoadedModel, queries: Sequence[Query], position: str, *,
    label_key: str = "fact_id", template_key: str = "template", fact_key: str | None = None,
    layers: Sequence[int] | None = None, control: bool = True, scheme: Scheme = "leave_template_out",
    n_folds: int | None = None, l2: float = 1e-2, seed: int = 0, batch_size: int = 16,
    progress: bool = True,
) -> ProbeResult:
    """Leave-template-out probe accuracy at ``position`` after every layer.

    Labels are ``q.meta[label_key]``, templates ``q.meta[template_key]``, facts (the bootstrap
    unit) ``q.meta[fact_key or label_key]``. ``layers`` default: -1 (``hook_embed``) and every
    block. ``control`` adds the shuffled-label accuracy per layer.
    """
    y = _meta(queries, label_key, "the probe's label")
    templates = _meta(queries, template_key, "the template")
    facts = _meta(queries, fact_key or label_key, "the fact")
    feats = probe_features(lm, queries, position, layers, batch_size=batch_size, progress=progress)
    return probes_on_features(feats, y, templates, facts, position=position, control=control,
                              scheme=scheme, n_folds=n_folds, l2=l2, seed=seed, progress=progress)


def layer_transfer(
    lm: LoadedModel, train_queries: Sequence[Query], train_position: str,
    test_queries: Sequence[Query], test_position: str, *,
    label_key: str = "fact_id", template_key: str = "template", fact_key: str | None = None,
    layers: Sequence[int] | None = None, control: bool = True, l2: float = 1e-2, seed: int = 0,
    batch_size: int = 16, progress: bool = True,
) -> ProbeResult:
    """Train a probe per layer on ``train_queries`` at ``train_position``, test it on
    ``test_queries`` at ``test_position`` (same layer). Counts in the result are of the test
    set; ``n_templates`` counts the test queries' ``meta[template_key]`` when present."""
    y_tr = _meta(train_queries, label_key, "the probe's label")
    y_te = _meta(test_queries, label_key, "the probe's label")
    facts = _meta(test_queries, fact_key or label_key, "the fact")
    templates = ([q.meta[template_key] for q in test_queries]
                 if all(template_key in q.meta for q in test_queries) else None)
    f_tr = probe_features(lm, train_queries, train_position, layers, batch_size=batch_size, progress=progress)
    f_te = probe_features(lm, test_queries, test_position, layers, batch_size=batch_size, progress=progress)
    return transfer_on_features(f_tr, y_tr, f_te, y_te, facts, templates_test=templates,
                                position=f"{train_position} -> {test_position}", control=control,
                                l2=l2, seed=seed, progress=progress)


def fmt_result(res: ProbeResult) -> str:
    """One line per layer: ``layer  acc [lo, hi]  shuffled``."""
    lines = [f"{res.kind} probe at {res.position}: {res.n_examples} examples, {res.n_facts} facts, "
             f"{res.n_templates} templates, chance {res.chance:.3f}"]
    for i, L in enumerate(res.layers):
        s = f"  shuffled {res.shuffled[i]:.3f}" if res.shuffled else ""
        name = "embed" if L == EMBED_LAYER else f"L{L}"
        lines.append(f"{name:>6}  {res.accuracy[i]:.3f} [{res.ci_low[i]:.3f}, {res.ci_high[i]:.3f}]{s}")
    return "\n".join(lines)

