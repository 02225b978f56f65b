"""Batched greedy generation with stop conditions.

Prompts are tokenised by :mod:`interp.tokens` (same BOS as scoring and training), sorted by
length, left-padded with an attention mask and position ids that count real tokens only, and
decoded with a KV cache. In fp32 the outputs equal one-prompt-at-a-time greedy decoding
(tested); in bf16, near-ties between the top two tokens can flip with the batch shape, so
treat bf16 generations as equal up to such ties.

Example::

    greedy_generate(lm, ["The capital of France is"], max_new_tokens=4)[0].text  # ' Paris.'
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
from tqdm.auto import tqdm

from interp.tokens import encode_prompt, pad_batch, pad_id

if TYPE_CHECKING:
    from interp.models import LoadedModel


@dataclass(frozen=True)
class Generation:
    text: str  # decoded new tokens, cut before the first stop string
    token_ids: tuple[int, ...]  # new tokens (up to and including a stop token)


@torch.no_grad()
def greedy_generate(
    lm: LoadedModel,
    prompts: Sequence[str],
    max_new_tokens: int | Sequence[int] = 32,
    stop_strings: Sequence[str] = (),
    stop_at_eos: bool = True,
    batch_size: int = 32,
    progress: bool = False,
) -> list[Generation]:
    """Greedy continuations of ``prompts``.

    Args:
        max_new_tokens: one limit for all, or one per prompt.
        stop_strings: a sequence stops once its decoded text contains one of these; the
            text is cut before it.
        stop_at_eos: stop a sequence at the tokenizer's EOS token.
        batch_size: prompts per batch (does not change fp32 results).
    """
    limits = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    if len(limits) != len(prompts):
        raise ValueError(f"max_new_tokens has {len(limits)} entries for {len(prompts)} prompts")
    encoded = [encode_prompt(lm, p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    out: list[Generation | None] = [None] * len(prompts)
    eos = lm.tokenizer.eos_token_id if stop_at_eos else None
    bar = tqdm(total=len(prompts), desc="generating", disable=not progress, unit="prompt")
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        for i, gen in zip(idx, _generate_batch(lm, [encoded[i] for i in idx],
                                               [limits[i] for i in idx], stop_strings, eos)):
            out[i] = gen
        bar.update(len(idx))
    bar.close()
    return out  # type: ignore[return-value]


def _cut(text: str, stop_strings: Sequence[str]) -> tuple[str, bool]:
    cuts = [text.find(s) for s in stop_strings if s and s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


def _generate_batch(
    lm: LoadedModel, seqs: list[list[int]], limits: list[int], stop_strings: Sequence[str],
    eos: int | None,
) -> list[Generation]:
    device = lm.device
    ids, mask, pos = pad_batch(seqs, pad_id(lm), "left", device)
    n = len(seqs)
    new: list[list[int]] = [[] for _ in range(n)]
    done = [lim <= 0 for lim in limits]
    # transformers 5.x renamed past_key_values to cache
    cache_kw = "cache" if "cache" in inspect.signature(lm.hf.forward).parameters else "past_key_values"
    past = None
    step_ids, step_pos = ids, pos
    for _ in range(max(limits, default=0)):
        if all(done):
            break
        res = lm.hf(input_ids=step_ids, attention_mask=mask, position_ids=step_pos,
                    use_cache=True, **{cache_kw: past})
        past = getattr(res, cache_kw)
        nxt = res.logits[:, -1, :].argmax(-1)  # [batch]
        for b in range(n):
            if done[b]:
                continue
            tok = int(nxt[b])
            new[b].append(tok)
            if len(new[b]) >= limits[b] or tok == eos:
                done[b] = True
            elif stop_strings and _cut(lm.tokenizer.decode(new[b]), stop_strings)[1]:
                done[b] = True
        step_ids = nxt[:, None]
        step_pos = step_pos[:, -1:] + 1
        mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype, device=device)], dim=1)
    gens = []
    for b in range(n):
        toks = new[b][:-1] if new[b] and new[b][-1] == eos else new[b]
        text, _ = _cut(lm.tokenizer.decode(toks), stop_strings)
        gens.append(Generation(text, tuple(new[b])))
    return gens
