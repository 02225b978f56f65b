"""The optional second embedded model, Gemma 3 270M: offline load, a known greedy answer, and
the analysis paths on the real weights (DLA sums to the logit through the post-sub-layer
norms; the tracing sites are the bridge's hook points). Skipped unless it is installed; the
joining of its chunked GGUF is tested on a stand-in package, always."""

from __future__ import annotations

import sys

import pytest
import torch

from interp.attribution import attribution_hooks, direct_logit_attribution
from interp.errors import ModelLoadError
from interp.generate import greedy_generate
from interp.hooks import hook_name
from interp.recording import Query, record
from interp.scoring import score_completions
from interp.tokens import encode_pair
from interp.trace import site_modules


@pytest.mark.slow
def test_gemma_answers_paris_and_its_shape(gemma):
    assert gemma.source == "embedded" and type(gemma.hf).__name__ == "Gemma3ForCausalLM"
    cfg = gemma.hf.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size, cfg.sliding_window) == (18, 640, 262144, 512)
    assert cfg.layer_types.count("full_attention") == 3
    assert gemma.tokenizer.convert_ids_to_tokens(gemma.bos_token_id) == "<bos>"
    gen = greedy_generate(gemma, ["The Eiffel Tower is located in the city of"], max_new_tokens=3)[0]
    assert gen.text.startswith(" Paris")
    paris, rome = score_completions(gemma, [("The Eiffel Tower is in", " Paris"), ("The Eiffel Tower is in", " Rome")])
    assert paris.total > rome.total + 2.0
    # prompts far inside its 512-token window: prefix-shared scoring equals padded batches
    pairs = [("The Eiffel Tower is in", " Paris, France"), ("The Eiffel Tower is in", " Rome"),
             ("The author of Hamlet is", " William Shakespeare")]
    tree = score_completions(gemma, pairs, share_prefixes=True)
    padded = score_completions(gemma, pairs, share_prefixes=False)
    for a, b in zip(padded, tree):
        assert list(b.token_logprobs) == pytest.approx(list(a.token_logprobs), abs=1e-3)


@pytest.mark.slow
def test_gemma_dla_sums_and_trace_sites_are_the_hook_points(gemma):
    qs = [Query("The Eiffel Tower is located in the city of", " Paris", foil=" Rome"),
          Query("The author of Hamlet is William", " Shakespeare", foil=" Blake")]
    rec = record(gemma, qs, attribution_hooks(gemma))
    for contrast in (False, True):
        a = direct_logit_attribution(gemma, rec, contrast=contrast)
        torch.testing.assert_close(a.total(), a.logit, atol=2e-3, rtol=1e-4)
        torch.testing.assert_close(a.heads.sum(-1), a.attn, atol=2e-3, rtol=1e-4)
        torch.testing.assert_close(a.neurons.sum(-1), a.mlp, atol=2e-3, rtol=1e-4)
    mods = site_modules(gemma.hf)
    got = {}
    handles = [mods[s][5].register_forward_hook(lambda m, i, o, s=s: got.__setitem__(s, (o[0] if isinstance(o, tuple) else o)[0]))
               for s in ("mlp", "attn")]
    p, c = encode_pair(gemma, qs[0].prompt, qs[0].target)
    try:
        with torch.no_grad():
            gemma.hf(torch.tensor([p + c]))
    finally:
        for h in handles:
            h.remove()
    rec2 = record(gemma, qs[:1], [hook_name("mlp_out", 5), hook_name("attn_out", 5)], positions=("all",))
    torch.testing.assert_close(got["mlp"], rec2.act(hook_name("mlp_out", 5), "all"), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got["attn"], rec2.act(hook_name("attn_out", 5), "all"), atol=1e-4, rtol=1e-4)


def test_chunked_gguf_is_joined_into_the_cache_and_checked_without_joining(monkeypatch, tmp_path):
    """A chunked wheel (as gemma3-270m's): check_spec only checks the chunks; loading joins
    them into cache_dir()/.gguf/; a missing chunk or a bad join is one line naming the fix."""
    import interp.models as m

    pkg = tmp_path / "site" / "fake_chunked_gguf"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "import os\nfrom pathlib import Path\nCALLS = []\n"
        "def verify_chunks():\n    if os.environ.get('FAKE_MISSING'): raise FileNotFoundError('Missing chunk files: part02')\n"
        "def assemble(output_path):\n    CALLS.append(output_path)\n"
        "    if os.environ.get('FAKE_BAD'): raise ValueError('Assembled file sha256 did not match expected value')\n"
        "    Path(output_path).parent.mkdir(parents=True, exist_ok=True)\n"
        "    Path(output_path).write_bytes(b'GGUF')\n    return Path(output_path)\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("RCT_CACHE_DIR", str(tmp_path / "cache"))
    entry = {"package": "fake_chunked_gguf", "gguf_file": "x.gguf", "assemble": "assemble",
             "install": "pip install fake", "env": "RCT_FAKE_GGUF", "bos": "<bos>"}
    monkeypatch.setitem(m.EMBEDDED_MODELS, "fake-model", entry)
    m.check_spec("fake-model")
    fake = sys.modules["fake_chunked_gguf"]
    assert fake.CALLS == []  # checked, not joined
    folder, name = m._embedded_gguf("fake-model")
    assert folder == tmp_path / "cache" / ".gguf" and (folder / name).read_bytes() == b"GGUF"
    monkeypatch.setenv("FAKE_BAD", "1")
    with pytest.raises(ModelLoadError, match="joining its GGUF failed .*sha256.*delete"):
        m._embedded_gguf("fake-model")
    monkeypatch.setenv("FAKE_MISSING", "1")
    with pytest.raises(ModelLoadError, match="a chunk package is missing .*part02.*pip install fake"):
        m.check_spec("fake-model")
    monkeypatch.setitem(entry, "package", "no_such_package_here")
    with pytest.raises(ModelLoadError, match="needs the wheel no_such_package_here: run `pip install fake`"):
        m.check_spec("fake-model")
