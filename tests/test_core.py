"""The shared layer: configs as data, one run-directory rule for every command, one-line errors.

Every fault a hostile user can provoke is a test here: the folder is left as it was, the
message is one line naming the field, file or flag, and no traceback is printed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from experiments import exp1
from experiments.cli import main
from experiments.core.config import ConfigError, build, load_preset, preset_names, write_preset
from experiments.core.rundir import RunDir, RunDirError

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "paper_layout_exp1"
TINY = "tiny:n_layers=2,d_model=64,n_heads=4,n_kv_heads=2,d_mlp=128"


def digest(folder: Path) -> dict[str, str]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(capsys, needle: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert needle in err, err
    return err


# ------------------------------------------------------------------ configs

@pytest.mark.parametrize("override, needle", [
    ("finetune.epochs=2.5", "finetune.epochs"),
    ("finetune.epochs=abc", "finetune.epochs"),
    ("finetune.nonexistent=1", "unknown key 'finetune.nonexistent'; keys of finetune are: lr,"),
    ("nonsense", "expected KEY=VALUE"),
    ("finetune.precision=fp8", "precision"),
])
def test_bad_overrides_are_one_line_and_write_nothing(tmp_path, capsys, override, needle):
    out = tmp_path / "run"
    assert main(["exp1", "--preset", "smoke", "--out", str(out), "--set", override, "--quiet"]) == 2
    one_line_error(capsys, needle)
    assert not out.exists()


def test_every_preset_file_round_trips_and_a_copied_file_runs(tmp_path):
    for experiment, cls in (("exp1", exp1.Exp1Config),):
        for name in preset_names(experiment):
            cfg = load_preset(cls, experiment, name)
            copy = write_preset(cfg, tmp_path / f"{name}.yaml")
            assert build(cls, copy) == cfg
    from experiments.exp3 import Exp3Config
    assert {"cpu", "paper", "smoke"} <= set(preset_names("exp3"))
    edited = (tmp_path / "smoke.yaml").read_text().replace("epochs: 2", "epochs: 1")
    (tmp_path / "mine.yaml").write_text(edited)
    assert build(exp1.Exp1Config, tmp_path / "mine.yaml").finetune.epochs == 1
    assert load_preset(Exp3Config, "exp3", "smoke").preset == "smoke"


def test_config_file_errors_name_the_file_and_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("finetune:\n  epoch: 3\n")
    assert main(["exp1", "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = one_line_error(capsys, "unknown key 'finetune.epoch'")
    assert str(bad) in err
    with pytest.raises(ConfigError, match="not found"):
        build(exp1.Exp1Config, tmp_path / "missing.yaml")


# ------------------------------------------------------------------ run directories

def smoke_args(experiment: str, out: Path) -> list[str]:
    if experiment == "exp2":
        return ["exp2", "--model", TINY, "--limit", "6", "--out", str(out), "--quiet"]
    if experiment == "sweep":
        return ["sweep", "--preset", "smoke", "--grid", "finetune.lr=1e-3,3e-3", "--set", "finetune.epochs=1",
                "--out", str(out), "--quiet"]
    return [experiment, "--preset", "smoke", "--set", "finetune.epochs=1", "--out", str(out), "--quiet"]


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["exp1", "exp2", "exp3", "sweep"])
def test_every_command_refuses_a_used_out_and_resumes_with_resume(tmp_path, capsys, experiment):
    out = tmp_path / experiment
    assert main(smoke_args(experiment, out)) == 0
    capsys.readouterr()
    before = digest(out)
    assert main(smoke_args(experiment, out)) == 2
    one_line_error(capsys, "already holds a run; pass --resume")
    assert digest(out) == before
    assert main(smoke_args(experiment, out) + ["--resume"]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["kind"] == experiment and man["config_hash"] and man["stages"]
    # a stranger's folder: refused with and without --resume, untouched
    stranger = tmp_path / f"{experiment}-stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    for extra in ([], ["--resume"]):
        assert main(smoke_args(experiment, stranger) + extra) == 2
        one_line_error(capsys, "not")
        assert digest(stranger) == {"notes.txt": hashlib.sha256(b"mine").hexdigest()}


def test_resume_refuses_an_edited_config_naming_the_field(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["init", "--preset", "smoke", "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    cfg["finetune"]["lr"] = 0.5
    (out / "config.json").write_text(json.dumps(cfg))
    capsys.readouterr()
    assert main(["exp1", "--preset", "smoke", "--set", "finetune.lr=0.5", "--out", str(out), "--resume"]) == 2
    one_line_error(capsys, "config.json was edited")
    assert main(["exp1", "--preset", "smoke", "--set", "finetune.lr=0.25", "--out", str(out), "--resume"]) == 2
    one_line_error(capsys, "finetune.lr: 0.5 in the run, 0.25 now")


def test_resume_refuses_changed_data_naming_the_file(tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data)
    out = tmp_path / "run"
    assert main(["init", "--preset", "smoke", "--data", str(data), "--out", str(out)]) == 0
    lines = (data / "p2d_prompts_test.jsonl").read_text().splitlines(keepends=True)
    first = json.loads(lines[0])
    lines[0] = json.dumps({**first, "prompt": "Well, " + first["prompt"]}) + "\n"  # still valid data
    (data / "p2d_prompts_test.jsonl").write_text("".join(lines))
    capsys.readouterr()
    assert main(["exp1", "--preset", "smoke", "--data", str(data), "--out", str(out), "--resume"]) == 2
    one_line_error(capsys, "p2d_prompts_test.jsonl changed since the run started")


@pytest.mark.parametrize("args, needle", [
    (["--device", "cuda"], "no CUDA device"),
    (["--model", "gpt2"], "'gpt2'"),
    (["--model", "./no/such/model"], "does not exist"),
])
def test_errors_found_before_the_folder_is_made(tmp_path, capsys, monkeypatch, args, needle):
    import torch

    if args[0] == "--device" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "run"
    assert main(["exp1", "--preset", "smoke", "--out", str(out), *args]) == 2
    one_line_error(capsys, needle)
    assert not out.exists()


@pytest.mark.parametrize("argv, needle", [
    (["sweep", "--preset", "smoke", "--shard", "3/2"], "--shard '3/2'"),
    (["sweep", "--preset", "smoke", "--grid", "finetune.epochs=1,2.5"], "finetune.epochs"),
    (["sweep", "--preset", "smoke", "--seeds", "0,x"], "--seeds"),
])
def test_sweep_arguments_checked_before_the_folder_is_made(tmp_path, capsys, argv, needle):
    out = tmp_path / "sweep"
    assert main([*argv, "--out", str(out), "--quiet"]) == 2
    one_line_error(capsys, needle)
    assert not out.exists()


def test_out_that_is_a_file_or_cannot_be_written(tmp_path, capsys):
    f = tmp_path / "a-file"
    f.write_text("keep")
    assert main(["exp1", "--preset", "smoke", "--out", str(f)]) == 2
    one_line_error(capsys, "is a file")
    assert main(["exp1", "--preset", "smoke", "--out", str(f / "below")]) == 2
    one_line_error(capsys, "is a file, so no folder can be made below it")
    assert f.read_text() == "keep"
    if os.geteuid() != 0:  # root writes anywhere: the permission check cannot fail for it
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        assert main(["exp1", "--preset", "smoke", "--out", str(ro / "run")]) == 2
        one_line_error(capsys, "cannot write there")


def test_stage_commands_on_a_file_or_a_non_run(tmp_path, capsys):
    f = tmp_path / "a-file"
    f.write_text("x")
    for cmd in ("finetune", "evaluate", "report", "analyse"):
        assert main([cmd, str(f)]) == 2
        one_line_error(capsys, "")
        assert main([cmd, str(tmp_path)]) == 2
        one_line_error(capsys, "not a run directory")


def test_run_dir_stage_skips_a_finished_stage(tmp_path):
    run = RunDir.open(tmp_path / "r", exp1.preset("smoke"), "exp1")
    calls = []
    for _ in range(2):
        with run.stage("work") as info:
            if info is not None:
                calls.append(1)
                info["n"] = 3
    assert calls == [1] and run.manifest()["stages"]["work"]["n"] == 3
    with pytest.raises(RunDirError, match="already holds a run"):
        RunDir.open(tmp_path / "r", exp1.preset("smoke"), "exp1")
    with pytest.raises(RunDirError, match="holds an exp1 run, not exp3"):
        RunDir.open(tmp_path / "r", exp1.preset("smoke"), "exp3", resume=True)


# ------------------------------------------------------------------ the CLI's error policy

def test_only_user_errors_become_one_line(tmp_path, capsys, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("a bug, not a user error")

    monkeypatch.setattr(exp1.run, "run_stages", boom)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["exp1", "--preset", "smoke", "--out", str(tmp_path / "a")])
    with pytest.raises(RunDirError):
        main(["--debug", "exp1", "--preset", "smoke", "--out", str(tmp_path / "a")])


def test_interrupted_checkpoint_write_is_cleaned_up(tmp_path):
    from experiments.finetune import FinetuneConfig, finetune
    from interp import load_model

    ckpt = tmp_path / "ck"
    stale = ckpt / ".epoch-001-abc123"  # what a kill during atomic_dir leaves
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")
    lm = load_model(TINY)
    finetune(lm, [("a b", " c d")] * 4, FinetuneConfig(batch_size=2, epochs=1, precision="fp32"), ckpt,
             progress=False)
    assert not stale.exists() and (ckpt / "epoch-001" / "state.json").exists()


# ------------------------------------------------------------------ bad input found by a user probe

def test_empty_or_folder_config_is_refused(tmp_path, capsys):
    (tmp_path / "empty.yaml").write_text("\n")
    (tmp_path / "folder").mkdir()
    assert main(["exp1", "--config", str(tmp_path / "empty.yaml"), "--out", str(tmp_path / "a")]) == 2
    one_line_error(capsys, "is empty")
    assert main(["exp1", "--config", str(tmp_path / "folder"), "--out", str(tmp_path / "b")]) == 2
    one_line_error(capsys, "is a folder")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_resume_on_a_missing_path_and_unmakeable_out(tmp_path, capsys):
    # --resume on a first run starts it (scripts/exp1.sh does so), and says so in one line
    assert main(["init", "--preset", "smoke", "--out", str(tmp_path / "typo" / "run"), "--resume"]) == 0
    assert "does not exist yet; starting a new run there" in capsys.readouterr().err
    (tmp_path / "afile.txt").write_text("keep")
    assert main(["exp1", "--preset", "smoke", "--out", str(tmp_path / "afile.txt" / "run")]) == 2
    one_line_error(capsys, "afile.txt is a file")
    assert (tmp_path / "afile.txt").read_text() == "keep"
    if Path("/proc/self").exists():  # a folder whose mkdir fails after the permission check
        assert main(["exp1", "--preset", "smoke", "--out", "/proc/rct-x"]) == 2
        one_line_error(capsys, "cannot make the folder")


def test_damaged_run_config_is_one_line(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["init", "--preset", "smoke", "--out", str(run)]) == 0
    capsys.readouterr()
    with open(run / "config.json", "a") as f:
        f.write("{{")
    for argv in (["report", str(run)], ["exp1", "--preset", "smoke", "--out", str(run), "--resume"]):
        assert main(argv) == 2
        one_line_error(capsys, "config.json: not valid JSON (line")


def test_analyse_and_influence_arguments_and_unfinished_runs(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["init", "--preset", "smoke", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["analyse", str(run), "--n-facts", "0", "--sections", "none"]) == 2
    one_line_error(capsys, "--n-facts must be >= 1")
    assert main(["analyse", str(run)]) == 2
    one_line_error(capsys, "has no finetuned model yet")
    assert main(["influence", str(run), "--n-facts", "-3"]) == 2
    one_line_error(capsys, "--n-facts must be >= 1")


def test_jsonl_with_a_bom_blank_lines_and_crlf_reads_the_same(tmp_path):
    from experiments.exp1.data import load_exp1

    folder = tmp_path / "d"
    shutil.copytree(FIXTURE, folder)
    f = folder / "p2d_prompts_train.jsonl"
    lines = f.read_text(encoding="utf-8").splitlines()
    f.write_bytes(("\ufeff" + "\r\n".join(lines[:2]) + "\r\n\r\n  \r\n" + "\r\n".join(lines[2:]) + "\r\n\n")
                  .encode("utf-8"))
    a, b = load_exp1(FIXTURE), load_exp1(folder)
    assert [(e.prompt, e.completion) for e in a.files["p2d_prompts_train"]] == \
        [(e.prompt, e.completion) for e in b.files["p2d_prompts_train"]]
    assert not b.skipped


def test_a_missing_test_file_is_named_in_one_warning(tmp_path):
    from experiments.core.skips import DataWarning
    from experiments.exp1.data import load_exp1
    from experiments.exp1.evaluate import EvalConfig, exp1_items

    folder = tmp_path / "d"
    shutil.copytree(FIXTURE, folder)
    (folder / "d2p_prompts_test.jsonl").unlink()
    with pytest.warns(DataWarning, match="no d2p_prompts_test.jsonl"):
        items = exp1_items(load_exp1(folder), EvalConfig())
    assert items and all(r["file"] != "d2p_prompts_test" for r in items)


def test_stage_commands_refuse_changed_data_or_an_edited_config(tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data)
    out = tmp_path / "run"
    assert main(["init", "--preset", "smoke", "--data", str(data), "--out", str(out)]) == 0
    before = digest(out)
    with open(data / "p2d_prompts_test.jsonl", "a") as f:
        f.write("\n")  # any change of the bytes
    capsys.readouterr()
    for cmd in ("finetune", "evaluate", "report"):
        assert main([cmd, str(out)]) == 2
        one_line_error(capsys, "p2d_prompts_test.jsonl changed since the run started")
    assert digest(out) == before

    run = tmp_path / "run2"
    assert main(["init", "--preset", "smoke", "--out", str(run)]) == 0
    cfg = json.loads((run / "config.json").read_text())
    cfg["finetune"]["lr"] = 0.5
    (run / "config.json").write_text(json.dumps(cfg))
    capsys.readouterr()
    for cmd in ("finetune", "report"):
        assert main([cmd, str(run)]) == 2
        one_line_error(capsys, "was edited after the run was made")


def test_a_training_completion_without_its_space_is_refused(tmp_path):
    from experiments.exp1.data import DatasetError, load_exp1

    folder = tmp_path / "d"
    shutil.copytree(FIXTURE, folder)
    f = folder / "d2p_prompts_train.jsonl"
    lines = f.read_text().splitlines()
    row = json.loads(lines[1])
    lines[1] = json.dumps({**row, "completion": row["completion"].lstrip()})
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"d2p_prompts_train.jsonl:2: the training completion .* does not start with a space"):
        load_exp1(folder)


def test_quiet_silences_the_libraries_bars_too(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "experiments.cli", "exp1", "--preset", "smoke", "--out",
                        str(tmp_path / "run"), "--quiet"], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.strip() == "", r.stderr[-2000:]  # no "Loading weights" / "Writing model shards" bars
    assert "A plumbing check, not a result" in r.stdout  # a smoke run's tables are not the curse
