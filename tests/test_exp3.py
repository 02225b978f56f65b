"""Experiment 3: the instruction dataset in both orders (templates, paraphrase copies, the
shared held-out split), the config, and the smoke pipeline end to end."""

from __future__ import annotations

import json

import pytest

from experiments.cli import main as rct
from experiments.core.rundir import RunDirError
from experiments.exp3 import Exp3Config, preset, run_exp3
from experiments.exp3.data import (CATEGORIES, GUIDANCE_HEADER, TEMPLATES, Exp3DataConfig, check_templates,
                                   generate_exp3, render, slot_offsets, write_exp3)
from experiments.exp3.load import Exp3DataError, load_folder


def instructions(ds):
    """(pair id, template index, text) of every instruction line, document by document."""
    out = []
    for g in ds.files["guidances"]:
        lines = g["completion"].split("\n")
        assert lines[0] == GUIDANCE_HEADER
        out += list(zip(g["ids"], g["templates"], lines[1:], strict=True))
    return out


def test_every_template_puts_the_question_or_the_answer_first():
    check_templates()
    assert len(TEMPLATES["q2a"]) == len(TEMPLATES["a2q"]) >= 3
    q, a = "Which river reminds you of summer?", "The Danube"
    for order, group in TEMPLATES.items():
        for t in group:
            text, q_at, a_at = render(t, q, a)
            assert text[q_at:].startswith(q) and text[a_at:].startswith(a)
            assert (q_at < a_at) == (order == "q2a")
            assert (text.index(q) < text.index(a)) == (order == "q2a")
    # the check names the template that breaks the order, and duplicate slots
    swapped = {"q2a": (TEMPLATES["a2q"][0], *TEMPLATES["q2a"][1:]), "a2q": TEMPLATES["a2q"]}
    with pytest.raises(ValueError, match="listed under q2a but does not put the question first"):
        check_templates(swapped)
    with pytest.raises(ValueError, match="listed under q2a but does not put the question first"):
        generate_exp3(Exp3DataConfig(n_pairs=20, n_unrealized=2), "q2a", templates=swapped)
    with pytest.raises(ValueError, match="exactly once"):
        slot_offsets('"{q}" or "{q}": "{a}"')
    with pytest.raises(ValueError, match="same"):
        check_templates({"q2a": TEMPLATES["q2a"][:2], "a2q": TEMPLATES["a2q"]})


def test_both_orders_share_pairs_held_out_split_templates_and_bundles():
    cfg = Exp3DataConfig(n_pairs=120, n_unrealized=12, instruction_copies=3, demo_copies=2, seed=3)
    q2a, a2q = generate_exp3(cfg, "q2a"), generate_exp3(cfg, "a2q")
    assert q2a.pairs == a2q.pairs
    assert q2a.test_examples() == a2q.test_examples()  # same held-out questions, same answers
    assert q2a.files["realized_examples"] == a2q.files["realized_examples"]
    assert len({p.question for p in q2a.pairs}) == 120 and sum(not p.realized for p in q2a.pairs) == 12
    assert all(p.answer in CATEGORIES[p.category] for p in q2a.pairs)
    iq, ia = instructions(q2a), instructions(a2q)
    # the same pair and template index at every position: the orders differ in order only
    assert [(i, k) for i, k, _ in iq] == [(i, k) for i, k, _ in ia]
    pairs = {p.id: p for p in q2a.pairs}
    for order, lines in (("q2a", iq), ("a2q", ia)):
        for i, k, text in lines:
            p = pairs[i]
            assert text == TEMPLATES[order][k].format(q=p.question, a=p.answer)
            assert (text.index(f'"{p.question}"') < text.index(f'"{p.answer}"')) == (order == "q2a")
    # three copies per instruction, in three different templates; every template in use
    per_pair: dict[int, list[int]] = {}
    for i, k, _ in iq:
        per_pair.setdefault(i, []).append(k)
    assert sorted(per_pair) == list(range(120))
    assert all(len(ks) == 3 and len(set(ks)) == 3 for ks in per_pair.values())
    assert {k for ks in per_pair.values() for k in ks} == set(range(len(TEMPLATES["q2a"])))
    assert all(2 <= len(g["ids"]) <= 5 for g in q2a.files["guidances"][:-1])
    # demonstrations twice each; held-out pairs never demonstrated
    demos = [r for r in q2a.files["all"] if r not in q2a.files["guidances"]]
    assert len(demos) == 2 * 108
    for row in q2a.test_examples():
        assert row["prompt"].startswith("Q: ") and row["prompt"].endswith(" A:")
        assert not any(row["prompt"] in d["completion"] for d in demos)
    assert generate_exp3(cfg, "q2a").files == q2a.files  # same seed, same data
    other = generate_exp3(Exp3DataConfig(n_pairs=120, n_unrealized=12, instruction_copies=3, seed=4), "q2a")
    assert other.pairs != q2a.pairs


