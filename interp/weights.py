"""Where did finetuning put the fact? Weight-change localisation by swapping parameter groups.

Finetuning on "A is B" changes every weight a little. To find the changes that matter for a
query set (forward "A is" -> " B", reverse "B is" -> " A"), parameters are split into groups
(:func:`param_groups`: per layer ``attn``, ``mlp``, ``norm``; outside the layers ``embed``,
``final_norm``, ``other``) and a group's values are swapped between the finetuned and the
base model (:func:`swapped`; both from :mod:`interp.weight_swap`, re-exported here). With the
completion log-prob as the metric:

- **revert** ``(L, kind)``: the finetuned model with that group set back to its base values.
  ``lp_tuned - revert`` is how much the finetuned behaviour *depends on* that change.
- **apply** ``(L, kind)``: the base model with only that group's finetuned values.
  ``apply - lp_base`` is how much that change *alone* gives (sufficiency).
- also per whole layer (its attention, MLP and norms together) and for the non-layer group
  (embeddings, unembedding, final norm, anything else);
- **cumulative**: layers ranked by their own apply effect (per query set), then the top ``k``
  layers applied together, ``k = 1..n_layers``, and a last point that adds the non-layer
  group, which is the finetuned model exactly. The curve over layers alone may stop short
  of the full gain because the embeddings and final norm changed too. ``k50`` / ``k90``: the
  smallest ``k`` whose top-``k`` layers recover 50% / 90% of the mean finetuning gain
  ``mean(lp_tuned - lp_base)`` (None when never reached over the layers, or when the gain
  is not positive).

All swaps are in-place copies into ``tuned.hf``'s own tensors (the bridge shares them), from a
clone of its values taken once and from ``base.hf`` (never written); the finetuned weights
are always restored, bit for bit, at the end (this costs one extra copy of the parameters).
Scoring goes through ``tuned.hf``; a bridge built with weight processing holds its own copy of
the weights and does not see the swaps. Each configuration is scored once for all query sets
that need it.

Example::

    base = load_model("tiny:n_layers=3,d_model=64,seed=1")
    tuned = load_model("tiny:n_layers=3,d_model=64,seed=2")    # a finetuned run's model
    loc = localise(tuned, base, {"forward_d2p": [("The composer of X is", " Orla")]})
    loc.sets["forward_d2p"].revert         # [layer, kind, pair] log-probs, kinds ("attn", "mlp")
    localisation_summary(loc)["sets"]["forward_d2p"]["k50"]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Hashable, Mapping, Sequence

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from interp.scoring import score_completions
from interp.weight_swap import (LAYER_KINDS, NON_LAYER_KINDS, Group, _Mixer,  # noqa: F401 - re-exported
                                n_layers_of, param_groups, swapped)

if TYPE_CHECKING:
    from interp.models import LoadedModel


@dataclass(frozen=True)
class SetLocalisation:
    """Per-pair completion log-probs (nats, summed over completion tokens) of one query set.

    Args:
        pairs: the ``(prompt, completion)`` pairs, in the order of every ``pair`` axis.
        lp_tuned, lp_base: ``[pair]`` under the finetuned and the base model.
        revert, apply: ``[layer, kind, pair]``: finetuned with one group reverted to base /
            base with only that group finetuned (kinds as in :attr:`WeightLocalisation.kinds`).
        revert_layer, apply_layer: ``[layer, pair]``: the same for a whole layer (all kinds).
        revert_non_layer, apply_non_layer: ``[pair]``: the same for all non-layer groups.
        order: layers by decreasing mean ``apply_layer - lp_base`` (ties: lower layer first).
        cumulative: ``[n_layers + 1, pair]``: row ``k - 1`` is base with the top-``k`` layers of
            ``order`` applied (``k = 1..n_layers``); the last row adds the non-layer group,
            which is the finetuned model (equal to ``lp_tuned``).
        k50, k90: smallest ``k`` (layers only) recovering 50% / 90% of the mean gain, or None.
    """

    pairs: tuple[tuple[str, ...], ...]  # (prompt, completion) or (prompt, completion, foil)
    lp_tuned: Float[Tensor, " pair"]
    lp_base: Float[Tensor, " pair"]
    revert: Float[Tensor, "layer kind pair"]
    apply: Float[Tensor, "layer kind pair"]
    revert_layer: Float[Tensor, "layer pair"]
    apply_layer: Float[Tensor, "layer pair"]
    revert_non_layer: Float[Tensor, " pair"]
    apply_non_layer: Float[Tensor, " pair"]
    order: tuple[int, ...]
    cumulative: Float[Tensor, "k pair"]
    k50: int | None
    k90: int | None

    @property
    def gain(self) -> Float[Tensor, " pair"]:
        """``lp_tuned - lp_base``: what finetuning did to each pair."""
        return self.lp_tuned - self.lp_base

    def recovered(self) -> Float[Tensor, " k"] | None:
        """Fraction of the mean gain recovered at each cumulative point; None if gain <= 0."""
        g = float(self.gain.mean())
        return None if g <= 0 else (self.cumulative - self.lp_base).mean(-1) / g


@dataclass(frozen=True)
class WeightLocalisation:
    """The result of :func:`localise`.

    Args:
        sets: query set name -> :class:`SetLocalisation`.
        kinds: the kinds on the ``kind`` axis of ``revert`` / ``apply``.
        n_layers: number of layers.
        groups: parameter group -> parameter names (:func:`param_groups` of the model).
        n_variants: number of distinct weight configurations scored.
    """

    sets: dict[str, SetLocalisation]
    kinds: tuple[str, ...]
    n_layers: int
    groups: dict[Group, list[str]]
    n_variants: int


def _first_k(fraction: Tensor | None, threshold: float) -> int | None:
    if fraction is None:
        return None
    hit = (fraction[:-1] >= threshold).nonzero()  # layers only, not the +non-layer point
    return None if hit.numel() == 0 else int(hit[0, 0]) + 1


def localise(tuned: LoadedModel, base: LoadedModel, query_sets: Mapping[str, Sequence[tuple[str, str]]],
             *, kinds: Sequence[str] = ("attn", "mlp"), batch_size: int = 32,
             progress: bool = True) -> WeightLocalisation:
    """Revert / apply each parameter group's finetuning change and score every query set.

    Args:
        tuned, base: the finetuned model and the model it started from (same architecture,
            dtype and tokenizer). ``tuned.hf`` is the working model: its weights change during
            the call and are restored bit for bit at the end (also on an exception).
        query_sets: name -> ``(prompt, completion)`` pairs, e.g. ``forward_d2p``, ``reverse_p2d``;
            or ``(prompt, completion, foil)`` triples, whose metric is then the contrast
            ``log p(completion) - log p(foil)`` (what is specific to the fact, not shared with
            another trained answer).
        kinds: layer kinds reverted / applied one by one (subset of ``attn``, ``mlp``, ``norm``);
            whole-layer variants always include all of a layer's kinds.
        batch_size: passed to :func:`interp.scoring.score_completions`.
        progress: a tqdm bar over the weight configurations.
    """
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in LAYER_KINDS]
    if bad or not kinds:
        raise ValueError(f"kinds: expected a non-empty subset of {LAYER_KINDS}, got {kinds!r}")
    if not query_sets or any(len(v) == 0 for v in query_sets.values()):
        raise ValueError("query_sets: expected at least one set, each with at least one pair")
    for name, v in query_sets.items():
        bad_len = [i for i, p in enumerate(v) if len(p) not in (2, 3)]
        if bad_len:
            raise ValueError(f"query_sets[{name!r}][{bad_len[0]}]: expected (prompt, completion) or "
                             f"(prompt, completion, foil), got {len(v[bad_len[0]])} items")
    if tuned.hf is base.hf:
        raise ValueError("tuned and base are the same model object")
    if tuned.bos_token_id != base.bos_token_id or len(tuned.tokenizer) != len(base.tokenizer):
        raise ValueError("tuned and base differ in BOS token or vocabulary size; "
                         "localisation needs the same tokenisation for both")
    groups = param_groups(tuned.hf)
    n_layers = n_layers_of(groups)
    missing = [(L, k) for L in range(n_layers) for k in kinds if (L, k) not in groups]
    if missing:
        raise ValueError(f"kinds: group {missing[0]!r} has no parameters in this model")
    every = frozenset(groups)
    layer = [frozenset(g for g in groups if g[0] == L) for L in range(n_layers)]
    non_layer = frozenset(g for g in groups if g[0] is None)
    pairs = {name: list(v) for name, v in query_sets.items()}

    mixer = _Mixer(tuned.hf, base.hf, groups)
    cache: dict[tuple[frozenset[Group], str], Tensor] = {}
    bar = tqdm(total=0, desc="weight variants", unit="variant", disable=not progress)

    def run(configs: list[tuple[frozenset[Group], list[str]]]) -> None:
        todo: dict[frozenset[Group], list[str]] = {}
        for cfg, names in configs:
            todo.setdefault(cfg, [])
            todo[cfg] += [n for n in names if (cfg, n) not in cache and n not in todo[cfg]]
        todo = {c: ns for c, ns in todo.items() if ns}
        bar.total += len(todo)
        bar.refresh()
        for cfg, names in todo.items():
            mixer.set(cfg)
            # a pair is (prompt, completion) or (prompt, completion, foil): with a foil the
            # metric is log p(completion) - log p(foil) (the prompt is computed once for both)
            flat = [(p[0], c) for n in names for p in pairs[n] for c in p[1:]]
            scores = [s.total for s in score_completions(tuned, flat, batch_size=batch_size)]
            start = 0
            for n in names:
                vals = []
                for p in pairs[n]:
                    vals.append(scores[start] - (scores[start + 1] if len(p) == 3 else 0.0))
                    start += len(p) - 1
                cache[(cfg, n)] = torch.tensor(vals, dtype=torch.float64)
            bar.update(1)

    def get(cfg: frozenset[Group], name: str) -> Tensor:
        return cache[(cfg, name)]

    all_sets = list(pairs)
    revert_cfgs = ([every - {(L, k)} for L in range(n_layers) for k in kinds]
                   + [every - s for s in layer] + [every - non_layer])
    apply_cfgs = ([frozenset({(L, k)}) for L in range(n_layers) for k in kinds] + layer + [non_layer])
    try:
        run([(c, all_sets) for c in [every, *revert_cfgs, frozenset(), *apply_cfgs]])
        orders = {}
        for name in all_sets:
            effect = torch.stack([get(layer[L], name) - get(frozenset(), name)
                                  for L in range(n_layers)]).mean(-1)  # [layer]
            orders[name] = tuple(sorted(range(n_layers), key=lambda L: (-float(effect[L]), L)))

        def cumulative_cfgs(name: str) -> list[frozenset[Group]]:
            tops = [frozenset().union(*(layer[L] for L in orders[name][:k])) for k in range(1, n_layers + 1)]
            return tops + [tops[-1] | non_layer]

        run([(c, [name]) for name in all_sets for c in cumulative_cfgs(name)])
    finally:
        mixer.set(every)
        bar.close()

    out = {}
    for name in all_sets:
        def grid(cfgs: list[frozenset[Group]]) -> Tensor:  # [layer, kind, pair]
            return torch.stack([get(c, name) for c in cfgs]).reshape(n_layers, len(kinds), -1)

        lp_tuned, lp_base = get(every, name), get(frozenset(), name)
        cum = torch.stack([get(c, name) for c in cumulative_cfgs(name)])  # [n_layers + 1, pair]
        gain = float((lp_tuned - lp_base).mean())
        frac = None if gain <= 0 else (cum - lp_base).mean(-1) / gain
        out[name] = SetLocalisation(
            pairs=tuple(pairs[name]), lp_tuned=lp_tuned, lp_base=lp_base,
            revert=grid(revert_cfgs[: n_layers * len(kinds)]),
            apply=grid(apply_cfgs[: n_layers * len(kinds)]),
            revert_layer=torch.stack([get(every - s, name) for s in layer]),
            apply_layer=torch.stack([get(s, name) for s in layer]),
            revert_non_layer=get(every - non_layer, name), apply_non_layer=get(non_layer, name),
            order=orders[name], cumulative=cum, k50=_first_k(frac, 0.5), k90=_first_k(frac, 0.9))
    return WeightLocalisation(out, kinds, n_layers, groups, len({c for c, _ in cache}))


def _unit_t(values: np.ndarray, units: np.ndarray, level: float = 0.95
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means of ``values`` ``[stat, pair]`` over units (facts; each unit's pairs averaged first)
    and 95% t intervals over the unit means (a percentile bootstrap over 5-20 facts
    undercovers). Returns mean, low, high, each ``[stat]``; with one unit the interval is the
    mean itself."""
    from scipy import stats

    n_units = int(units.max()) + 1
    sums = np.zeros((values.shape[0], n_units))
    np.add.at(sums.T, units, values.T)  # [stat, unit]
    per_unit = sums / np.bincount(units, minlength=n_units)[None]  # [stat, unit]
    m = per_unit.mean(1)
    if n_units < 2:
        return m, m, m
    half = stats.t.ppf(0.5 + level / 2, n_units - 1) * per_unit.std(1, ddof=1) / np.sqrt(n_units)
    return m, m - half, m + half


