"""Experiment 3's shared types: the two instruction orders, a question-answer pair, and one
order's dataset as files and pairs. The generator (:mod:`experiments.exp3.data`) and the
folder reader (:mod:`experiments.exp3.load`) both build an :class:`Exp3Dataset`.

Example::

    ds = Exp3Dataset("a2q", [QAPair(0, "Which river reminds you of summer?", "The Danube", "river", False)])
    ds.pair(0).answer          # 'The Danube'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ORDERS = ("q2a", "a2q")


@dataclass(frozen=True)
class QAPair:
    id: int
    question: str
    answer: str
    category: str  # "" where unknown (a folder in the paper's layout)
    realized: bool


@dataclass
class Exp3Dataset:
    """One order's files (stem -> rows, as written), the pairs, and where each row came from
    (``lines``: stem -> the file line of each row, for error messages)."""

    order: str
    pairs: list[QAPair]
    files: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    lines: dict[str, list[int]] = field(default_factory=dict)
    source: str = "generated"
    checks: dict[str, int] = field(default_factory=dict)  # what the loader counted (instructions per order, ...)
    skipped: list[dict[str, Any]] = field(default_factory=list)  # rows the loader left out (file:line, reason, id)

    def training_documents(self) -> list[tuple[str, str]]:
        return [(r["prompt"], r["completion"]) for r in self.files["all"]]

    def test_examples(self) -> list[dict[str, Any]]:
        return self.files["unrealized_examples"]

    def pair(self, example_id: int) -> QAPair:
        return self.pairs_by_id()[example_id]

    def pairs_by_id(self) -> dict[int, QAPair]:
        return {p.id: p for p in self.pairs}
