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

This module is the one place to import them from; the work is done in:
- :mod:`experiments.exp1.schema`: the layout's files, subsets and orders and its conventions,
  the generator's settings (:class:`Exp1DataConfig`), and the types (:class:`Fact`,
  :class:`Example`, :class:`Exp1Dataset`, :class:`DatasetError`);
- :mod:`experiments.exp1.patterns`: description patterns and templates read back
  (:func:`description_forms`, :func:`description_slot`) and checked (:func:`check_patterns`,
  :func:`check_held_out_endings`, :class:`WordListError`);
- :mod:`experiments.exp1.generator`: :func:`generate_exp1` (its guarantees are listed there)
  and :func:`write_exp1`;
- :mod:`experiments.exp1.load`: :func:`load_exp1`, and how facts are inferred from a folder
  without ``facts.jsonl`` (the paper's).
"""

from __future__ import annotations

# (the underscored names: helpers that code outside the generator and the loader imported from here)
from experiments.exp1.generator import _sample, _spread, _train_row, generate_exp1, write_exp1  # noqa: F401
from experiments.exp1.load import _DESCRIPTION_SOURCES, _TRAILING_PUNCT, load_exp1  # noqa: F401
from experiments.exp1.patterns import (  # noqa: F401
    ENDING_WORDS, SLOTS, WordListError, check_held_out_endings, check_patterns, description_forms,
    description_slot, template_ending, training_endings,
)
from experiments.exp1.schema import (  # noqa: F401
    DESCRIPTION_FIRST, FILE_SPECS, MAX_FACTS_PER_SUBSET, MAX_GENERIC_FACTS, NAME_FIRST,
    REVERSE_TRAINING, SUBSETS, TEST_STEMS, TRAIN_STEMS, DatasetError, Example, Exp1DataConfig,
    Exp1Dataset, Fact,
)
