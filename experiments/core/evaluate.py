"""One evaluator for every experiment: a target after a prompt, and random controls.

An :class:`Item` is a prompt, the target the model should produce after it, and optional
control targets (wrong answers of the same kind, see :mod:`experiments.core.controls`). For
every item :func:`evaluate` returns (:class:`Evaluation`):

- the summed log-prob of the target and of each control, with their token counts, from one
  teacher-forced pass (:func:`interp.score_completions`: each distinct token prefix, such as
  a prompt shared by its target and controls, is computed once);
- ``is_greedy``: whether greedy decoding produces exactly the target's tokens (the argmax at
  every target position equals the next target token), as lm-evaluation-harness's
  ``loglikelihood`` returns it;
- ``exact``: the paper's exact match (:func:`exact_match`: the stripped, lower-cased greedy
  output starts with the stripped, lower-cased target). The same teacher-forced pass decides
  it for almost every item (:func:`decide_exact_match`); real greedy generation settles the
  rest, or every item when ``generate_all`` is set. The decisions equal generating every
  item (tested);
- the greedy text that decided ``exact``, and the full generation where one was made.

:func:`evaluate_ids` does the same for items given as token ids (:class:`IdItem`), for
sequences that are not tokenised text (reversed token ids, reverse training): there exact
match is decided on ids, as ``is_greedy``.

Example::

    res = evaluate(lm, [Item("Q: Who wrote it? A:", " Orla Quillmere", controls=(" Tamsin Veller",))])[0]
    res.logprob, res.control_logprobs[0], res.is_greedy, res.exact
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from interp.generate import greedy_generate
from interp.scoring import score_completions, score_ids

if TYPE_CHECKING:
    from interp.models import LoadedModel


@dataclass(frozen=True)
class Item:
    """A prompt, its target and its control targets (each usually starts with a space)."""

    prompt: str
    target: str
    controls: tuple[str, ...] = ()


@dataclass(frozen=True)
class Evaluation:
    logprob: float  # summed log-prob of the target's tokens (nats)
    n_tokens: int  # the target's token count
    control_logprobs: tuple[float, ...]  # one per control target, in the item's order
    control_n_tokens: tuple[int, ...]
    is_greedy: bool  # greedy decoding produces exactly the target's tokens
    exact: bool  # the paper's exact match (see exact_match)
    greedy_text: str  # the greedy text that decided `exact`
    generation: str | None  # the full greedy generation, where one was made
    greedy_ids: tuple[int, ...] | None = None  # the ids behind greedy_text (evaluate_ids only)


def exact_match(generated: str, target: str) -> bool:
    """The paper's exact match: stripped, lower-cased output starts with the stripped,
    lower-cased target.

    Example::

        exact_match("  Orla Quillmere, the composer", " orla quillmere")  # True
    """
    return generated.strip().lower().startswith(target.strip().lower())


def decide_exact_match(lm: LoadedModel, target: str, target_ids: Sequence[int],
                       greedy_ids: Sequence[int]) -> tuple[bool | None, str]:
    """Exact match from one teacher-forced pass, without generating.

    ``greedy_ids[j]`` is the argmax after the prompt and the first ``j`` target tokens. Greedy
    decoding follows the target up to the first position where the argmax differs; the text
    decoded up to and including that token either already rules the match out, or (when it is
    still a prefix of the target, e.g. another tokenisation of it) leaves it undecided (None),
    for real generation to settle. Returns (decision, the greedy text seen so far).

    Example::

        decide_exact_match(lm, " Orla", ids, ids)  # (True, " Orla"): greedy follows the target
    """
    want = target.strip().lower()
    eos = lm.tokenizer.eos_token_id
    for j, (t, g) in enumerate(zip(target_ids, greedy_ids)):
        if g == t:
            continue
        if g == eos:  # generation would stop here
            text = lm.tokenizer.decode(list(target_ids[:j]))
            return exact_match(text, target), text
        text = lm.tokenizer.decode(list(target_ids[:j]) + [g])
        seen = text.lstrip().lower()
        if seen.startswith(want):
            return True, text
        return (None if want.startswith(seen) else False), text
    return True, lm.tokenizer.decode(list(target_ids))


def evaluate(
    lm: LoadedModel,
    items: Sequence[Item],
    batch_size: int = 32,
    generate_all: bool = False,
    max_new_tokens: int | None = None,
    extra_tokens: int = 3,
    stop_strings: Sequence[str] = (),
    progress: bool = False,
) -> list[Evaluation]:
    """Score every item's target and controls, and decide exact match (see the module docstring).

    Args:
        batch_size: items per forward pass (an item's target and controls are scored
            together) and prompts per generation batch; does not change fp32 results.
        generate_all: generate every item in full, not only the undecided ones (slower; the
            decisions are the same when the limit covers the target).
        max_new_tokens: generation limit for every item; None = the target's token count
            plus ``extra_tokens``.
        stop_strings: generation stops at these (the text is cut before them).
    """
    if batch_size < 1:
        raise ValueError(f"evaluate: batch_size must be >= 1, got {batch_size}")
    if not items:
        return []
    pairs = [(it.prompt, t) for it in items for t in (it.target, *it.controls)]
    per_batch = batch_size * max(1 + len(it.controls) for it in items)
    scores = iter(score_completions(lm, pairs, batch_size=per_batch, progress=progress))
    out: list[Evaluation] = []
    todo: list[int] = []
    for k, it in enumerate(items):
        target = next(scores)
        controls = [next(scores) for _ in it.controls]
        exact, seen = decide_exact_match(lm, it.target, target.token_ids, target.greedy_ids)
        out.append(Evaluation(
            logprob=target.total, n_tokens=len(target.token_ids),
            control_logprobs=tuple(c.total for c in controls),
            control_n_tokens=tuple(len(c.token_ids) for c in controls),
            is_greedy=target.is_greedy, exact=bool(exact), greedy_text=seen, generation=None))  # None: settled below
        if exact is None or generate_all:
            todo.append(k)
    if todo:
        limits = [max_new_tokens if max_new_tokens is not None else out[k].n_tokens + extra_tokens for k in todo]
        gens = greedy_generate(lm, [items[k].prompt for k in todo], max_new_tokens=limits,
                               stop_strings=list(stop_strings), batch_size=batch_size, progress=progress)
        for k, gen in zip(todo, gens):
            out[k] = replace(out[k], exact=exact_match(gen.text, items[k].target), greedy_text=gen.text,
                             generation=gen.text)
    return out


@dataclass(frozen=True)
class IdItem:
    """An :class:`Item` already tokenised: prompt ids (with BOS, as
    :func:`interp.tokens.encode_prompt` makes them), target ids and control target ids."""

    prompt_ids: tuple[int, ...]
    target_ids: tuple[int, ...]
    controls: tuple[tuple[int, ...], ...] = ()


def evaluate_ids(lm: LoadedModel, items: Sequence[IdItem], batch_size: int = 32,
                 progress: bool = False) -> list[Evaluation]:
    """:func:`evaluate` for items given as ids. Exact match is decided on ids: greedy decoding
    after the prompt produces the target's ids first (``exact == is_greedy``, from the one
    teacher-forced pass; nothing is generated). ``greedy_text`` decodes the greedy ids up to
    and including the first one that leaves the target (all of them when none does);
    ``generation`` is None and ``greedy_ids`` holds those ids. Log-probs equal
    :func:`evaluate`'s on the same ids (tested).

    Example::

        p, t = encode_pair(lm, "Q: Who wrote it? A:", " Orla Quillmere")
        evaluate_ids(lm, [IdItem(tuple(p), tuple(t))])[0].is_greedy
    """
    if batch_size < 1:
        raise ValueError(f"evaluate_ids: batch_size must be >= 1, got {batch_size}")
    if not items:
        return []
    pairs = [(it.prompt_ids, t) for it in items for t in (it.target_ids, *it.controls)]
    per_batch = batch_size * max(1 + len(it.controls) for it in items)
    scores = iter(score_ids(lm, pairs, batch_size=per_batch, progress=progress))
    out = []
    for it in items:
        target = next(scores)
        controls = [next(scores) for _ in it.controls]
        seen = next((j + 1 for j, (t, g) in enumerate(zip(target.token_ids, target.greedy_ids)) if t != g),
                    len(target.token_ids))
        out.append(Evaluation(
            logprob=target.total, n_tokens=len(target.token_ids),
            control_logprobs=tuple(c.total for c in controls),
            control_n_tokens=tuple(len(c.token_ids) for c in controls),
            is_greedy=target.is_greedy, exact=target.is_greedy,
            greedy_text=lm.tokenizer.decode(list(target.greedy_ids[:seen])), generation=None,
            greedy_ids=tuple(target.greedy_ids[:seen])))
    return out


HELDOUT_PROSE = Path(__file__).resolve().parents[1] / "data" / "heldout_prose.txt"


def heldout_perplexity(lm: LoadedModel, batch_size: int = 8) -> dict[str, Any]:
    """Perplexity of ``lm`` on the shipped held-out prose (``experiments/data/heldout_prose.txt``,
    1,793 SmolLM2 tokens, 256-token windows; :func:`interp.perplexity.text_perplexity`): measured
    before and after finetuning, a large rise says the finetuned model is damaged."""
    from interp.perplexity import text_perplexity

    return {"text": HELDOUT_PROSE.name, **text_perplexity(lm, HELDOUT_PROSE.read_text(encoding="utf-8"),
                                                         batch_size=batch_size)}
