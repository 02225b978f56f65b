"""``rct exp1-seeds``: experiment 1 runs pooled over finetuning seeds (synthetic run folders)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from analysis.exp1_seeds import pool_runs
from experiments.cli import main

N_FACTS = 20


def fake_run(root: Path, seed: int, rng: np.random.Generator, reverse_shift: float = 0.0, **cfg_extra) -> Path:
    """A run folder with the files exp1-seeds reads: a same-order cell the model learned and a
    reverse cell with no preference (plus ``reverse_shift``)."""
    run = root / f"s{seed}"
    (run / "eval/finetuned").mkdir(parents=True)
    cfg = {"model": "smollm2-135m", "finetune": {"seed": seed, "lr": 3e-4, **cfg_extra}, "data": {"seed": 0}}
    (run / "config.json").write_text(json.dumps(cfg))
    cells, records = {}, []
    for cell, direction, shift in (("d2p_prompts_test", "same", 10.0), ("p2d_reverse_prompts_test", "reverse", reverse_shift)):
        correct = rng.normal(-5, 2, N_FACTS) + shift
        random = correct - shift - rng.normal(0, 1.0, N_FACTS)
        rank = np.clip(0.5 + 0.05 * rng.normal(size=N_FACTS) + (0.45 if shift > 5 else 0), 0, 1)
        cells[cell] = {"direction": direction, "per_fact": {"fact_id": list(range(N_FACTS)), "correct": correct.tolist(),
                                                            "random": random.tolist(), "normalised_rank": rank.tolist()}}
        for f in range(N_FACTS):
            for _ in range(2):
                records.append({"file": cell, "fact_id": f, "exact": bool(shift > 5 and rng.random() < 0.9)})
    (run / "eval/finetuned/metrics.json").write_text(json.dumps({"cells": cells}))
    (run / "eval/finetuned/records.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return run


def test_three_seeds_pool_with_an_equivalence_bound(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    runs = [fake_run(tmp_path, s, rng) for s in range(3)]
    out = tmp_path / "pooled"
    assert main(["exp1-seeds", *map(str, runs), "--out", str(out), "--margin", "1.5"]) == 0
    s = json.loads((out / "summary.json").read_text())
    rev, fwd = s["cells"]["p2d_reverse_prompts_test"], s["cells"]["d2p_prompts_test"]
    assert len(rev["diff"]["per_seed"]) == 3 and rev["diff"]["min"] <= rev["diff"]["mean"] <= rev["diff"]["max"]
    i = rev["diff"]["interval"]
    assert i["n_seeds"] == 3 and i["n_facts"] == N_FACTS and i["ci_low"] < 0 < i["ci_high"]
    assert rev["tost"]["equivalent"] and rev["tost"]["bound"] < 1.5 and "tost" not in fwd
    assert fwd["diff"]["interval"]["ci_low"] > 5 and fwd["exact_match"]["mean"] > 0.7
    assert rev["exact_match"]["mean"] == 0
    md = (out / "summary.md").read_text()
    assert "smallest margin excluded" in md and "| yes |" in md
    assert (out / "reverse.png").stat().st_size > 0
    assert "wrote" in capsys.readouterr().out


def test_a_real_reverse_preference_is_not_called_equivalent() -> None:
    rng = np.random.default_rng(1)
    runs = []
    for seed in range(3):
        x = rng.normal(2.0, 1.0, N_FACTS)
        runs.append({"seed": seed, "exact_per_fact": {}, "cells": {"p2d_reverse_prompts_test": {
            "per_fact": {"fact_id": list(range(N_FACTS)), "correct": x.tolist(), "random": [0.0] * N_FACTS}}}})
    t = pool_runs(runs, margin=1.0)["cells"]["p2d_reverse_prompts_test"]["tost"]
    assert not t["equivalent"] and t["bound"] > 1.0


def test_runs_that_differ_in_more_than_the_seed_are_refused(tmp_path, capsys) -> None:
    rng = np.random.default_rng(2)
    a = fake_run(tmp_path, 0, rng)
    b = fake_run(tmp_path, 1, rng, snapshots=3)  # snapshots change no result: accepted
    c = fake_run(tmp_path / "c", 2, rng, weight_decay=0.1)
    assert main(["exp1-seeds", str(a), str(b), "--out", str(tmp_path / "ok")]) == 0
    assert main(["exp1-seeds", str(a), str(c), "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "finetune.weight_decay" in err and str(c) in err
    assert main(["exp1-seeds", str(a), str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2
    assert "config.json is missing" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["exp1-seeds", str(a), str(b), "--out", str(tmp_path / "y"), "--margin"])
