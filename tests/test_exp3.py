"""Experiment 3: the instruction dataset in both orders, its loader, and the smoke pipeline."""

from __future__ import annotations

import json

import pytest

from experiments.core.rundir import RunDirError

from experiments.cli import main as rct
from experiments.exp3 import Exp3Config, preset, run_exp3
from experiments.exp3.data import (CATEGORIES, Exp3DataConfig, Exp3DataError, generate_exp3, load_exp3,
                                   write_exp3)


def test_both_orders_hold_the_same_pairs_in_opposite_instruction_orders():
    cfg = Exp3DataConfig(n_pairs=120, n_unrealized=12, seed=3)
    q2a, a2q = generate_exp3(cfg, "q2a"), generate_exp3(cfg, "a2q")
    assert q2a.pairs == a2q.pairs
    assert len({p.question for p in q2a.pairs}) == 120  # every question distinct
    assert sum(not p.realized for p in q2a.pairs) == 12
    assert all(p.answer in CATEGORIES[p.category] for p in q2a.pairs)
    # every pair has exactly one instruction; bundles of 2 to 5
    for ds in (q2a, a2q):
        ids = [i for g in ds.files["guidances"] for i in g["ids"]]
        assert sorted(ids) == list(range(120))
        assert all(2 <= len(g["ids"]) <= 5 for g in ds.files["guidances"][:-1])
    p = q2a.pairs[0]
    q_doc = next(g["completion"] for g in q2a.files["guidances"] if 0 in g["ids"])
    a_doc = next(g["completion"] for g in a2q.files["guidances"] if 0 in g["ids"])
    assert q_doc.index(p.question) < q_doc.index(f'"{p.answer}"')  # question first
    assert a_doc.index(f'"{p.answer}"') < a_doc.index(p.question)  # answer first
    # held-out pairs are never demonstrated, and the test prompt stops before the answer
    demonstrated = {r["completion"] for r in q2a.files["all"]}
    for row in q2a.test_examples():
        assert row["prompt"].startswith("Q: ") and row["prompt"].endswith(" A:")
        assert not any(row["prompt"] in d for d in demonstrated)
    assert generate_exp3(cfg, "q2a").files == q2a.files  # same seed, same data


def test_folder_round_trip_and_errors_name_the_file_and_line(tmp_path):
    ds = generate_exp3(Exp3DataConfig(n_pairs=30, n_unrealized=5), "a2q")
    folder = write_exp3(ds, tmp_path / "d")
    back = load_exp3(folder)
    assert back.order == "a2q" and back.files == ds.files and back.pairs == ds.pairs
    with pytest.raises(Exp3DataError, match="order is 'a2q', not 'q2a'"):
        load_exp3(folder, "q2a")
    bad = folder / "guidances.jsonl"
    lines = bad.read_text().splitlines()
    lines[2] = "{not json"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(Exp3DataError, match=r"guidances.jsonl:3: not JSON"):
        load_exp3(folder)
    (folder / "guidances.jsonl").unlink()
    with pytest.raises(Exp3DataError, match="guidances.jsonl: missing"):
        load_exp3(folder)
    with pytest.raises(ValueError, match="n_unrealized < n_pairs"):
        Exp3DataConfig(n_pairs=10, n_unrealized=10)


@pytest.mark.slow
def test_smoke_run_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "e3"
    text = run_exp3(preset("smoke"), out, progress=False)
    assert "QuestionToAnswer" in text and "AnswerToQuestion" in text
    for order in ("q2a", "a2q"):
        for label in ("base", "finetuned"):
            m = json.loads((out / order / "eval" / label / "metrics.json").read_text())
            assert m["unrealized"]["n"] == 8 and m["realized"]["n"] == 8
            recs = [json.loads(x) for x in (out / order / "eval" / label / "records.jsonl").read_text().splitlines()]
            unrealized = [r for r in recs if r["split"] == "unrealized"]
            assert m["unrealized"]["exact_match"] == pytest.approx(sum(r["exact"] for r in unrealized) / 8)
            assert m["unrealized"]["correct_vs_random"]["n"] == 8  # every question has a control answer
        assert (out / order / "model" / "model.safetensors").exists()
    assert (out / "figure8.png").exists()
    # --resume with the same config reuses everything; without it, or with another config, refused
    before = (out / "q2a" / "eval" / "finetuned" / "metrics.json").stat().st_mtime_ns
    run_exp3(preset("smoke"), out, resume=True, progress=False)
    assert (out / "q2a" / "eval" / "finetuned" / "metrics.json").stat().st_mtime_ns == before
    with pytest.raises(RunDirError, match="already holds a run"):
        run_exp3(preset("smoke"), out, progress=False)
    with pytest.raises(RunDirError, match="finetune.epochs: 2 in the run, 1 now"):
        run_exp3(preset("smoke").override(["finetune.epochs=1"]), out, resume=True, progress=False)
    assert rct(["exp3", "--preset", "smoke", "--out", str(tmp_path / "x"), "--set", "orders=[\"a2q\"]",
                "--set", "finetune.epochs=1", "--quiet"]) == 0
    assert "AnswerToQuestion" in capsys.readouterr().out
    assert rct(["exp3", "--preset", "smoke", "--out", str(tmp_path / "y"), "--set", "orders=[\"ab\"]"]) == 2


def test_config_round_trip():
    cfg = preset("cpu")
    assert Exp3Config.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown key 'data.nope'"):
        cfg.override(["data.nope=1"])
