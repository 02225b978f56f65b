"""Sweeps over experiment 1 on the smoke preset (tiny random model, seconds per cell)."""

from __future__ import annotations

import json

import pytest

from experiments.core.rundir import RunDirError

from experiments.cli import main as rct
from experiments.exp1 import preset
from experiments.sweeps import SweepConfig, collect, read_sweep, report_sweep, run_sweep


def test_cells_are_the_grid_product_times_seeds():
    sweep = SweepConfig(preset("smoke"), {"finetune.lr": [1e-3, 3e-3], "finetune.batch_size": [4, 8]}, [0, 1, 2])
    cells = sweep.cells()
    assert len(cells) == 12
    assert len({c.name for c in cells}) == 12
    assert cells[0].name == "lr-0.001__batch_size-4__seed-0"
    assert cells[0].overrides == {"finetune.lr": 1e-3, "finetune.batch_size": 4, "finetune.seed": 0}
    cfg = sweep.cell_config(cells[-1], "sw")
    assert (cfg.finetune.lr, cfg.finetune.batch_size, cfg.finetune.seed) == (3e-3, 8, 2)
    assert cfg.data_dir.endswith("sw/data")  # one dataset for every cell
    assert not SweepConfig(preset("smoke"), {"data.seed": [0, 1]}).shared_data
    by_model = SweepConfig(preset("smoke"), {"model": ["tiny:n_layers=1", "tiny:n_layers=2"]})
    assert by_model.shared_data and not by_model.shared_base


@pytest.mark.parametrize("grid, seeds, match", [
    ({"finetune.nope": [1]}, [0], "unknown key 'finetune.nope'"),
    ({"finetune.lr": []}, [0], "non-empty list"),
    ({"finetune.lr": [1e-3, 1e-3]}, [0], "repeats a value"),
    ({"finetune.seed": [0, 1]}, [0], "--seeds"),
    ({}, [], "at least one seed"),
    ({}, [0, 0], "repeated seeds"),
])
def test_bad_sweeps_are_refused_by_name(grid, seeds, match):
    with pytest.raises(ValueError, match=match):
        SweepConfig(preset("smoke"), grid, seeds)


@pytest.mark.slow
def test_sweep_runs_reports_and_resumes(tmp_path):
    sweep = SweepConfig(preset("smoke"), {"finetune.lr": [1e-3, 3e-3]}, [0, 1])
    out = tmp_path / "sw"
    done = run_sweep(sweep, out, progress=False)
    assert len(done) == 4
    assert read_sweep(out).to_dict() == sweep.to_dict()
    assert (out / "base" / "metrics.json").exists() and (out / "data" / "facts.jsonl").exists()
    for cell in sweep.cells():
        run = out / "cells" / cell.name
        assert (run / "eval" / "finetuned" / "metrics.json").exists()
        assert not (run / "eval" / "base").exists()  # the base model is evaluated once, for all cells
        assert not (run / "data").exists()
        assert json.loads((run / "config.json").read_text())["finetune"]["lr"] == cell.overrides["finetune.lr"]
    text = report_sweep(out)
    assert "4 of 4 cells finished" in text and "t-test p < 0.05 in" in text
    summary = json.loads((out / "summary.json").read_text())
    assert [len(p["seeds"]) for p in summary["points"]] == [2, 2]
    r = summary["points"][0]["rank"]["d2p_prompts_test"]  # name-target cells: rank over seeds x facts
    assert r["n_seeds"] == 2 and r["ci_low"] <= r["mean"] <= r["ci_high"] and r["min"] <= r["mean"] <= r["max"]
    assert "Normalised rank of the correct name" in text
    assert (out / "lines.png").stat().st_size > 0 and (out / "sweep.md").exists()
    # resuming finds every cell finished; starting again without --resume is refused
    assert run_sweep(sweep, out, resume=True, progress=False) == []
    with pytest.raises(RunDirError, match="--resume"):
        run_sweep(sweep, out, progress=False)
    other = SweepConfig(preset("smoke"), {"finetune.lr": [1e-3]}, [0])
    with pytest.raises(RunDirError, match="config differs at grid.finetune.lr"):
        run_sweep(other, out, resume=True, progress=False)


@pytest.mark.slow
def test_shards_split_the_cells_and_same_seed_gives_same_result(tmp_path):
    sweep = SweepConfig(preset("smoke"), {"finetune.lr": [1e-3, 3e-3], "finetune.batch_size": [4, 8]}, [0])
    out = tmp_path / "sw"
    first = run_sweep(sweep, out, shard=(1, 2), progress=False, evaluate_base=False)
    second = run_sweep(sweep, out, resume=True, shard=(2, 2), progress=False, evaluate_base=False)
    names = [c.name for c in sweep.cells()]
    assert first == names[0::2] and second == names[1::2]
    assert len(collect(out)["cells"]) == 4
    report_sweep(out)
    assert (out / "heatmap.png").exists()  # two grid keys: the Figure 6 analog
    # the same cell in another sweep directory gives identical metrics
    again = SweepConfig(preset("smoke"), {"finetune.lr": [1e-3], "finetune.batch_size": [4]}, [0])
    run_sweep(again, tmp_path / "again", progress=False, evaluate_base=False)
    a = json.loads((out / "cells" / names[0] / "eval" / "finetuned" / "metrics.json").read_text())
    b = json.loads((tmp_path / "again" / "cells" / names[0] / "eval" / "finetuned" / "metrics.json").read_text())
    assert a["cells"] == b["cells"]
    with pytest.raises(ValueError, match="shard 3/2"):
        run_sweep(sweep, out, resume=True, shard=(3, 2), progress=False)


def test_cli_sweep_and_its_errors(tmp_path, capsys):
    out = tmp_path / "sw"
    assert rct(["sweep", "--preset", "smoke", "--out", str(out), "--grid", "finetune.lr=1e-3,3e-3",
                "--quiet", "--no-base"]) == 0
    assert "2 of 2 cells finished" in capsys.readouterr().out
    assert rct(["sweep-report", str(out)]) == 0
    assert rct(["sweep", "--preset", "smoke", "--out", str(tmp_path / "x"), "--grid", "finetune.lr"]) == 2
    assert "expected KEY=V1,V2" in capsys.readouterr().err
    assert rct(["sweep", "--preset", "smoke", "--out", str(tmp_path / "y"), "--grid", "finetune.bogus=1"]) == 2
    assert "finetune.bogus" in capsys.readouterr().err
    assert rct(["sweep", "--preset", "smoke", "--out", str(tmp_path / "z"), "--seeds", "0,x"]) == 2
    assert "expected integers" in capsys.readouterr().err
    assert rct(["sweep-report", str(tmp_path / "missing")]) == 2


def test_a_sweep_over_models_evaluates_each_base_model_in_its_cell(tmp_path):
    sweep = SweepConfig(preset("smoke"), {"model": ["tiny:n_layers=1,d_model=32", "tiny:n_layers=2,d_model=32"]})
    run_sweep(sweep, tmp_path / "sw", progress=False)
    assert not (tmp_path / "sw" / "base").exists()
    for cell in sweep.cells():
        assert (tmp_path / "sw" / "cells" / cell.name / "eval" / "base" / "metrics.json").exists()
    assert "2 of 2 cells finished" in report_sweep(tmp_path / "sw")
