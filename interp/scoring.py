"""Log-probabilities of completions given prompts, batched.

``score_completions(lm, [(prompt, completion), ...])`` returns, per pair, the summed and the
per-token log-probs of the completion tokens (tokenised by :mod:`interp.tokens`). Pairs are
sorted by length and right-padded; only the completion positions go through the unembedding.
Results do not depend on batch size or padding (within 1e-4 in fp32; tested).

Example::

    s = score_completions(lm, [("The capital of France is", " Paris")])[0]
    s.total, s.token_logprobs
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
from tqdm.auto import tqdm

from interp.tokens import encode_pair, pad_batch, pad_id

if TYPE_CHECKING:
    from interp.models import LoadedModel


@dataclass(frozen=True)
class CompletionScore:
    total: float  # sum of the completion tokens' log-probs (nats)
    token_logprobs: tuple[float, ...]

    @property
    def mean(self) -> float:
        return self.total / len(self.token_logprobs)


def hidden_and_head(lm: LoadedModel) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """(body returning final-normed hidden states, unembedding) when the model splits that way."""
    hf = lm.hf
    if getattr(hf.config, "final_logit_softcapping", None):
        return None
    body, head = getattr(hf, "base_model", None), hf.get_output_embeddings()
    if body is None or body is hf or head is None:
        return None
    return body, head


@torch.no_grad()
def score_completions(
    lm: LoadedModel,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 32,
    progress: bool = False,
) -> list[CompletionScore]:
    """Summed and per-token log-probs of each completion given its prompt.

    Args:
        pairs: ``(prompt, completion)``; the completion usually starts with a space.
        batch_size: sequences per forward pass (does not change the results).
        progress: show a tqdm bar.
    """
    encoded = [encode_pair(lm, p, c) for p, c in pairs]
    order = sorted(range(len(encoded)), key=lambda i: -sum(map(len, encoded[i])))
    out: list[CompletionScore | None] = [None] * len(encoded)
    split = hidden_and_head(lm)
    device = lm.device
    bar = tqdm(total=len(encoded), desc="scoring", disable=not progress, unit="pair")
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        seqs = [encoded[i][0] + encoded[i][1] for i in idx]
        ids, mask, pos = pad_batch(seqs, pad_id(lm), "right", device)
        # positions whose next-token prediction is a completion token
        rows, cols, targets = [], [], []
        for r, i in enumerate(idx):
            p, c = encoded[i]
            rows += [r] * len(c)
            cols += range(len(p) - 1, len(p) + len(c) - 1)
            targets += c
        rows_t, cols_t = torch.tensor(rows, device=device), torch.tensor(cols, device=device)
        if split is None:
            logits = lm.hf(input_ids=ids, attention_mask=mask, position_ids=pos).logits[rows_t, cols_t]
        else:
            body, head = split
            hidden = body(input_ids=ids, attention_mask=mask, position_ids=pos).last_hidden_state
            logits = head(hidden[rows_t, cols_t])  # [n_completion_tokens, vocab]
        logp = torch.log_softmax(logits.float(), dim=-1)
        token_lp = logp[torch.arange(len(targets), device=device), torch.tensor(targets, device=device)]
        token_lp = token_lp.tolist()
        k = 0
        for i in idx:
            n = len(encoded[i][1])
            vals = tuple(token_lp[k : k + n])
            out[i] = CompletionScore(sum(vals), vals)
            k += n
        bar.update(len(idx))
    bar.close()
    return out  # type: ignore[return-value]
