"""Small random Llama-architecture models with a byte-level tokenizer, built in-process
(tests, quick experiments): ``load_model("tiny:n_layers=3,d_model=128")``.

Example::

    cfg = TinyConfig.parse("tiny:n_layers=2,d_model=64")
    lm = load_model(cfg)              # interp.models.load_model
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from interp.errors import ModelLoadError

if TYPE_CHECKING:
    from interp.models import LoadedModel, ModelOptions


@dataclass(frozen=True)
class TinyConfig:
    """A small random Llama-architecture model (byte-level vocabulary of 257 tokens)."""

    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    n_kv_heads: int = 2
    d_mlp: int = 128
    n_ctx: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or (v < 1 and f.name != "seed"):
                raise ValueError(f"TinyConfig.{f.name}: expected a positive int, got {v!r}")
        if self.d_model % self.n_heads or self.n_heads % self.n_kv_heads:
            raise ValueError(
                "TinyConfig: d_model must divide by n_heads and n_heads by n_kv_heads, got "
                f"d_model={self.d_model}, n_heads={self.n_heads}, n_kv_heads={self.n_kv_heads}"
            )

    @classmethod
    def parse(cls, spec: str) -> TinyConfig:
        """``"tiny"`` or ``"tiny:n_layers=3,d_model=128"`` -> TinyConfig."""
        _, _, rest = spec.partition(":")
        kwargs: dict[str, int] = {}
        names = {f.name for f in dataclasses.fields(cls)}
        for item in filter(None, rest.split(",")):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or key not in names:
                raise ModelLoadError(
                    f"bad tiny model spec {spec!r}: {item!r} is not key=value with key in "
                    f"{sorted(names)}"
                )
            try:
                kwargs[key] = int(value)
            except ValueError:
                raise ModelLoadError(f"bad tiny model spec {spec!r}: {key} must be an int") from None
        return cls(**kwargs)


def byte_tokenizer() -> Any:
    """A byte-level tokenizer (``<|endoftext|>`` = 0, then the 256 byte symbols), saved in the
    cache so that it has a ``name_or_path`` TransformerLens can reload offline."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from interp.models import cache_dir

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


def _load_tiny(cfg: TinyConfig, options: ModelOptions) -> LoadedModel:
    from transformers import LlamaConfig, LlamaForCausalLM

    from interp.models import LoadedModel, _resolve_bos, cache_dir

    tok = byte_tokenizer()
    hf_cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=cfg.d_model, intermediate_size=cfg.d_mlp,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads, max_position_embeddings=cfg.n_ctx,
        tie_word_embeddings=True, bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )
    hf_cfg._attn_implementation = options.attn_implementation
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        model = LlamaForCausalLM(hf_cfg).to(options.torch_dtype)
    info = {"path": str(cache_dir() / "tiny-byte-tokenizer"), "tiny": dataclasses.asdict(cfg)}
    return LoadedModel(f"tiny:{cfg.n_layers}x{cfg.d_model}", "tiny", model, tok, options,
                       _resolve_bos(tok, options, None), info)
