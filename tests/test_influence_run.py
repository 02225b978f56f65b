"""``rct influence RUN`` end to end on the smoke preset (tiny model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

from experiments.cli import main
from interp.errors import RctError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("infl") / "run"
    assert main(["exp1", "--preset", "smoke", "--out", str(run), "--quiet", "--set", "finetune.snapshots=3"]) == 0
    return run


def test_influence_writes_scores_summary_figures_and_page(smoke_run, capsys) -> None:
    assert main(["influence", str(smoke_run), "--quiet", "--layer-stride", "1", "--precision", "fp32"]) == 0
    out = smoke_run / "influence"
    for name in ("summary.json", "summary.md", "scores.safetensors", "queries.jsonl", "documents.jsonl",
                 "groups.png", "groups.svg", "layers.png", "influence.html"):
        assert (out / name).stat().st_size > 0, name
    s = json.loads((out / "summary.json").read_text())
    queries = (out / "queries.jsonl").read_text().splitlines()
    docs = (out / "documents.jsonl").read_text().splitlines()
    assert s["n_queries"] == len(queries) and s["n_documents"] == len(docs)
    t = load_file(str(out / "scores.safetensors"))
    assert t["ekfac"].shape == t["tracin_dot"].shape == (len(queries), len(docs))
    assert t["ekfac_per_token"].shape[:2] == (len(queries), len(docs))
    # both directions of the both-order facts, and forward and reverse of the one-order ones
    assert set(s["influence"]["both"]) == {"name_first", "description_first"}
    assert set(s["influence"]["one_order"]) == {"p2d", "d2p"}
    for e in s["influence"]["both"].values():
        for g in e["groups"].values():
            assert g["z"]["ci_low"] <= g["z"]["mean"] <= g["z"]["ci_high"]
    assert -1 <= s["agreement"]["tracin_dot"]["spearman"]["mean"] <= 1
    assert s["method"]["precision"] == "fp32"
    # the run saved 3 weight snapshots: TracIn summed over them, next to the final-checkpoint version
    assert t["tracin_cp_dot"].shape == t["tracin_dot"].shape
    cp = s["tracin_checkpoints"]
    assert len(cp["steps"]) == 3 and cp["steps"][0] == 0 and all(w > 0 for w in cp["weights"])
    assert set(cp["influence"]["one_order"]) == {"p2d", "d2p"}
    assert -1 <= s["agreement"]["tracin_checkpoints_dot"]["spearman"]["mean"] <= 1
    md = (out / "summary.md").read_text()
    assert "TracIn over 3 checkpoints" in md and "final-checkpoint gradient similarity (dot)" in md
    html = (out / "influence.html").read_text()
    assert "ColoredTokens" in html and "cdn" not in html.split("<script>")[0]
    assert "Influence of training documents" in capsys.readouterr().out
    # a rerun reuses the fitted factors: same scores
    assert main(["influence", str(smoke_run), "--quiet", "--layer-stride", "1", "--precision", "fp32",
                 "--no-tracin"]) == 0
    again = load_file(str(out / "scores.safetensors"))
    assert (again["ekfac"] - t["ekfac"]).abs().max() <= 1e-5 * t["ekfac"].abs().max()
    assert "tracin_dot" not in again


def test_lora_runs_and_unfinished_runs_are_refused(smoke_run, tmp_path) -> None:
    from experiments.exp1.influence import run_influence

    lora = tmp_path / "lora"
    shutil.copytree(smoke_run, lora, ignore=shutil.ignore_patterns("influence", "checkpoints"))
    cfg = json.loads((lora / "config.json").read_text())
    cfg["finetune"]["lora_rank"] = 4
    (lora / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RctError, match="LoRA"):
        run_influence(lora, progress=False)
    cfg["finetune"]["lora_rank"] = 0
    (lora / "config.json").write_text(json.dumps(cfg))
    shutil.rmtree(lora / "model")
    with pytest.raises(RctError, match="no finetuned model"):
        run_influence(lora, progress=False)
