"""The from-scratch preset (`rct exp1 --preset scratch`) and its generic text
(`experiments.exp1.generic`): the preset validates, the generic people are disjoint from the
real facts and written only with training templates, and a scaled-down run goes end to end."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from experiments import exp1
from experiments.core.config import ConfigError, build
from experiments.exp1 import words
from experiments.exp1.data import (
    DESCRIPTION_FIRST, MAX_GENERIC_FACTS, NAME_FIRST, Exp1DataConfig, Fact, description_forms, description_slot,
    generate_exp1, load_exp1,
)
from experiments.exp1.generic import (
    GENERIC, GENERIC_FACTS, GENERIC_TRAIN, GenericText, check_disjoint, generate_generic,
    generic_documents, read_generic,
)

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "paper_layout_exp1"


@pytest.fixture(scope="module")
def data() -> tuple:
    cfg = Exp1DataConfig(n_facts=30, n_paraphrases=6, n_test_templates=2, seed=3, generic_facts=60)
    ds = generate_exp1(cfg)
    return ds, generate_generic(ds.facts, cfg)


# ---------------------------------------------------------------- the preset


def test_scratch_preset_loads_and_validates() -> None:
    cfg = exp1.preset("scratch")
    exp1.validate(cfg)  # model spec, device, precision
    assert cfg.preset == "scratch" and cfg.model.startswith("tiny:")
    assert cfg.data.generic_facts > 0 and cfg.data_dir is None
    assert cfg.finetune.precision == "fp32" and cfg.model_options.device == "cpu"
    assert type(cfg).from_dict(cfg.to_dict()) == cfg
    text = (ROOT / "experiments/presets/exp1/scratch.yaml").read_text()
    assert text.startswith("#") and "finetune.seed" in text  # the header says how to vary seeds


def test_other_presets_add_no_generic_text() -> None:
    for name in ("smoke", "cpu", "paper"):
        assert exp1.preset(name).data.generic_facts == 0


@pytest.mark.parametrize("value", [-1, MAX_GENERIC_FACTS + 1, True, 1.5])
def test_generic_facts_out_of_range_is_a_config_error(value) -> None:
    with pytest.raises(ConfigError, match="generic_facts"):
        build(exp1.Exp1Config, exp1.preset("smoke"), [f"data.generic_facts={json.dumps(value)}"])


# ---------------------------------------------------------------- the generic text


def test_generic_people_are_disjoint_from_the_real_facts(data) -> None:
    ds, text = data
    real_words = {w for f in ds.facts for w in f.name.split()}
    real_forms = {form for f in ds.facts for form in description_forms(f.description)}
    assert len(text.facts) == 60 and {f.subset for f in text.facts} == {GENERIC}
    assert len({f.name for f in text.facts}) == 60
    assert {f.fact_id for f in text.facts}.isdisjoint(f.fact_id for f in ds.facts)
    for f in text.facts:
        assert not set(f.name.split()) & real_words, f.name
        forms = description_forms(f.description)
        assert len(forms) == 3 and not set(forms) & real_forms, f.description
        # the distinguishing part (title or place) is in no real description
        value = description_slot(f.description) or ""
        assert value and not any(value in r for r in real_forms), value


def test_generic_documents_use_only_training_templates_in_both_orders(data) -> None:
    ds, text = data
    assert not set(words.NAME_FIRST_TEST + words.DESCRIPTION_FIRST_TEST) \
        & set(words.NAME_FIRST_TRAIN + words.DESCRIPTION_FIRST_TRAIN)
    allowed = {NAME_FIRST: words.NAME_FIRST_TRAIN, DESCRIPTION_FIRST: words.DESCRIPTION_FIRST_TRAIN}
    for e in text.documents:
        filled = {t.replace("{name}", e.name).replace("{description}", form)
                  for t in allowed[e.order] for form in description_forms(e.description)}
        assert e.prompt + e.completion in filled
        assert e.completion.startswith(" ")
    per = {}
    for e in text.documents:
        per.setdefault((e.fact_id, e.order), []).append(e)
    assert len(per) == 2 * 60 and all(len(v) == 6 for v in per.values())
    # each person's documents of one order use 6 distinct templates
    assert all(len({d.prompt for d in v}) == 6 for v in per.values())


def test_generic_text_leaves_the_real_data_unchanged() -> None:
    base = Exp1DataConfig(n_facts=5, n_paraphrases=3, n_test_templates=2, seed=1)
    plain = generate_exp1(base)
    with_generic = generate_exp1(dataclasses.replace(base, generic_facts=10))
    assert plain.facts == with_generic.facts and plain.files == with_generic.files


def test_generic_text_is_seeded() -> None:
    cfg = Exp1DataConfig(n_facts=5, n_paraphrases=3, n_test_templates=2, seed=1, generic_facts=10)
    ds = generate_exp1(cfg)
    assert generate_generic(ds.facts, cfg) == generate_generic(ds.facts, cfg)
    other = generate_generic(ds.facts, dataclasses.replace(cfg, seed=2))
    assert other.facts != generate_generic(ds.facts, cfg).facts


def test_check_disjoint_catches_a_shared_name_or_description(data) -> None:
    ds, text = data
    real = ds.facts[0]
    clash = Fact(999, GENERIC, real.name, text.facts[0].description)
    with pytest.raises(AssertionError, match="shares a name"):
        check_disjoint(ds.facts, GenericText([clash], []))
    clash = Fact(999, GENERIC, text.facts[0].name, real.description)
    with pytest.raises(AssertionError, match="real fact's"):
        check_disjoint(ds.facts, GenericText([clash], []))


def test_generic_text_for_a_paper_layout_folder(tmp_path) -> None:
    """Data from a folder rct does not write into (--data, a sweep's shared data): the generic
    text is drawn from its facts and written into the run folder."""
    ds = load_exp1(FIXTURE)
    cfg = Exp1DataConfig(n_paraphrases=2, generic_facts=3)
    docs = generic_documents(cfg, ds, FIXTURE, tmp_path / "generic")
    assert len(docs) == 3 * 2 * 2
    assert read_generic(tmp_path / "generic" / GENERIC_TRAIN) == docs
    assert not (FIXTURE / GENERIC_TRAIN).exists()
    assert generic_documents(dataclasses.replace(cfg, generic_facts=0), ds, FIXTURE, tmp_path) == []


# ---------------------------------------------------------------- end to end


def test_scaled_down_scratch_preset_runs_end_to_end(tmp_path) -> None:
    cfg = exp1.preset("scratch")
    cfg = dataclasses.replace(
        cfg, model="tiny:n_layers=1,d_model=32,n_heads=2,n_kv_heads=1,d_mlp=64",
        data=dataclasses.replace(cfg.data, n_facts=2, n_paraphrases=2, n_test_templates=1, generic_facts=2),
        finetune=dataclasses.replace(cfg.finetune, epochs=1, warmup_steps=1))
    run = tmp_path / "scratch"
    table = exp1.run_all(cfg, run, progress=False)
    assert "Exact match" in table
    generic = [json.loads(x) for x in (run / "data" / GENERIC_TRAIN).read_text().splitlines()]
    people = [json.loads(x) for x in (run / "data" / GENERIC_FACTS).read_text().splitlines()]
    assert len(generic) == 2 * 2 * 2 and len(people) == 2
    man = json.loads((run / "manifest.json").read_text())
    real = len(exp1.load_dataset(cfg, run).train_examples())
    assert man["stages"]["finetune"]["generic_documents"] == 8
    assert man["stages"]["finetune"]["documents"] >= real + 8
    names = {f.name for f in load_exp1(run / "data").facts}
    assert names.isdisjoint(p["name"] for p in people)
    records = (run / "eval" / "finetuned" / "records.jsonl").read_text()
    assert not any(p["name"] in records for p in people)  # never evaluated


def test_whole_sequence_scratch_preset_takes_the_loss_on_every_token(data) -> None:
    """`scratch-seq`: the same model and data as `scratch`, the loss on every token after BOS,
    so a name-first document makes both the name and the description targets."""
    from interp import load_model
    from interp.tokens import encode_documents

    seq, comp = exp1.preset("scratch-seq"), exp1.preset("scratch")
    exp1.validate(seq)
    assert seq.finetune.loss_on == "sequence" and seq.model == comp.model and seq.data == comp.data
    lm = load_model(seq.model)
    docs = [(e.prompt, e.completion) for e in data[0].train_examples()[:40]]
    for (ids, labels), (_, comp_labels) in zip(encode_documents(lm, docs, seq.finetune.loss_on),
                                               encode_documents(lm, docs, comp.finetune.loss_on)):
        assert labels[1:] == ids[1:] and labels[0] == -100  # every token after BOS is a target
        assert comp_labels.count(-100) > 1  # the completion-only preset masks the prompt
    text = (ROOT / "experiments/presets/exp1/scratch-seq.yaml").read_text()
    assert "whole document" in text.splitlines()[0]
