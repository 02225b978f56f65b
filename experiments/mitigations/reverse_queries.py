"""Queries in the reversed "language" of a reverse-trained model (Golovneva et al. 2024).

:func:`reversed_queries` builds the queries in the reversed language (see its docstring):
left-to-right generation after a reversed prompt produces what came *before* that prompt in
natural order, so a query for an answer A is built from a held-out sentence "A Q" with A at its
start (after a short prefix, which is dropped): prompt ``rev(Q)``, target ``rev(A)``. The text
modes reverse with :mod:`experiments.mitigations.reverse`; ``token`` reverses ids
(:func:`encode_token_query`). :mod:`experiments.mitigations.reverse_eval` asks them.

Example::

    queries, skipped = reversed_queries(generate_exp1(Exp1DataConfig()), "word", ["p2d_reverse_prompts_test"])
    queries[0].prompt, queries[0].target
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from experiments.exp1.data import description_forms, description_slot
from experiments.mitigations.reverse import named_spans, reverse_entity, reverse_words
from interp.tokens import encode_completion, encode_prompt

if TYPE_CHECKING:
    from experiments.exp1.data import Exp1Dataset
    from interp.models import LoadedModel

# the reversal a query uses for each training mode: segment-trained models are asked with
# word-level reversal (a random segmentation of the query would be a second random draw)
QUERY_MODE = {"token": "token", "word": "word", "entity": "entity", "names": "names", "segment": "word"}
# evaluated cell -> the held-out file of the other order for the same facts (its sentences
# hold the cell's answer near their start)
QUERY_SOURCE: dict[str, str] = {
    "p2d_prompts_test": "p2d_reverse_prompts_test",
    "p2d_reverse_prompts_test": "p2d_prompts_test",
    "d2p_prompts_test": "d2p_reverse_prompts_test",
    "d2p_reverse_prompts_test": "d2p_prompts_test",
}


@dataclass(frozen=True)
class ReversedQuery:
    """One query in the reversed language, for the evaluated cell ``file`` (a test file), built
    from the held-out sentence ``source_file:source_line`` of the other order for the same fact.

    ``answer`` is the natural answer, ``rest`` the natural text after it; ``prompt`` and
    ``target`` are their reversals (``target`` with a leading space), for the text modes.
    """

    file: str
    source_file: str
    source_line: int
    fact_id: int
    subset: str
    direction: str
    target_kind: str
    mode: str
    answer: str
    rest: str
    spans: tuple[str, ...]
    prompt: str
    target: str
    answer_spans: tuple[str, ...] = ()  # names mode: the answer's title or place, kept whole


def split_at_answer(text: str, answer: str) -> tuple[str, str] | None:
    """``(text before the answer, text after it)`` at the first occurrence of ``answer`` that
    starts a word and is not followed by a letter or digit; None when there is none."""
    start = text.find(answer)
    while start != -1:
        end = start + len(answer)
        if (start == 0 or text[start - 1].isspace()) and (end == len(text) or not text[end].isalnum()):
            return text[:start], text[end:]
        start = text.find(answer, start + 1)
    return None


def reverse_query_text(text: str, mode: str, spans: Sequence[str] = ()) -> str:
    """The reversal a query's text gets in ``mode`` (a training mode; ``segment`` asks with
    word-level reversal, see ``QUERY_MODE``). Not for ``token`` (ids: :func:`encode_token_query`)."""
    qmode = QUERY_MODE[mode]
    if qmode == "word":
        return reverse_words(text)
    if qmode in ("entity", "names"):
        return reverse_entity(text, spans)
    raise ValueError(f"reverse_query_text: {mode!r} reverses ids, not text")


def reverse_answer(answer: str, mode: str, spans: Sequence[str] = ()) -> str:
    """The reversed-language form of an answer (a name or a description), with no leading
    space: word-reversed; for ``entity`` the answer itself (it is one entity span); for
    ``names`` a description's words reversed around ``spans`` (by default its title or place,
    :func:`experiments.exp1.data.description_slot`), an answer with neither (a name) kept whole.
    Applied to a reversed answer (with the same ``spans`` for ``names``: a reversed description
    no longer reads as a pattern) it gives the natural one back (:func:`answer_back`). Not for
    ``token`` (ids: :func:`encode_token_query`)."""
    qmode = QUERY_MODE[mode]
    if qmode == "token":
        raise ValueError("reverse_answer: token mode reverses ids, not text")
    if qmode == "names":
        slot = description_slot(answer)
        spans = list(spans) or ([slot] if slot else [answer])
        return reverse_entity(answer, spans)
    return " ".join(answer.split()) if qmode == "entity" else reverse_words(answer)


def answer_back(generation: str, target: str, mode: str, spans: Sequence[str] = ()) -> str:
    """A text-mode generation read back in natural order: its first as many words as the
    reversed ``target`` has, un-reversed (what exact match compares with the answer; ``spans``:
    the answer's named entities in ``names`` mode, :attr:`ReversedQuery.answer_spans`)."""
    head = " ".join(generation.split()[: len(target.split())])
    return reverse_answer(head, mode, spans)


def reversed_queries(dataset: Exp1Dataset, mode: str, files: Sequence[str]
                     ) -> tuple[list[ReversedQuery], dict[str, int]]:
    """The reversed-language queries of the evaluated ``files`` (test-file stems of
    :data:`experiments.exp1.evaluate.CELLS`), and per cell the count of source sentences
    skipped because the answer does not occur in them as a whole word.

    For a cell asking fact f for its answer A (its name in a description -> name cell, its
    canonical description in a name -> description cell), every held-out sentence of the other
    order for f (``QUERY_SOURCE``; prompt + completion) holds A near its start:
    ``"Quick question about <A>: this person is <B>"``. The text before A is dropped, the text
    after it (``rest``) reversed: prompt ``rev(rest)``, target ``" " + rev(A)``. Generating
    after ``rev(rest)`` is generating what precedes ``rest`` in natural order, i.e. A.
    Entity mode keeps the fact's name and description forms whole in ``rev(rest)``.

    Example (word mode, a p2d fact asked for its name)::

        rest   ': this person is the climber who first stood on the summit above Zarnport'
        prompt 'Zarnport above summit the on stood first who climber the is person this :'
        target ' Orvstow Melisande'
    """
    from experiments.exp1.evaluate import CELLS

    facts = {f.fact_id: f for f in dataset.facts}
    out, skipped = [], {}
    for stem in files:
        source = QUERY_SOURCE.get(stem)
        if source is None or stem not in dataset.files or source not in dataset.files:
            continue
        subset, direction, kind = CELLS[stem]
        asked = {e.fact_id for e in dataset.files[stem]}
        skipped[stem] = 0
        for ex in dataset.files[source]:
            if ex.fact_id not in asked:
                continue
            fact = facts[ex.fact_id]
            answer = fact.name if kind == "name" else fact.description
            parts = split_at_answer(ex.prompt + ex.completion, answer)
            if parts is None or not parts[1].strip():
                skipped[stem] += 1
                continue
            rest = parts[1]
            named = named_spans(fact.name, fact.description) if mode == "names" else description_forms(fact.description)
            spans = tuple(s for s in (fact.name, *named) if s in rest)
            text_mode = QUERY_MODE[mode] != "token"
            out.append(ReversedQuery(
                file=stem, source_file=source, source_line=ex.line, fact_id=ex.fact_id, subset=subset,
                direction=direction, target_kind=kind, mode=mode, answer=answer, rest=rest, spans=spans,
                prompt=reverse_query_text(rest, mode, spans) if text_mode else "",
                target=" " + reverse_answer(answer, mode) if text_mode else "",
                answer_spans=(slot,) if mode == "names" and (slot := description_slot(answer)) else ()))
    return out, skipped


def encode_token_query(lm: LoadedModel, query: ReversedQuery, control: str | None = None
                       ) -> tuple[list[int], list[int], list[int] | None]:
    """Token-mode ids of a query: ``[bos] + reversed(tok(rest))``, ``reversed(tok(" " + answer))``
    and, given a control answer, ``reversed(tok(" " + control))``. Reading the target's ids
    backwards and decoding gives ``" " + answer``."""
    prompt = encode_prompt(lm, "")
    prompt += encode_completion(lm, query.rest)[::-1]
    target = encode_completion(lm, " " + query.answer)[::-1]
    ctrl = None if control is None else encode_completion(lm, " " + control)[::-1]
    return prompt, target, ctrl

