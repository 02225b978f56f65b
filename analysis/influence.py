"""Which training documents teach which direction: influence grouped by fact and order.

Takes influence scores (queries x training documents, from :mod:`interp.influence`) and the
facts behind both sides, and asks Grosse et al.'s (2023) question: for a query in one order,
are the training documents of the same fact in the *other* order any more influential than
other facts' documents?

Every query and document carries ``fact_id``, ``subset`` and ``order`` (``name_first`` or
``description_first``). For a query, the documents fall into four groups:

- ``same_fact_same_order``: the fact's own documents, in the query's order;
- ``same_fact_other_order``: the fact's own documents, in the other order;
- ``other_facts_same_order`` / ``other_facts_other_order``: every other fact's documents.

Scores are compared within a query after standardising them against the query's background,
the other facts' documents (``(s - mean) / sd`` over those, so 1 is one standard deviation of
the influence of documents about other facts), because their raw scale differs from query to
query; raw means are kept too. (Standardising over all documents would let the fact's own
documents, when they are very influential, inflate the scale and shrink every other group.) Every effect is a mean
over facts (one query per fact and direction) with a 95% t interval over facts (15 facts a set
by default: too few for a percentile bootstrap to hold its coverage).

Example::

    s = influence_summary(scores, queries, docs)       # scores: [n_queries, n_documents]
    s["both"]["description_first"]["groups"]["same_fact_other_order"]["z"]
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy import stats as sst

from analysis.intervals import ratio_t_ci, t_mean_ci

GROUPS = ("same_fact_same_order", "same_fact_other_order", "other_facts_same_order", "other_facts_other_order")
ORDERS = ("name_first", "description_first")
ROLES = ("name", "description", "template")
TOP_K = 10


def _ci(values: Sequence[float], seed: int = 0) -> dict[str, Any]:  # noqa: ARG001 - kept for callers
    """Mean over facts with a t interval (``interval: "t"``)."""
    r = t_mean_ci(np.asarray(values, dtype=float))
    return {"mean": r["mean"], "ci_low": r["low"], "ci_high": r["high"], "n": r["n"], "interval": "t"}


def standardise(scores: np.ndarray, queries: Sequence[dict[str, Any]], docs: Sequence[dict[str, Any]]) -> np.ndarray:
    """Each row (query) minus its mean over the other facts' documents, over their standard
    deviation (all documents when the query's fact has every document)."""
    facts = np.array([d["fact_id"] for d in docs])
    out = np.empty_like(scores, dtype=np.float64)
    for i, q in enumerate(queries):
        bg = scores[i, facts != q["fact_id"]]
        if bg.size < 2:
            bg = scores[i]
        sd = bg.std()
        out[i] = (scores[i] - bg.mean()) / (sd if sd > 0 else 1.0)
    return out


def group_masks(query: dict[str, Any], docs: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Boolean mask over documents for each of the four groups of ``query``."""
    fact = np.array([d["fact_id"] == query["fact_id"] for d in docs])
    order = np.array([d["order"] == query["order"] for d in docs])
    return {"same_fact_same_order": fact & order, "same_fact_other_order": fact & ~order,
            "other_facts_same_order": ~fact & order, "other_facts_other_order": ~fact & ~order}


def per_query_groups(scores: np.ndarray, queries: Sequence[dict[str, Any]], docs: Sequence[dict[str, Any]],
                     top_k: int = TOP_K) -> list[dict[str, Any]]:
    """Per query: each group's raw and standardised mean, its share of the query's ``top_k``
    documents, and the best rank (1 = most influential) of the fact's own documents."""
    z = standardise(scores, queries, docs)
    out = []
    for i, q in enumerate(queries):
        masks = group_masks(q, docs)
        top = np.argsort(-scores[i], kind="stable")[:top_k]
        rank = np.empty(len(docs), dtype=int)
        rank[np.argsort(-scores[i], kind="stable")] = np.arange(1, len(docs) + 1)
        own = masks["same_fact_same_order"] | masks["same_fact_other_order"]
        row: dict[str, Any] = {"raw": {}, "z": {}, "top_share": {}, "n": {}}
        for g, m in masks.items():
            row["n"][g] = int(m.sum())
            row["raw"][g] = float(scores[i, m].mean()) if m.any() else float("nan")
            row["z"][g] = float(z[i, m].mean()) if m.any() else float("nan")
            row["top_share"][g] = float(m[top].mean())
        row["best_own_rank"] = int(rank[own].min()) if own.any() else None
        out.append(row)
    return out


def _summarise(rows: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    groups = {}
    for g in GROUPS:
        if all(np.isnan(r["z"][g]) for r in rows):
            continue
        groups[g] = {"z": _ci([r["z"][g] for r in rows], seed), "raw": _ci([r["raw"][g] for r in rows], seed),
                     "top_share": _ci([r["top_share"][g] for r in rows], seed), "n_docs": rows[0]["n"][g]}
    ranks = [r["best_own_rank"] for r in rows if r["best_own_rank"] is not None]
    return {"groups": groups, "n_facts": len(rows),
            "best_own_rank_median": float(np.median(ranks)) if ranks else None}


def _contrast(rows: list[dict[str, Any]], a: str, b: str, seed: int) -> dict[str, Any]:
    d = [r["z"][a] - r["z"][b] for r in rows]
    return {"a": a, "b": b, **_ci(d, seed)}


def influence_summary(scores: np.ndarray, queries: Sequence[dict[str, Any]], docs: Sequence[dict[str, Any]],
                      seed: int = 0, top_k: int = TOP_K) -> dict[str, Any]:
    """The grouped comparison: ``both`` (facts trained in both orders, per query order, with
    the contrasts that test Grosse et al.'s finding) and ``one_order`` (facts trained in one
    order, their forward and reverse queries)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(queries), len(docs)):
        raise ValueError(f"scores have shape {scores.shape}, expected ({len(queries)}, {len(docs)})")
    rows = per_query_groups(scores, queries, docs, top_k)
    out: dict[str, Any] = {"both": {}, "one_order": {}, "top_k": top_k}
    for order in ORDERS:
        sel = [r for r, q in zip(rows, queries) if q["subset"] == "both" and q["order"] == order]
        if not sel:
            continue
        s = _summarise(sel, seed)
        s["contrasts"] = {
            # the same fact's other-order documents against its same-order ones (Grosse: far below)
            "own_other_minus_own_same": _contrast(sel, "same_fact_other_order", "same_fact_same_order", seed),
            # ... and against other facts' documents (Grosse: about the same)
            "own_other_minus_others_same": _contrast(sel, "same_fact_other_order", "other_facts_same_order", seed),
            "own_other_minus_others_other": _contrast(sel, "same_fact_other_order", "other_facts_other_order", seed),
        }
        out["both"][order] = s
    for subset in sorted({q["subset"] for q in queries} - {"both"}):
        trained = {d["order"] for d in docs if d["subset"] == subset}
        for kind in ("forward", "reverse"):
            sel = [r for r, q in zip(rows, queries) if q["subset"] == subset
                   and (q["order"] in trained) == (kind == "forward")]
            if not sel:
                continue
            s = _summarise(sel, seed)
            own = "same_fact_same_order" if kind == "forward" else "same_fact_other_order"
            s["own_group"] = own
            s["contrasts"] = {"own_minus_others_same": _contrast(sel, own, "other_facts_same_order", seed),
                              "own_minus_others_other": _contrast(sel, own, "other_facts_other_order", seed)}
            out["one_order"].setdefault(subset, {})[kind] = s
    return out


def agreement(a: np.ndarray, b: np.ndarray, queries: Sequence[dict[str, Any]], top_k: int = TOP_K,
              seed: int = 0) -> dict[str, Any]:
    """Per query, Spearman's rank correlation between two score rows over documents and the
    overlap of their ``top_k`` documents; means with a 95% CI over facts (a fact's queries
    averaged first)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    rho, overlap = [], []
    for i in range(a.shape[0]):
        rho.append(float(sst.spearmanr(a[i], b[i]).statistic))
        ta, tb = set(np.argsort(-a[i])[:top_k].tolist()), set(np.argsort(-b[i])[:top_k].tolist())
        overlap.append(len(ta & tb) / top_k)
    facts = sorted({q["fact_id"] for q in queries})
    by_fact = {f: [k for k, q in enumerate(queries) if q["fact_id"] == f] for f in facts}
    per_fact = lambda v: [float(np.mean([v[k] for k in ks])) for ks in by_fact.values()]  # noqa: E731
    return {"spearman": _ci(per_fact(rho), seed), "top_overlap": _ci(per_fact(overlap), seed),
            "spearman_median_query": float(np.median(rho)), "n_queries": len(rho)}


def layer_profile(per_layer: np.ndarray, layers: Sequence[int], queries: Sequence[dict[str, Any]],
                  docs: Sequence[dict[str, Any]], seed: int = 0, n_boot: int = 2000) -> dict[str, Any]:  # noqa: ARG001
    """Per query set and own-fact group: the share of the group's summed influence that each
    layer's parameters carry, pooled over facts (sum over facts of a layer's influence over
    the sum of the total), with a 95% linearised t interval over facts
    (:func:`analysis.intervals.ratio_t_ci`). Pooling keeps facts whose group has almost no
    influence from dividing by nearly zero. ``per_layer`` is ``[layer, query, doc]``; ``seed``
    and ``n_boot`` are kept for callers of the earlier bootstrap version and not used."""
    per_layer = np.asarray(per_layer, dtype=np.float64)
    out: dict[str, Any] = {"layers": list(layers), "sets": {}, "interval": "t (ratio, linearised)"}
    for key, sel in _query_sets(queries).items():
        entry = {}
        for g in ("same_fact_same_order", "same_fact_other_order"):
            rows = [per_layer[:, i, group_masks(queries[i], docs)[g]].sum(axis=1) for i in sel
                    if group_masks(queries[i], docs)[g].any()]
            if not rows:
                continue
            v = np.stack(rows)  # [fact, layer]
            total = v.sum()
            if total <= 0 or len(rows) < 2:
                entry[g] = {"share": None if total <= 0 else (v.sum(axis=0) / total).tolist(),
                            "total": float(total), "n": len(rows)}
                continue
            entry[g] = ratio_t_ci(v, v.sum(axis=1))
        out["sets"][key] = entry
    return out


def _query_sets(queries: Sequence[dict[str, Any]]) -> dict[str, list[int]]:
    """Query indices by ``subset/order``."""
    sets: dict[str, list[int]] = {}
    for i, q in enumerate(queries):
        sets.setdefault(f"{q['subset']}/{q['order']}", []).append(i)
    return sets


def token_roles(tokens: Sequence[tuple[int, int]], text: str, name: str,
                description: str | Sequence[str]) -> list[str]:
    """Role of each token (character span in ``text``): ``name``, ``description`` or
    ``template``. ``description`` may list several surface forms (rewordings); the first found
    in ``text`` counts. Spans that are not found leave their tokens ``template``."""
    forms = [description] if isinstance(description, str) else list(description)
    spans = []
    for role, options in (("name", [name]), ("description", forms)):
        for s in options:
            k = text.find(s)
            if k < 0 and s[:1].isalpha():  # a description may start a sentence capitalised
                k = text.find(s[0].swapcase() + s[1:])
            if k >= 0:
                spans.append((role, k, k + len(s)))
                break
    out = []
    for a, b in tokens:
        hit = [r for r, s, e in spans if b > a and a < e and b > s]
        out.append(hit[0] if hit else "template")
    return out


def token_shares(per_token: np.ndarray, scores: np.ndarray, roles: Sequence[Sequence[str]],
                 queries: Sequence[dict[str, Any]], docs: Sequence[dict[str, Any]], top_k: int = TOP_K,
                 seed: int = 0) -> dict[str, Any]:
    """Over each query's ``top_k`` documents (by total score) and over the fact's own
    documents: the share of the positive per-token influence that falls on name,
    description and template tokens, next to those roles' share of the tokens.
    ``per_token`` is ``[query, doc, position]``; ``roles[d]`` lists document ``d``'s tokens."""
    per_token = np.asarray(per_token, dtype=np.float64)
    out: dict[str, Any] = {}
    for key, sel in _query_sets(queries).items():
        entry: dict[str, Any] = {}
        for which in ("top", "own"):
            shares, base = [], []
            for i in sel:
                if which == "top":
                    ds = np.argsort(-scores[i], kind="stable")[:top_k]
                else:
                    m = group_masks(queries[i], docs)
                    ds = np.flatnonzero(m["same_fact_same_order"] | m["same_fact_other_order"])
                pos = {r: 0.0 for r in ROLES}
                count = {r: 0 for r in ROLES}
                for d in ds:
                    for t, r in enumerate(roles[d]):
                        pos[r] += max(per_token[i, d, t], 0.0)
                        count[r] += 1
                tot, n = sum(pos.values()), sum(count.values())
                if tot > 0 and n:
                    shares.append([pos[r] / tot for r in ROLES])
                    base.append([count[r] / n for r in ROLES])
            if shares:
                r = t_mean_ci(np.array(shares))
                entry[which] = {role: {"share": r["mean"][k], "ci_low": r["low"][k], "ci_high": r["high"][k],
                                       "token_share": float(np.mean([b[k] for b in base]))}
                                for k, role in enumerate(ROLES)}
                entry[which]["n"] = r["n"]
        out[key] = entry
    return out
