"""The four query sets of the causal analysis, built from an experiment 1 dataset.

Each set holds one kind of question about one subset of facts, with the entity of the
prompt (the span that causal tracing corrupts and the probes and key-value views read):

=================  ==========================  =========  ==========  ========  =========
set                file                        subset     prompt has  answer    direction
=================  ==========================  =========  ==========  ========  =========
``d2p_forward``    ``d2p_prompts_test``        d2p        description name      trained
``p2d_forward``    ``p2d_prompts_test``        p2d        name        descr.    trained
``p2d_reverse``    ``p2d_reverse_prompts_test`` p2d       description name      reverse
``d2p_reverse``    ``d2p_reverse_prompts_test`` d2p       name        descr.    reverse
=================  ==========================  =========  ==========  ========  =========

``d2p_forward`` and ``p2d_reverse`` share the prompt form (description -> name) and differ
only in the order the facts were trained in; so do ``p2d_forward`` and ``d2p_reverse``.
Descriptions begin with an article ("the ..."), which every description shares; for the
answer's first token to say which fact it is, a leading article moves into the prompt
(``"... is"`` + ``" the first walker ..."`` becomes ``"... is the"`` + ``" first walker ..."``).

Example::

    sets = query_sets(ds, n_facts=10)
    sets["d2p_forward"].queries[0].prompt, sets["d2p_forward"].entity
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from interp.recording import Query

# set -> (file stem, subset, entity in the prompt, answer kind, direction)
SETS: dict[str, tuple[str, str, str, str, str]] = {
    "d2p_forward": ("d2p_prompts_test", "d2p", "description", "name", "trained"),
    "p2d_forward": ("p2d_prompts_test", "p2d", "name", "description", "trained"),
    "p2d_reverse": ("p2d_reverse_prompts_test", "p2d", "description", "name", "reverse"),
    "d2p_reverse": ("d2p_reverse_prompts_test", "d2p", "name", "description", "reverse"),
}
ARTICLES = ("the", "a", "an")


@dataclass(frozen=True)
class QuerySet:
    name: str
    entity: str  # "name" or "description": the entity in the prompt
    direction: str  # "trained" or "reverse"
    queries: list[Query]  # meta: fact_id, subset, template (index among the fact's prompts), line


def move_article(prompt: str, target: str) -> tuple[str, str]:
    """``("X is", " the first walker")`` -> ``("X is the", " first walker")``."""
    head, _, rest = target.lstrip().partition(" ")
    if head.lower() in ARTICLES and rest:
        return f"{prompt} {target.lstrip()[: len(head)]}", " " + rest
    return prompt, target


def query_sets(ds: Any, n_facts: int | None = None, prompts_per_fact: int | None = 1,
               sets: tuple[str, ...] = tuple(SETS)) -> dict[str, QuerySet]:
    """The query sets (``ds``: ``facts`` and test ``files`` as in an experiment 1 dataset).

    Args:
        n_facts: the first ``n_facts`` facts of each subset (None: all).
        prompts_per_fact: each fact's first prompts in file order (None: all; the files list
            the same templates in the same order for every fact, so index = template).
    """
    out = {}
    for name in sets:
        stem, subset, entity, answer, direction = SETS[name]
        if stem not in ds.files:
            raise ValueError(f"query set {name}: the dataset has no {stem}.jsonl")
        facts = [f.fact_id for f in ds.facts if f.subset == subset][:n_facts]
        keep = set(facts)
        count: dict[int, int] = {}
        queries = []
        for ex in ds.files[stem]:
            if ex.fact_id not in keep:
                continue
            t = count.get(ex.fact_id, 0)
            count[ex.fact_id] = t + 1
            if prompts_per_fact is not None and t >= prompts_per_fact:
                continue
            prompt, target = (move_article(ex.prompt, ex.completion) if answer == "description"
                              else (ex.prompt, ex.completion))
            queries.append(Query(prompt, target, {"name": ex.name, "description": ex.description},
                                 meta={"fact_id": ex.fact_id, "subset": subset, "template": t,
                                       "set": name, "line": ex.line}))
        if not queries:
            raise ValueError(f"query set {name}: no prompts in {stem}.jsonl for subset {subset}")
        out[name] = QuerySet(name, entity, direction, queries)
    return out


def untrained_name_queries(ds: Any, qs: QuerySet) -> QuerySet:
    """``qs`` (a set whose prompts contain the name) with each name replaced by an untrained
    one: the first name of one trained person and the surname of another, a combination no
    fact uses. The baseline for "did training change this name's representation?"."""
    if qs.entity != "name":
        raise ValueError(f"untrained_name_queries: set {qs.name} has the {qs.entity} in its prompts")
    trained = {f.name for f in ds.facts}
    firsts = [f.name.split(" ")[0] for f in ds.facts]
    lasts = [f.name.split(" ", 1)[-1] for f in ds.facts]
    out = []
    for i, q in enumerate(qs.queries):
        name = q.entities["name"]
        for shift in range(1, len(lasts)):
            cand = f"{firsts[i % len(firsts)]} {lasts[(i + shift * 7) % len(lasts)]}"
            if cand not in trained and cand != name:
                break
        else:
            raise ValueError("untrained_name_queries: no untrained first/surname combination left")
        out.append(Query(q.prompt.replace(name, cand), q.target, {"name": cand},
                         meta={**q.meta, "untrained_name": cand}))
    return QuerySet(f"{qs.name}_untrained_names", "name", "untrained", out)
