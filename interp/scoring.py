"""Log-probabilities of completions given prompts, batched.

``score_completions(lm, [(prompt, completion), ...])`` returns, per pair, the summed and the
per-token log-probs of the completion tokens (tokenised by :mod:`interp.tokens`), the tokens,
and the teacher-forced argmax at each of their positions (``is_greedy``: greedy decoding
produces the completion). It is the toolkit's one scoring engine. Pairs are
packed into prefix trees, so that a prefix shared by several pairs (one prompt with several
completions, prompts from one template) is computed once (:mod:`interp.prefix_tree`; models
without support get right-padded batches instead). Only the completion positions go through
the unembedding. Results do not depend on batch size, packing or padding (within 1e-4 in
fp32; tested).

Example::

    s = score_completions(lm, [("The capital of France is", " Paris")])[0]
    s.total, s.token_logprobs, s.is_greedy
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch
from tqdm.auto import tqdm

from interp.tokens import encode_pair, pad_batch, pad_id

if TYPE_CHECKING:
    from interp.models import LoadedModel


@dataclass(frozen=True)
class CompletionScore:
    total: float  # sum of the completion tokens' log-probs (nats)
    token_logprobs: tuple[float, ...]
    token_ids: tuple[int, ...]  # the completion's tokens
    greedy_ids: tuple[int, ...]  # argmax at each completion position (teacher forced)

    @property
    def mean(self) -> float:
        return self.total / len(self.token_logprobs)

    @property
    def is_greedy(self) -> bool:
        """Whether greedy decoding after the prompt produces exactly the completion's tokens
        (lm-evaluation-harness's ``is_greedy``)."""
        return self.greedy_ids == self.token_ids


def hidden_and_head(lm: LoadedModel) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """(body returning final-normed hidden states, unembedding) when the model splits that way."""
    hf = lm.hf
    if getattr(hf.config, "final_logit_softcapping", None):
        return None
    body, head = getattr(hf, "base_model", None), hf.get_output_embeddings()
    if body is None or body is hf or head is None:
        return None
    return body, head


# Architectures whose forward takes a custom 4D additive attention mask and explicit position
# ids (tested on tiny in-process models of each); others fall back to padded batches.
# Gemma 3 (``gemma3_text``) qualifies only for batches within its sliding window (see
# :func:`fits_window`): the tree's one mask serves its local and global layers alike.
TREE_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "gpt2", "gpt_neox", "gemma3_text"})


def fits_window(lm: LoadedModel, encoded: Sequence[tuple[Sequence[int], Sequence[int]]]) -> bool:
    """Whether every pair's fed tokens (prompt and completion but its last) fit in the model's
    sliding attention window, if it has one: only then does one causal mask per sequence, as
    the prefix tree builds it, equal the model's own masks."""
    window = getattr(lm.hf.config, "sliding_window", None)
    if not isinstance(window, int) or window <= 0:
        return True
    return all(len(p) + len(c) - 1 <= window for p, c in encoded)


def supports_prefix_sharing(lm: LoadedModel) -> bool:
    """Whether :func:`score_completions` can share prefixes for this model."""
    cfg = lm.hf.config
    return (cfg.model_type in TREE_MODEL_TYPES and hidden_and_head(lm) is not None
            and getattr(cfg, "_attn_implementation", None) in ("eager", "sdpa"))


@torch.no_grad()
def score_completions(
    lm: LoadedModel,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 64,
    progress: bool = False,
    share_prefixes: bool | None = None,
) -> list[CompletionScore]:
    """Summed and per-token log-probs of each completion given its prompt.

    Args:
        pairs: ``(prompt, completion)``; the completion usually starts with a space.
        batch_size: about this many pairs per forward pass (does not change the results).
        progress: show a tqdm bar.
        share_prefixes: compute each distinct token prefix once (:mod:`interp.prefix_tree`);
            ``None`` (default) does so when the model supports it
            (:func:`supports_prefix_sharing`). Results agree with ``False`` within 1e-4 in fp32.
    """
    encoded = [encode_pair(lm, p, c) for p, c in pairs]
    for (prompt, _), (p, _) in zip(pairs, encoded):
        if not p:
            raise ValueError(f"prompt {prompt!r} tokenises to nothing and the model has no BOS token, "
                             "so nothing predicts the completion's first token")
    return score_ids(lm, encoded, batch_size=batch_size, progress=progress, share_prefixes=share_prefixes)


