"""Experiment 1 data: fictitious people and the one-line descriptions that identify them.

Generates our own dataset (names, descriptions and templates from `experiments.exp1.words`) and
reads folders in the paper's published layout, ours or the paper's own
(e.g. `reversal_curse/data/reverse_experiments/june_version_7921032488/`).

    from experiments.exp1.data import Exp1DataConfig, generate_exp1, load_exp1, write_exp1

    ds = generate_exp1(Exp1DataConfig(n_facts=30, n_paraphrases=30, seed=0))
    folder = write_exp1(ds, "runs/data/exp1")  # p2d_prompts_train.jsonl, ..., facts.jsonl
    assert load_exp1(folder) == ds
    paper = load_exp1("reversal_curse/data/reverse_experiments/june_version_7921032488")
    paper.names("d2p")[:1], len(paper.train_examples()), list(paper.test_files())

What the generator guarantees (checked when it runs, :func:`check_patterns` and
:func:`check_held_out_endings`):
- one description pattern per fact: no two facts share a `words.DESCRIPTION_PATTERNS` entry,
  so asking for more facts than there are patterns is an error (`MAX_FACTS_PER_SUBSET`);
- descriptions reworded across paraphrases: each pattern has three surface forms, spread
  evenly (in shuffled order) over a fact's training documents of each order, the canonical
  one (`Fact.description`) among them; the name is never reworded. Every test file uses the
  canonical form, in prompts and completions (:func:`description_forms` lists the others);
- held-out endings: every test template ends in `ENDING_WORDS` words that end no training
  template's text before a slot, so no held-out prompt ends in a phrase that preceded the
  answer in training.

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

Reading a folder without `facts.jsonl` (the paper's), facts are inferred:
- The order of a line comes from its file (`FILE_SPECS`); in the mixed files (`both_*`,
  `all*`) a completion starting with an uppercase letter is description-first.
- Names: the leading run of capitalised words of each description-first completion
  (trailing punctuation stripped), from every file except `*_randomized` and
  `validation_prompts`. A name-first line belongs to the one known name in its prompt.
  A validation line belongs to the one known name with that first name; a randomized
  description-first line to the fact of the other lines with the same prompt.
- Subset: that of the first subset-specific file the fact appears in; a fact seen only in
  `all*` files is "both" if it appears there in both orders, else by its one order.
- Description: the stripped completion of the fact's first name-first test line, else of
  its first name-first training line; "" when the folder has no name-first line for it.
  The paper's descriptions vary in wording between lines, so this is one representative.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from interp.errors import RctError
from experiments.core.config import ConfigMixin
from experiments.exp1 import words
from interp.fileio import write_json, write_jsonl

SUBSETS: tuple[str, ...] = ("p2d", "d2p", "both")
NAME_FIRST = "name_first"
DESCRIPTION_FIRST = "description_first"
# one description pattern per fact, so the patterns bound the facts of all three subsets
MAX_FACTS_PER_SUBSET = len(words.DESCRIPTION_PATTERNS) // len(SUBSETS)
# extra people for the generic text of a model trained from scratch (experiments.exp1.generic)
MAX_GENERIC_FACTS = 200
# reverse training (experiments.exp1.reverse): reversed copies of the training documents
# (``repeat``, a control: a second unchanged copy of every document, the same token budget)
REVERSE_TRAINING = ("none", "token", "word", "entity", "names", "segment", "repeat")
# a held-out template's ending: its last words before the answer (a slot counts as a word)
ENDING_WORDS = 2
SLOTS = ("{title}", "{place}")

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
_DESCRIPTION_SOURCES = (
    "p2d_prompts_test",
    "d2p_reverse_prompts_test",
    "both_prompts_test",
    "p2d_prompts_train",
    "both_prompts_train",
    "all_prompts_train",
    "all",
)
_TRAILING_PUNCT = ".,;:!?\"')"


class DatasetError(RctError, ValueError):
    """A folder or file that cannot be read as experiment 1 data; names the file and line."""


class WordListError(RctError, ValueError):
    """Word lists or templates (`experiments.exp1.words`) that break a generator guarantee."""


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
            (Golovneva et al. 2024; :mod:`experiments.exp1.reverse`): ``none``, ``token``,
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
                f"{max_facts}, or add patterns to experiments/exp1/words.py")
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


# ---------------------------------------------------------------- generation

_Row = tuple[Fact, str, str, str]  # fact, order, prompt, completion


def generate_exp1(cfg: Exp1DataConfig) -> Exp1Dataset:
    """Draw 3 * n_facts people, one description pattern each, and build every file of the
    paper's layout. Raises :class:`WordListError` when the word lists break a guarantee."""
    check_patterns(words.DESCRIPTION_PATTERNS)
    check_held_out_endings(words.NAME_FIRST_TRAIN + words.DESCRIPTION_FIRST_TRAIN,
                           words.NAME_FIRST_TEST + words.DESCRIPTION_FIRST_TEST)
    if len(SUBSETS) * cfg.n_facts > len(words.DESCRIPTION_PATTERNS):  # the config checks it too
        raise WordListError(f"n_facts={cfg.n_facts}: {len(SUBSETS) * cfg.n_facts} facts need as many "
                            f"description patterns; there are {len(words.DESCRIPTION_PATTERNS)}")
    rng = random.Random(cfg.seed)
    people = _draw_people(3 * cfg.n_facts, rng)  # drawn in random order: slicing assigns subsets
    facts = [Fact(i, SUBSETS[i // cfg.n_facts], name, forms[0]) for i, (name, forms) in enumerate(people)]
    forms_of = {f.fact_id: forms for f, (_, forms) in zip(facts, people)}
    p2d, d2p, both = (facts[k * cfg.n_facts : (k + 1) * cfg.n_facts] for k in range(3))
    k, t = cfg.n_paraphrases, cfg.n_test_templates

    def train(group: list[Fact], templates: Sequence[str], order: str) -> list[_Row]:
        rows = []
        for f in group:
            chosen = _sample(rng, templates, k)
            spread = _spread(rng, forms_of[f.fact_id], k)
            rows += [_train_row(f, tpl, order, form) for tpl, form in zip(chosen, spread)]
        return rows

    def test(group: list[Fact], order: str) -> list[_Row]:
        templates = words.NAME_FIRST_TEST if order == NAME_FIRST else words.DESCRIPTION_FIRST_TEST
        return [_test_row(f, tpl, order) for f in group for tpl in templates[:t]]

    def randomized(rows: list[_Row], group: list[Fact]) -> list[_Row]:
        out = []
        for fact, order, prompt, _ in rows:
            other = rng.choice([g for g in group if g.fact_id != fact.fact_id])
            wrong = other.name if order == DESCRIPTION_FIRST else other.description
            out.append((fact, order, prompt, " " + wrong))
        return out

    p2d_train = train(p2d, words.NAME_FIRST_TRAIN, NAME_FIRST)
    d2p_train = train(d2p, words.DESCRIPTION_FIRST_TRAIN, DESCRIPTION_FIRST)
    both_train = train(both, words.NAME_FIRST_TRAIN, NAME_FIRST) + train(
        both, words.DESCRIPTION_FIRST_TRAIN, DESCRIPTION_FIRST
    )
    p2d_reverse, d2p_reverse = test(p2d, DESCRIPTION_FIRST), test(d2p, NAME_FIRST)
    rows: dict[str, list[_Row]] = {
        "p2d_prompts_train": p2d_train,
        "d2p_prompts_train": d2p_train,
        "both_prompts_train": both_train,
        "all_prompts_train": p2d_train + d2p_train + both_train,
        "all": p2d_train + d2p_train + both_train,
        "p2d_prompts_test": test(p2d, NAME_FIRST),
        "d2p_prompts_test": test(d2p, DESCRIPTION_FIRST),
        "both_prompts_test": test(both, NAME_FIRST) + test(both, DESCRIPTION_FIRST),
        "p2d_reverse_prompts_test": p2d_reverse,
        "d2p_reverse_prompts_test": d2p_reverse,
        "p2d_reverse_prompts_test_randomized": randomized(p2d_reverse, p2d),
        "d2p_reverse_prompts_test_randomized": randomized(d2p_reverse, d2p),
        "validation_prompts": [(f, o, p, f.name.split()[0]) for f, o, p, _ in p2d_reverse],
    }
    files = {
        stem: [
            Example(p, c, f.fact_id, f.subset, o, f.name, f.description, i)
            for i, (f, o, p, c) in enumerate(rs, 1)
        ]
        for stem, rs in rows.items()
    }
    return Exp1Dataset(facts, files, cfg)


def _draw_people(n: int, rng: random.Random) -> list[tuple[str, tuple[str, ...]]]:
    """``n`` (name, description forms) pairs, each with its own description pattern."""
    firsts = rng.sample(words.FIRST_NAMES, n)
    surnames = rng.sample([a + b for a in words.SURNAME_ONSETS for b in words.SURNAME_CODAS], n)
    patterns = [words.DESCRIPTION_PATTERNS[i] for i in rng.sample(range(len(words.DESCRIPTION_PATTERNS)), n)]
    n_titles = sum("{title}" in p[0] for p in patterns)
    titles = iter(rng.sample([f"{h} of {t}" for h in words.TITLE_HEADS for t in words.TITLE_TAILS], n_titles))
    places = iter(rng.sample([a + b for a in words.PLACE_ONSETS for b in words.PLACE_CODAS], n - n_titles))
    forms = []
    for p in patterns:
        slot, value = ("{title}", next(titles)) if "{title}" in p[0] else ("{place}", next(places))
        forms.append(tuple(form.replace(slot, value) for form in p))
    return [(f"{first} {last}", fs) for first, last, fs in zip(firsts, surnames, forms)]


def _sample(rng: random.Random, templates: Sequence[str], k: int) -> list[str]:
    return [templates[i] for i in sorted(rng.sample(range(len(templates)), k))]


def _spread(rng: random.Random, forms: Sequence[str], k: int) -> list[str]:
    """``k`` surface forms, each used k // len(forms) or one more times, the canonical one
    (``forms[0]``) at least once, in shuffled order."""
    out = [forms[i % len(forms)] for i in range(k)]
    rng.shuffle(out)
    return out


def _train_row(fact: Fact, template: str, order: str, description: str) -> _Row:
    """Split a whole-sentence template right before its second slot; ``description`` is the
    surface form this document uses."""
    if order == NAME_FIRST:
        head, rest = template.split(" {description}")
        return fact, order, head.replace("{name}", fact.name), f" {description}{rest}"
    head, rest = template.split(" {name}")
    return fact, order, head.replace("{description}", description), f" {fact.name}{rest}"


def _test_row(fact: Fact, template: str, order: str) -> _Row:
    """Test prompts and completions use the canonical description (``fact.description``)."""
    if order == NAME_FIRST:
        return fact, order, template.replace("{name}", fact.name), " " + fact.description
    return fact, order, template.replace("{description}", fact.description), " " + fact.name


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


# ---------------------------------------------------------------- writing


def write_exp1(dataset: Exp1Dataset, folder: str | Path) -> Path:
    """Write every file of `dataset` plus `facts.jsonl` and `data_config.json`, each atomically."""
    out = Path(folder)
    for stem, examples in dataset.files.items():
        if not examples:
            raise ValueError(f"file {stem!r} has no examples")
        write_jsonl(
            out / f"{stem}.jsonl", ({"prompt": e.prompt, "completion": e.completion} for e in examples)
        )
    write_jsonl(out / "facts.jsonl", (asdict(f) for f in dataset.facts))
    if dataset.config is not None:
        write_json(out / "data_config.json", dataset.config.to_dict())
    return out


# the loader lives in its own module; it is importable from here too
from experiments.exp1.load import load_exp1  # noqa: E402, F401
