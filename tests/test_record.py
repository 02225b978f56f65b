"""Recording: shapes, positions, padding independence, gradients vs autograd, save/load."""

from __future__ import annotations

import pytest
import torch

from interp.hooks import (HookNotFiredError, check_fired, check_mlp_post_is_down_input, hook_name,
                          layer_hooks, parse_hook)
from interp.models import load_model
from interp.recording import Query, Recording, record
from interp.tokens import encode_pair

QUERIES = [
    Query("The writer of Tides of Glass is", " Orla Quillmere",
          entities={"description": "writer of Tides of Glass"}, foil=" Ben Hall", meta={"fact": 1}),
    Query("Known as Ben Hall, the", " first pilot to land on ice",
          entities={"name": "Ben Hall"}, meta={"fact": 2}),
    Query("Hi", " there", entities={"name": "absent"}),
]


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def lm(request):
    """Llama, and Gemma 3 (norms after each sub-layer, an 8-token sliding window the queries
    cross; its norm gains ``1 + w`` moved off their ``w = 0`` init)."""
    m = load_model(f"tiny:arch={request.param},n_layers=2,d_model=64")
    if request.param == "gemma3":
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for n, p in m.hf.named_parameters():
                if "norm" in n:
                    p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return m


def test_hook_vocabulary_roundtrip(lm) -> None:
    for site in ("resid_post", "z", "mlp_post", "mlp_in", "attn_out", "mlp_out"):
        assert parse_hook(hook_name(site, 1)) == (site, 1)
    assert parse_hook("hook_embed") == ("embed", None)
    check_mlp_post_is_down_input(lm.bridge, 1)
    with pytest.raises(HookNotFiredError):
        check_fired({"a"}, ["a", "b"])


def test_mlp_post_is_the_down_projection_input(lm) -> None:
    hooks = [hook_name("mlp_post", 0), hook_name("mlp_out", 0)]
    rec = record(lm, QUERIES, hooks, positions=("all",))
    post, out = rec.act(hooks[0], "all"), rec.act(hooks[1], "all")  # [rows, d_mlp], [rows, d_model]
    layer = lm.hf.model.layers[0]
    down = layer.mlp.down_proj.weight  # [d_model, d_mlp]
    written = post @ down.T.detach()
    post_norm = getattr(layer, "post_feedforward_layernorm", None)  # Gemma: mlp_out is after it
    if post_norm is not None:
        with torch.no_grad():
            written = post_norm(written)
    torch.testing.assert_close(written, out, atol=1e-5, rtol=1e-5)


def test_positions_and_shapes(lm) -> None:
    hooks = layer_hooks("resid_post", 2) + [hook_name("z", 1)]
    rec = record(lm, QUERIES, hooks, positions=("all", "last", "entity:name", "entity:description"))
    n_tokens = sum(len(p) + len(c) for p, c in (encode_pair(lm, q.prompt, q.target) for q in QUERIES))
    assert rec.act(hooks[0], "all").shape == (n_tokens, 64)
    assert rec.act(hooks[2], "last").shape == (3, 4, 16)
    assert rec.rows("last")[:, 0].tolist() == [0, 1, 2]
    assert rec.rows("last")[:, 1].tolist() == [q["prompt_len"] - 1 for q in rec.queries]
    rows = rec.rows("entity:name")
    assert set(rows[:, 0].tolist()) == {1}  # query 2 has no such text, query 0 no name
    ids = encode_pair(lm, QUERIES[1].prompt, QUERIES[1].target)[0]
    assert lm.tokenizer.decode([ids[t] for t in rows[:, 1].tolist()]).strip() == "Ben Hall"
    # "all" rows at the last prompt position equal the "last" rows
    all_rows = rec.rows("all")
    for qi, t in rec.rows("last").tolist():
        k = ((all_rows[:, 0] == qi) & (all_rows[:, 1] == t)).nonzero().item()
        torch.testing.assert_close(rec.act(hooks[0], "all")[k], rec.act(hooks[0], "last")[qi])


