"""Many completions per prompt, for prompts that share a long header: scored, or sampled.

Experiment 2 asks each question after the same few-shot header, and then wants either the
log-prob of every candidate name (the rank metric) or ``k`` samples (the paper's temperature
sampling). Both work on key-value caches:

- the longest token prefix common to all prompts (the header) runs once;
- each prompt's remaining tokens run once, on a copy of the header's cache;
- that cache is repeated once per candidate (or sample), and all candidates of the prompt run
  as one batch: ``[n_candidates, completion_len]`` new tokens attend to the cached prompt.

Per candidate this costs only its own few tokens, where a padded batch or a prefix tree
(:func:`interp.score_completions`) also pays attention over the whole prompt. Tokenisation
is the toolkit's one path (:mod:`interp.tokens`), and the scores agree with
:func:`interp.score_completions` within 1e-4 in fp32 (tested).

Sampling is seeded per prompt (a ``torch.Generator`` seeded from ``(seed, prompt index)``),
so a prompt's samples do not depend on which other prompts run with it.

Example::

    lps = score_candidates(lm, ["Q: Who? A:"], [[" Ann", " Bo Cy"]])[0]    # [lp(Ann), lp(Bo Cy)]
    texts = sample_completions(lm, ["Q: Who? A:"], k=5, max_new_tokens=[8], seed=0)[0]  # 5 strings
"""

from __future__ import annotations

import copy
import inspect
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from interp.tokens import encode_completion, encode_prompt

if TYPE_CHECKING:
    from interp.models import LoadedModel


def _cache_kw(lm: LoadedModel) -> str:
    # transformers 5.x renamed past_key_values to cache (as in interp.generate)
    return "cache" if "cache" in inspect.signature(lm.hf.forward).parameters else "past_key_values"


def _forward(lm: LoadedModel, ids: torch.Tensor, cache: Any, start: int) -> tuple[torch.Tensor, Any]:
    """Logits ``[batch, new, vocab]`` of ``ids`` ``[batch, new]`` at positions ``start..``, and
    the extended cache. Rows are right-padded where needed: a padded tail is never read."""
    kw = _cache_kw(lm)
    pos = torch.arange(start, start + ids.shape[1], device=ids.device)[None].expand(ids.shape[0], -1)
    res = lm.hf(input_ids=ids, position_ids=pos, use_cache=True, **{kw: cache})
    return res.logits.float(), getattr(res, kw)


@torch.no_grad()
def prompt_states(lm: LoadedModel, prompts: Sequence[str]) -> Iterator[tuple[int, torch.Tensor, Any, int]]:
    """Per prompt, in order: ``(index, next-token logits [vocab], cache, prompt length)``.

    The common token prefix of all prompts runs once; every prompt keeps at least one token
    of its own, so its last logits come from its own pass. The cache is a fresh copy per
    prompt (the caller may extend it)."""
    encoded = [encode_prompt(lm, p) for p in prompts]
    for p, ids in zip(prompts, encoded):
        if not ids:
            raise ValueError(f"prompt {p!r} tokenises to nothing and the model has no BOS token")
    if not encoded:
        return
    n = min(len(e) for e in encoded) - 1  # leave every prompt at least one token of its own
    head = 0
    while head < n and all(e[head] == encoded[0][head] for e in encoded):
        head += 1
    header_cache = None
    device = lm.device
    if head:
        _, header_cache = _forward(lm, torch.tensor([encoded[0][:head]], device=device), None, 0)
    for i, ids in enumerate(encoded):
        cache = copy.deepcopy(header_cache) if header_cache is not None else None
        logits, cache = _forward(lm, torch.tensor([ids[head:]], device=device), cache, head)
        yield i, logits[0, -1], cache, len(ids)


