"""`rct mitigations`: named conditions x seeds on experiment 1, the Both cells, the report's
statistics over facts, and a run end to end on the smoke preset (tiny random model)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from analysis.stats import wilson_ci
from experiments import exp1
from experiments.cli import main as rct
from experiments.core.config import ConfigError
from experiments.core.rundir import RunDir, RunDirError
from experiments.exp1.data import DESCRIPTION_FIRST, NAME_FIRST, REVERSE_TRAINING, Exp1DataConfig, generate_exp1
from experiments.exp1.evaluate import CELLS, EvalConfig, cell_examples, exp1_items
from experiments.mitigations import MitigationConfig, collect, preset, run_mitigations, select
from experiments.mitigations.report import mitigations_figure, mitigations_markdown
from experiments.mitigations.summary import summarise
from experiments.sweeps import cells as sweep

CONDITIONS = ["none", "repeat", "paraphrases", "word", "entity", "segment", "token"]


# ------------------------------------------------------------------ config and cells


def test_presets_cells_and_overrides():
    for name in ("smoke", "mitigation"):
        cfg = preset(name)
        assert list(cfg.conditions) == CONDITIONS and cfg.seeds == [0]
        assert MitigationConfig.from_dict(cfg.to_dict()) == cfg
        assert "both_d2p_prompts_test" in cfg.base.eval.files
        assert cfg.base.eval.rank_names == (name == "smoke")  # the CPU preset skips the rank (time)
    scratch = preset("scratch")  # the from-scratch model: every reverse-training variant, 3 seeds
    assert scratch.base.model.startswith("tiny:") and scratch.base.data.generic_facts > 0
    assert scratch.seeds == [0, 1, 2] and scratch.shared_base
    assert {o.get("data.reverse_training", "none") for o in scratch.conditions.values()} == set(REVERSE_TRAINING)
    assert scratch.base == dataclasses.replace(exp1.preset("scratch"), preset="scratch")  # the exp1 preset
    cpu = preset("cpu")  # the CPU default of experiment 1 with entity and names reversal, 3 seeds
    assert cpu.base == exp1.preset("cpu") and cpu.seeds == [0, 1, 2]
    assert {k: o.get("data.reverse_training", "none") for k, o in cpu.conditions.items()} == {
        "none": "none", "entity": "entity", "names": "names"}
    cfg = select(preset("smoke"), ["none", "word", "paraphrases"], seeds=[0, 1])
    cells = cfg.cells()
    # seed by seed: every condition of seed 0 first, so an interrupted run holds whole seeds
    assert [c.name for c in cells] == ["none__seed-0", "word__seed-0", "paraphrases__seed-0",
                                       "none__seed-1", "word__seed-1", "paraphrases__seed-1"]
    assert cells[1].overrides == {"data.reverse_training": "word", "finetune.seed": 0}
    word1 = cfg.cell_config(cells[4])
    assert (word1.data.reverse_training, word1.finetune.seed, word1.data.n_paraphrases) == ("word", 1, 4)
    par = cfg.cell_config(cells[2])
    assert (par.data.reverse_training, par.data.n_paraphrases) == ("none", 8)
    assert cfg.cell_config(cells[0]).data_dir is None  # every cell generates its own data
    assert EvalConfig().files == tuple(CELLS)  # the default evaluation is the paper's four cells


@pytest.mark.parametrize("conditions, match", [
    ({"word": {"data.reverse_trainng": "word"}}, "condition 'word': data.reverse_trainng='word': unknown key"),
    ({"word": {"data.reverse_training": "words"}}, "condition 'word': .*must be one of"),
    ({"par": {"data.n_paraphrases": "many"}}, "condition 'par': data.n_paraphrases="),
    ({"s": {"finetune.seed": 3}}, "condition 's': set finetune.seed with the seeds"),
    ({"a__b": {}}, "condition name 'a__b'"),
    ({"w": "word"}, "condition 'w': expected a mapping"),
    ({}, "at least one condition"),
])
def test_bad_conditions_are_refused_by_name(conditions, match):
    with pytest.raises(ConfigError, match=match):
        MitigationConfig(preset("smoke").base, conditions)


def test_unknown_condition_and_generator_keys_on_an_existing_dataset(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown condition 'wrod'.*did you mean 'word'\?"):
        select(preset("smoke"), ["none", "wrod"])
    with pytest.raises(ConfigError, match="named twice"):
        select(preset("smoke"), ["none", "none"])
    with pytest.raises(ConfigError, match="repeated seeds"):
        select(preset("smoke"), seeds=[1, 1])
    base = exp1.preset("smoke").override([f"data_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="condition 'p': data.n_paraphrases has no effect on an existing dataset"):
        MitigationConfig(base, {"none": {}, "p": {"data.n_paraphrases": 8}})


def test_base_is_shared_only_when_the_test_files_match():
    smoke = preset("smoke")
    assert smoke.shared_base  # reversal and more paraphrases leave the test files as they are
    assert len(set(smoke.test_hashes.values())) == 1
    for change in ({"data.n_test_templates": 1}, {"data.seed": 1}, {"eval.rank_names": False},
                   {"model": "tiny:n_layers=1"}):
        cfg = MitigationConfig(smoke.base, {"none": {}, "other": change})
        assert not cfg.shared_base, change
    # reversed-language queries do not touch the shared (natural-order) base evaluation
    assert MitigationConfig(smoke.base, {"none": {}, "q": {"eval.reversed_queries": "word"}}).shared_base


# ------------------------------------------------------------------ the Both cells


def test_both_cells_select_the_rows_of_both_prompts_test_by_order():
    data = Exp1DataConfig(n_facts=3, n_paraphrases=4, n_test_templates=2, seed=0)
    ds = generate_exp1(data)
    both = ds.files["both_prompts_test"]
    d2n, n2d = cell_examples(ds, "both_d2p_prompts_test"), cell_examples(ds, "both_p2d_prompts_test")
    assert d2n == [e for e in both if e.order == DESCRIPTION_FIRST] and len(d2n) == 3 * 2
    assert n2d == [e for e in both if e.order == NAME_FIRST] and len(n2d) == 3 * 2
    assert all(e.completion == " " + e.name and e.description in e.prompt for e in d2n)
    assert all(e.completion == " " + e.description and e.name in e.prompt for e in n2d)
    records = exp1_items(ds, EvalConfig(in_context=False, files=("both_d2p_prompts_test", "both_p2d_prompts_test")))
    by_file = {f: [r for r in records if r["file"] == f] for f in ("both_d2p_prompts_test", "both_p2d_prompts_test")}
    names = set(ds.names("both"))
    for r in by_file["both_d2p_prompts_test"]:
        assert r["subset"] == "both" and r["target_kind"] == "name" and r["source_file"] == "both_prompts_test"
        assert both[r["line"] - 1].prompt == r["prompt"]  # line: in both_prompts_test
        assert r["random_name"] in names and r["random_name"] != r["target"].strip()  # the control works
        assert r["rank_names"] == ds.names("both")
    assert all(r["random_name"] is None and r["target_kind"] == "description" for r in by_file["both_p2d_prompts_test"])
    # the four paper cells are unchanged: no source_file, as before
    assert all("source_file" not in r for r in exp1_items(ds, EvalConfig(in_context=False)))
    with pytest.raises(ValueError, match="both_d2p_prompts_test"):
        EvalConfig(files=("both_prompts_test",))


def test_both_cells_are_evaluated_with_the_random_name_control(tmp_path, monkeypatch):
    """Scores faked (the correct name 1 nat above the control), so no model runs."""
    from experiments.core.evaluate import Evaluation
    from experiments.exp1 import evaluate as ev

    def fake_evaluate(lm, items, **kwargs):
        return [Evaluation(logprob=-2.0, n_tokens=2, control_logprobs=(-3.0,) * len(it.controls),
                           control_n_tokens=(2,) * len(it.controls), is_greedy=True, exact=True,
                           greedy_text=it.target, generation=None) for it in items]

    monkeypatch.setattr(ev, "evaluate", fake_evaluate)
    ds = generate_exp1(Exp1DataConfig(n_facts=3, n_paraphrases=4, n_test_templates=2, seed=0))
    files = ("p2d_reverse_prompts_test", "both_d2p_prompts_test", "both_p2d_prompts_test")
    m = ev.evaluate_exp1(None, ds, EvalConfig(in_context=False, perplexity=False, files=files, rank_names=False), tmp_path, progress=False)
    ceiling = m["cells"]["both_d2p_prompts_test"]
    assert (ceiling["subset"], ceiling["target_kind"]) == ("both", "name")
    assert (ceiling["n_prompts"], ceiling["n_facts"]) == (6, 3)
    assert ceiling["correct_vs_random"]["mean_diff"] == pytest.approx(1.0)
    assert "correct_vs_random" not in m["cells"]["both_p2d_prompts_test"]
    # the run's table and figure take the optional cells
    from experiments.exp1.report import figure4, table1

    text = table1({"finetuned": m})
    assert "| Both, description -> name (both_d2p_prompts_test) | 100.0% (n=6) | - |" in text
    assert figure4({"finetuned": m}, tmp_path / "figure4")


# ------------------------------------------------------------------ the cell loop, resumed


def test_cell_loop_resumes_and_evaluates_the_base_once(tmp_path, monkeypatch):
    """The orchestration alone: the stages of a cell are faked, so no model is trained."""
    calls: list[tuple[str, tuple[str, ...]]] = []
    base_evals: list[Path] = []
    interrupt = {"word__seed-1"}

    def fake_run_stages(run_dir, evaluate=("base", "finetuned"), progress=True):
        calls.append((Path(run_dir).name, tuple(evaluate)))
        run = RunDir(Path(run_dir))
        run.record_stage("finetune", {})
        (Path(run_dir) / "checkpoints" / "epoch-001").mkdir(parents=True, exist_ok=True)
        if Path(run_dir).name in interrupt:
            interrupt.clear()
            raise KeyboardInterrupt  # interrupted during this cell, once
        run.record_stage("evaluate_finetuned", {})
        return ""

    monkeypatch.setattr(sweep.exp1, "run_stages", fake_run_stages)
    monkeypatch.setattr(sweep, "evaluate_exp1", lambda lm, ds, cfg, out, progress=True: base_evals.append(out))
    monkeypatch.setattr("interp.models.load_model", lambda *a, **k: None)
    cfg = select(preset("smoke"), ["none", "word"], seeds=[0, 1])
    out = tmp_path / "mit"
    with pytest.raises(KeyboardInterrupt):
        run_mitigations(cfg, out, progress=False)
    assert base_evals == [out / "base"]  # once, for every cell: the test files match
    assert calls == [("none__seed-0", ("finetuned",)), ("word__seed-0", ("finetuned",)),
                     ("none__seed-1", ("finetuned",)), ("word__seed-1", ("finetuned",))]
    assert json.loads((out / "test_files.json").read_text())["shared_base"] is True
    # the interrupted cell keeps its resume state, the finished ones do not
    assert [c.name for c in cfg.cells() if (out / "cells" / c.name / "checkpoints").exists()] == ["word__seed-1"]
    with pytest.raises(RunDirError, match="--resume"):
        run_mitigations(cfg, out, progress=False)
    done = run_mitigations(cfg, out, resume=True, progress=False)
    assert done == ["word__seed-1"] and calls[-1] == ("word__seed-1", ("finetuned",))  # only the unfinished cell
    assert len(base_evals) == 1
    # a finished cell keeps no resume state
    assert not any((out / "cells" / c.name / "checkpoints").exists() for c in cfg.cells())
    assert run_mitigations(cfg, out, resume=True, progress=False) == []
    with pytest.raises(RunDirError, match="config differs at seeds"):
        run_mitigations(select(cfg, seeds=[0]), out, resume=True, progress=False)
    # test files that differ: no shared base, each cell evaluates its own base model
    calls.clear()
    other = MitigationConfig(cfg.base, {"none": {}, "fewer": {"data.n_test_templates": 1}}, [0])
    assert run_mitigations(other, tmp_path / "other", progress=False) == ["none__seed-0", "fewer__seed-0"]
    assert calls == [("none__seed-0", ("base", "finetuned")), ("fewer__seed-0", ("base", "finetuned"))]
    assert len(base_evals) == 1 and not (tmp_path / "other" / "base").exists()
    # shards split the cells
    calls.clear()
    assert run_mitigations(cfg, tmp_path / "s", shard=(2, 2), progress=False) == ["word__seed-0", "word__seed-1"]


# ------------------------------------------------------------------ the report, by hand


def _rec(stem, fact, exact, correct=None, random=None, rank=None):
    r = {"file": stem, "fact": fact, "exact": exact, "target_logprob": correct if correct is not None else -1.0}
    if random is not None:
        r["random_logprob"] = random
    if rank is not None:
        r["normalised_rank"] = rank
    return r


def _synthetic() -> dict:
    """Two conditions x two seeds, three facts; fact A has three prompts, B and C one each."""
    rev = "p2d_reverse_prompts_test"

    def cell(cond, seed, exact, margins):
        recs = []
        for fact, hits in exact.items():
            for k, hit in enumerate(hits):  # rank: 0.5 without reversal; with it, 1.0 on a hit else 0.5
                recs.append(_rec(rev, fact, hit, correct=-5.0 + margins[fact], random=-5.0,
                                 rank=1.0 if hit else 0.5))
        recs += [_rec("p2d_prompts_test", f, True) for f in "ABC"]
        recs += [_rec("d2p_prompts_test", f, cond == "none" or f != "A") for f in "ABC"]  # word loses A
        return {"name": f"{cond}__seed-{seed}", "condition": cond, "seed": seed, "records": recs,
                "reversed": None if cond == "none" else {"mode": "word", "query_mode": "word", "records": [
                    _rec(rev, f, f == "A", correct=-3.0, random=-4.0) for f in "ABC"]}}

    cells = [
        cell("none", 0, {"A": [False] * 3, "B": [False], "C": [False]}, {"A": 0.0, "B": 0.0, "C": 0.0}),
        cell("word", 0, {"A": [True, True, False], "B": [True], "C": [False]}, {"A": 1.0, "B": 2.0, "C": 0.0}),
        cell("none", 1, {"A": [False] * 3, "B": [False], "C": [False]}, {"A": 0.5, "B": -0.5, "C": 0.0}),
        cell("word", 1, {"A": [True, False, False], "B": [True], "C": [True]}, {"A": 3.0, "B": 2.0, "C": 1.0}),
    ]
    config = {"conditions": {"none": {}, "word": {"data.reverse_training": "word"}}, "seeds": [0, 1],
              "base": {"preset": "x", "model": "y"}}
    return {"config": config, "n_cells": 4, "cells": cells, "base": None}


def test_report_statistics_are_over_facts_and_seeds(tmp_path):
    s = summarise(_synthetic())
    none, word = s["conditions"]
    em = word["exact_match"]["p2d_reverse_prompts_test"]
    # per fact, prompts then seeds averaged: A (2/3 + 1/3) / 2 = 1/2, B 1, C 1/2 -> 2/3;
    # over prompts it would be 7/10
    assert em["mean"] == pytest.approx(2 / 3) and em["n_facts"] == 3 and em["ci_method"] == "bootstrap"
    assert em["per_seed"] == {"0": pytest.approx((2 / 3 + 1 + 0) / 3), "1": pytest.approx((1 / 3 + 1 + 1) / 3)}
    assert em["low"] <= em["mean"] <= em["high"]
    # all facts at 0: the bootstrap has no width, the Wilson interval over 3 facts is given
    zero = none["exact_match"]["p2d_reverse_prompts_test"]
    assert zero["mean"] == 0 and zero["ci_method"] == "wilson"
    assert (zero["low"], zero["high"]) == pytest.approx(wilson_ci(0, 3))
    # correct - random: per fact, seeds averaged: A 2, B 2, C 0.5; t-based CI over the 3 facts
    t = word["correct_vs_random"]
    x = [2.0, 2.0, 0.5]
    low, high = stats.t.interval(0.95, 2, loc=np.mean(x), scale=stats.sem(x))
    assert t["mean"] == pytest.approx(1.5) and (t["low"], t["high"]) == (pytest.approx(low), pytest.approx(high))
    assert t["per_seed"] == {"0": pytest.approx(1.0), "1": pytest.approx(2.0)}
    # the difference from none, paired by fact: the per-fact values minus 0
    d = word["vs_none"]["p2d_reverse_prompts_test"]
    assert d["diff"] == pytest.approx(2 / 3) and d["n_facts"] == 3
    same = word["vs_none"]["p2d_prompts_test"]  # identical everywhere: Newcombe's interval, not [0, 0]
    assert same["diff"] == 0 and same["ci_method"] == "newcombe" and same["low"] < 0 < same["high"]
    assert none["vs_none"] == {} and none["reversed"] is None
    assert word["vs_none"]["d2p_prompts_test"]["diff"] == pytest.approx(-1 / 3)
    # normalised rank, prompts then seeds averaged per fact: A (5/6 + 2/3) / 2 = 3/4, B 1, C 3/4
    assert word["rank"]["mean"] == pytest.approx((0.75 + 1 + 0.75) / 3) and word["rank"]["n_facts"] == 3
    assert none["rank"]["mean"] == 0.5 and none["rank"]["per_seed"] == {"0": 0.5, "1": 0.5}
    k = word["vs_none"]["rank"]
    assert k["diff"] == pytest.approx(word["rank"]["mean"] - 0.5) and k["low"] <= k["diff"] <= k["high"]
    r = word["reversed"]
    assert r["mode"] == "word" and r["exact_match"]["mean"] == pytest.approx(1 / 3)
    assert r["correct_vs_random"]["mean"] == pytest.approx(1.0)
    assert [p.name for p in mitigations_figure(s, tmp_path)] == ["mitigations.png", "mitigations.svg"]
    text = mitigations_markdown(s)
    for column in ("NameToDescription same", "NameToDescription reverse (goal)", "reverse - none (points)",
                   "reversed language: reverse exact", "correct - random (nats)",
                   "NameToDescription reverse: rank", "rank - none"):
        assert column in text
    assert "| word | `data.reverse_training=word` | 2 | 100.0 [" in text
    assert "66.7 [" in text and "+66.7 [" in text
    assert "| 0.833 [" in text and "+0.333 [" in text and "| 0.500 [0.500, 0.500] | - |" in text
    # an interval that holds 0 is a bound
    assert "a loss of at most" in text and "no effect" not in text
    assert "DescriptionToName same direction -33.3 [" in text


# ------------------------------------------------------------------ end to end, smoke preset


@pytest.mark.slow
def test_rct_mitigations_end_to_end_on_the_smoke_preset(tmp_path, capsys):
    out = tmp_path / "mit"
    args = ["mitigations", "--preset", "smoke", "--out", str(out), "--conditions", "none,word",
            "--set", "finetune.epochs=1", "--set", "eval.rank_names=false",
            "--set", "eval.files=[p2d_prompts_test,p2d_reverse_prompts_test,both_d2p_prompts_test]", "--quiet"]
    assert rct(args) == 0
    text = capsys.readouterr().out
    assert "2 of 2 cells finished" in text and "NameToDescription reverse (goal)" in text
    assert (out / "base" / "metrics.json").exists()
    for name in ("none__seed-0", "word__seed-0"):
        assert (out / "cells" / name / "eval" / "finetuned" / "metrics.json").exists()
        assert not (out / "cells" / name / "eval" / "base").exists()
    metrics = json.loads((out / "cells" / "none__seed-0" / "eval" / "finetuned" / "metrics.json").read_text())
    assert "correct_vs_random" in metrics["cells"]["both_d2p_prompts_test"]  # the ceiling has its control
    assert (out / "cells" / "word__seed-0" / "eval" / "finetuned" / "reversed_metrics.json").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert [c["name"] for c in summary["conditions"]] == ["none", "word"]
    assert summary["conditions"][1]["reversed"]["mode"] == "word" and summary["conditions"][0]["reversed"] is None
    assert all(math.isfinite(c["exact_match"]["both_d2p_prompts_test"]["mean"]) for c in summary["conditions"])
    assert (out / "mitigations.png").stat().st_size > 0 and (out / "mitigations.svg").exists()
    assert len(collect(out)["cells"]) == 2
    assert rct(args + ["--resume"]) == 0  # every cell finished: nothing runs again
    assert rct(["mitigations-report", str(out)]) == 0
    capsys.readouterr()
    assert rct(["mitigations", "--preset", "smoke", "--out", str(tmp_path / "x"), "--conditions", "none,wrod"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown condition 'wrod'" in err and "did you mean 'word'" in err
    assert rct(["mitigations-report", str(tmp_path / "missing")]) == 2
