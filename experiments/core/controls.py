"""The random-control draw: for each question, a wrong answer of the same kind.

A control asks the model the same question with a random other member of the answer's group
(another trained name of the subset, another parent of the same type, another answer of the
category), never one that is correct, so "correct vs random" compares the model's preference
for the right answer with a name of the same role. Draws are seeded: the same requests and
seed give the same picks, so a base and a finetuned model see the same controls.

Example::

    draw_controls([(["Ann", "Bo", "Cy"], {"Ann"}), (["Ann", "Bo", "Cy"], {"Bo"})], seed=0)
    # e.g. ['Cy', 'Ann']: never the correct name of its request
"""

from __future__ import annotations

import random
from typing import Collection, Iterable, Sequence


def draw_controls(requests: Iterable[tuple[Sequence[str], Collection[str]]], seed: int | str) -> list[str | None]:
    """One control per request, drawn in order from one ``random.Random(seed)``.

    Args:
        requests: ``(group, correct)`` per question: the candidates in a fixed order, and the
            answers that are right for that question (never drawn).
        seed: an int or a string (``f"{seed}-{subset}"``); strings seed deterministically.
    Returns:
        per request, a member of ``group`` not in ``correct``, or None when there is none (a
        request with no candidate consumes no randomness).
    """
    rng = random.Random(seed)
    out: list[str | None] = []
    for group, correct in requests:
        others = [g for g in group if g not in correct]
        out.append(rng.choice(others) if others else None)
    return out