@torch.no_grad()
def score_candidates(lm: LoadedModel, prompts: Sequence[str], candidates: Sequence[Sequence[str]],
                     progress: bool = False) -> list[list[float]]:
    """Summed log-prob (nats) of every candidate completion after its prompt.

    Args:
        prompts: the prompts; a long common prefix (a few-shot header) is computed once.
        candidates: per prompt, the completions to score (each usually starts with a space);
            all of one prompt's candidates run as one batch.
    Returns:
        per prompt, one log-prob per candidate, in the given order.
    """
    if len(prompts) != len(candidates):
        raise ValueError(f"score_candidates: {len(prompts)} prompts but {len(candidates)} candidate lists")
    out: list[list[float]] = []
    bar = tqdm(total=len(prompts), desc="ranking candidates", disable=not progress, unit="prompt")
    for i, last, cache, plen in prompt_states(lm, prompts):
        cands = [encode_completion(lm, c) for c in candidates[i]]
        first = torch.log_softmax(last, -1)  # [vocab]
        totals = [float(first[c[0]]) for c in cands]
        width = max((len(c) for c in cands), default=1) - 1  # the last token predicts nothing scored
        if width > 0:
            ids = torch.zeros((len(cands), width), dtype=torch.long)
            for r, c in enumerate(cands):
                ids[r, : len(c) - 1] = torch.tensor(c[:-1], dtype=torch.long)
            cache.batch_repeat_interleave(len(cands))
            logits, _ = _forward(lm, ids.to(lm.device), cache, plen)
            logp = torch.log_softmax(logits, -1)  # [n_cand, width, vocab]
            for r, c in enumerate(cands):
                if len(c) > 1:
                    steps = torch.arange(len(c) - 1)
                    totals[r] += float(logp[r, steps, torch.tensor(c[1:])].sum())
        out.append(totals)
        bar.update(1)
    bar.close()
    return out


def prompt_seed(seed: int, index: int) -> int:
    """The sampling seed of prompt ``index`` under run seed ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


@torch.no_grad()
def sample_completions(lm: LoadedModel, prompts: Sequence[str], k: int, max_new_tokens: Sequence[int],
                       seed: int, temperature: float = 1.0, stop_strings: Sequence[str] = ("\n",),
                       progress: bool = False) -> list[list[str]]:
    """``k`` sampled continuations per prompt (ancestral sampling at ``temperature``).

    Args:
        k: samples per prompt.
        max_new_tokens: per prompt, the most tokens a sample may have.
        seed: run seed; prompt ``i`` samples from ``torch.Generator`` seeded with
            :func:`prompt_seed` ``(seed, i)``, so its samples do not depend on the other prompts.
        temperature: logits are divided by it before the softmax (1 = the model's distribution).
        stop_strings: a sample stops once its text contains one; the text is cut before it.
            A sample also stops at the tokenizer's EOS token.
    Returns:
        per prompt, ``k`` texts (the new tokens decoded, cut at a stop string).
    """
    if k < 1 or temperature <= 0:
        raise ValueError(f"sample_completions: need k >= 1 and temperature > 0, got k={k}, temperature={temperature}")
    if len(max_new_tokens) != len(prompts):
        raise ValueError(f"max_new_tokens has {len(max_new_tokens)} entries for {len(prompts)} prompts")
    eos = lm.tokenizer.eos_token_id
    out: list[list[str]] = []
    bar = tqdm(total=len(prompts), desc="sampling", disable=not progress, unit="prompt")
    for i, last, cache, plen in prompt_states(lm, prompts):
        gen = torch.Generator(device=last.device).manual_seed(prompt_seed(seed, i))
        new: list[list[int]] = [[] for _ in range(k)]
        done = [max_new_tokens[i] <= 0] * k
        logits = last[None].expand(k, -1)  # [k, vocab]
        cache.batch_repeat_interleave(k)
        for step in range(max_new_tokens[i]):
            probs = torch.softmax(logits / temperature, -1)
            nxt = torch.multinomial(probs, 1, generator=gen)[:, 0]  # [k]; every row draws, done or not
            for r in range(k):
                if done[r]:
                    continue
                new[r].append(int(nxt[r]))
                if int(nxt[r]) == eos or len(new[r]) >= max_new_tokens[i] or _cut(lm, new[r], stop_strings)[1]:
                    done[r] = True
            if all(done):
                break
            step_logits, cache = _forward(lm, nxt[:, None], cache, plen + step)
            logits = step_logits[:, -1]
        out.append([_cut(lm, toks[:-1] if toks and toks[-1] == eos else toks, stop_strings)[0] for toks in new])
        bar.update(1)
    bar.close()
    return out


def _cut(lm: LoadedModel, toks: list[int], stop_strings: Sequence[str]) -> tuple[str, bool]:
    text = lm.tokenizer.decode(toks)
    cuts = [text.find(s) for s in stop_strings if s and s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)
