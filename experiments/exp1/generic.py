"""Generic text for a model trained from scratch: training sentences about extra people.

A model that starts from random weights knows no English, so on top of the experiment 1
documents it needs text that teaches it the language of the templates and the two kinds of
sentence (name first, description first) without teaching it anything about the real facts.
This module draws ``data.generic_facts`` extra fictitious people, like the real ones (a name
from `experiments.exp1.words`, a description from one of its patterns in its three surface
forms) but disjoint from them, and writes each of them with ``n_paraphrases`` training
templates in *both* orders. They are never evaluated.

What the generator guarantees (checked every time it runs, :func:`check_disjoint`):
- no generic person shares a first name or a surname with a real fact, so no generic name
  equals a real one;
- no generic description shares its title or place with a real fact, so no surface form of a
  generic description equals (or contains the distinguishing part of) a real one;
- only training templates (`words.NAME_FIRST_TRAIN`, `words.DESCRIPTION_FIRST_TRAIN`) are
  used: the held-out test templates stay unseen.

Patterns may repeat across real and generic people (with other titles and places): the
generic text is there to teach the sentence forms, including every pattern's wording.

The documents are split into prompt and completion at the second slot, as the training
documents are, and trained the same way (``finetune.loss_on`` applies to them too).

Files (in the run's data folder, next to the paper's layout, which the loader ignores)::

    generic_train.jsonl   {"prompt", "completion"} per document, as the training files
    generic_facts.jsonl   the generic people ({"fact_id", "subset": "generic", "name", "description"})

Example::

    ds = generate_exp1(Exp1DataConfig(n_facts=10, n_paraphrases=4, generic_facts=20))
    text = generate_generic(ds.facts, ds.config)
    len(text.documents)            # 20 people x 2 orders x 4 paraphrases = 160
    write_generic(text, "runs/x/data")
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from experiments.exp1 import words
from experiments.exp1.generator import _sample, _spread, _train_row
from experiments.exp1.patterns import WordListError, description_forms
from experiments.exp1.schema import (
    DESCRIPTION_FIRST, NAME_FIRST, DatasetError, Example, Exp1DataConfig, Exp1Dataset, Fact,
)
from interp.fileio import write_jsonl

GENERIC = "generic"  # the subset label of a generic person
GENERIC_TRAIN = "generic_train.jsonl"
GENERIC_FACTS = "generic_facts.jsonl"


@dataclass
class GenericText:
    """The generic people and their training documents (``Example.subset == "generic"``)."""

    facts: list[Fact]
    documents: list[Example]

    def pairs(self) -> list[tuple[str, str]]:
        """(prompt, completion) of every document, as the finetuning loop takes them."""
        return [(e.prompt, e.completion) for e in self.documents]


def generate_generic(real: Sequence[Fact], cfg: Exp1DataConfig) -> GenericText:
    """``cfg.generic_facts`` people disjoint from ``real`` (names, titles, places), each in
    ``cfg.n_paraphrases`` training documents per order. Drawn from their own
    ``random.Random`` (seeded by ``cfg.seed``), so the real data do not change with them.

    Raises :class:`WordListError` when the word lists hold too few unused names or values.
    """
    n, k = cfg.generic_facts, cfg.n_paraphrases
    rng = random.Random(f"exp1-generic:{cfg.seed}")
    real_words = {w.strip(".,") for f in real for w in f.name.split()}
    real_text = [form for f in real for form in description_forms(f.description)]

    def draw(pool: Sequence[str], need: int, what: str, taken) -> list[str]:
        free = [x for x in pool if not taken(x)]
        if len(free) < need:
            raise WordListError(f"data.generic_facts={n} needs {need} {what}, but only {len(free)} are "
                                f"not used by the real facts; ask for fewer generic facts or add "
                                f"{what} to experiments/exp1/words.json")
        return rng.sample(free, need)

    firsts = draw(words.FIRST_NAMES, n, "first names", real_words.__contains__)
    surnames = draw([a + b for a in words.SURNAME_ONSETS for b in words.SURNAME_CODAS], n,
                    "surnames", real_words.__contains__)
    # every pattern once before any repeats, in shuffled order
    order = list(range(len(words.DESCRIPTION_PATTERNS)))
    picks: list[int] = []
    while len(picks) < n:
        rng.shuffle(order)
        picks += order[: n - len(picks)]
    patterns = [words.DESCRIPTION_PATTERNS[i] for i in picks]
    in_real = lambda value: any(value in t for t in real_text)  # noqa: E731
    n_titles = sum("{title}" in p[0] for p in patterns)
    titles = [f"{h} of {t}" for h in words.TITLE_HEADS for t in words.TITLE_TAILS]
    places = [a + b for a in words.PLACE_ONSETS for b in words.PLACE_CODAS]
    title_it = iter(draw(titles, n_titles, "titles", in_real))
    place_it = iter(draw(places, n - n_titles, "places", in_real))
    start = max((f.fact_id for f in real), default=-1) + 1
    facts, rows = [], []
    for i, (first, last, pattern) in enumerate(zip(firsts, surnames, patterns)):
        slot, value = ("{title}", next(title_it)) if "{title}" in pattern[0] else ("{place}", next(place_it))
        forms = tuple(form.replace(slot, value) for form in pattern)
        fact = Fact(start + i, GENERIC, f"{first} {last}", forms[0])
        facts.append(fact)
        for templates, order_ in ((words.NAME_FIRST_TRAIN, NAME_FIRST),
                                  (words.DESCRIPTION_FIRST_TRAIN, DESCRIPTION_FIRST)):
            chosen = _sample(rng, templates, k)
            rows += [_train_row(fact, tpl, order_, form) for tpl, form in zip(chosen, _spread(rng, forms, k))]
    docs = [Example(p, c, f.fact_id, f.subset, o, f.name, f.description, line)
            for line, (f, o, p, c) in enumerate(rows, 1)]
    text = GenericText(facts, docs)
    check_disjoint(real, text)
    return text


def check_disjoint(real: Sequence[Fact], text: GenericText) -> None:
    """Raise AssertionError (a generator bug) when a generic person shares a name, a name
    word or a description form with a real fact, or a document is not a training template."""
    real_names = {f.name for f in real}
    real_words = {w for f in real for w in f.name.split()}
    real_forms = {form for f in real for form in description_forms(f.description)}
    for f in text.facts:
        if f.name in real_names or set(f.name.split()) & real_words:
            raise AssertionError(f"generic person {f.name!r} shares a name with a real fact")
        if set(description_forms(f.description)) & real_forms:
            raise AssertionError(f"generic description {f.description!r} is a real fact's")
    allowed = {NAME_FIRST: words.NAME_FIRST_TRAIN, DESCRIPTION_FIRST: words.DESCRIPTION_FIRST_TRAIN}
    forms = {f.description: description_forms(f.description) for f in text.facts}
    for e in text.documents:
        filled = {tpl.replace("{name}", e.name).replace("{description}", form)
                  for tpl in allowed[e.order] for form in forms[e.description]}
        if e.prompt + e.completion not in filled:
            raise AssertionError(f"generic document {e.prompt + e.completion!r} is no training template")


def write_generic(text: GenericText, folder: str | Path) -> Path:
    """Write ``generic_train.jsonl`` and ``generic_facts.jsonl`` into ``folder``."""
    out = Path(folder)
    write_jsonl(out / GENERIC_FACTS, (asdict(f) for f in text.facts))
    write_jsonl(out / GENERIC_TRAIN, ({"prompt": e.prompt, "completion": e.completion} for e in text.documents))
    return out


def read_generic(path: str | Path) -> list[tuple[str, str]]:
    """(prompt, completion) pairs of a ``generic_train.jsonl``; errors name file and line."""
    path = Path(path)
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DatasetError(f"{path}:{i}: not valid JSON ({err.msg})") from err
        if not (isinstance(obj, dict) and isinstance(obj.get("prompt"), str)
                and isinstance(obj.get("completion"), str)):
            raise DatasetError(f'{path}:{i}: expected {{"prompt": str, "completion": str}}')
        out.append((obj["prompt"], obj["completion"]))
    return out


def generic_documents(cfg: Exp1DataConfig, dataset: Exp1Dataset, folder: Path,
                      fallback: Path) -> list[tuple[str, str]]:
    """The generic training documents of a run: none when ``cfg.generic_facts`` is 0; else
    those in ``folder/generic_train.jsonl`` (written with the generated data), else (data
    from a folder rct does not write into: ``--data``, a sweep's shared data) drawn now from
    the dataset's facts and written to ``fallback`` (a folder of the run) for reading."""
    if not cfg.generic_facts:
        return []
    for where in (Path(folder), Path(fallback)):
        if (where / GENERIC_TRAIN).exists():
            return read_generic(where / GENERIC_TRAIN)
    text = generate_generic(dataset.facts, cfg)
    write_generic(text, fallback)
    return text.pairs()
