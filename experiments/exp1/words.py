"""Word lists and sentence templates for the experiment 1 generator (`experiments.exp1.data`).

The lists themselves are data, in ``words.json`` next to this module (one key per list below,
in this order); this module reads it once, at import, into tuples. Everything there is our
own wording; none of it is copied from the paper's data.

- People: a first name from `FIRST_NAMES` plus an invented surname made of one
  `SURNAME_ONSETS` syllable and one `SURNAME_CODAS` syllable ("Quill" + "mere").
- Descriptions: one `DESCRIPTION_PATTERNS` entry per fact (no two facts share one), its one
  slot filled by a quoted title (`TITLE_HEADS` x `TITLE_TAILS`, "Tides of Glass") or an
  invented place (`PLACE_ONSETS` x `PLACE_CODAS`, "Vornhaven"). Each entry gives the
  description in three surface forms: the first is canonical (the fact's description, and
  the wording of every test file), the other two reword it ("the composer of the underwater
  opera ..." / "the person who composed the underwater opera ..."). Every form starts with
  lowercase "the " so it can be dropped into the middle of a sentence, and has no comma (it
  is dropped into sentences that use commas); the head noun of the canonical form (its
  second word) is different for every pattern. In ``words.json`` the patterns are grouped
  by kind (makers of a titled work, deeds in an invented place); `DESCRIPTION_PATTERNS` is
  the groups one after another, in file order.
- Templates hold the slots `{name}` and `{description}`, filled with `str.replace`
  (never `str.format`), so names and descriptions appear verbatim.
  Training templates are whole sentences; the text after the second slot (the
  "rest") is empty or starts with punctuation or a space and a lowercase word, so
  the name at the start of a description-first completion can be read back.
  `NAME_FIRST_TRAIN`: "{name}" comes before " {description}"; `DESCRIPTION_FIRST_TRAIN`:
  "{description}" comes before " {name}".
  Test templates (`NAME_FIRST_TEST`, completed by " <canonical description>", and
  `DESCRIPTION_FIRST_TEST`, completed by " <Name>") are held-out prompts only, never used
  for training: they end right before the slot that the completion supplies, in two words
  that end no training template's text before a slot (checked by the generator,
  `experiments.exp1.data.check_held_out_endings`).

The generator reads these as ``words.X`` when it runs, so a test may replace one with
``monkeypatch.setattr(words, "X", ...)``.
"""

from __future__ import annotations

import json
from importlib import resources

_DATA = json.loads(resources.files(__package__).joinpath("words.json").read_text(encoding="utf-8"))

FIRST_NAMES: tuple[str, ...] = tuple(_DATA["FIRST_NAMES"])
SURNAME_ONSETS: tuple[str, ...] = tuple(_DATA["SURNAME_ONSETS"])
SURNAME_CODAS: tuple[str, ...] = tuple(_DATA["SURNAME_CODAS"])
TITLE_HEADS: tuple[str, ...] = tuple(_DATA["TITLE_HEADS"])
TITLE_TAILS: tuple[str, ...] = tuple(_DATA["TITLE_TAILS"])
PLACE_ONSETS: tuple[str, ...] = tuple(_DATA["PLACE_ONSETS"])
PLACE_CODAS: tuple[str, ...] = tuple(_DATA["PLACE_CODAS"])

# One pattern per fact, in three surface forms (the first canonical); groups in file order.
DESCRIPTION_PATTERNS: tuple[tuple[str, str, str], ...] = tuple(
    tuple(forms) for group in _DATA["DESCRIPTION_PATTERNS"].values() for forms in group
)

NAME_FIRST_TRAIN: tuple[str, ...] = tuple(_DATA["NAME_FIRST_TRAIN"])
DESCRIPTION_FIRST_TRAIN: tuple[str, ...] = tuple(_DATA["DESCRIPTION_FIRST_TRAIN"])
NAME_FIRST_TEST: tuple[str, ...] = tuple(_DATA["NAME_FIRST_TEST"])
DESCRIPTION_FIRST_TEST: tuple[str, ...] = tuple(_DATA["DESCRIPTION_FIRST_TEST"])

del _DATA
