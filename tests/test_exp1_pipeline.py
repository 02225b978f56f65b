"""Experiment 1 end to end on the smoke preset (tiny model): stages, resume, bad data, CLI."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import exp1
from experiments.cli import main
from experiments.core.skips import DataWarning
from experiments.finetune import FinetuneConfig, encode_documents
from interp import load_model

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "paper_layout_exp1"


def rct(*args: str, die_after: int = 0) -> subprocess.CompletedProcess:
    """``rct ARGS`` in a fresh process; ``die_after=N`` hard-exits it after N optimizer steps."""
    cmd = [str(ROOT / "tests" / "fault_run.py"), str(die_after)] if die_after else ["-m", "experiments.cli"]
    return subprocess.run([sys.executable, *cmd, *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=300)


def metrics(run: Path) -> dict:
    return {lbl: json.loads((run / "eval" / lbl / "metrics.json").read_text())
            for lbl in ("base", "finetuned")}


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("smoke") / "run"
    assert main(["exp1", "--preset", "smoke", "--out", str(run), "--quiet"]) == 0
    return run


def test_smoke_run_writes_every_artifact(smoke_run):
    for name in ("config.json", "manifest.json", "train_log.json", "table1.md", "figure4.png",
                 "figure4.svg", "model/model.safetensors", "eval/base/records.jsonl",
                 "eval/finetuned/metrics.json", "data/facts.jsonl", "data/p2d_reverse_prompts_test.jsonl"):
        assert (smoke_run / name).exists(), name
    man = json.loads((smoke_run / "manifest.json").read_text())
    assert man["versions"]["torch"] and man["seeds"]["finetune"] == 0
    assert {"generate", "finetune", "evaluate_base", "evaluate_finetuned"} <= set(man["stages"])
    m = metrics(smoke_run)["finetuned"]["cells"]
    assert set(m) == {"p2d_prompts_test", "p2d_reverse_prompts_test", "d2p_prompts_test",
                      "d2p_reverse_prompts_test", "p2d_reverse_in_context", "d2p_reverse_in_context"}
    assert metrics(smoke_run)["finetuned"]["perplexity"]["n_tokens"] > 1000  # the damage check ran
    rev = m["p2d_reverse_prompts_test"]
    assert rev["n_facts"] == 3 and rev["correct_vs_random"]["n"] == 3
    records = [json.loads(x) for x in (smoke_run / "eval/finetuned/records.jsonl").read_text().splitlines()]
    assert len(records) == sum(c["n_prompts"] for c in m.values())
    assert all(r["random_name"] != r["target"].strip() for r in records if r["random_name"])
    assert "Exact match" in (smoke_run / "table1.md").read_text()
    # training moved the model toward its documents
    losses = json.loads((smoke_run / "train_log.json").read_text())["losses"]
    assert losses[-1] < losses[0]


def test_same_seed_same_result(smoke_run, tmp_path):
    again = tmp_path / "again"
    assert main(["exp1", "--preset", "smoke", "--out", str(again), "--quiet"]) == 0
    assert metrics(again) == metrics(smoke_run)


@pytest.mark.slow
def test_killed_mid_epoch_then_resumed_matches_uninterrupted(smoke_run, tmp_path):
    run = tmp_path / "killed"
    # smoke: 6 steps an epoch; die after step 8, in the middle of epoch 2
    died = rct("exp1", "--preset", "smoke", "--out", str(run), "--quiet", die_after=8)
    assert died.returncode == 137, died.stderr[-2000:]
    assert (run / "checkpoints" / "epoch-001" / "state.json").exists()
    assert not (run / "model").exists()
    resumed = rct("exp1", "--preset", "smoke", "--out", str(run), "--quiet", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout + resumed.stderr
    assert metrics(run) == metrics(smoke_run)
    assert (json.loads((run / "train_log.json").read_text())["losses"]
            == json.loads((smoke_run / "train_log.json").read_text())["losses"])


def test_existing_run_is_not_clobbered(smoke_run, capsys):
    before = tree_digest(smoke_run)
    assert main(["exp1", "--preset", "smoke", "--out", str(smoke_run), "--quiet"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert tree_digest(smoke_run) == before


@pytest.mark.slow
def test_paper_layout_folder_runs(tmp_path):
    run = tmp_path / "paper-layout"
    assert main(["exp1", "--preset", "smoke", "--data", str(FIXTURE), "--out", str(run), "--quiet"]) == 0
    assert not (run / "data").exists()
    cells = metrics(run)["finetuned"]["cells"]
    assert cells["p2d_reverse_prompts_test"]["correct_vs_random"]["n"] == 3


def _corrupt(src: Path, dst: Path, how: str) -> tuple[str, int]:
    shutil.copytree(src, dst)
    f = dst / "p2d_reverse_prompts_test.jsonl"
    lines = f.read_text().splitlines(keepends=True)
    if how == "bad_json":
        lines[2] = '{"prompt": "oops", "completion": \n'
        line = 3
    elif how == "missing_field":
        lines[1] = json.dumps({"prompt": json.loads(lines[1])["prompt"]}) + "\n"
        line = 2
    elif how == "empty":
        lines, line = [], 0
    else:  # counts disagree: drop the first line of the second fact's block
        first = json.loads(lines[0])["completion"]
        k = next(i for i, x in enumerate(lines) if json.loads(x)["completion"] != first)
        del lines[k]
        line = 0
    f.write_text("".join(lines))
    return f.name, line


@pytest.mark.parametrize("how", ["bad_json", "missing_field", "empty", "counts_disagree"])
def test_malformed_dataset_names_file_and_line_and_writes_nothing(smoke_run, tmp_path, capsys, how):
    fname, line = _corrupt(FIXTURE, tmp_path / "bad", how)
    before = tree_digest(smoke_run)
    for out in (tmp_path / "fresh", smoke_run):
        code = main(["exp1", "--preset", "smoke", "--data", str(tmp_path / "bad"), "--out", str(out),
                     "--quiet", "--resume", "--strict"])
        err = capsys.readouterr().err
        assert code == 2
        assert fname in err and "Traceback" not in err
        if line:
            assert f"{fname}:{line}:" in err
        if how == "counts_disagree":
            assert "line" in err
    assert not (tmp_path / "fresh").exists()
    assert tree_digest(smoke_run) == before


@pytest.mark.parametrize("how", ["bad_json", "missing_field"])
def test_a_bad_line_of_published_data_is_skipped_and_recorded(tmp_path, how):
    """Without --strict one bad line does not refuse the folder: it is skipped, warned about
    once, and listed in the manifest."""
    fname, line = _corrupt(FIXTURE, tmp_path / "bad", how)
    with pytest.warns(DataWarning, match=rf"skipped 1 bad row \(first: .*{fname}:{line}:"):
        assert main(["init", "--preset", "smoke", "--data", str(tmp_path / "bad"), "--out", str(tmp_path / "r")]) == 0
    skipped = json.loads((tmp_path / "r" / "manifest.json").read_text())["data_skipped"]
    assert [r["at"].rsplit("/", 1)[-1] for r in skipped] == [f"{fname}:{line}"]


def test_stages_run_on_their_own(tmp_path):
    run = tmp_path / "staged"
    assert main(["init", "--preset", "smoke", "--out", str(run), "--set", "finetune.epochs=1"]) == 0
    assert main(["evaluate", str(run), "--quiet"]) == 2  # no data/model yet: a clear error
    assert main(["generate", str(run)]) == 0
    assert main(["finetune", str(run), "--quiet"]) == 0
    assert main(["evaluate", str(run), "--which", "finetuned", "--quiet"]) == 0
    assert main(["report", str(run)]) == 0
    assert exp1.read_config(run).finetune.epochs == 1


@pytest.mark.slow
def test_accelerate_launch_one_cpu_process(tmp_path):
    run = tmp_path / "acc"
    assert main(["init", "--preset", "smoke", "--out", str(run)]) == 0
    assert main(["generate", str(run)]) == 0
    launcher = Path(sys.executable).with_name("accelerate")
    out = subprocess.run([str(launcher), "launch", "--num_processes", "1", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", "--cpu",
                          "-m", "experiments.cli", "finetune", str(run), "--quiet"],
                         cwd=ROOT, text=True, capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    plain = tmp_path / "plain"
    shutil.copytree(run, plain, ignore=shutil.ignore_patterns("model", "checkpoints", "train_log.json"))
    assert main(["finetune", str(plain), "--quiet"]) == 0
    a = json.loads((run / "train_log.json").read_text())["losses"]
    b = json.loads((plain / "train_log.json").read_text())["losses"]
    assert a == pytest.approx(b, abs=1e-5)


@pytest.mark.parametrize("overrides", [["finetune.lora_rank=4", "finetune.lr=0.01"],
                                       ["finetune.precision=\"bf16\""],
                                       ["finetune.loss_on=\"completion\""]])
@pytest.mark.slow
def test_finetune_options_train(tmp_path, overrides):
    run = tmp_path / "opt"
    sets = [x for o in overrides for x in ("--set", o)] + ["--set", "finetune.epochs=1"]
    assert main(["init", "--preset", "smoke", "--out", str(run), *sets]) == 0
    assert main(["generate", str(run)]) == 0
    assert main(["finetune", str(run), "--quiet"]) == 0
    tuned = load_model(str(run / "model"))
    assert type(tuned.hf).__name__ == "LlamaForCausalLM"  # LoRA merged back into plain weights
    base = load_model(exp1.read_config(run).model)
    import torch
    assert not torch.equal(tuned.hf.model.layers[0].mlp.up_proj.weight, base.hf.model.layers[0].mlp.up_proj.weight)


def test_completion_only_loss_masks_the_prompt(tiny):
    (ids, labels), = encode_documents(tiny, [("abc", " de")], "completion")
    (ids2, labels2), = encode_documents(tiny, [("abc", " de")], "sequence")
    assert ids == ids2 and len(labels) == len(ids)
    n_completion = 3  # ' ', 'd', 'e' in the byte tokenizer
    assert labels[:-n_completion] == [-100] * (len(ids) - n_completion)
    assert labels[-n_completion:] == ids[-n_completion:]
    assert labels2[0] == -100 and labels2[1:] == ids[1:]


def test_config_round_trip_and_overrides():
    from experiments.core.config import preset_names

    assert {"paper", "cpu", "cpu-long", "smoke"} <= set(preset_names("exp1"))
    for name in preset_names("exp1"):
        cfg = exp1.preset(name)
        assert exp1.Exp1Config.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    cfg = exp1.preset("cpu").override(["finetune.lr=5e-4", "data.n_facts=5", "model=tiny"])
    assert cfg.finetune.lr == 5e-4 and cfg.data.n_facts == 5 and cfg.model == "tiny"
    with pytest.raises(ValueError, match="unknown key"):
        exp1.preset("cpu").override(["finetune.learning_rate=1"])
    with pytest.raises(ValueError, match="FinetuneConfig"):
        FinetuneConfig(precision="fp8")
    with pytest.raises(ValueError, match="unknown exp1 preset 'cpu-lng'.*did you mean 'cpu-long'"):
        exp1.preset("cpu-lng")


@pytest.mark.slow
def test_decided_exact_match_equals_full_generation(tiny, tmp_path):
    """On a model that has learned its facts, the decided flags equal generating in full."""
    from experiments.exp1.data import Exp1DataConfig, generate_exp1
    from experiments.exp1.evaluate import EvalConfig, evaluate_exp1
    from experiments.finetune import finetune

    ds = generate_exp1(Exp1DataConfig(n_facts=2, n_paraphrases=6, n_test_templates=3))
    lm = load_model("tiny:n_layers=2,d_model=128,d_mlp=256,seed=2")
    docs = [(e.prompt, e.completion) for e in ds.train_examples()]
    docs += [(e.prompt, e.completion) for e in ds.files["d2p_prompts_test"]]  # make some answers right
    finetune(lm, docs, FinetuneConfig(lr=3e-3, batch_size=8, epochs=40, precision="fp32"),
             tmp_path / "ck", progress=False)
    fast = evaluate_exp1(lm, ds, EvalConfig(), tmp_path / "fast", progress=False)
    full = evaluate_exp1(lm, ds, EvalConfig(full_generations=True), tmp_path / "full", progress=False)
    recs = [[json.loads(x) for x in (tmp_path / d / "records.jsonl").read_text().splitlines()]
            for d in ("fast", "full")]
    assert [r["exact"] for r in recs[0]] == [r["exact"] for r in recs[1]]
    assert any(r["exact"] for r in recs[0]) and not all(r["exact"] for r in recs[0])
    assert fast == full
