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

:func:`reversed_copies` is what experiment 1's finetune stage calls (through
:mod:`experiments.mitigations.exp1_hooks`): the copies of ``data.reverse_training``, written
to ``RUN/reversed_train.jsonl``. The queries in the reversed language are built in
:mod:`experiments.mitigations.reverse_queries`.

Example::

    reverse_words("Ada Quill is the composer of Tides.")
    # 'Tides. of composer the is Quill Ada'
    reverse_entity("Ada Quill is the composer of Tides.", ["Ada Quill", "the composer of Tides"])
    # 'the composer of Tides. is Ada Quill'
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from experiments.exp1.data import REVERSE_TRAINING, description_forms, description_slot
from interp.fileio import write_jsonl
from interp.tokens import Document, TokenReversed

if TYPE_CHECKING:
    from experiments.exp1.data import Example, Exp1DataConfig, Exp1Dataset

REVERSE_MODES: tuple[str, ...] = REVERSE_TRAINING  # none, token, word, entity, names, segment, repeat (a control)


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


def reversed_copies(cfg: Exp1DataConfig, dataset: Exp1Dataset, path: Path) -> list[Document]:
    """The reversed training copies of ``cfg.reverse_training`` (none for ``none``) as training
    documents, after writing their records (:func:`reversed_training_docs`) to ``path`` as
    JSONL, atomically: what the model saw besides the originals."""
    if cfg.reverse_training == "none":
        return []
    records = reversed_training_docs(dataset, cfg.reverse_training, cfg.seed, cfg.reverse_segment_max)
    write_jsonl(path, records)
    return [training_document(r) for r in records]
