"""The experiment 1 generator's guarantees: one description pattern per fact, descriptions
reworded across paraphrases, held-out templates whose endings no training template has."""

from __future__ import annotations

from collections import Counter

import pytest

from experiments.core.config import ConfigError, preset_names
from experiments.exp1 import preset, words
from experiments.exp1.data import (
    DESCRIPTION_FIRST,
    MAX_FACTS_PER_SUBSET,
    NAME_FIRST,
    SUBSETS,
    Exp1DataConfig,
    Exp1Dataset,
    WordListError,
    check_held_out_endings,
    check_patterns,
    description_forms,
    generate_exp1,
    template_ending,
    training_endings,
)

TRAIN_TEMPLATES = words.NAME_FIRST_TRAIN + words.DESCRIPTION_FIRST_TRAIN
TEST_TEMPLATES = words.NAME_FIRST_TEST + words.DESCRIPTION_FIRST_TEST


@pytest.fixture(scope="module")
def largest() -> Exp1Dataset:
    return generate_exp1(Exp1DataConfig(n_facts=MAX_FACTS_PER_SUBSET, n_paraphrases=10, seed=11))


@pytest.fixture(scope="module")
def default() -> Exp1Dataset:
    return generate_exp1(Exp1DataConfig())


def pattern_of(description: str) -> int:
    """Index of the one pattern whose canonical form, filled, is ``description``."""
    hits = []
    for i, forms in enumerate(words.DESCRIPTION_PATTERNS):
        slot = "{title}" if "{title}" in forms[0] else "{place}"
        before, after = forms[0].split(slot)
        value = description[len(before): len(description) - len(after)]
        if value and forms[0].replace(slot, value) == description:
            hits.append(i)
    assert len(hits) == 1, (description, hits)
    return hits[0]


# ---------------------------------------------------------------- one pattern per fact


def test_patterns_are_enough_for_every_shipped_preset() -> None:
    n_patterns = len(words.DESCRIPTION_PATTERNS)
    assert MAX_FACTS_PER_SUBSET == n_patterns // 3 and n_patterns >= 90
    for name in preset_names("exp1"):
        cfg = preset(name).data
        assert len(SUBSETS) * cfg.n_facts <= n_patterns, name
        generate_exp1(cfg)  # no error


@pytest.mark.parametrize("which", ["largest", "default"])
def test_no_two_facts_share_a_pattern(which: str, request: pytest.FixtureRequest) -> None:
    ds: Exp1Dataset = request.getfixturevalue(which)
    patterns = [pattern_of(f.description) for f in ds.facts]
    assert len(patterns) == 3 * ds.config.n_facts
    assert len(set(patterns)) == len(patterns)
    # the head noun of each description (its second word) is different for every fact too
    heads = [f.description.split()[1] for f in ds.facts]
    assert len(set(heads)) == len(heads)


def test_too_many_facts_is_an_error_naming_the_numbers() -> None:
    n = MAX_FACTS_PER_SUBSET + 1
    with pytest.raises(ValueError) as err:
        Exp1DataConfig(n_facts=n)
    message = str(err.value)
    for number in (f"n_facts={n}", f"{3 * n} facts", f"{len(words.DESCRIPTION_PATTERNS)} description patterns",
                   f"n_facts <= {MAX_FACTS_PER_SUBSET}"):
        assert number in message, message
    with pytest.raises(ConfigError, match=f"{3 * n} facts"):  # a preset override says the same
        preset("cpu").override([f"data.n_facts={n}"])


def test_fewer_patterns_lower_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(words, "DESCRIPTION_PATTERNS", words.DESCRIPTION_PATTERNS[:10])
    with pytest.raises(ValueError, match=r"n_facts=4 asks for 12 facts .* 10 description patterns.*n_facts <= 3"):
        Exp1DataConfig(n_facts=4)
    ds = generate_exp1(Exp1DataConfig(n_facts=3, n_paraphrases=3, n_test_templates=1))
    used = {pattern_of(f.description) for f in ds.facts}
    assert len(used) == 9 and max(used) < 10


# ---------------------------------------------------------------- rewordings


def test_every_pattern_has_distinct_forms_sharing_the_slot_value() -> None:
    check_patterns(words.DESCRIPTION_PATTERNS)
    for forms in words.DESCRIPTION_PATTERNS:
        assert len(forms) == 3 and len(set(forms)) == 3
        filled = description_forms(forms[0].replace("{title}", "Bells of Tin").replace("{place}", "Nolreach"))
        assert len(filled) == 3 and len(set(filled)) == 3
        value = "Bells of Tin" if "{title}" in forms[0] else "Nolreach"
        assert all(value in f and f.startswith("the ") and "," not in f for f in filled)
        assert not any(a != b and a in b for a in filled for b in filled), "no form is part of another"