def _stat(mean: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> dict[str, list[float]]:
    return {"mean": mean.tolist(), "ci_low": lo.tolist(), "ci_high": hi.tolist()}


def localisation_summary(loc: WeightLocalisation,
                         groups_per_pair: Mapping[str, Sequence[Hashable]] | None = None,
                         n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """A JSON-serialisable summary of :func:`localise`: per query set, means over facts with
    95% t intervals (each fact's pairs averaged first) of the finetuning gain (``lp_tuned - lp_base``), each group's revert loss
    (``lp_tuned - revert``: how much the change is needed) and apply gain (``apply - lp_base``:
    how much it gives alone), per kind and per whole layer (``"layer"``) and for the non-layer
    group; the cumulative curve (gain and fraction of the mean gain recovered; its last point
    adds the non-layer group) and ``k50`` / ``k90``.

    Args:
        groups_per_pair: set name -> the fact id of each pair; intervals are over facts, not
            prompts. None: each pair is its own unit.
        n_boot, seed: unused since the intervals are t intervals; recorded in the summary for
            callers that pass them.
    """
    sets: dict[str, Any] = {}
    for name, s in loc.sets.items():
        n = len(s.pairs)
        if groups_per_pair is None:
            units = np.arange(n)
        else:
            if name not in groups_per_pair or len(groups_per_pair[name]) != n:
                raise ValueError(f"groups_per_pair[{name!r}]: expected one fact id per pair ({n})")
            _, units = np.unique(np.asarray([str(g) for g in groups_per_pair[name]]), return_inverse=True)
        L, K = loc.n_layers, len(loc.kinds)
        lt, lb = s.lp_tuned.numpy(), s.lp_base.numpy()
        rows = np.concatenate([
            (lt - lb)[None],                                          # gain
            (lt - s.revert.numpy()).reshape(L * K, n),                # revert loss per kind
            lt - s.revert_layer.numpy(),                              # revert loss per layer
            (s.apply.numpy() - lb).reshape(L * K, n),                 # apply gain per kind
            s.apply_layer.numpy() - lb,                               # apply gain per layer
            np.stack([lt - s.revert_non_layer.numpy(), s.apply_non_layer.numpy() - lb]),
            s.cumulative.numpy() - lb,                                # cumulative gain [L + 1]
        ])  # [stat, pair]
        mean, lo, hi = _unit_t(rows, units)
        cut = np.cumsum([1, L * K, L, L * K, L, 2])
        m, a, b = (np.split(x, cut) for x in (mean, lo, hi))

        def effects(i_kind: int, i_layer: int) -> dict[str, Any]:
            out = {k: _stat(*(x[i_kind].reshape(L, K)[:, j] for x in (m, a, b)))
                   for j, k in enumerate(loc.kinds)}
            out["layer"] = _stat(m[i_layer], a[i_layer], b[i_layer])
            return out

        frac = s.recovered()
        sets[name] = {
            "n_pairs": n, "n_units": int(units.max()) + 1,
            "unit": "pair" if groups_per_pair is None else "fact",
            "lp_tuned": float(lt.mean()), "lp_base": float(lb.mean()),
            "gain": {"mean": float(m[0][0]), "ci_low": float(a[0][0]), "ci_high": float(b[0][0])},
            "revert_loss": effects(1, 2), "apply_gain": effects(3, 4),
            "non_layer": {key: {"mean": float(m[5][i]), "ci_low": float(a[5][i]), "ci_high": float(b[5][i])}
                          for i, key in enumerate(("revert_loss", "apply_gain"))},
            "cumulative": {"order": list(s.order), "k": list(range(1, L + 1)) + ["all+non_layer"],
                           "gain": _stat(m[6], a[6], b[6]),
                           "fraction": None if frac is None else frac.tolist()},
            "k50": s.k50, "k90": s.k90,
        }
    return {"n_layers": loc.n_layers, "kinds": list(loc.kinds), "n_boot": n_boot, "seed": seed,
            "n_variants": loc.n_variants, "sets": sets}
