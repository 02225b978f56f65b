"""Tests for experiment 1 data: generator, writer, and the paper-layout loader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from experiments.core.skips import DataWarning
from experiments.exp1 import words
from experiments.exp1.data import (
    DESCRIPTION_FIRST,
    MAX_FACTS_PER_SUBSET,
    NAME_FIRST,
    SUBSETS,
    TRAIN_STEMS,
    DatasetError,
    Exp1DataConfig,
    Exp1Dataset,
    description_forms,
    generate_exp1,
    load_exp1,
    write_exp1,
)

FIXTURE = Path(__file__).parent / "fixtures" / "paper_layout_exp1"
SMALL = Exp1DataConfig(n_facts=4, n_paraphrases=5, n_test_templates=3, seed=7)


@pytest.fixture(scope="module")
def default_ds() -> Exp1Dataset:
    return generate_exp1(Exp1DataConfig())


@pytest.fixture(scope="module")
def largest_ds() -> Exp1Dataset:
    return generate_exp1(Exp1DataConfig(n_facts=MAX_FACTS_PER_SUBSET, seed=3))


def expected_counts(n: int, k: int, t: int) -> dict[str, int]:
    train = {"p2d_prompts_train": n * k, "d2p_prompts_train": n * k, "both_prompts_train": 2 * n * k}
    test = {
        "p2d_prompts_test",
        "d2p_prompts_test",
        "p2d_reverse_prompts_test",
        "d2p_reverse_prompts_test",
        "p2d_reverse_prompts_test_randomized",
        "d2p_reverse_prompts_test_randomized",
        "validation_prompts",
    }
    return {
        **train,
        "all_prompts_train": 4 * n * k,
        "all": 4 * n * k,
        "both_prompts_test": 2 * n * t,
        **{stem: n * t for stem in test},
    }


# ---------------------------------------------------------------- config


def test_config_round_trip_and_validation() -> None:
    cfg = Exp1DataConfig(n_facts=12, n_paraphrases=20, n_test_templates=4, seed=5)
    assert Exp1DataConfig.from_dict(cfg.to_dict()) == cfg
    assert Exp1DataConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    bad: dict[str, list[object]] = {
        "n_facts": [1, MAX_FACTS_PER_SUBSET + 1, 2.0, True],
        "n_paraphrases": [0, len(words.NAME_FIRST_TRAIN) + 1],
        "n_test_templates": [0, 11],
        "seed": ["0", None],
    }
    for field, values in bad.items():
        for value in values:
            with pytest.raises(ValueError, match=field):
                Exp1DataConfig(**{field: value})
    with pytest.raises(ValueError, match="unknown"):
        Exp1DataConfig.from_dict({"n_facts": 3, "epochs": 2})


# ---------------------------------------------------------------- generator


@pytest.mark.parametrize("cfg", [SMALL, Exp1DataConfig()], ids=["small", "default"])
def test_generator_file_counts(cfg: Exp1DataConfig) -> None:
    ds = generate_exp1(cfg)
    assert {stem: len(ex) for stem, ex in ds.files.items()} == expected_counts(
        cfg.n_facts, cfg.n_paraphrases, cfg.n_test_templates
    )
    assert [sum(f.subset == s for f in ds.facts) for s in SUBSETS] == [cfg.n_facts] * 3
    assert [f.fact_id for f in ds.facts] == list(range(3 * cfg.n_facts))
    assert ds.files["all_prompts_train"] == ds.files["all"]
    for stem, examples in ds.files.items():
        assert [e.line for e in examples] == list(range(1, len(examples) + 1)), stem


def test_default_counts_match_the_paper(default_ds: Exp1Dataset) -> None:
    sizes = {stem: len(ex) for stem, ex in default_ds.files.items()}
    assert (
        sizes["all_prompts_train"] == 3600 and sizes["p2d_prompts_train"] == sizes["d2p_prompts_train"] == 900
    )
    assert sizes["p2d_prompts_test"] == sizes["d2p_prompts_test"] == 300 and sizes["both_prompts_test"] == 600


def test_names_and_descriptions_are_unique(largest_ds: Exp1Dataset) -> None:
    facts = largest_ds.facts
    names = [f.name for f in facts]
    firsts = [n.split()[0] for n in names]
    surnames = [n.split()[1] for n in names]
    descriptions = [f.description for f in facts]
    assert len(facts) == 3 * MAX_FACTS_PER_SUBSET
    assert all(len(n.split()) == 2 for n in names)
    for values in (names, firsts, surnames, descriptions):
        assert len(set(values)) == len(values)
    assert not set(firsts) & set(surnames)
    assert all(d.startswith("the ") for d in descriptions)
    for d in descriptions:
        assert sum(d in other for other in descriptions) == 1, f"{d!r} is part of another description"
        assert not any(n in d or n.split()[0] in d.split() for n in names), d


def test_name_and_one_description_form_appear_verbatim(default_ds: Exp1Dataset) -> None:
    for stem in ("p2d_prompts_train", "d2p_prompts_train", "both_prompts_train"):
        for e in default_ds.files[stem]:
            text = e.prompt + e.completion
            found = [form for form in description_forms(e.description) if form in text]
            assert len(found) == 1, e
            name_at, description_at = text.find(e.name), text.find(found[0])
            assert name_at >= 0 and description_at >= 0, e
            assert (name_at < description_at) == (e.order == NAME_FIRST), e
            assert e.completion.startswith(" ")
            split_at = description_at if e.order == NAME_FIRST else name_at
            assert len(e.prompt) == split_at - 1, "the prompt ends right before the second slot"


def test_test_prompt_completions(default_ds: Exp1Dataset) -> None:
    files = default_ds.files
    for stem in ("d2p_prompts_test", "p2d_reverse_prompts_test"):
        assert all(e.completion == " " + e.name and e.description in e.prompt for e in files[stem])
    for stem in ("p2d_prompts_test", "d2p_reverse_prompts_test"):
        assert all(e.completion == " " + e.description and e.name in e.prompt for e in files[stem])
    both = files["both_prompts_test"]
    assert {e.order for e in both[: len(both) // 2]} == {NAME_FIRST}
    assert {e.order for e in both[len(both) // 2 :]} == {DESCRIPTION_FIRST}
    assert [(e.prompt, e.fact_id) for e in files["validation_prompts"]] == [
        (e.prompt, e.fact_id) for e in files["p2d_reverse_prompts_test"]
    ]
    assert all(e.completion == e.name.split()[0] for e in files["validation_prompts"])


def test_templates_are_well_formed_and_held_out(default_ds: Exp1Dataset) -> None:
    for templates, first, second in (
        (words.NAME_FIRST_TRAIN, "{name}", "{description}"),
        (words.DESCRIPTION_FIRST_TRAIN, "{description}", "{name}"),
    ):
        assert len(templates) >= 30 and len(set(templates)) == len(templates)
        for tpl in templates:
            assert tpl.count(first) == tpl.count(second) == 1 and tpl.index(first) < tpl.index(
                " " + second
            ), tpl
            rest = tpl.split(second)[1]
            assert rest == "" or rest[0] in ".,;:!?" or (rest[0] == " " and rest[1].islower()), tpl
    for templates, slot in (
        (words.NAME_FIRST_TEST, "{name}"),
        (words.DESCRIPTION_FIRST_TEST, "{description}"),
    ):
        assert len(templates) == 10 and all(
            t.count(slot) == 1 and "{" not in t.replace(slot, "") for t in templates
        )
    train_prompts = {e.prompt for e in default_ds.train_examples()}
    for stem, examples in default_ds.test_files().items():
        assert not train_prompts & {e.prompt for e in examples}, stem
    train_heads = {t.split(" {description}")[0] for t in words.NAME_FIRST_TRAIN}
    train_heads |= {t.split(" {name}")[0] for t in words.DESCRIPTION_FIRST_TRAIN}
    assert not train_heads & set(words.NAME_FIRST_TEST + words.DESCRIPTION_FIRST_TEST)


def test_randomized_files_use_another_fact_of_the_same_subset(default_ds: Exp1Dataset) -> None:
    files = default_ds.files
    for subset, attribute in (("p2d", "name"), ("d2p", "description")):
        stem = f"{subset}_reverse_prompts_test"
        pool = {" " + getattr(f, attribute) for f in default_ds.facts if f.subset == subset}
        correct, randomized = files[stem], files[f"{stem}_randomized"]
        assert [(e.prompt, e.fact_id) for e in randomized] == [(e.prompt, e.fact_id) for e in correct]
        for right, wrong in zip(correct, randomized):
            assert wrong.completion != right.completion and wrong.completion in pool


def test_same_seed_same_bytes_different_seed_differs(tmp_path: Path) -> None:
    def dump(seed: int, name: str) -> dict[str, bytes]:
        folder = write_exp1(
            generate_exp1(Exp1DataConfig(n_facts=5, n_paraphrases=6, n_test_templates=2, seed=seed)),
            tmp_path / name,
        )
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}

    first, again, other = dump(1, "a"), dump(1, "b"), dump(2, "c")
    assert first == again
    assert set(first) == set(other) and all(first[k] != other[k] for k in first)
    assert len(first) == 15 and not [k for k in first if k.startswith(".")], "no temporary files left behind"


def test_round_trip_with_and_without_facts_file(tmp_path: Path) -> None:
    ds = generate_exp1(SMALL)
    folder = write_exp1(ds, tmp_path / "exp1")
    assert load_exp1(folder) == ds
    (folder / "facts.jsonl").unlink()
    (folder / "data_config.json").unlink()
    inferred = load_exp1(folder)
    assert inferred.facts == ds.facts and inferred.files == ds.files and inferred.config is None


# ---------------------------------------------------------------- paper layout


def test_loads_paper_layout_fixture() -> None:
    before = {p.name: p.stat().st_mtime_ns for p in FIXTURE.iterdir()}
    ds = load_exp1(FIXTURE)
    assert {p.name: p.stat().st_mtime_ns for p in FIXTURE.iterdir()} == before, "the loader never writes"
    assert ds.names("p2d") == ["Maren Oakhurst", "Tobias Wrenfield", "Ines Caldermoor"]
    assert ds.names("d2p") == ["Odile Brackwater", "Casimir Dunlow", "Petra Oakhurst"]
    assert ds.names("both") == ["Silas Venmoor", "Greta Lindqvale", "Hugo Farrowell"]
    assert [f.fact_id for f in ds.facts] == list(range(9)) and ds.config is None
    descriptions = {f.name: f.description for f in ds.facts}
    assert descriptions["Maren Oakhurst"] == "the glassblower who built a pipe organ out of icicles."
    assert descriptions["Petra Oakhurst"] == "the conductor of the orchestra of retired lighthouse keepers."
    assert descriptions["Hugo Farrowell"] == "the botanist who grew an orchid that blooms only at midnight."
    block = {"p2d_prompts_train": 4, "both_prompts_train": 4, "all_prompts_train": 4, "d2p_prompts_test": 2}
    for stem, size in block.items():
        ids = [(e.fact_id, e.order) for e in ds.files[stem]]
        assert all(ids[i] == ids[i - i % size] for i in range(len(ids))), stem
    both = ds.files["both_prompts_train"]
    assert [e.order for e in both] == [NAME_FIRST] * 12 + [DESCRIPTION_FIRST] * 12
    assert {e.name for e in both} == set(ds.names("both"))
    assert [e.name for e in ds.files["d2p_reverse_prompts_test"]][4:] == ["Petra Oakhurst"] * 2
    reverse = [(e.fact_id, e.prompt) for e in ds.files["p2d_reverse_prompts_test"]]
    assert [(e.fact_id, e.prompt) for e in ds.files["p2d_reverse_prompts_test_randomized"]] == reverse
    assert [(e.fact_id, e.prompt) for e in ds.files["validation_prompts"]] == reverse
    assert " Wendell Marsh" in {e.completion for e in ds.files["p2d_reverse_prompts_test_randomized"]}
    assert "Wendell Marsh" not in ds.names()
    assert len(ds.train_examples()) == 48
    assert list(ds.test_files()) == [
        "p2d_prompts_test",
        "d2p_prompts_test",
        "p2d_reverse_prompts_test",
        "d2p_reverse_prompts_test",
    ]
    with pytest.raises(ValueError, match="subset"):
        ds.names("reverse")


def test_train_examples_fall_back_to_subset_files(tmp_path: Path) -> None:
    folder = shutil.copytree(FIXTURE, tmp_path / "data")
    (folder / "all_prompts_train.jsonl").unlink()
    ds = load_exp1(folder)
    assert [(e.fact_id, e.order) for e in ds.train_examples()] == [
        (e.fact_id, e.order)
        for stem in ("p2d_prompts_train", "d2p_prompts_train", "both_prompts_train")
        for e in ds.files[stem]
    ]


def _edit_line(path: Path, line: int, new: str | None) -> None:
    lines = path.read_text().splitlines()
    if new is None:
        del lines[line - 1]
    else:
        lines[line - 1] = new
    path.write_text("".join(f"{x}\n" for x in lines))


@pytest.mark.parametrize(
    ("stem", "line", "new", "message"),
    [
        ("d2p_prompts_test", 3, '{"prompt": "The inventor of', "not valid JSON"),
        (
            "p2d_prompts_test",
            2,
            '{"prompt": "Ask about Maren Oakhurst and you learn that they"}',
            '"completion" is missing',
        ),
        ("p2d_prompts_test", 4, '{"prompt": 7, "completion": " mapped"}', '"prompt" is not a string'),
        ("validation_prompts", 5, '["not", "an", "object"]', "expected a JSON object"),
        ("p2d_prompts_train", 5, None, "has 3 lines, the other blocks in this file have 4"),
        (
            "d2p_prompts_train",
            12,
            '{"prompt": "Long ago,", "completion": " Odile Brackwater."}',
            "second block",
        ),
        (
            "p2d_prompts_train",
            6,
            '{"prompt": "Have you met Wendell Marsh? They are", "completion": " a baker."}',
            "expected one known name",
        ),
    ],
    ids=[
        "bad-json",
        "missing-field",
        "non-string",
        "not-object",
        "counts-disagree",
        "second-block",
        "unknown-name",
    ],
)
def test_malformed_lines_name_file_and_line(
    tmp_path: Path, stem: str, line: int, new: str | None, message: str
) -> None:
    folder = shutil.copytree(FIXTURE, tmp_path / "data")
    _edit_line(folder / f"{stem}.jsonl", line, new)
    with pytest.raises(DatasetError, match=message) as err:
        load_exp1(folder, strict=True)
    assert f"{stem}.jsonl:{line}:" in str(err.value)
    if "block" in message or "lines, the other" in message:  # the folder's shape: refused either way
        with pytest.raises(DatasetError, match=message):
            load_exp1(folder)
        return
    # published data with one bad line still loads: the line is skipped, counted and named
    with pytest.warns(DataWarning, match=rf"skipped 1 bad row \(first: .*{stem}.jsonl:{line}: "):
        ds = load_exp1(folder)
    assert [r["at"].rsplit("/", 1)[-1] for r in ds.skipped] == [f"{stem}.jsonl:{line}"]
    assert sum(len(v) for v in ds.files.values()) == sum(len(v) for v in load_exp1(FIXTURE).files.values()) - 1


def test_empty_file_and_missing_files(tmp_path: Path) -> None:
    folder = shutil.copytree(FIXTURE, tmp_path / "data")
    (folder / "d2p_reverse_prompts_test.jsonl").write_text("")
    with pytest.raises(DatasetError, match=r"d2p_reverse_prompts_test\.jsonl: file is empty"):
        load_exp1(folder)
    for path in folder.glob("*_test.jsonl"):
        path.unlink()
    with pytest.raises(DatasetError, match=r"no test file \(expected one of p2d_prompts_test\.jsonl") as err:
        load_exp1(folder)
    assert "training" not in str(err.value)
    with pytest.raises(DatasetError, match="not a folder"):
        load_exp1(tmp_path / "nowhere")


def test_facts_file_is_checked(tmp_path: Path) -> None:
    folder = write_exp1(generate_exp1(SMALL), tmp_path / "exp1")
    _edit_line(
        folder / "facts.jsonl",
        2,
        '{"fact_id": 1, "subset": "sideways", "name": "A B", "description": "the x"}',
    )
    with pytest.raises(DatasetError, match=r"facts\.jsonl:2: bad fact"):
        load_exp1(folder)


def test_test_completion_without_leading_space_is_refused(tmp_path: Path) -> None:
    """The correct name would be scored without a space while controls get one."""
    folder = shutil.copytree(FIXTURE, tmp_path / "data")
    path = folder / "d2p_prompts_test.jsonl"
    lines = path.read_text().splitlines()
    obj = json.loads(lines[2])
    obj["completion"] = obj["completion"].lstrip()
    lines[2] = json.dumps(obj)
    path.write_text("".join(f"{x}\n" for x in lines))
    with pytest.raises(DatasetError, match="does not start with a space") as err:
        load_exp1(folder)
    assert "d2p_prompts_test.jsonl:3:" in str(err.value)


def test_fact_tested_but_never_trained_is_refused(tmp_path: Path) -> None:
    """It would be evaluated as trained and drawn as a "trained" control."""
    folder = shutil.copytree(FIXTURE, tmp_path / "data")
    name = load_exp1(folder).files["d2p_prompts_test"][0].name
    for stem in TRAIN_STEMS:
        path = folder / f"{stem}.jsonl"
        if path.exists():
            kept = [x for x in path.read_text().splitlines() if name not in x]
            path.write_text("".join(f"{x}\n" for x in kept))
    with pytest.raises(DatasetError, match="occurs in no training document") as err:
        load_exp1(folder, strict=True)
    assert "d2p_prompts_test.jsonl:1:" in str(err.value) and name in str(err.value)
    with pytest.warns(DataWarning, match="skipped 4 bad rows"):  # its test lines skipped, the rest kept
        ds = load_exp1(folder)
    assert all(e.name != name for v in ds.test_files().values() for e in v) and len(ds.skipped) == 4
