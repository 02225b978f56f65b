import json

import pytest
import torch

from interp import ModelLoadError, ModelOptions, TinyConfig, load_model
from interp.models import save_model
from interp.scoring import score_completions
from interp.tokens import encode_pair, encode_prompt


def test_bridge_logits_equal_hf_logits(tiny):
    ids = torch.tensor([encode_prompt(tiny, "The cat sat on the mat")])
    with torch.no_grad():
        hf = tiny.hf(ids).logits
        br = tiny.bridge(ids)
    assert br.shape == hf.shape
    assert (br - hf).abs().max().item() < 1e-5


@pytest.mark.parametrize("processing", ["fold_ln", "fold_ln_center"])
def test_processed_bridge_keeps_log_probs(processing):
    lm = load_model("tiny:n_layers=2,seed=3", processing=processing)
    ids = torch.tensor([encode_prompt(lm, "Orla wrote the opera")])
    with torch.no_grad():
        ref = torch.log_softmax(load_model("tiny:n_layers=2,seed=3").hf(ids).logits, -1)
        got = torch.log_softmax(lm.bridge(ids), -1)
    assert (got - ref).abs().max().item() < 1e-4


def test_gemma_in_float16_warns_and_other_dtypes_do_not():
    """Gemma's activations can leave float16's range: loading one in float16 says so."""
    with pytest.warns(UserWarning, match="bfloat16"):
        load_model("tiny:arch=gemma3,n_layers=1,seed=1", dtype="float16")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model("tiny:arch=gemma3,n_layers=1,seed=1", dtype="bfloat16")
        load_model("tiny:n_layers=1,seed=1", dtype="float16")


def test_gemma3_bridge_matches_hf_and_a_checkpoint_loads_back(tmp_path):
    """Gemma 3 (tiny): the bridge's logits are the HF model's past the 8-token sliding window,
    with non-trivial ``1 + w`` norm gains; a saved checkpoint loads back with its architecture
    (which the bridge needs) and scores the same."""
    lm = load_model("tiny:arch=gemma3,n_layers=2,n_kv_heads=2,seed=1")
    with torch.no_grad():
        for n, p in lm.hf.named_parameters():
            if "norm" in n:
                p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(n))))
    ids = torch.tensor([encode_prompt(lm, "The cat sat on the mat by the door")])
    assert ids.shape[1] > 8
    with torch.no_grad():
        assert (lm.bridge(ids) - lm.hf(ids).logits).abs().max().item() < 1e-5
    back = load_model(str(save_model(lm, tmp_path / "ckpt")))
    assert type(back.hf).__name__ == "Gemma3ForCausalLM" and back.hf.config.architectures == ["Gemma3ForCausalLM"]
    pairs = [("Q: who composed it? A:", " Orla Quillmere, the one")]
    assert score_completions(back, pairs)[0].total == pytest.approx(score_completions(lm, pairs)[0].total, abs=1e-5)
    with torch.no_grad():
        assert (back.bridge(ids) - lm.hf(ids).logits).abs().max().item() < 1e-5


def test_tiny_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = load_model("tiny:seed=5")
    after = torch.rand(1)
    b = load_model(TinyConfig(seed=5))
    c = load_model("tiny:seed=6")
    assert torch.equal(before, after)
    pa, pb, pc = (next(m.hf.parameters()) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("tiny:depth=2", "not key=value"),
        ("tiny:n_layers=two", "must be an int"),
        ("tiny:d_model=30,n_heads=4", "d_model must divide"),
        ("no-such-org/no-such-model", "huggingface-cli download no-such-org/no-such-model"),
        ("", "non-empty"),
    ],
)
def test_bad_specs_give_one_line_errors(spec, fragment):
    with pytest.raises((ModelLoadError, ValueError)) as err:
        load_model(spec)
    msg = str(err.value)
    assert fragment in msg
    assert "\n" not in msg


def test_local_dir_without_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="local directory"):
        load_model(str(tmp_path))


def test_bad_options():
    with pytest.raises(ValueError, match="dtype"):
        ModelOptions(dtype="fp8")
    with pytest.raises(ValueError, match="processing"):
        ModelOptions(processing="centre")
    opts = ModelOptions(dtype="bfloat16", processing="fold_ln")
    assert ModelOptions.from_dict(json.loads(json.dumps(opts.to_dict()))) == opts


def test_saved_checkpoint_loads_back_identically(tiny, tmp_path):
    folder = save_model(tiny, tmp_path / "ckpt")
    back = load_model(str(folder))
    assert back.source == "local" and back.bos_token_id == tiny.bos_token_id
    pairs = [("Q: who composed it? A:", " Orla"), ("x", " y z")]
    a = score_completions(tiny, pairs)
    b = score_completions(back, pairs)
    assert [s.total for s in a] == pytest.approx([s.total for s in b], abs=1e-6)
    assert encode_pair(back, *pairs[0]) == encode_pair(tiny, *pairs[0])


def test_bridge_shares_weights_and_leaves_hf_plain():
    lm = load_model("tiny:n_layers=2,seed=1")
    ids = torch.tensor([encode_prompt(lm, "abc")])
    bridge = lm.bridge
    assert type(lm.hf).__name__ == "LlamaForCausalLM"
    assert not any("_original_component" in k for k in lm.hf.state_dict())
    with torch.no_grad():
        lm.hf.model.layers[0].mlp.down_proj.weight.mul_(2.0)  # e.g. a training step
        assert (bridge(ids) - lm.hf(ids).logits).abs().max().item() < 1e-5


def test_a_mistyped_model_name_fails_at_once_with_a_suggestion(monkeypatch) -> None:
    import interp.models as m
    from interp.errors import ModelLoadError

    def no_hub(*a, **k):
        raise AssertionError("the hub was asked about a near miss of an embedded name")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(m, "_hub_reachable", no_hub)
    monkeypatch.setattr(m, "_load_pretrained", no_hub)
    for fn in (m.load_model, m.check_spec):
        with pytest.raises(ModelLoadError, match="did you mean 'smollm2-135m'"):
            fn("smollm2-135")


def test_no_network_is_one_line_without_retries(monkeypatch) -> None:
    import interp.models as m
    from interp.errors import ModelLoadError

    monkeypatch.setattr(m, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(ModelLoadError, match="the hub cannot be reached from here"):
        m.load_model("someone/not-cached-model-xyz")
