"""Reverse training (Golovneva et al. 2024): reversed copies of the training documents, and
queries asked in the reversed "language".

Four reversals of a document (``data.reverse_training``), each a pure function here:

- ``word`` (:func:`reverse_words`): the words in reverse order;
- ``entity`` (:func:`reverse_entity`): the words in reverse order, but every entity span (the
  person's name, the description) kept as one unit in its own order;
- ``names``: entity reversal with only the named entities as spans (:func:`named_spans`: the
  person's name and the title or place inside the description), closer to Golovneva et al.'s
  entity-preserving reversal, which keeps named entities and reverses the words around them;
- ``segment`` (:func:`reverse_segments`): the words cut into consecutive segments of random
  length 1..``data.reverse_segment_max``, the segments in reverse order, words in order inside;
- ``token``: the document's token ids reversed after BOS. BPE would retokenise reversed text,
  so this one acts on ids: the copy is an :class:`interp.tokens.TokenReversed` marker that
  :func:`interp.tokens.encode_documents` turns into ``[bos] + reversed(tok(text))``.

Words are maximal runs of non-whitespace: punctuation stays attached to the word it touches
("Zarnport." is one word), and the reversed text joins its words with single spaces (so
leading, trailing and repeated whitespace is not kept).

:func:`reversed_training_docs` makes one reversed copy of every training document of a
dataset (the originals stay; test sets are unchanged). A reversed copy is one whole document
with the loss on every token after BOS: it has no prompt/completion split, under either
``finetune.loss_on`` (a string copy is the pair ``("", text)``, whose "completion" is all of it).

:func:`reversed_queries` builds the queries in the reversed language (see its docstring):
left-to-right generation after a reversed prompt produces what came *before* that prompt in
natural order, so a query for an answer A is built from a held-out sentence "A Q" with A at its
start (after a short prefix, which is dropped): prompt ``rev(Q)``, target ``rev(A)``.

Example::

    reverse_words("Ada Quill is the composer of Tides.")
    # 'Tides. of composer the is Quill Ada'
    reverse_entity("Ada Quill is the composer of Tides.", ["Ada Quill", "the composer of Tides"])
    # 'the composer of Tides. is Ada Quill'
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from experiments.exp1.data import REVERSE_TRAINING, description_forms, description_slot
from interp.fileio import write_jsonl
from interp.tokens import Document, TokenReversed, encode_completion, encode_prompt

if TYPE_CHECKING:
    from experiments.exp1.data import Example, Exp1DataConfig, Exp1Dataset
    from interp.models import LoadedModel

REVERSE_MODES: tuple[str, ...] = REVERSE_TRAINING  # none, token, word, entity, names, segment, repeat (a control)
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


# ---------------------------------------------------------------- the reversals


def reverse_words(text: str) -> str:
    """The words of ``text`` (maximal runs of non-whitespace, punctuation attached) in reverse
    order, joined by single spaces. Applied twice it gives ``" ".join(text.split())``.

    Example::

        reverse_words("Ada Quill is the composer of Tides.")
        # 'Tides. of composer the is Quill Ada'
    """
    return " ".join(reversed(text.split()))


def entity_units(text: str, spans: Iterable[str]) -> list[str]:
    """The units :func:`reverse_entity` reverses: the words of ``text``, except that the words
    an entity span touches form one unit (joined by single spaces).

    Rules: spans are exact substrings; every occurrence counts; spans are placed longest first
    and an occurrence overlapping one already placed is skipped (nested or overlapping spans:
    the longest wins); a span that does not occur is ignored. A span that starts or ends inside
    a word takes the whole word (``"Tides."`` for the span ``"Tides"``), and two spans touching
    the same word share one unit, so no span is ever split.

    Example::

        entity_units("Ada Quill is the composer of Tides.", ["Ada Quill"])
        # ['Ada Quill', 'is', 'the', 'composer', 'of', 'Tides.']
    """
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    placed: list[tuple[int, int]] = []
    for span in sorted({s for s in spans if s.strip()}, key=lambda s: (-len(s), s)):
        start = text.find(span)
        while start != -1:
            end = start + len(span)
            if all(end <= a or start >= b for a, b in placed):
                placed.append((start, end))
            start = text.find(span, start + 1)
    ranges = []  # word-index ranges [i, j] of the placed spans, merged where they touch a word
    for a, b in sorted(placed):
        idx = [k for k, (ws, we) in enumerate(words) if ws < b and we > a]
        if ranges and idx[0] <= ranges[-1][1]:
            ranges[-1][1] = max(ranges[-1][1], idx[-1])
        else:
            ranges.append([idx[0], idx[-1]])
    units, k = [], 0
    starts = {i: j for i, j in ranges}
    while k < len(words):
        j = starts.get(k, k)
        units.append(" ".join(text[words[m][0] : words[m][1]] for m in range(k, j + 1)))
        k = j + 1
    return units


def reverse_entity(text: str, spans: Iterable[str]) -> str:
    """Words in reverse order, every entity span kept as one unit in its own order (the rules
    are in :func:`entity_units`), joined by single spaces.

    Example::

        reverse_entity("Ada Quill is the composer of Tides.", ["Ada Quill", "the composer of Tides"])
        # 'the composer of Tides. is Ada Quill'
    """
    return " ".join(reversed(entity_units(text, spans)))


def reverse_segments(text: str, max_len: int, rng: random.Random) -> str:
    """The words cut into consecutive segments of ``rng.randint(1, max_len)`` words (the last
    one possibly shorter), the segments in reverse order, the words inside each in order;
    joined by single spaces. Deterministic for a seeded ``rng``.

    Example::

        reverse_segments("Ada Quill is the composer of Tides.", 3, random.Random(0))
        # 'of Tides. composer is the Ada Quill'
        # (segments drawn: [Ada Quill] [is the] [composer] [of Tides.])
    """
    if not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"reverse_segments: max_len must be an int >= 1, got {max_len!r}")
    words, segments, i = text.split(), [], 0
    while i < len(words):
        n = rng.randint(1, max_len)
        segments.append(words[i : i + n])
        i += n
    return " ".join(w for seg in reversed(segments) for w in seg)


# ---------------------------------------------------------------- training copies


def entity_spans(example: Example) -> list[str]:
    """The entity spans of one training document: the fact's name and the description surface
    form this document uses (one of :func:`experiments.exp1.data.description_forms`; for a
    folder in the paper's layout, the inferred description), those that occur in it."""
    text = example.prompt + example.completion
    forms = [f for f in description_forms(example.description) if f and f in text]
    used = max(forms, key=len, default=None)
    return [s for s in (example.name, used) if s and s in text]


def named_spans(name: str, description: str) -> list[str]:
    """The named entities of a fact for ``names`` reversal: its name and the slot value of its
    description (:func:`experiments.exp1.data.description_slot`, the same in every surface
    form). A description without a slot (a folder in the paper's layout) is an error: which of
    its words name something is not known.

    Example::

        named_spans("Ada Quill", 'the composer of the underwater opera "Tides of Glass"')
        # ['Ada Quill', 'Tides of Glass']
    """
    slot = description_slot(description)
    if slot is None:
        raise ValueError(f"data.reverse_training=names: the description {description!r} (of {name!r}) comes "
                         "from no known pattern, so its named entities are unknown; use entity or word")
    return [name, slot]


def reversed_training_docs(dataset: Exp1Dataset, mode: str, seed: int, segment_max: int = 3
                           ) -> list[dict[str, Any]]:
    """One reversed copy of every training document (``dataset.train_examples()``, prompt +
    completion as one document), in that order, as records to write and to train on (see
    :func:`training_document`).

    Each record holds ``mode``, ``fact_id``, ``order``, ``line`` (of the original in its file),
    ``original`` (its natural text), ``spans`` (entity mode) and ``text``: the reversed text,
    or for ``token`` the natural text whose token ids are reversed. Segment lengths come from
    one ``random.Random(f"reverse-{seed}")`` drawn in document order.

    Example::

        ds = generate_exp1(Exp1DataConfig(n_facts=3, n_paraphrases=4, n_test_templates=2))
        rec = reversed_training_docs(ds, "word", seed=0)[4]
        rec["original"]  # 'Noor Zellgate is the mountain guide who led ... down from Marvhollow.'
        rec["text"]      # 'Marvhollow. from down climbers ... who guide mountain the is Zellgate Noor'
    """
    if mode not in REVERSE_MODES or mode == "none":
        raise ValueError(f"data.reverse_training must be one of {REVERSE_MODES[1:]} here, got {mode!r}")
    rng = random.Random(f"reverse-{seed}")
    out = []
    for e in dataset.train_examples():
        original = e.prompt + e.completion
        rec: dict[str, Any] = {"mode": mode, "fact_id": e.fact_id, "order": e.order, "line": e.line,
                               "original": original}
        if mode == "word":
            rec["text"] = reverse_words(original)
        elif mode == "entity":
            rec["spans"] = entity_spans(e)
            rec["text"] = reverse_entity(original, rec["spans"])
        elif mode == "names":
            rec["spans"] = named_spans(e.name, e.description)
            rec["text"] = reverse_entity(original, rec["spans"])
        elif mode == "segment":
            rec["text"] = reverse_segments(original, segment_max, rng)
        else:  # token (ids reversed when encoded) and repeat (the copy is the original)
            rec["text"] = original
        out.append(rec)
    return out


def training_document(record: dict[str, Any]) -> tuple[str, str] | TokenReversed:
    """What :func:`experiments.finetune.finetune` trains on for one reversed copy: ``("", text)``
    for the text modes (BOS, then the whole reversed text, loss on every token), a
    :class:`interp.tokens.TokenReversed` for ``token``."""
    if record["mode"] == "token":
        return TokenReversed(record["text"])
    return "", record["text"]


# ---------------------------------------------------------------- reversed-language queries


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


def reversed_copies(cfg: Exp1DataConfig, dataset: Exp1Dataset, path: Path) -> list[Document]:
    """The reversed training copies of ``cfg.reverse_training`` (none for ``none``) as training
    documents, after writing their records (:func:`reversed_training_docs`) to ``path`` as
    JSONL, atomically: what the model saw besides the originals."""
    if cfg.reverse_training == "none":
        return []
    records = reversed_training_docs(dataset, cfg.reverse_training, cfg.seed, cfg.reverse_segment_max)
    write_jsonl(path, records)
    return [training_document(r) for r in records]
