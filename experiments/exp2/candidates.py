"""Who else could answer: controls, candidate sets, ranks and family clusters for experiment 2.

- :func:`control_names`: one random wrong name of the same role per query (the control);
- :func:`candidate_names`: per query, the other names of the same role the correct one is
  ranked against (other mothers for "Who is X's mother?", other children for "Name a child
  of Y."), never a name that also answers the question;
- :func:`rank_stats`: where the correct name falls among them, by log-prob;
- :func:`families`: clusters for statistics. Rows are linked when they share a child or a
  parent, and a family is a connected group: a child's mother and father rows are one family,
  and so are the three child queries that all ask "Name a child of Kris Jenner."

Example::

    cands = candidate_names(pairs, n_candidates=20, seed=0)[0]   # (parent query, child query)
    rank_stats(-9.0, [-12.0, -8.0, -10.0])                        # rank 2, 2 of 3 beaten
    families(pairs)[i]                                            # the cluster id of pair i
"""

from __future__ import annotations

import random
from typing import Sequence

from experiments.core.controls import draw_controls
from experiments.exp2.data import ParentChildPair


def _correct_and_pools(pairs: list[ParentChildPair]):
    """Per pair: the names that answer its parent query and its child query (never drawn as
    wrong answers; the question's own subject is excluded too), and the same-role pools."""
    parents_of: dict[tuple[str, str], set[str]] = {}
    children_of: dict[str, set[str]] = {}
    for p in pairs:
        parents_of.setdefault((p.child, p.parent_type), set()).add(p.parent)
        children_of.setdefault(p.parent, set()).add(p.child)
    parents_by_type = {t: sorted({q.parent for q in pairs if q.parent_type == t})
                       for t in {p.parent_type for p in pairs}}
    children = sorted({q.child for q in pairs})
    for p in pairs:
        yield ((parents_by_type[p.parent_type], parents_of[(p.child, p.parent_type)] | {p.child}),
               (children, children_of[p.parent] | {p.parent}))


def control_names(pairs: list[ParentChildPair], seed: int) -> list[tuple[str | None, str | None]]:
    """Per pair, a random wrong answer for each query: another pair's parent of the same
    type (parent query) and another pair's child (child query), never a name that answers
    the same question correctly (a sibling, for instance). None when no such name exists.
    Drawn by :func:`experiments.core.controls.draw_controls`, parent then child per pair."""
    requests = [req for both in _correct_and_pools(pairs) for req in both]
    drawn = draw_controls(requests, seed)
    return list(zip(drawn[::2], drawn[1::2]))


def candidate_names(pairs: list[ParentChildPair], n_candidates: int | None, seed: int
                    ) -> list[tuple[list[str], list[str]]]:
    """Per pair, the wrong names its parent query and its child query are ranked against.

    Args:
        n_candidates: candidates per query counting the correct name, so up to
            ``n_candidates - 1`` wrong names, drawn without replacement; None = every wrong
            name of the role.
        seed: the draw (one ``random.Random(f"{seed}-candidates")`` over the pairs in order).
    Returns:
        per pair, (wrong parents of the same type, wrong children), each sorted.
    """
    rng = random.Random(f"{seed}-candidates")
    out = []
    for (pool_p, right_p), (pool_c, right_c) in _correct_and_pools(pairs):
        drawn = []
        for pool, right in ((pool_p, right_p), (pool_c, right_c)):
            others = [n for n in pool if n not in right]
            if n_candidates is not None and len(others) > n_candidates - 1:
                others = sorted(rng.sample(others, n_candidates - 1))
            drawn.append(others)
        out.append((drawn[0], drawn[1]))
    return out


def rank_stats(correct: float, wrong: Sequence[float]) -> dict[str, float | int | bool | None]:
    """Where the correct name's log-prob falls among the wrong names' log-probs.

    Returns ``rank`` (1 = best; a tie counts half), ``beaten`` (the fraction of wrong names
    scored below the correct one, ties half: 0.5 is chance, 1 is top; None without wrong
    names), ``top1`` (above every wrong name) and ``n_candidates`` (wrong names + 1).

    Example::

        rank_stats(-9.0, [-12.0, -8.0, -10.0])  # rank 2.0, beaten 0.667, top1 False, 4 candidates
    """
    above = sum(w > correct for w in wrong)
    ties = sum(w == correct for w in wrong)
    below = len(wrong) - above - ties
    return {"rank": 1 + above + 0.5 * ties,
            "beaten": (below + 0.5 * ties) / len(wrong) if wrong else None,
            "top1": above == 0 and ties == 0,
            "n_candidates": len(wrong) + 1}


def families(pairs: Sequence[ParentChildPair]) -> list[int]:
    """Per pair, its family: people are nodes (one name, one person), each pair links a
    child and a parent, and a family is a connected group, numbered by first appearance
    (Kim Kardashian is a child in one row and a mother in another, so Kris Jenner's and
    North West's rows are one family). Resampling families resamples children with all
    their rows, and keeps a parent's rows together too."""
    root: dict[str, str] = {}

    def find(a: str) -> str:
        root.setdefault(a, a)
        while root[a] != a:
            root[a] = root[root[a]]
            a = root[a]
        return a

    for p in pairs:
        root[find(p.child)] = find(p.parent)
    ids: dict[str, int] = {}
    return [ids.setdefault(find(p.child), len(ids)) for p in pairs]
