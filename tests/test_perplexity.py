"""Held-out perplexity: windows, batching, and the shipped text."""

from __future__ import annotations

import math

import pytest
import torch

from experiments.core.evaluate import HELDOUT_PROSE, heldout_perplexity
from interp.perplexity import text_perplexity

TEXT = ("The river slows near the sea and drops its silt. " * 6).strip()


def _by_hand(lm, text: str, window: int) -> float:
    """Each window on its own after BOS, one sequence at a time, every token predicted."""
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = [] if lm.bos_token_id is None else [lm.bos_token_id]
    nll, n = 0.0, 0
    for i in range(0, len(ids), window):
        seq = torch.tensor([bos + ids[i : i + window]])
        logp = torch.log_softmax(lm.hf(input_ids=seq).logits[0, :-1].double(), -1)
        nll -= float(logp.gather(-1, seq[0, 1:, None]).sum())
        n += seq.shape[1] - 1
    return math.exp(nll / n)


@torch.no_grad()
def test_perplexity_matches_a_window_by_window_computation(tiny) -> None:
    for window in (7, 64):
        out = text_perplexity(tiny, TEXT, window=window, batch_size=3)
        assert out["perplexity"] == pytest.approx(_by_hand(tiny, TEXT, window), rel=1e-4)
        n_ids = len(tiny.tokenizer(TEXT, add_special_tokens=False)["input_ids"])
        assert out["n_tokens"] == n_ids and out["n_windows"] == math.ceil(n_ids / window)
    # batching and padding change nothing
    one = text_perplexity(tiny, TEXT, window=7, batch_size=1)["mean_nll"]
    assert text_perplexity(tiny, TEXT, window=7, batch_size=16)["mean_nll"] == pytest.approx(one, rel=1e-5)


def test_bad_inputs_are_refused(tiny) -> None:
    with pytest.raises(ValueError, match="window"):
        text_perplexity(tiny, TEXT, window=1)
    with pytest.raises(ValueError, match="nothing"):
        text_perplexity(tiny, "")


def test_the_shipped_text_is_read(tiny) -> None:
    words = HELDOUT_PROSE.read_text(encoding="utf-8").split()
    assert len(words) > 1200
    out = heldout_perplexity(tiny)
    assert out["text"] == "heldout_prose.txt" and out["n_tokens"] > 1000
    # a random tiny model knows no English: near the uniform perplexity of its vocabulary
    assert out["perplexity"] > 0.2 * tiny.hf.config.vocab_size
