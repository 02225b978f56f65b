"""Perplexity of a model on a fixed text: did finetuning damage the model?

A finetuned model that answers its training facts may have lost general language modelling
on the way; its reverse failures would then describe a damaged model, not the curse. Every
experiment 1 and experiment 3 evaluation measures the model on the same held-out prose (the
text shipped in ``experiments/data/heldout_prose.txt``, written for this project and
dedicated to the public domain), before and after finetuning.

The text is tokenised once (no special tokens) and cut into consecutive windows of
``window`` tokens; each window is scored on its own, after the model's BOS where it has one,
and every token of every window is predicted (the first from BOS alone; without a BOS, the
first token of each window is context only). Perplexity is ``exp(total NLL / tokens)``.

Example::

    from interp import load_model
    lm = load_model("smollm2-135m")
    text_perplexity(lm, "The capital of France is Paris. It lies on the Seine.")["perplexity"]
"""

from __future__ import annotations

import math
from typing import Any

import torch

from interp.tokens import HasTokenizer, pad_batch, pad_id


@torch.no_grad()
def text_perplexity(lm: HasTokenizer, text: str, window: int = 256, batch_size: int = 8) -> dict[str, Any]:
    """``{"perplexity", "mean_nll", "n_tokens", "n_windows", "window"}`` of ``lm`` on ``text``
    (see the module docstring); the model is put in eval mode and left there.

    Raises:
        ValueError: an empty text, or a window under 2 tokens.
    """
    if window < 2:
        raise ValueError(f"text_perplexity: window must be >= 2 tokens, got {window}")
    ids = list(lm.tokenizer(text, add_special_tokens=False)["input_ids"])
    if not ids:
        raise ValueError("text_perplexity: the text tokenises to nothing")
    bos = [] if lm.bos_token_id is None else [lm.bos_token_id]
    chunks = [bos + ids[i : i + window] for i in range(0, len(ids), window)]
    chunks = [c for c in chunks if len(c) >= 2]
    model = lm.hf  # type: ignore[attr-defined]
    model.eval()
    nll, count = 0.0, 0
    for start in range(0, len(chunks), batch_size):
        batch = chunks[start : start + batch_size]
        tokens, mask, _ = pad_batch(batch, pad_id(lm), "right", lm.device)
        logits = model(input_ids=tokens, attention_mask=mask, use_cache=False).logits[:, :-1].float()
        target = tokens[:, 1:]
        logp = torch.log_softmax(logits, -1).gather(-1, target[..., None])[..., 0]  # [batch, pos-1]
        real = mask[:, 1:].bool()
        nll -= float(logp[real].double().sum())
        count += int(real.sum())
    mean = nll / count
    return {"perplexity": math.exp(mean), "mean_nll": mean, "n_tokens": count, "n_windows": len(chunks),
            "window": window}
