"""Experiment 1 generator: draws fictitious people and their descriptions from
`experiments.exp1.words` and writes every file of the paper's published layout.

    ds = generate_exp1(Exp1DataConfig(n_facts=30, n_paraphrases=30, seed=0))
    folder = write_exp1(ds, "runs/data/exp1")  # p2d_prompts_train.jsonl, ..., facts.jsonl

What the generator guarantees (checked when it runs, :func:`check_patterns` and
:func:`check_held_out_endings` of :mod:`experiments.exp1.patterns`):
- one description pattern per fact: no two facts share a `words.DESCRIPTION_PATTERNS` entry,
  so asking for more facts than there are patterns is an error (`MAX_FACTS_PER_SUBSET`);
- descriptions reworded across paraphrases: each pattern has three surface forms, spread
  evenly (in shuffled order) over a fact's training documents of each order, the canonical
  one (`Fact.description`) among them; the name is never reworded. Every test file uses the
  canonical form, in prompts and completions (:func:`~experiments.exp1.patterns.description_forms`
  lists the others);
- held-out endings: every test template ends in `ENDING_WORDS` words that end no training
  template's text before a slot, so no held-out prompt ends in a phrase that preceded the
  answer in training.

The layout's conventions are in :mod:`experiments.exp1.schema`. Everything is drawn from one
``random.Random(cfg.seed)``, in a fixed order, so a seed gives the same files every time.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from experiments.exp1 import words
from experiments.exp1.patterns import WordListError, check_held_out_endings, check_patterns
from experiments.exp1.schema import (
    DESCRIPTION_FIRST, NAME_FIRST, SUBSETS, Example, Exp1DataConfig, Exp1Dataset, Fact,
)
from interp.fileio import write_json, write_jsonl

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
