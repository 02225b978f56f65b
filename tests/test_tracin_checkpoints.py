"""TracIn over several checkpoints: the snapshots training saves, and the weighted sum over them."""

from __future__ import annotations

import pytest
import torch

from experiments.finetune import FinetuneConfig, finetune
from experiments.finetune.config import lr_lambda
from experiments.finetune.snapshots import list_snapshots, load_snapshot, snapshot_plan, snapshot_steps
from interp import load_model
from interp.influence import InfluenceError, tracin_checkpoints, tracin_scores, tracked_modules
from interp.tokens import encode_documents

TEXTS = [("Orla Quillmere is", " the composer of a sea opera."), ("The first diver of Lake Vost is", " Ben Arto."),
         ("Mira Salk was", " the keeper of the north light."), ("Ada Lune wrote", " the atlas of small rivers."),
         ("Noor Venn is known as", " the last glassblower."), ("Tomas Reel is", " a painter of doors.")]
SPEC = "tiny:n_layers=2,d_model=32,n_heads=2,n_kv_heads=2,d_mlp=48,seed=3"


def test_snapshot_plan_covers_training_and_weighs_by_learning_rate() -> None:
    assert snapshot_steps(150, 3) == [0, 50, 100]
    assert snapshot_steps(4, 8) == [0, 1, 2, 3]  # no more snapshots than steps
    cfg = FinetuneConfig(lr=1e-3, epochs=3, warmup_steps=2, snapshots=3)
    plan = snapshot_plan(cfg, steps_per_epoch=5)
    assert [e["step"] for e in plan] == [0, 5, 10] and sum(e["steps"] for e in plan) == 15
    f = lr_lambda(cfg, 15)
    assert sum(e["lr_sum"] for e in plan) == pytest.approx(sum(1e-3 * f(t) for t in range(15)))
    assert all(e["weight"] == pytest.approx(e["lr_sum"] / 5) for e in plan)
    with pytest.raises(ValueError, match="snapshots"):
        FinetuneConfig(snapshots=3, lora_rank=4)


def test_one_checkpoint_equals_final_checkpoint_gradient_similarity(tiny) -> None:
    docs = encode_documents(tiny, TEXTS, "sequence")
    queries = encode_documents(tiny, TEXTS[:3], "completion")
    names = tracked_modules(tiny.hf)
    one = tracin_scores(tiny, docs, queries, names, progress=False)
    cp = tracin_checkpoints(tiny, docs, queries, names, [(1.0, lambda m: None)], progress=False)
    assert torch.allclose(cp.dot, one.dot, rtol=1e-6, atol=1e-6 * float(one.dot.abs().max()))
    assert torch.allclose(cp.cosine, one.cosine, atol=1e-6)
    with pytest.raises(InfluenceError, match="weights"):
        tracin_checkpoints(tiny, docs, queries, names, [(0.0, lambda m: None)], progress=False)


def test_training_saves_snapshots_and_tracin_sums_over_them(tmp_path) -> None:
    lm = load_model(SPEC)
    start = {k: v.clone() for k, v in lm.hf.state_dict().items()}
    cfg = FinetuneConfig(lr=3e-3, epochs=3, batch_size=2, warmup_steps=1, precision="fp32", snapshots=3)
    finetune(lm, TEXTS, cfg, tmp_path / "ckpt", progress=False)
    snaps = list_snapshots(tmp_path / "ckpt")
    assert [m["step"] for _, m in snaps] == [0, 3, 6]  # 3 steps an epoch, one snapshot an epoch
    final = {k: v.clone() for k, v in lm.hf.state_dict().items()}
    load_snapshot(lm.hf, snaps[0][0])  # step 0 is the weights before training
    assert all(torch.equal(v, start[k]) for k, v in lm.hf.state_dict().items())
    load_snapshot(lm.hf, snaps[1][0])
    assert not torch.equal(lm.hf.state_dict()["model.layers.0.mlp.up_proj.weight"], start["model.layers.0.mlp.up_proj.weight"])
    lm.hf.load_state_dict(final)

    docs = encode_documents(lm, TEXTS, "sequence")
    queries = encode_documents(lm, TEXTS[:2], "completion")
    names = tracked_modules(lm.hf)
    checkpoints = [(m["weight"], lambda model, p=p: load_snapshot(model, p)) for p, m in snaps]
    total = tracin_checkpoints(lm, docs, queries, names, checkpoints, progress=False)
    assert all(torch.equal(v, final[k]) for k, v in lm.hf.state_dict().items())  # own weights put back
    want = torch.zeros_like(total.dot)
    for p, m in snaps:
        load_snapshot(lm.hf, p)
        want += m["weight"] * tracin_scores(lm, docs, queries, names, progress=False).dot
    lm.hf.load_state_dict(final)
    assert torch.allclose(total.dot, want, rtol=1e-5, atol=1e-6 * float(want.abs().max()))
    assert torch.allclose(total.per_layer.sum(0), total.dot, rtol=1e-5, atol=1e-6 * float(want.abs().max()))