def test_rewordings_differ_across_a_facts_paraphrases_and_keep_the_name(default: Exp1Dataset) -> None:
    k = default.config.n_paraphrases
    docs: dict[tuple[int, str], list] = {}
    for e in default.train_examples():
        docs.setdefault((e.fact_id, e.order), []).append(e)
    assert len(docs) == 4 * default.config.n_facts  # p2d, d2p: one order each; both: two
    for (fact_id, order), examples in docs.items():
        forms = description_forms(examples[0].description)
        assert len(forms) == 3
        used = []
        for e in examples:
            text = e.prompt + e.completion
            assert e.name in text, "the name is never reworded"
            hits = [f for f in forms if f in text]
            assert len(hits) == 1, text
            used.append(hits[0])
        counts = Counter(used)
        assert set(counts) == set(forms), "every surface form is used"
        assert max(counts.values()) - min(counts.values()) <= 1 and sum(counts.values()) == k
        assert len(set(used)) > 1 and counts[forms[0]] >= 1, "the canonical form is among them"
        if order == NAME_FIRST:  # a verbatim paste would give one completion for every document
            assert len({e.completion.rstrip(".,;:!? ") for e in examples}) > 1


def test_every_test_file_uses_the_canonical_form(default: Exp1Dataset) -> None:
    for stem, examples in default.test_files().items():
        for e in examples:
            text = e.prompt + e.completion
            assert e.description in text and e.name in text, (stem, e)
            assert not [f for f in description_forms(e.description)[1:] if f in text], (stem, e)
    for stem in ("p2d_prompts_test", "d2p_reverse_prompts_test"):
        assert all(e.completion == " " + e.description for e in default.files[stem])


def test_description_forms_of_a_description_no_pattern_made() -> None:
    assert description_forms("the glassblower who built a pipe organ out of icicles.") == (
        "the glassblower who built a pipe organ out of icicles.",)
    canonical = 'the composer of the underwater opera "Tides of Glass"'
    assert description_forms(canonical) == (
        canonical, 'the person who composed the underwater opera "Tides of Glass"',
        'the one who wrote the music for "Tides of Glass" and staged it underwater')


@pytest.mark.parametrize(("forms", "message"), [
    (("the x of {title}",), "2 or more distinct"),
    (("the x of {title}", "the x of {title}"), "2 or more distinct"),
    (("the x of {title}", "a y of {title}"), "must start with 'the '"),
    (("the x of {title}", "the y of {place}"), "slot"),
    (("the x of {title} {title}", "the y of {title}"), "slot"),
])
def test_bad_patterns_are_refused(forms: tuple[str, ...], message: str) -> None:
    with pytest.raises(WordListError, match=message):
        check_patterns([forms])


def test_two_patterns_with_one_head_noun_are_refused() -> None:
    with pytest.raises(WordListError, match="head noun 'composer'"):
        check_patterns([("the composer of {title}", "the person who composed {title}"),
                        ("the composer who wrote {place}", "the person who wrote {place}")])


# ---------------------------------------------------------------- held-out endings


def test_template_ending() -> None:
    assert template_ending("Records show that {description} is named") == ("is", "named")
    assert template_ending("{name} is") == ("<slot>", "is")
    assert template_ending("Remind me who {name} is. Oh yes,") == ("oh", "yes")
    assert template_ending("Ask the guide about {name}'s claim to fame:") == ("to", "fame")


def test_held_out_endings_never_match_a_training_ending() -> None:
    seen = training_endings(TRAIN_TEMPLATES)
    assert ("is", "named") in seen and ("<slot>", "is") in seen  # the endings the old tests had
    assert len(seen) > 60
    for tpl in TEST_TEMPLATES:
        assert template_ending(tpl) not in seen, tpl
    check_held_out_endings(TRAIN_TEMPLATES, TEST_TEMPLATES)


def test_held_out_prompts_end_unlike_any_training_prompt(default: Exp1Dataset) -> None:
    """The same property on the generated text: the last two words of every held-out prompt
    never end a training document's prompt."""
    def ending(prompt: str) -> tuple[str, ...]:
        return template_ending(prompt.replace("{", "(").replace("}", ")"))
    train = {ending(e.prompt) for e in default.train_examples()}
    for stem, examples in default.test_files().items():
        clash = [e.prompt for e in examples if ending(e.prompt) in train]
        assert not clash, (stem, clash[:3])


def test_a_clashing_held_out_template_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = "The reference desk confirms that {description} is named"
    with pytest.raises(WordListError) as err:
        check_held_out_endings(TRAIN_TEMPLATES, (*TEST_TEMPLATES, bad))
    assert repr(bad) in str(err.value) and "'is named'" in str(err.value)
    assert "Records show that {description} is named {name}." in str(err.value)
    monkeypatch.setattr(words, "DESCRIPTION_FIRST_TEST", (*words.DESCRIPTION_FIRST_TEST[:9], bad))
    with pytest.raises(WordListError, match="held-out templates must end in 2 words"):
        generate_exp1(Exp1DataConfig(n_facts=2, n_paraphrases=2, n_test_templates=1))


def test_orders_of_training_documents_are_unchanged(default: Exp1Dataset) -> None:
    """Rewording leaves the layout alone: name-first completions start with a lowercase form,
    description-first ones with the name (the loader tells mixed files' orders apart by it)."""
    for e in default.train_examples():
        if e.order == NAME_FIRST:
            assert e.completion.startswith(" the ")
        else:
            assert e.order == DESCRIPTION_FIRST and e.completion.startswith(" " + e.name)
