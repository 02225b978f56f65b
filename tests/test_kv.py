"""Key-value view of MLP neurons: contributions, promoted tokens, weight deltas."""

from __future__ import annotations

import copy

import pytest
import torch

from interp.attribution import attribution_hooks, direct_logit_attribution
from interp.hooks import hook_name
from interp.kv import (key_response, layer_totals, promoted_tokens, target_promotion, top_neurons,
                       value_logits, weight_deltas)
from interp.models import LoadedModel, load_model
from interp.recording import Query, record

QUERIES = [Query("The writer of Tides of Glass is", " Orla", entities={"description": "Tides of Glass"}),
           Query("Ben Hall was", " a pilot", entities={"name": "Ben Hall"})]


@pytest.fixture(scope="module")
def lm() -> LoadedModel:
    return load_model("tiny:n_layers=2,d_model=64")


def test_neurons_sum_to_layer_mlp_attribution(lm) -> None:
    rec = record(lm, QUERIES, attribution_hooks(lm))
    a = direct_logit_attribution(lm, rec)
    torch.testing.assert_close(layer_totals(a.neurons), a.mlp, atol=1e-4, rtol=0)
    top = top_neurons(a.neurons[0], k=3)
    assert len(top) == 3 and top[0][2] == pytest.approx(float(a.neurons[0].max()))


def test_promoted_tokens_follow_value_logits(lm) -> None:
    tops = promoted_tokens(lm, layer=1, neurons=[0, 5], k=4)
    logits = value_logits(lm.bridge, 1, [0, 5])  # [2, vocab]
    assert len(tops) == 2 and len(tops[0]) == 4
    assert tops[1][0][1] == pytest.approx(float(logits[1].max()))
    best = int(logits[0].argmax())
    res = target_promotion(lm.bridge, [(1, 0)], [best], k=1)[0]
    assert res["top_k_frac"] == 1.0 and res["z"] > 2


def test_weight_deltas_find_the_changed_neuron(lm) -> None:
    tuned_hf = copy.deepcopy(lm.hf)
    with torch.no_grad():
        tuned_hf.model.layers[1].mlp.down_proj.weight[:, 7] += 1.0  # neuron 7's value vector
    tuned = LoadedModel(lm.name, lm.source, tuned_hf, lm.tokenizer, lm.options, lm.bos_token_id,
                        dict(lm.info))
    d = weight_deltas(lm.bridge, tuned.bridge)
    assert float(d["rel_W_out"][0]) == 0.0 and float(d["rel_W_out"][1]) > 0
    assert float(d["rel_W_gate"].abs().sum()) == 0.0
    assert top_neurons(d["neuron"], k=1)[0][:2] == (1, 7)


def test_key_response_reads_entity_rows(lm) -> None:
    rec = record(lm, QUERIES, [hook_name("mlp_post", 0)], positions=("entity:name", "entity:description"))
    out = key_response(rec, [(0, 3)])
    manual = rec.act(hook_name("mlp_post", 0), "entity:name")[:, 3].mean()
    assert out[0]["entity:name"] == pytest.approx(float(manual))
