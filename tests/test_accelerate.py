"""Two CPU processes under ``accelerate launch`` (DDP over gloo) train experiment 1's finetune:
as one process would with their global batch, and resumably after a kill.

``accelerate launch --cpu`` starts a single process whatever ``--num_processes`` says (the
simple launcher); several CPU processes come from the torchrun launcher (``--multi_gpu``),
where the toolkit's ``Accelerator(cpu=True)`` then sets up gloo."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.cli import main

ROOT = Path(__file__).resolve().parents[1]
# Two processes compute the same global-batch gradient as one process, up to float
# summation order (different matmul shapes, an all-reduce): losses agree to this.
LOSS_TOLERANCE = 1e-4

pytestmark = [pytest.mark.slow, pytest.mark.cpu_only]  # gloo on CPU processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(n: int, *args: str, die_after: int = 0) -> subprocess.CompletedProcess:
    """``accelerate launch`` with ``n`` CPU processes running ``rct ARGS``."""
    launcher = Path(sys.executable).with_name("accelerate")
    target = [str(ROOT / "tests" / "fault_run.py"), str(die_after)] if die_after else ["-m", "experiments.cli"]
    cmd = [str(launcher), "launch", "--num_processes", str(n), "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--multi_gpu", "--main_process_port", str(free_port()),
           *target, *args]
    return subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True, timeout=600)


def losses(run: Path) -> list[float]:
    return json.loads((run / "train_log.json").read_text())["losses"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The same data and global batch (16 documents a step): two processes x 8, and one x 16."""
    root = tmp_path_factory.mktemp("ddp")
    two, one = root / "two", root / "one"
    common = ["--preset", "smoke", "--set", "finetune.epochs=3", "--set", "data.n_paraphrases=8"]
    assert main(["init", *common, "--out", str(two)]) == 0
    assert main(["generate", str(two)]) == 0
    out = launch(2, "finetune", str(two), "--quiet")
    assert out.returncode == 0, out.stderr[-3000:]
    assert main(["init", *common, "--set", "finetune.batch_size=16", "--out", str(one)]) == 0
    assert main(["generate", str(one)]) == 0
    assert main(["finetune", str(one), "--quiet"]) == 0
    return {"two": two, "one": one, "root": root}


def test_two_processes_train_as_one_with_their_global_batch(runs):
    log = json.loads((runs["two"] / "train_log.json").read_text())
    assert log["num_processes"] == 2
    a, b = losses(runs["two"]), losses(runs["one"])
    assert len(a) == len(b) >= 6
    assert a[-1] < a[0]  # it trained
    assert a == pytest.approx(b, abs=LOSS_TOLERANCE)
    ckpt = sorted((runs["two"] / "checkpoints").glob("epoch-*"))[-1]
    assert sorted(p.name for p in (ckpt / "rng").iterdir()) == ["rank-0.pt", "rank-1.pt"]


def test_two_processes_resume_after_a_kill(runs):
    run = runs["root"] / "killed"
    shutil.copytree(runs["two"], run, ignore=shutil.ignore_patterns("model", "checkpoints", "train_log.json"))
    steps_per_epoch = json.loads((runs["two"] / "train_log.json").read_text())["steps_per_epoch"]
    died = launch(2, "finetune", str(run), "--quiet", die_after=steps_per_epoch + 1)
    assert died.returncode != 0
    assert (run / "checkpoints" / "epoch-001" / "state.json").exists()
    assert not (run / "model").exists()
    resumed = launch(2, "finetune", str(run), "--quiet", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout + resumed.stderr
    assert losses(run) == losses(runs["two"])
