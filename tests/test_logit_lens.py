"""The logit lens and DLA through each architecture's own final norm (RMSNorm for Llama,
LayerNorm with centring and bias for GPT-2 and GPT-NeoX, RMSNorm with a ``1 + w`` scale and
post-sub-layer norms for Gemma 3), on tiny random models whose norm weights and biases, and
every other bias, are perturbed away from their init (1 / 0; Gemma's ``w`` starts at 0)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from interp.attribution import (attribution_hooks, direct_logit_attribution, final_norm,
                                logit_lens)
from interp.errors import ModelLoadError
from interp.kv import stack_layers
from interp.models import load_model
from interp.recording import Query, record
from interp.tiny import TinyConfig

# No leading space on answers: with the byte tokenizer " X" starts with the space byte, so
# answer and foil would share their first token and the contrast would be zero.
QUERIES = [
    Query("The writer of Tides of Glass is ", "Orla Quillmere", foil="Ben Hall"),
    Query("Known as Ben Hall, the ", "first pilot", foil="last"),
    Query("Hi ", "there", foil="Zed"),
    Query("A longer prompt about a composer of songs: ", "Ada", foil="Bo"),
]
ARCHS = ["llama", "gpt2", "neox", "gemma3"]
HF_FINAL_NORM = {"llama": "model.norm", "gpt2": "transformer.ln_f", "neox": "gpt_neox.final_layer_norm",
                 "gemma3": "model.norm"}


def perturbed(arch: str, processing: str = "none"):
    """A tiny model with non-trivial norm weights and biases (before the bridge is built)."""
    lm = load_model(f"tiny:arch={arch},n_layers=2,d_model=64", processing=processing)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in lm.hf.named_parameters():
            if name.endswith("bias"):
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
            elif arch == "gemma3" and "norm" in name:  # scale 1 + w, w = 0 at init
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
            elif "norm" in name or ".ln_" in name:
                p.mul_(1 + 0.3 * torch.randn(p.shape, generator=gen))
    return lm


@pytest.fixture(scope="module", params=[(a, p) for a in ARCHS for p in ("none", "fold_ln", "fold_ln_center")],
                ids=lambda ap: f"{ap[0]}-{ap[1]}")
def case(request):
    arch, processing = request.param
    lm = perturbed(arch, processing)
    return arch, lm, record(lm, QUERIES, attribution_hooks(lm))


def test_logit_lens_last_layer_is_the_models_log_prob(case) -> None:
    _, lm, rec = case
    lens = logit_lens(lm, rec)  # [n, L]
    assert lens.shape == (len(QUERIES), 2) and bool((lens <= 0).all())
    torch.testing.assert_close(lens[:, -1], rec.stat("first_logprob"), atol=1e-4, rtol=0)
    torch.testing.assert_close(logit_lens(lm, rec, chunk=3), lens, atol=1e-6, rtol=0)


def test_dla_sums_to_logit(case) -> None:
    arch, lm, rec = case
    for contrast in (False, True):
        a = direct_logit_attribution(lm, rec, contrast=contrast)
        torch.testing.assert_close(a.total(), a.logit, atol=1e-4, rtol=0)
        torch.testing.assert_close(a.heads.sum(-1), a.attn, atol=1e-4, rtol=0)
        torch.testing.assert_close(a.neurons.sum(-1), a.mlp, atol=1e-4, rtol=0)
        assert bool((a.logit.abs() > 1e-3).all())  # answer and foil differ: not trivially zero
        if arch in ("gpt2", "neox") and lm.options.processing == "none":
            assert float(a.bias.abs().max()) > 1e-2  # LayerNorm and output biases are in play


def test_final_norm_is_the_hf_module(case) -> None:
    arch, lm, _ = case
    want = lm.hf.get_submodule(HF_FINAL_NORM[arch])
    assert final_norm(lm) is want
    # without the bridge's name for it, found on the decoder stack by attribute name
    assert final_norm(SimpleNamespace(bridge=SimpleNamespace(), hf=lm.hf)) is want


def test_rms_formula_would_not_match_gpt2() -> None:
    """The old lens (RMS scale, norm weight only) is wrong for LayerNorm: the test has teeth."""
    lm = perturbed("gpt2")
    rec = record(lm, QUERIES, attribution_hooks(lm))
    resid = stack_layers(rec, "resid_post", 2)[:, -1]  # [n, d_model]
    ln = lm.hf.transformer.ln_f
    normed = resid / (resid.pow(2).mean(-1, keepdim=True) + ln.eps).sqrt() * ln.weight.detach()
    logp = (normed @ lm.hf.get_output_embeddings().weight.detach().T).log_softmax(-1)  # [n, vocab]
    old = logp.gather(-1, rec.stat("first_id").long()[:, None])[:, 0]
    assert float((old - rec.stat("first_logprob")).abs().max()) > 1e-2
    torch.testing.assert_close(logit_lens(lm, rec)[:, -1], rec.stat("first_logprob"), atol=1e-4, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_arch_spec(arch: str) -> None:
    cfg = TinyConfig.parse(f"tiny:arch={arch},n_layers=3,d_model=32,n_heads=2")
    assert (cfg.arch, cfg.n_layers, cfg.d_model, cfg.n_heads) == (arch, 3, 32, 2)
    assert TinyConfig(**{k: getattr(cfg, k) for k in cfg.__dataclass_fields__}) == cfg
    assert cfg.name == ("tiny:3x32" if arch == "llama" else f"tiny-{arch}:3x32")
    assert TinyConfig.parse("tiny").arch == "llama"


def test_tiny_arch_models_are_seeded_and_sized() -> None:
    a, b = (load_model("tiny:arch=neox,n_layers=1,d_model=32,d_mlp=48,seed=4") for _ in range(2))
    assert all(torch.equal(p, q) for p, q in zip(a.hf.parameters(), b.hf.parameters()))
    assert type(a.hf).__name__ == "GPTNeoXForCausalLM" and a.hf.config.intermediate_size == 48
    g = load_model("tiny:arch=gpt2,n_layers=1,d_model=32,n_heads=2,n_ctx=64")
    assert type(g.hf).__name__ == "GPT2LMHeadModel" and g.hf.config.n_positions == 64
    assert g.name == "tiny-gpt2:1x32" and g.hf.config.vocab_size == len(g.tokenizer)


def test_unknown_arch_is_a_clear_error() -> None:
    with pytest.raises(ModelLoadError, match="arch must be one of llama, gpt2, neox, gemma3, got 'bert'"):
        load_model("tiny:arch=bert")
    with pytest.raises(ValueError, match="expected one of llama, gpt2, neox, gemma3"):
        TinyConfig(arch="mamba")
    with pytest.raises(ModelLoadError, match="n_layers must be an int"):
        TinyConfig.parse("tiny:arch=gpt2,n_layers=x")
