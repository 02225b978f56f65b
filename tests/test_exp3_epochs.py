"""Evaluation after every epoch: the ``on_epoch_end`` hook of :func:`experiments.finetune.finetune`
(called once per epoch, can stop training, a stop survives a resume, an evaluating hook does
not change training) and experiment 3's per-epoch records and stopping rule."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from experiments.exp3 import preset
from experiments.exp3.data import Exp3DataConfig, generate_exp3
from experiments.exp3.run import _epoch_callback, evaluate_into
from experiments.finetune import FinetuneConfig, finetune
from interp import load_model

TINY = "tiny:n_layers=1,d_model=32,n_heads=2,n_kv_heads=1,d_mlp=64"
DOCS = [("", f"Q: Which colour is number {i}? A: colour {i % 5}") for i in range(12)]
CFG = FinetuneConfig(lr=1e-3, batch_size=4, epochs=3, warmup_steps=1, precision="fp32")


def weights(lm):
    return {k: v.detach().clone() for k, v in lm.hf.state_dict().items()}


def test_on_epoch_end_is_called_once_per_epoch_and_does_not_change_training(tmp_path):
    plain = load_model(TINY)
    log_plain = finetune(plain, DOCS, CFG, tmp_path / "a", progress=False)
    seen = []
    hooked = load_model(TINY)

    def on_epoch_end(state):
        seen.append((state["epoch"], state["step"], hooked.hf.training))
        hooked.hf.eval()  # an evaluating hook: the loop puts the model back in train mode
        with torch.no_grad():
            hooked.hf(torch.tensor([[1, 2, 3]]))
        return None

    log = finetune(hooked, DOCS, CFG, tmp_path / "b", progress=False, on_epoch_end=on_epoch_end)
    assert seen == [(1, 3, True), (2, 6, True), (3, 9, True)]
    assert "stopped_early" not in log and "stopped_early" not in log_plain
    assert log["losses"] == log_plain["losses"]
    a, b = weights(plain), weights(hooked)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_true_return_stops_training_and_a_resumed_run_stays_stopped(tmp_path):
    calls = []
    lm = load_model(TINY)
    log = finetune(lm, DOCS, CFG, tmp_path / "c", progress=False,
                   on_epoch_end=lambda s: calls.append(s["epoch"]) or s["epoch"] == 2)
    assert calls == [1, 2] and log["steps"] == 6 and log["stopped_early"] == 2
    state = json.loads((tmp_path / "c" / "epoch-002" / "state.json").read_text())
    assert state["stopped_early"] == 2 and not (tmp_path / "c" / "epoch-003").exists()
    again = finetune(load_model(TINY), DOCS, CFG, tmp_path / "c", resume=True, progress=False,
                     on_epoch_end=lambda s: calls.append(s["epoch"]))
    assert calls == [1, 2] and again["steps"] == 6 and again["stopped_early"] == 2


def test_exp3_records_one_evaluation_per_epoch_and_stops_on_demonstrated_accuracy(tmp_path):
    cfg = preset("smoke").override([f"model={TINY}", "n_realized_eval=4", "stop_when_demonstrated=1.0",
                                    "min_epochs=2"])
    ds = generate_exp3(Exp3DataConfig(n_pairs=16, n_unrealized=3), "q2a")
    lm = load_model(TINY)
    out = tmp_path / "seed-0"
    hook = _epoch_callback(lm, ds, cfg, out)
    log = finetune(lm, ds.training_documents(), CFG, out / "checkpoints", progress=False, on_epoch_end=hook)
    assert sorted(p.name for p in (out / "epochs").iterdir()) == ["epoch-001", "epoch-002", "epoch-003"]
    for e in (1, 2, 3):
        m = json.loads((out / "epochs" / f"epoch-{e:03d}" / "metrics.json").read_text())
        assert m["unrealized"]["n"] == 3 and m["realized"]["n"] == 4
        recs = (out / "epochs" / f"epoch-{e:03d}" / "records.jsonl").read_text().splitlines()
        assert len(recs) == 7
    assert "stopped_early" not in log  # a random tiny model recalls nothing
    # the stopping rule, on recorded metrics (a present epoch is read, not evaluated again)
    fake = tmp_path / "fake"
    for e, demo in ((1, 1.0), (2, 0.5), (3, 1.0)):
        Path(fake / "epochs" / f"epoch-{e:03d}").mkdir(parents=True)
        (fake / "epochs" / f"epoch-{e:03d}" / "metrics.json").write_text(
            json.dumps({"unrealized": {"exact_match": 0.0}, "realized": {"exact_match": demo}}))
    stop = _epoch_callback(None, ds, cfg, fake)  # no model: nothing may be evaluated
    assert [stop({"epoch": e}) for e in (1, 2, 3)] == [False, False, True]  # epoch 1 < min_epochs
    never = _epoch_callback(None, ds, cfg.override(["stop_when_demonstrated=0.0"]), fake)
    assert [never({"epoch": e}) for e in (1, 2, 3)] == [False, False, False]


def test_evaluation_does_not_depend_on_batch_size(tmp_path):
    cfg = preset("smoke").override([f"model={TINY}", "n_realized_eval=5"])
    ds = generate_exp3(Exp3DataConfig(n_pairs=16, n_unrealized=4), "a2q")
    lm = load_model(TINY)
    a = evaluate_into(lm, ds, cfg.override(["batch_size=64"]), tmp_path / "a")
    b = evaluate_into(lm, ds, cfg.override(["batch_size=3"]), tmp_path / "b")
    ra = [json.loads(x) for x in (tmp_path / "a" / "records.jsonl").read_text().splitlines()]
    rb = [json.loads(x) for x in (tmp_path / "b" / "records.jsonl").read_text().splitlines()]
    assert [r["generated"] for r in ra] == [r["generated"] for r in rb]
    assert all(abs(x["logprob"] - y["logprob"]) < 1e-4 for x, y in zip(ra, rb))
    assert a["unrealized"]["exact_match"] == b["unrealized"]["exact_match"]
