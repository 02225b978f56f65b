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


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def lm(request) -> LoadedModel:
    m = load_model(f"tiny:arch={request.param},n_layers=2,d_model=64")
    if request.param == "gemma3":  # norm gains 1 + w, w = 0 at init: move them
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for n, p in m.hf.named_parameters():
                if "norm" in n:
                    p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return m


def test_gemma3_value_logits_pass_both_norm_gains() -> None:
    """Gemma 3: a value vector reaches the unembedding through the post-MLP norm's and the
    final norm's ``1 + w`` gains, both read from the HF weights here."""
    m = load_model("tiny:arch=gemma3,n_layers=2,d_model=64")
    with torch.no_grad():
        for n, p in m.hf.named_parameters():
            if "norm" in n:
                p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(n))))
    hf = m.hf.model
    w = hf.layers[1].mlp.down_proj.weight[:, [0, 5]].T  # [2, d_model]
    want = (w * (1 + hf.layers[1].post_feedforward_layernorm.weight) * (1 + hf.norm.weight)) @ hf.embed_tokens.weight.T
    torch.testing.assert_close(value_logits(m.bridge, 1, [0, 5]), want.detach(), atol=1e-4, rtol=1e-4)


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
