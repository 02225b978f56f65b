"""The word lists' description patterns and templates, read and checked: the surface forms
and slot of a generated description, and the checks that keep two generator guarantees
(:mod:`experiments.exp1.generator` runs them every time; the guarantees are listed there).

- :func:`description_forms` and :func:`description_slot` read a description back into its
  pattern (`words.DESCRIPTION_PATTERNS`): all its surface forms, and the title or place in
  its slot.
- :func:`check_patterns`: one pattern per fact is possible (distinct head nouns), and every
  pattern is well formed.
- :func:`check_held_out_endings`: every test template ends in `ENDING_WORDS` words that end
  no training template's text before a slot (:func:`template_ending`,
  :func:`training_endings`).

A broken word list raises :class:`WordListError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from experiments.exp1 import words
from interp.errors import RctError

# a held-out template's ending: its last words before the answer (a slot counts as a word)
ENDING_WORDS = 2
SLOTS = ("{title}", "{place}")


class WordListError(RctError, ValueError):
    """Word lists or templates (`experiments.exp1.words`) that break a generator guarantee."""


def description_forms(description: str) -> tuple[str, ...]:
    """Every surface form of a generated description, the canonical one (``description``)
    first; ``(description,)`` for a description no pattern produces (the paper's).

    Example::

        description_forms('the composer of the underwater opera "Tides of Glass"')[1]
        # 'the person who composed the underwater opera "Tides of Glass"'
    """
    for pattern in words.DESCRIPTION_PATTERNS:
        slot = next(s for s in SLOTS if s in pattern[0])
        before, after = pattern[0].split(slot)
        if description.startswith(before) and description.endswith(after) \
                and len(description) > len(before) + len(after):
            value = description[len(before) : len(description) - len(after)]
            return tuple(form.replace(slot, value) for form in pattern)
    return (description,)


def description_slot(description: str) -> str | None:
    """The named entity inside a generated description: the value of its pattern's slot (a
    title or a place), the same in every surface form; None for a description no pattern
    produces (the paper's).

    Example::

        description_slot('the composer of the underwater opera "Tides of Glass"')
        # 'the underwater opera "Tides of Glass"'
    """
    for pattern in words.DESCRIPTION_PATTERNS:
        for form in pattern:
            slot = next(s for s in SLOTS if s in form)
            before, after = form.split(slot)
            if description.startswith(before) and description.endswith(after) \
                    and len(description) > len(before) + len(after):
                return description[len(before) : len(description) - len(after)]
    return None


# ---------------------------------------------------------------- checks of the word lists


def check_patterns(patterns: Sequence[Sequence[str]]) -> None:
    """Raise :class:`WordListError` unless every pattern has 2+ distinct surface forms, each
    starting with "the " and holding the same one slot (``{title}`` or ``{place}``), and no
    two patterns share a canonical form or its head noun (the second word)."""
    heads: dict[str, str] = {}
    for forms in patterns:
        where = f"description pattern {forms[0]!r}"
        if len(forms) < 2 or len(set(forms)) != len(forms):
            raise WordListError(f"{where}: needs 2 or more distinct surface forms, got {list(forms)}")
        slots = [s for s in SLOTS if s in forms[0]]
        for form in forms:
            if not form.startswith("the ") or len(slots) != 1 or form.count(slots[0]) != 1 \
                    or "{" in form.replace(slots[0], ""):
                raise WordListError(f"{where}: the form {form!r} must start with 'the ' and hold "
                                    f"the pattern's one slot ({' or '.join(SLOTS)}) once")
        head = forms[0].split()[1]
        if head in heads:
            raise WordListError(f"{where}: shares its head noun {head!r} with {heads[head]!r}; "
                                "every fact gets a pattern of its own")
        heads[head] = forms[0]


def template_ending(text: str, n: int = ENDING_WORDS) -> tuple[str, ...]:
    """The last ``n`` words of ``text``, lower-cased, punctuation ignored, a slot counting as
    the word ``<slot>``: ``"Records show that {description} is named"`` -> ``("is", "named")``."""
    tokens = re.findall(r"\{\w+\}|[\w'-]+", text.lower())
    return tuple("<slot>" if t.startswith("{") else t for t in tokens[-n:])


def training_endings(templates: Iterable[str], n: int = ENDING_WORDS) -> dict[tuple[str, ...], str]:
    """Ending (:func:`template_ending`) of the text before each slot of each training
    template -> one template that has it; texts shorter than ``n`` words are skipped."""
    out: dict[tuple[str, ...], str] = {}
    for tpl in templates:
        for slot in ("{name}", "{description}"):
            ending = template_ending(tpl.split(slot)[0], n)
            if len(ending) == n:
                out.setdefault(ending, tpl)
    return out


def check_held_out_endings(train_templates: Iterable[str], test_templates: Iterable[str],
                           n: int = ENDING_WORDS) -> None:
    """Raise :class:`WordListError` when a held-out template ends (its last ``n`` words, see
    :func:`template_ending`) as some training template's text before a slot does: a prompt
    ending "... is named" would then cue the answer by a phrase seen before it in training."""
    seen = training_endings(train_templates, n)
    clashes = [f"{tpl!r} ends in {' '.join(template_ending(tpl, n))!r} like training template {seen[e]!r}"
               for tpl in test_templates if (e := template_ending(tpl, n)) in seen]
    if clashes:
        raise WordListError(f"held-out templates must end in {n} words no training template has "
                            f"before a slot: " + "; ".join(clashes))