def test_batch_and_padding_independence(lm) -> None:
    hooks = [hook_name("mlp_post", 1), hook_name("resid_post", 1)]
    a = record(lm, QUERIES, hooks, positions=("all", "last"), grad="sum", batch_size=1)
    b = record(lm, QUERIES, hooks, positions=("all", "last"), grad="sum", batch_size=3)
    for key in a.tensors:
        torch.testing.assert_close(a.tensors[key], b.tensors[key], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("grad", ["sum", "first"])
def test_gradients_match_autograd(lm, grad: str) -> None:
    hooks = layer_hooks("resid_pre", 2) + [hook_name("mlp_post", 1), hook_name("z", 0)]
    rec = record(lm, QUERIES, hooks, positions=("all",), grad=grad, batch_size=3)
    rows = rec.rows("all")
    for qi, q in enumerate(QUERIES):
        p, c = encode_pair(lm, q.prompt, q.target)
        ids = torch.tensor([p + c])
        store: dict[str, torch.Tensor] = {}
        handles = [lm.hf.model.layers[1].mlp.down_proj.register_forward_pre_hook(
            lambda m, args: store.__setitem__("post", args[0])),
            lm.hf.model.layers[0].self_attn.o_proj.register_forward_pre_hook(
            lambda m, args: store.__setitem__("z", args[0]))]
        try:
            out = lm.hf(input_ids=ids, output_hidden_states=True)
        finally:
            for h in handles:
                h.remove()
        logp = torch.log_softmax(out.logits[0].float(), -1)  # [pos, vocab]
        n = 1 if grad == "first" else len(c)
        objective = sum(logp[len(p) - 1 + j, c[j]] for j in range(n))
        wrt = [out.hidden_states[0], out.hidden_states[1], store["post"], store["z"]]
        expected = torch.autograd.grad(objective, wrt)
        mine = rows[:, 0] == qi
        for h, e in zip(hooks, expected):
            got = rec.grad(h, "all")[mine]  # [pos, ...]
            # batched (padded, through the bridge) vs one sequence through HF: float32
            # accumulation order differs by CPU kernel (AVX-512 vs AVX2), up to ~3e-5 here
            torch.testing.assert_close(got.reshape(e[0].shape), e[0], atol=1e-4, rtol=1e-3)
        assert abs(rec.stat("target_logprob")[qi] - sum(logp[len(p) - 1 + j, c[j]]
                                                         for j in range(len(c)))) < 1e-4
    assert all(p.requires_grad for p in lm.hf.parameters())  # restored after recording


def test_save_load_roundtrip(lm, tmp_path) -> None:
    rec = record(lm, QUERIES, [hook_name("mlp_post", 0)], positions=("last", "entity:name"),
                 grad="first")
    rec.save(tmp_path / "rec")
    back = Recording.load(tmp_path / "rec")
    assert back.index == rec.index
    assert back.queries[0]["meta"] == {"fact": 1}
    for k in rec.tensors:
        assert torch.equal(back.tensors[k], rec.tensors[k])
    assert float(back.stat("foil_logit")[0]) != 0.0


def test_unknown_hook_and_position_are_errors(lm) -> None:
    with pytest.raises(KeyError):
        record(lm, QUERIES, ["blocks.9.mlp.hook_post"])
    with pytest.raises(ValueError):
        record(lm, QUERIES, [hook_name("mlp_post", 0)], positions=("middle",))


def test_missing_entities_empty_prompts_and_layers_out_of_range_are_named(lm) -> None:
    h = [hook_name("mlp_post", 0)]
    with pytest.raises(ValueError, match="no query has that entity.*no entity labelled 'nmae'"):
        record(lm, QUERIES, h, positions=("entity:nmae",))
    with pytest.warns(UserWarning, match=r"entity:name'.*queries give no rows"):
        record(lm, QUERIES, h, positions=("entity:name",))
    with pytest.raises(ValueError, match="empty prompt"):
        record(lm, [Query("  ", " x")], h)
    with pytest.raises(KeyError, match="layer 7 out of range: the model has 2 layers, 0-1"):
        record(lm, QUERIES[:1], [hook_name("mlp_post", 7)])


def test_the_module_is_importable_by_name() -> None:
    """``interp.record`` is the function (``from interp import record``); the module is
    ``interp.recording``, so that ``import interp.recording as r`` binds the module."""
    import types

    import interp
    import interp.recording as r

    assert isinstance(r, types.ModuleType) and r.record is interp.record and callable(interp.record)


def test_a_shared_first_answer_token_is_warned_about(lm) -> None:
    import warnings

    h = [hook_name("mlp_post", 0)]
    qs = [Query(f"Person {i} is", f" the maker of thing {i}") for i in range(4)]
    with pytest.warns(UserWarning, match=r"first token.*for 4 of 4 queries"):
        record(lm, qs, h, grad="first")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        record(lm, qs, h, grad="sum")  # the whole answer: nothing to warn about


def test_a_custom_metric_drives_the_gradient(lm) -> None:
    """grad='metric' with the whole answer's log-prob equals grad='sum'; a logit difference is
    recorded per query and its gradient differs from the log-prob's."""
    from interp.recording import logit_difference

    h = [hook_name("resid_post", 1)]
    qs = [q for q in QUERIES if q.foil is None][:2]
    ref = record(lm, qs, h, grad="sum")
    mine = record(lm, qs, h, grad="metric", metric=lambda m: m.target_logprobs().sum())
    torch.testing.assert_close(mine.grad(h[0]), ref.grad(h[0]), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(mine.stat("metric"), ref.stat("target_logprob"), atol=1e-4, rtol=0)
    diff = record(lm, qs, h, grad="metric", metric=logit_difference(lm, "Orla", "Ben"))  # byte-level: no shared leading space
    assert diff.stat("metric").shape == (2,) and not torch.allclose(diff.grad(h[0]), ref.grad(h[0]))
    with pytest.raises(ValueError, match="needs metric=fn"):
        record(lm, qs, h, grad="metric")


def test_fact_page_and_attention_pattern_name_the_layer_count(lm, tmp_path) -> None:
    from analysis.pages import attention_pattern, write_fact_page

    with pytest.raises(ValueError, match="layer 7 out of range: the model has 2 layers, 0-1"):
        write_fact_page(lm, "t", QUERIES[:1], ["q"], 7, tmp_path / "p.html")
    with pytest.raises(ValueError, match="the model has 2 layers"):
        attention_pattern(lm, "Hi there", -1)
    assert not (tmp_path / "p.html").exists()
