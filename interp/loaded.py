"""A loaded model: :class:`LoadedModel` (the HF module, its tokenizer, its BOS decision and,
on first access, a TransformerLens bridge over the same weights).

:func:`interp.models.load_model` and :mod:`interp.tiny` build one; every other module takes
one. The BOS decision is made once per model, by :func:`_resolve_bos` when loading, and
every tokenisation goes through :mod:`interp.tokens`, which prepends it.

Example::

    lm = load_model("tiny")                   # interp.models.load_model
    lm.hf, lm.tokenizer, lm.bos_token_id      # the plain HF module, its tokenizer, BOS id
    lm.bridge.run_with_cache(lm.encode(["The capital of France is"]))
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from interp.errors import ModelLoadError
from interp.options import ModelOptions
from interp.tokens import encode_texts


@dataclass
class LoadedModel:
    """A loaded model: the HF module, its tokenizer, and (on first access) the bridge.

    ``bos_token_id`` is the one BOS decision for this model: every tokenisation in the
    toolkit goes through :mod:`interp.tokens`, which prepends it (when not None).
    """

    name: str
    source: str  # "embedded" | "hf" | "local" | "tiny"
    hf: torch.nn.Module
    tokenizer: Any
    options: ModelOptions
    bos_token_id: int | None
    info: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def bridge(self) -> Any:
        """TransformerLens ``TransformerBridge`` over ``self.hf``'s weights (shared tensors
        when ``processing="none"``, so a finetuned ``hf`` is what the bridge sees)."""
        from transformer_lens.model_bridge import TransformerBridge

        p = self.options.processing
        # The bridge rebuilds the module tree it is given, so it gets a structural copy and
        # self.hf stays a plain HF model (trainable, savable). Without processing the copy
        # shares every parameter tensor with self.hf; processed weights are a separate copy.
        memo = {id(t): t for t in self.hf.parameters()} if p == "none" else {}
        bridge = TransformerBridge.boot_transformers(
            self.info.get("path", self.name),
            hf_model=copy.deepcopy(self.hf, memo),
            tokenizer=self.tokenizer,
            device=self.options.resolved_device(),
            dtype=next(self.hf.parameters()).dtype,
        )
        bridge.enable_compatibility_mode(
            disable_warnings=True,
            no_processing=p == "none",
            fold_ln=p != "none",
            center_writing_weights=p == "fold_ln_center",
            center_unembed=p == "fold_ln_center",
        )
        return bridge

    def set_hf(self, model: torch.nn.Module) -> None:
        """Replace the HF module (after training, say); the bridge is rebuilt on next access."""
        self.hf = model
        self.__dict__.pop("bridge", None)

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    def encode(self, texts: list[str]) -> torch.Tensor:
        """Token ids for equal-length texts (BOS per model); see :mod:`interp.tokens`."""
        return encode_texts(self, texts)

    def describe(self) -> dict[str, Any]:
        """What to record in a manifest about this model."""
        return {"name": self.name, "source": self.source, "bos_token_id": self.bos_token_id,
                "options": self.options.to_dict(), **self.info}


def _resolve_bos(tokenizer: Any, options: ModelOptions, registered: str | None) -> int | None:
    """The BOS token id for ``options.bos``; ``registered`` is the model's own BOS token
    (None: the tokenizer's)."""
    if options.bos == "none":
        return None
    token = registered if options.bos == "auto" else options.bos
    if token is None:
        return tokenizer.bos_token_id
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or tid == tokenizer.unk_token_id and token != tokenizer.unk_token:
        raise ModelLoadError(f"bos token {token!r} is not in the tokenizer's vocabulary")
    return int(tid)
