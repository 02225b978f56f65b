"""Directional key-value storage and attribution at every prompt position.

**Key-value view** (:func:`key_value`): at the entity's last token, the MLP key
coefficients (``mlp_post``, the input of each down projection) of the finetuned model are
compared with the base model's:

- *key change*: ``||k_ft - k_base|| / ||k_base||`` per layer, per query set, with untrained
  names in the same prompts as the baseline (what finetuning does to a name it never saw);
- *neurons*: each neuron's activation x gradient of the log-prob of the fact's **own**
  answer (first token), at the entity's last token; mean over facts; the top neurons and
  the concentration (how many neurons carry half of the positive attribution).

**Attribution at every position** (:func:`position_attribution`): activation x gradient of
each layer's attention and MLP outputs, at every prompt token, summed over ``d_model`` and
grouped by position category (before the entity, entity tokens, after, last token).

Every mean comes with a 95% t interval over facts (:func:`analysis.intervals.t_mean_ci`).

Example::

    kv = key_value(tuned, base, sets["d2p_forward"], baseline=None)
    kv["key_change"]["mean"]        # one value per layer
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from analysis.query_sets import QuerySet
from analysis.intervals import t_mean_ci
from interp.hooks import layer_hooks
from interp.recording import Recording, record
from interp.trace import _categories

if TYPE_CHECKING:
    from interp.models import LoadedModel

POSITION_GROUPS = ("before entity", "entity", "after entity", "last")


def _last_entity_rows(rec: Recording, pos: str, n: int) -> torch.Tensor:
    """Row index of each query's last entity token in ``rec``'s ``pos`` rows."""
    rows = rec.rows(pos)  # [n_rows, 2] sorted by (query, position)
    out = torch.full((n,), -1, dtype=torch.long)
    for r, (qi, _) in enumerate(rows.tolist()):
        out[qi] = r  # sorted: the last row of a query is its last entity token
    if (out < 0).any():
        i = int((out < 0).nonzero()[0])
        raise ValueError(f"key_value: query {i} has no {pos} tokens")
    return out


def record_storage(lm: LoadedModel, qs: QuerySet, batch_size: int = 16,
                   every_position: bool = True) -> Recording:
    """One recording for both views: ``mlp_post`` (and with ``every_position`` also
    ``attn_out`` and ``mlp_out``) at the entity's tokens and at every token, with the gradient
    of the first answer token's log-prob."""
    n_layers = lm.bridge.cfg.n_layers
    hooks = layer_hooks("mlp_post", n_layers)
    if every_position:
        hooks += layer_hooks("attn_out", n_layers) + layer_hooks("mlp_out", n_layers)
    positions = (f"entity:{qs.entity}", "all") if every_position else (f"entity:{qs.entity}",)
    return record(lm, qs.queries, hooks, positions=positions, grad="first", batch_size=batch_size)


def _keys(rec: Recording, qs: QuerySet) -> tuple[torch.Tensor, torch.Tensor]:
    """(activations, gradients) of ``mlp_post`` at the entity's last token: [n, L, d_mlp]."""
    pos = f"entity:{qs.entity}"
    hooks = [h for h in rec.hooks if h.endswith("mlp.hook_post")]
    rows = _last_entity_rows(rec, pos, len(qs.queries))
    act = torch.stack([rec.act(h, pos)[rows] for h in hooks], 1)
    grad = torch.stack([rec.grad(h, pos)[rows] for h in hooks], 1)
    return act, grad


def per_fact(values: np.ndarray, facts: list[Any]) -> np.ndarray:
    """Average rows that belong to the same fact (first-seen order; NaN-aware: a column that is
    NaN in every row of a fact stays NaN): one row per fact."""
    order = list(dict.fromkeys(facts))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.stack([np.nanmean(values[[i for i, f in enumerate(facts) if f == k]], 0) for k in order])


def half_mass_count(contrib: np.ndarray) -> int:
    """How many of the largest positive contributions sum to half of all positive ones."""
    pos = np.sort(contrib[contrib > 0].ravel())[::-1]
    if pos.size == 0:
        return 0
    return int(np.searchsorted(np.cumsum(pos), 0.5 * pos.sum()) + 1)