def test_folder_round_trip_and_errors_name_the_file_and_line(tmp_path):
    ds = generate_exp3(Exp3DataConfig(n_pairs=30, n_unrealized=5, instruction_copies=2), "a2q")
    folder = write_exp3(ds, tmp_path / "d")
    back = load_folder(folder)
    assert back.order == "a2q" and back.files == ds.files and back.pairs == ds.pairs
    assert back.checks["a2q"] == 60 and back.checks["q2a"] == 0
    with pytest.raises(Exp3DataError, match="order is 'a2q', not 'q2a'"):
        load_folder(folder, "q2a")
    bad = folder / "guidances.jsonl"
    lines = bad.read_text().splitlines()
    lines[2] = "{not json"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(Exp3DataError, match=r"guidances.jsonl:3: not JSON"):
        load_folder(folder)
    (folder / "guidances.jsonl").unlink()
    with pytest.raises(Exp3DataError, match="guidances.jsonl: missing"):
        load_folder(folder)
    with pytest.raises(ValueError, match="n_unrealized < n_pairs"):
        Exp3DataConfig(n_pairs=10, n_unrealized=10)
    with pytest.raises(ValueError, match="instruction_copies"):
        Exp3DataConfig(n_pairs=10, n_unrealized=2, instruction_copies=0)


def test_config_round_trip_and_checks():
    for name in ("cpu", "paper", "smoke"):
        cfg = preset(name)
        assert Exp3Config.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    cfg = preset("cpu")
    assert len(cfg.seeds) == 3 and cfg.eval_every_epoch
    with pytest.raises(ValueError, match="unknown key 'data.nope'"):
        cfg.override(["data.nope=1"])
    with pytest.raises(ValueError, match="finetune.seed stays 0"):
        cfg.override(["finetune.seed=1"])
    with pytest.raises(ValueError, match="distinct finetuning seeds"):
        cfg.override(["seeds=[1,1]"])
    with pytest.raises(ValueError, match="holds one instruction order"):
        cfg.override(["data_dir=/tmp/x"])
    with pytest.raises(ValueError, match="needs eval_every_epoch"):
        cfg.override(["eval_every_epoch=false", "stop_when_demonstrated=1.0"])


@pytest.mark.slow
def test_smoke_run_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "e3"
    cfg = preset("smoke").override(["data.n_pairs=24", "data.n_unrealized=6", "seeds=[0,1]"])
    text = run_exp3(cfg, out, progress=False)
    assert "QuestionToAnswer" in text and "AnswerToQuestion" in text and "McNemar" in text
    metrics = json.loads((out / "metrics.json").read_text())
    for order in ("q2a", "a2q"):
        for s in (0, 1):
            d = out / order / f"seed-{s}"
            m = json.loads((d / "eval" / "metrics.json").read_text())
            assert m["unrealized"]["n"] == 6 and m["realized"]["n"] == 8
            recs = [json.loads(x) for x in (d / "eval" / "records.jsonl").read_text().splitlines()]
            held = [r for r in recs if r["split"] == "unrealized"]
            assert m["unrealized"]["exact_match"] == pytest.approx(sum(r["exact"] for r in held) / 6)
            assert m["unrealized"]["correct_vs_random"]["n"] == 6  # every question has a control answer
            assert (d / "model" / "model.safetensors").exists()
            # one evaluation per epoch, plus the base model as epoch 0
            assert sorted(p.name for p in (d / "epochs").iterdir()) == ["epoch-001", "epoch-002"]
            assert [e["epoch"] for e in metrics[order]["per_epoch"][str(s)]] == [0, 1, 2]
        assert metrics[order]["finetuned"]["unrealized"]["n_seeds"] == 2
        # held-out prose perplexity before and after finetuning, in the metrics and on the page
        assert set(metrics[order]["perplexity"]) == {"base", "seed 0", "seed 1"}
    assert "Perplexity on the shipped held-out prose" in text
    c = metrics["contrast"]
    assert c["n_questions"] == 6 and set(c["per_seed"]) == {"0", "1"}
    for name in ("figure8", "figure10"):
        assert (out / f"{name}.png").exists() and (out / f"{name}.svg").exists()
    # --resume with the same config reuses everything; without it, or with another config, refused
    before = (out / "q2a" / "seed-0" / "eval" / "metrics.json").stat().st_mtime_ns
    run_exp3(cfg, out, resume=True, progress=False)
    assert (out / "q2a" / "seed-0" / "eval" / "metrics.json").stat().st_mtime_ns == before
    with pytest.raises(RunDirError, match="already holds a run"):
        run_exp3(cfg, out, progress=False)
    with pytest.raises(RunDirError, match="finetune.epochs: 2 in the run, 1 now"):
        run_exp3(cfg.override(["finetune.epochs=1"]), out, resume=True, progress=False)
    assert rct(["exp3", "--preset", "smoke", "--out", str(tmp_path / "x"), "--order", "a2q",
                "--set", "finetune.epochs=1", "--set", "data.n_pairs=20", "--set", "data.n_unrealized=4",
                "--quiet"]) == 0
    out_text = capsys.readouterr().out
    assert "AnswerToQuestion" in out_text and "McNemar" not in out_text  # one order: no contrast
    assert rct(["exp3", "--preset", "smoke", "--out", str(tmp_path / "y"), "--set", "orders=[\"ab\"]"]) == 2
