"""How to load a model: :class:`ModelOptions` (dtype, device, attention, weight processing, BOS).

The options travel with every loaded model (:class:`interp.loaded.LoadedModel`) and are
recorded in each run directory's manifest. ``auto`` dtype and device are resolved here by
measurement, through :mod:`interp.precision`.

Example::

    from interp.options import ModelOptions
    opts = ModelOptions(dtype="auto", device="auto")
    opts.resolved_device(), opts.torch_dtype      # e.g. ('cpu', torch.float32)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch

from interp.errors import ModelLoadError
from interp.precision import Choice, choose_device, choose_eval_dtype

Processing = Literal["none", "fold_ln", "fold_ln_center"]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ModelOptions:
    """How to load a model. Recorded in every run directory's manifest.

    Args:
        dtype: parameter dtype, one of ``float32``, ``bfloat16``, ``float16``, or ``auto``:
            bf16 where this device runs bf16 matmuls fast (measured on a CPU), else fp32;
            see :mod:`interp.precision`.
        device: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto`` (cuda, then mps, then cpu).
        attn_implementation: ``eager`` (exact agreement with the bridge) or ``sdpa``.
        processing: weight processing applied to the bridge: ``none``, ``fold_ln`` (fold
            layer-norm scales into the following weights) or ``fold_ln_center`` (also centre
            the writing weights and the unembedding, TransformerLens's default). Centring
            shifts raw logits by a per-position constant; log-probs are unchanged.
        bos: ``auto`` (the model's registered BOS, else the tokenizer's), ``none``, or a
            token string to prepend to every sequence.
    """

    dtype: str = "float32"
    device: str = "cpu"
    attn_implementation: str = "eager"
    processing: str = "none"  # one of Processing
    bos: str = "auto"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES and self.dtype != "auto":
            raise ValueError(f"dtype: expected auto or one of {sorted(DTYPES)}, got {self.dtype!r}")
        if not (self.device in ("cpu", "auto", "mps") or self.device.startswith("cuda")):
            raise ValueError(f"device: expected cpu, cuda[:N], mps or auto, got {self.device!r}")
        if self.attn_implementation not in ("eager", "sdpa"):
            raise ValueError(
                f"attn_implementation: expected eager or sdpa, got {self.attn_implementation!r}"
            )
        if self.processing not in ("none", "fold_ln", "fold_ln_center"):
            raise ValueError(
                f"processing: expected none, fold_ln or fold_ln_center, got {self.processing!r}"
            )

    @property
    def torch_dtype(self) -> torch.dtype:
        """The parameter dtype, with ``auto`` resolved for this device."""
        return DTYPES[self.resolved_dtype().value]

    def resolved_dtype(self) -> Choice:
        """The dtype and why (``auto`` decided by :func:`interp.precision.choose_eval_dtype`)."""
        return choose_eval_dtype(self.dtype, self.resolved_device())

    def resolved_device(self) -> str:
        """``auto`` -> cuda, mps or cpu; an absent device raises :class:`ModelLoadError`."""
        try:
            return choose_device(self.device).value
        except ValueError as e:
            raise ModelLoadError(str(e)) from None

    def for_training(self) -> ModelOptions:
        """These options with fp32 master weights where the dtype was ``auto`` (training
        autocasts to its own precision, see :mod:`experiments.finetune`)."""
        return dataclasses.replace(self, dtype="float32") if self.dtype == "auto" else self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelOptions:
        return cls(**d)
