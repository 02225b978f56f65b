"""The base model's evaluation is cached across runs with the same model, data and settings,
and the copy equals a fresh evaluation byte for byte."""

from __future__ import annotations

import json

from experiments.cli import main


def _evaluate_base(out, capsys) -> dict:
    assert main(["init", "--preset", "smoke", "--out", str(out)]) == 0
    assert main(["generate", str(out)]) == 0
    assert main(["evaluate", str(out), "--which", "base", "--quiet"]) == 0
    capsys.readouterr()
    return json.loads((out / "manifest.json").read_text())["stages"]["evaluate_base"]


def test_second_run_reads_the_cached_base_evaluation(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("RCT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("RCT_NO_BASE_CACHE", raising=False)
    a = _evaluate_base(tmp_path / "a", capsys)
    b = _evaluate_base(tmp_path / "b", capsys)
    assert a["base_eval_cache"]["hit"] is False and b["base_eval_cache"] == {"key": a["base_eval_cache"]["key"], "hit": True}
    for f in ("metrics.json", "records.jsonl"):
        assert (tmp_path / "a" / "eval" / "base" / f).read_bytes() == (tmp_path / "b" / "eval" / "base" / f).read_bytes()
    # another evaluation setting is another key, evaluated afresh
    assert main(["init", "--preset", "smoke", "--out", str(tmp_path / "c"), "--set", "eval.seed=1"]) == 0
    assert main(["generate", str(tmp_path / "c")]) == 0
    assert main(["evaluate", str(tmp_path / "c"), "--which", "base", "--quiet"]) == 0
    c = json.loads((tmp_path / "c" / "manifest.json").read_text())["stages"]["evaluate_base"]
    assert c["base_eval_cache"]["hit"] is False and c["base_eval_cache"]["key"] != a["base_eval_cache"]["key"]


def test_cache_can_be_turned_off(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("RCT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RCT_NO_BASE_CACHE", "1")
    assert "base_eval_cache" not in _evaluate_base(tmp_path / "a", capsys)
    assert not (tmp_path / "cache" / "base-eval").exists()


def test_a_sweeps_shared_base_evaluation_is_cached_too(tmp_path, monkeypatch) -> None:
    from experiments.exp1.run import preset
    from experiments.sweeps import SweepConfig, run_sweep

    monkeypatch.setenv("RCT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("RCT_NO_BASE_CACHE", raising=False)
    sweep = SweepConfig(preset("smoke"), {"finetune.lr": [1e-3]}, [0])
    stages = []
    for name in ("a", "b"):
        run_sweep(sweep, tmp_path / name, progress=False)
        stages.append(json.loads((tmp_path / name / "manifest.json").read_text())["stages"]["evaluate_base"])
    assert stages[0]["base_eval_cache"]["hit"] is False and stages[1]["base_eval_cache"]["hit"] is True
    assert (tmp_path / "a" / "base" / "records.jsonl").read_bytes() == (tmp_path / "b" / "base" / "records.jsonl").read_bytes()