def key_value(tuned: LoadedModel, base: LoadedModel, qs: QuerySet, baseline: QuerySet | None = None,
              top_k: int = 10, batch_size: int = 16, n_boot: int = 2000, seed: int = 0,
              recs: tuple[Recording, Recording] | None = None) -> dict[str, Any]:
    """The key-value view of one query set (see the module docstring). ``recs``: the
    finetuned and base model's :func:`record_storage` of ``qs``, when already made."""
    facts = [q.meta["fact_id"] for q in qs.queries]
    rec_ft, rec_b = recs or (record_storage(tuned, qs, batch_size, False),
                             record_storage(base, qs, batch_size, False))
    a_ft, g_ft = _keys(rec_ft, qs)
    a_b, g_b = _keys(rec_b, qs)
    change = ((a_ft - a_b).norm(dim=-1) / a_b.norm(dim=-1).clamp_min(1e-12)).numpy()  # [n, L]
    out: dict[str, Any] = {"set": qs.name, "entity": qs.entity, "direction": qs.direction,
                           "n_facts": len(set(facts)),
                           "key_change": t_mean_ci(per_fact(change, facts))}
    if baseline is not None:
        u_ft, _ = _keys(record_storage(tuned, baseline, batch_size, False), baseline)
        u_b, _ = _keys(record_storage(base, baseline, batch_size, False), baseline)
        uc = ((u_ft - u_b).norm(dim=-1) / u_b.norm(dim=-1).clamp_min(1e-12)).numpy()
        out["key_change_untrained"] = t_mean_ci(per_fact(uc, facts))
        diff = per_fact(change, facts) - per_fact(uc, facts)
        out["key_change_minus_untrained"] = t_mean_ci(diff)
    for label, a, g in (("finetuned", a_ft, g_ft), ("base", a_b, g_b)):
        gxa = per_fact((a * g).numpy(), facts)  # [facts, L, d_mlp]
        mean = gxa.mean(0)  # [L, d_mlp]
        flat = np.argsort(mean.ravel())[::-1][:top_k]
        d_mlp = mean.shape[1]
        out[label] = {
            "total": t_mean_ci(gxa.sum((1, 2))),
            "by_layer": t_mean_ci(gxa.sum(2)),
            "half_mass_neurons": half_mass_count(mean),
            "positive_mass": float(mean[mean > 0].sum()),
            "top_neurons": [{"layer": int(i // d_mlp), "neuron": int(i % d_mlp),
                             "mean": float(mean.ravel()[i]),
                             **{k: v for k, v in t_mean_ci(
                                 gxa[:, i // d_mlp, i % d_mlp]).items() if k != "n"}}
                            for i in flat],
        }
    ft_top = [(e["layer"], e["neuron"]) for e in out["finetuned"]["top_neurons"]]
    out["top_neurons_in_base"] = [float(a_b[:, L, m].mean()) for L, m in ft_top]
    out["top_neurons_in_finetuned"] = [float(a_ft[:, L, m].mean()) for L, m in ft_top]
    return out


def position_attribution(lm: LoadedModel, qs: QuerySet, batch_size: int = 16, n_boot: int = 2000,
                         seed: int = 0, rec: Recording | None = None) -> dict[str, Any]:
    """Activation x gradient of attention and MLP outputs at every prompt position, grouped
    into :data:`POSITION_GROUPS`: per site, ``[layer, group]`` means over facts with CIs,
    and each group's share of the summed attribution. ``rec``: :func:`record_storage` of
    ``qs`` on ``lm``, when already made."""
    n_layers = lm.bridge.cfg.n_layers
    hooks = {s: layer_hooks(s, n_layers) for s in ("attn_out", "mlp_out")}
    pos = f"entity:{qs.entity}"
    rec = rec or record_storage(lm, qs, batch_size)
    rows_all = rec.rows("all")
    spans: dict[int, list[int]] = {}
    for qi, p in rec.rows(pos).tolist():
        spans.setdefault(qi, []).append(p)
    n = len(qs.queries)
    prompt_len = [q["prompt_len"] for q in rec.queries]
    group_of = {}
    for qi in range(n):
        cats = _categories(spans[qi], prompt_len[qi])
        for p in range(prompt_len[qi]):
            c = cats.get(p, "before")
            group_of[(qi, p)] = ("before entity" if c == "before" else "last" if c == "last"
                                 else "entity" if "entity" in c else "after entity")
    out: dict[str, Any] = {"set": qs.name, "groups": list(POSITION_GROUPS)}
    facts = [q.meta["fact_id"] for q in qs.queries]
    for site, hs in hooks.items():
        vals = np.zeros((n, n_layers, len(POSITION_GROUPS)))
        for L, h in enumerate(hs):
            g = (rec.act(h, "all") * rec.grad(h, "all")).sum(-1).numpy()  # [rows]
            for r, (qi, p) in enumerate(rows_all.tolist()):
                grp = group_of.get((qi, p))
                if grp is not None:  # target tokens carry no gradient for the first token
                    vals[qi, L, POSITION_GROUPS.index(grp)] += g[r]
        by_fact = per_fact(vals, facts)
        totals = by_fact.sum(1)  # [facts, groups]
        out[site] = {"by_layer": t_mean_ci(by_fact),
                     "by_group": t_mean_ci(totals)}
    return out