@torch.no_grad()
def score_ids(
    lm: LoadedModel,
    encoded: Sequence[tuple[Sequence[int], Sequence[int]]],
    batch_size: int = 64,
    progress: bool = False,
    share_prefixes: bool | None = None,
) -> list[CompletionScore]:
    """:func:`score_completions` on pairs already tokenised: ``(prompt ids, completion ids)``,
    the prompt with its BOS (as :func:`interp.tokens.encode_pair` makes them). For sequences
    that are not tokenised text, e.g. reversed token ids (reverse training).

    Example::

        score_ids(lm, [encode_pair(lm, "The capital of France is", " Paris")])[0].total
    """
    encoded = [(list(p), list(c)) for p, c in encoded]
    for p, c in encoded:
        if not p or not c:
            raise ValueError("score_ids: every prompt and completion needs at least one token")
    if share_prefixes is None:
        share_prefixes = supports_prefix_sharing(lm) and fits_window(lm, encoded)
    elif share_prefixes and not supports_prefix_sharing(lm):
        raise ValueError(
            f"share_prefixes=True needs a model type in {sorted(TREE_MODEL_TYPES)} with eager or sdpa "
            f"attention; got {lm.hf.config.model_type!r} with "
            f"{getattr(lm.hf.config, '_attn_implementation', None)!r}")
    elif share_prefixes and not fits_window(lm, encoded):
        raise ValueError(f"share_prefixes=True: a pair is longer than the model's sliding window "
                         f"({lm.hf.config.sliding_window} tokens), where the prefix tree's masks would be wrong")
    run = _score_tree if share_prefixes else _score_padded
    out: list[CompletionScore | None] = [None] * len(encoded)
    bar = tqdm(total=len(encoded), desc="scoring", disable=not progress, unit="pair")
    for idx, (token_lp, greedy) in run(lm, encoded, batch_size):
        k = 0
        for i in idx:
            n = len(encoded[i][1])
            vals = tuple(token_lp[k : k + n])
            out[i] = CompletionScore(sum(vals), vals, tuple(encoded[i][1]), tuple(greedy[k : k + n]))
            k += n
        bar.update(len(idx))
    bar.close()
    return out  # type: ignore[return-value]


def _completion_logprobs(lm: LoadedModel, rows: torch.Tensor, cols: torch.Tensor, targets: list[int],
                         **forward: Any) -> tuple[list[float], list[int]]:
    """Log-probs of ``targets`` predicted at ``(rows, cols)`` and the argmax there; only those
    positions go through the unembedding when the model splits into body and head."""
    split = hidden_and_head(lm)
    if split is None:
        logits = lm.hf(**forward).logits[rows, cols]
    else:
        body, head = split
        logits = head(body(**forward).last_hidden_state[rows, cols])  # [n_targets, vocab]
    return _gather_targets(logits, targets)


def _gather_targets(logits: torch.Tensor, targets: list[int], rows: torch.Tensor | None = None
                    ) -> tuple[list[float], list[int]]:
    """Log-prob of each target and the argmax, from row ``rows[k]`` of ``logits`` for target
    ``k`` (row ``k`` when ``rows`` is None)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    t = torch.tensor(targets, device=logp.device)
    if rows is None:
        rows = torch.arange(len(targets), device=logp.device)
    return logp[rows, t].tolist(), logp.argmax(-1)[rows].tolist()


def _score_padded(lm, encoded, batch_size):
    """One right-padded sequence per pair, sorted by length."""
    order = sorted(range(len(encoded)), key=lambda i: -sum(map(len, encoded[i])))
    device = lm.device
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        # the last completion token predicts nothing we score, so it is not fed
        seqs = [(encoded[i][0] + encoded[i][1])[:-1] for i in idx]
        ids, mask, pos = pad_batch(seqs, pad_id(lm), "right", device)
        rows, cols, targets = [], [], []
        for r, i in enumerate(idx):
            p, c = encoded[i]
            rows += [r] * len(c)
            cols += range(len(p) - 1, len(p) + len(c) - 1)
            targets += c
        yield idx, _completion_logprobs(
            lm, torch.tensor(rows, device=device), torch.tensor(cols, device=device), targets,
            input_ids=ids, attention_mask=mask, position_ids=pos)


def _score_tree(lm, encoded, batch_size):
    """Pairs sorted so that neighbours share prefixes; each batch runs as one prefix tree."""
    from interp.prefix_tree import PrefixTree, tree_forward

    seqs = [(p + c)[:-1] for p, c in encoded]  # the last completion token predicts nothing scored
    order = sorted(range(len(seqs)), key=lambda i: seqs[i])
    body, head = hidden_and_head(lm)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        tree = PrefixTree.build([seqs[i] for i in idx])
        nodes, targets = [], []
        for path, i in zip(tree.paths, idx):
            p, c = encoded[i]
            nodes += path[len(p) - 1 :]
            targets += c
        hidden = tree_forward(body, lm.hf, tree)
        # pairs that share a prompt are predicted from its last node: unembed each node once
        uniq, inverse = torch.unique(torch.tensor(nodes, device=hidden.device), return_inverse=True)
        yield idx, _gather_targets(head(hidden[uniq]), targets, rows=inverse)
