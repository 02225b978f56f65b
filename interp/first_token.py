"""The warning of :func:`interp.recording.record` when the explained answer token (the
first) is a function word or shared by most queries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from interp.loaded import LoadedModel

FUNCTION_WORDS = frozenset(
    "the a an of to in on at by for from with as is was are were be and or but that this these those "
    "his her its their our my your he she it they we i you who which what".split())


def _warn_uninformative_first_token(lm: LoadedModel, completions: Sequence[Sequence[int]]) -> None:
    """The per-query statistics and ``grad="first"`` explain the answer's *first* token. Warn
    (once) when that token is a function word for most queries, or the same token for most of
    them: the attribution then explains an article, not the fact (``analysis.direction``'s
    ``distinct_first_tokens`` moves a shared leading token into the prompt)."""
    firsts = [c[0] for c in completions if c]
    if not firsts:
        return
    import warnings
    from collections import Counter

    tok, n = Counter(firsts).most_common(1)[0]
    text = lm.tokenizer.decode([tok])
    word = text.strip().lower()
    shared = len(firsts) >= 3 and n / len(firsts) > 0.5
    if shared or (word in FUNCTION_WORDS and n / len(firsts) > 0.5):
        warnings.warn(f"record(): the answer's first token, which the first-token statistics and grad='first' "
                      f"explain, is {text!r} for {n} of {len(firsts)} queries"
                      f"{' (a function word)' if word in FUNCTION_WORDS else ''}: they explain that token, "
                      "not the fact. Move it into the prompt (analysis.direction.distinct_first_tokens) or use "
                      "grad='sum' for the whole answer", stacklevel=3)
