"""Small random models with a byte-level tokenizer, built in-process (tests, quick
experiments): ``load_model("tiny:n_layers=3,d_model=128")``.

Four architectures, chosen by ``arch``: ``llama`` (RMSNorm, gated MLP, rotary, grouped
query attention; the default), ``gpt2`` (LayerNorm with bias, learned positions, biased
linear layers, tied unembedding), ``neox`` (LayerNorm, partial rotary, parallel
attention and MLP, untied unembedding, as in Pythia) and ``gemma3`` (RMSNorm with a ``1 + w``
scale before *and* after each sub-layer, query/key norms, an embedding scaled by
``sqrt(d_model)``, sliding-window layers of 8 tokens alternating with global ones, tied
unembedding, as in Gemma 3).

Example::

    cfg = TinyConfig.parse("tiny:arch=gpt2,n_layers=2,d_model=64")
    lm = load_model(cfg)              # interp.models.load_model; lm.name == "tiny-gpt2:2x64"
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from interp.cache import cache_dir
from interp.errors import ModelLoadError
from interp.loaded import LoadedModel, _resolve_bos
from interp.options import ModelOptions


ARCHS = ("llama", "gpt2", "neox", "gemma3")
GEMMA3_TINY_WINDOW = 8  # short enough that the tests' prompts cross it


@dataclass(frozen=True)
class TinyConfig:
    """A small random model (byte-level vocabulary of 257 tokens).

    Args:
        n_layers, d_model, n_heads, d_mlp, n_ctx: the usual sizes.
        n_kv_heads: key-value heads (grouped query attention); ``llama`` and ``gemma3`` only,
            the other architectures have one key-value head per query head.
        seed: the initialisation seed (the caller's RNG is left alone).
        arch: ``llama``, ``gpt2``, ``neox`` or ``gemma3`` (see the module docstring).
    """

    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    n_kv_heads: int = 2
    d_mlp: int = 128
    n_ctx: int = 256
    seed: int = 0
    arch: str = "llama"

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"TinyConfig.arch: expected one of {', '.join(ARCHS)}, got {self.arch!r}")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "arch":
                continue
            if not isinstance(v, int) or isinstance(v, bool) or (v < 1 and f.name != "seed"):
                raise ValueError(f"TinyConfig.{f.name}: expected a positive int, got {v!r}")
        if self.d_model % self.n_heads or (self.arch in ("llama", "gemma3") and self.n_heads % self.n_kv_heads):
            raise ValueError(
                "TinyConfig: d_model must divide by n_heads and n_heads by n_kv_heads, got "
                f"d_model={self.d_model}, n_heads={self.n_heads}, n_kv_heads={self.n_kv_heads}"
            )

    @classmethod
    def parse(cls, spec: str) -> TinyConfig:
        """``"tiny"`` or ``"tiny:arch=gpt2,n_layers=3,d_model=128"`` -> TinyConfig."""
        _, _, rest = spec.partition(":")
        kwargs: dict[str, Any] = {}
        names = {f.name for f in dataclasses.fields(cls)}
        for item in filter(None, rest.split(",")):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or key not in names:
                raise ModelLoadError(
                    f"bad tiny model spec {spec!r}: {item!r} is not key=value with key in "
                    f"{sorted(names)}"
                )
            if key == "arch":
                kwargs[key] = value.strip()
                if kwargs[key] not in ARCHS:
                    raise ModelLoadError(f"bad tiny model spec {spec!r}: arch must be one of "
                                         f"{', '.join(ARCHS)}, got {kwargs[key]!r}")
                continue
            try:
                kwargs[key] = int(value)
            except ValueError:
                raise ModelLoadError(f"bad tiny model spec {spec!r}: {key} must be an int") from None
        return cls(**kwargs)

    @property
    def name(self) -> str:
        """``tiny:2x64`` for llama, ``tiny-gpt2:2x64`` for the others."""
        prefix = "tiny" if self.arch == "llama" else f"tiny-{self.arch}"
        return f"{prefix}:{self.n_layers}x{self.d_model}"


def byte_tokenizer() -> Any:
    """A byte-level tokenizer (``<|endoftext|>`` = 0, then the 256 byte symbols), saved in the
    cache so that it has a ``name_or_path`` TransformerLens can reload offline."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    target = cache_dir() / "tiny-byte-tokenizer"
    if not (target / "tokenizer.json").exists():
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        vocab = {"<|endoftext|>": 0}
        vocab.update({c: i + 1 for i, c in enumerate(pre_tokenizers.ByteLevel.alphabet())})
        core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        core.decoder = decoders.ByteLevel()
        tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|endoftext|>",
                                      eos_token="<|endoftext|>", pad_token="<|endoftext|>")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tok-", dir=target.parent))
        tok.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    return AutoTokenizer.from_pretrained(target)


def _hf_model(cfg: TinyConfig, vocab_size: int, attn_implementation: str) -> Any:
    """A randomly initialised HF model for ``cfg`` (token 0 is BOS, EOS and padding; no dropout)."""
    from transformers import (Gemma3ForCausalLM, Gemma3TextConfig, GPT2Config, GPT2LMHeadModel,
                              GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM)

    special = dict(bos_token_id=0, eos_token_id=0, pad_token_id=0)
    if cfg.arch == "gpt2":
        model_cls, hf_cfg = GPT2LMHeadModel, GPT2Config(
            vocab_size=vocab_size, n_embd=cfg.d_model, n_inner=cfg.d_mlp, n_layer=cfg.n_layers,
            n_head=cfg.n_heads, n_positions=cfg.n_ctx, resid_pdrop=0.0, embd_pdrop=0.0,
            attn_pdrop=0.0, tie_word_embeddings=True, **special)
    elif cfg.arch == "neox":
        model_cls, hf_cfg = GPTNeoXForCausalLM, GPTNeoXConfig(
            vocab_size=vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.d_mlp,
            num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
            max_position_embeddings=cfg.n_ctx, attention_dropout=0.0, hidden_dropout=0.0,
            tie_word_embeddings=False, **special)
    elif cfg.arch == "gemma3":
        head_dim = cfg.d_model // cfg.n_heads
        model_cls, hf_cfg = Gemma3ForCausalLM, Gemma3TextConfig(
            vocab_size=vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.d_mlp,
            num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
            num_key_value_heads=cfg.n_kv_heads, head_dim=head_dim, query_pre_attn_scalar=head_dim,
            max_position_embeddings=cfg.n_ctx, sliding_window=GEMMA3_TINY_WINDOW,
            layer_types=["sliding_attention" if i % 2 == 0 else "full_attention"
                         for i in range(cfg.n_layers)],
            tie_word_embeddings=True, **special)
        hf_cfg.architectures = ["Gemma3ForCausalLM"]  # TransformerLens picks its adapter by this
    else:
        model_cls, hf_cfg = LlamaForCausalLM, LlamaConfig(
            vocab_size=vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.d_mlp,
            num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
            num_key_value_heads=cfg.n_kv_heads, max_position_embeddings=cfg.n_ctx,
            tie_word_embeddings=True, **special)
    hf_cfg._attn_implementation = attn_implementation
    return model_cls(hf_cfg)


def _load_tiny(cfg: TinyConfig, options: ModelOptions) -> LoadedModel:
    tok = byte_tokenizer()
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        model = _hf_model(cfg, len(tok), options.attn_implementation).to(options.torch_dtype)
    info = {"path": str(cache_dir() / "tiny-byte-tokenizer"), "tiny": dataclasses.asdict(cfg)}
    return LoadedModel(cfg.name, "tiny", model, tok, options,
                       _resolve_bos(tok, options, None), info)
