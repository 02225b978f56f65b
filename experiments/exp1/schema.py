"""Experiment 1 data's shared vocabulary: the layout's files, subsets and orders, the
generator's settings and limits, and the types a dataset is made of.

Both sides of the data import it: the generator (:mod:`experiments.exp1.generator`) and the
loader (:mod:`experiments.exp1.load`); :mod:`experiments.exp1.data` re-exports all of it.

Conventions:
- Every file is JSONL of {"prompt", "completion"}; completions start with a space, except
  `validation_prompts.jsonl`, whose completion is the bare first name ("Ada").
- Subsets: "p2d" (NameToDescription: trained name first), "d2p" (DescriptionToName:
  trained description first), "both" (trained in both orders, separate documents).
- Lines are grouped in blocks: one block per fact and order, in fact order; a "both" file
  holds all name-first blocks, then all description-first blocks (as the paper's does).
- `Example.line` is the 1-based line number in its file. In the `*_randomized` files the
  completion belongs to another fact; `fact_id`, `name` and `description` are those of the
  fact the prompt is about.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from experiments.core.config import ConfigMixin
from experiments.exp1 import words
from interp.errors import RctError

SUBSETS: tuple[str, ...] = ("p2d", "d2p", "both")
NAME_FIRST = "name_first"
DESCRIPTION_FIRST = "description_first"
# one description pattern per fact, so the patterns bound the facts of all three subsets
MAX_FACTS_PER_SUBSET = len(words.DESCRIPTION_PATTERNS) // len(SUBSETS)
# extra people for the generic text of a model trained from scratch (experiments.exp1.generic)
MAX_GENERIC_FACTS = 200
# reverse training (experiments.mitigations.reverse): reversed copies of the training documents
# (``repeat``, a control: a second unchanged copy of every document, the same token budget)
REVERSE_TRAINING = ("none", "token", "word", "entity", "names", "segment", "repeat")

# file stem -> (subset of its facts or None, order of its lines or None when mixed)
FILE_SPECS: dict[str, tuple[str | None, str | None]] = {
    "p2d_prompts_train": ("p2d", NAME_FIRST),
    "d2p_prompts_train": ("d2p", DESCRIPTION_FIRST),
    "both_prompts_train": ("both", None),
    "all_prompts_train": (None, None),
    "all": (None, None),
    "p2d_prompts_test": ("p2d", NAME_FIRST),
    "d2p_prompts_test": ("d2p", DESCRIPTION_FIRST),
    "both_prompts_test": ("both", None),
    "p2d_reverse_prompts_test": ("p2d", DESCRIPTION_FIRST),
    "d2p_reverse_prompts_test": ("d2p", NAME_FIRST),
    "p2d_reverse_prompts_test_randomized": ("p2d", DESCRIPTION_FIRST),
    "d2p_reverse_prompts_test_randomized": ("d2p", NAME_FIRST),
    "validation_prompts": ("p2d", DESCRIPTION_FIRST),
}
TRAIN_STEMS = ("p2d_prompts_train", "d2p_prompts_train", "both_prompts_train", "all_prompts_train", "all")
TEST_STEMS = (
    "p2d_prompts_test",
    "d2p_prompts_test",
    "p2d_reverse_prompts_test",
    "d2p_reverse_prompts_test",
    "both_prompts_test",
)


class DatasetError(RctError, ValueError):
    """A folder or file that cannot be read as experiment 1 data; names the file and line."""


@dataclass(frozen=True)
class Exp1DataConfig(ConfigMixin):
    """Generator settings for experiment 1.

    Args:
        n_facts: facts per subset (p2d, d2p, both), 2 to MAX_FACTS_PER_SUBSET (each of the
            3 * n_facts facts gets its own description pattern).
        n_paraphrases: training documents per fact and order, at most the number of
            training templates (34).
        n_test_templates: held-out prompts per fact and order, 1 to 10.
        seed: seed of the one `random.Random` that draws everything.
        generic_facts: extra fictitious people, disjoint from the facts and never evaluated,
            written with the training templates in both orders and added to the training
            documents (generic text for a model trained from scratch, see
            :mod:`experiments.exp1.generic`); 0 to MAX_GENERIC_FACTS, 0 adds none.
        reverse_training: reversed copies of every training document added to the originals
            (Golovneva et al. 2024; :mod:`experiments.mitigations.reverse`): ``none``, ``token``,
            ``word``, ``entity`` (name and description kept whole), ``names`` (only named
            entities kept whole: the name and the description's title or place) or
            ``segment``; ``repeat`` adds a second, unchanged copy instead
            (the same token budget without reversal, a control). Test files are unchanged.
            Segment lengths are drawn with ``seed``.
        reverse_segment_max: the longest segment, in words, of ``segment`` reversal (>= 1).
    """

    n_facts: int = 30
    n_paraphrases: int = 30
    n_test_templates: int = 10
    seed: int = 0
    generic_facts: int = 0
    reverse_training: str = "none"
    reverse_segment_max: int = 3

    def __post_init__(self) -> None:
        if self.reverse_training not in REVERSE_TRAINING:
            raise ValueError(f"data.reverse_training must be one of {', '.join(REVERSE_TRAINING)}; "
                             f"got {self.reverse_training!r}")
        if not isinstance(self.reverse_segment_max, int) or isinstance(self.reverse_segment_max, bool) \
                or self.reverse_segment_max < 1:
            raise ValueError(f"data.reverse_segment_max must be an int >= 1, got {self.reverse_segment_max!r}")
        n_train = min(len(words.NAME_FIRST_TRAIN), len(words.DESCRIPTION_FIRST_TRAIN))
        n_test = min(len(words.NAME_FIRST_TEST), len(words.DESCRIPTION_FIRST_TEST))
        n_patterns = len(words.DESCRIPTION_PATTERNS)
        max_facts = n_patterns // len(SUBSETS)
        if isinstance(self.n_facts, int) and not isinstance(self.n_facts, bool) \
                and self.n_facts > max_facts:
            raise ValueError(
                f"n_facts={self.n_facts} asks for {len(SUBSETS) * self.n_facts} facts "
                f"({len(SUBSETS)} subsets x {self.n_facts}), but the generator has {n_patterns} "
                f"description patterns and gives every fact its own: use n_facts <= "
                f"{max_facts}, or add patterns to experiments/exp1/words.json")
        for name, low, high in (
            ("n_facts", 2, max_facts),
            ("n_paraphrases", 1, n_train),
            ("n_test_templates", 1, n_test),
            ("seed", None, None),
            ("generic_facts", 0, MAX_GENERIC_FACTS),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be an int, got {value!r}")
            if low is not None and high is not None and not low <= value <= high:
                raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


@dataclass(frozen=True)
class Fact:
    """One fictitious person: `name` is identified by `description`."""

    fact_id: int
    subset: str
    name: str
    description: str


@dataclass(frozen=True)
class Example:
    """One line of a dataset file, with the fact it is about."""

    prompt: str
    completion: str
    fact_id: int
    subset: str
    order: str
    name: str
    description: str
    line: int


@dataclass
class Exp1Dataset:
    """Facts plus every file of a folder (file stem -> its lines as examples)."""

    facts: list[Fact]
    files: dict[str, list[Example]]
    config: Exp1DataConfig | None = None
    # rows the loader left out of a published folder (file:line, reason); not compared
    skipped: list[dict[str, Any]] = field(default_factory=list, compare=False)

    def train_examples(self) -> list[Example]:
        """`all_prompts_train`, else the subset training files, else `all`."""
        for stems in (("all_prompts_train",), TRAIN_STEMS[:3], ("all",)):
            present = [s for s in stems if s in self.files]
            if present:
                return [e for stem in present for e in self.files[stem]]
        return []

    def test_files(self) -> dict[str, list[Example]]:
        """The evaluation files present, in `TEST_STEMS` order."""
        return {stem: self.files[stem] for stem in TEST_STEMS if stem in self.files}

    def names(self, subset: str | None = None) -> list[str]:
        """Names of all facts, or of one subset's, in fact order."""
        if subset is not None and subset not in SUBSETS:
            raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
        return [f.name for f in self.facts if subset is None or f.subset == subset]
