"""Score a target after each prompt and decide whether greedy decoding produces it.

One teacher-forced pass (:func:`interp.score_completions`, shared prefixes computed once) gives
each target's log-prob and the argmax at every target position; that decides exact match for
almost every prompt (:func:`experiments.exp1_eval.decide_exact_match`). The few left undecided
(the greedy text is another tokenisation of a prefix of the target) are generated for real.

Example::

    rows = score_and_match(lm, ["Q: Who wrote it? A:"], ["Orla Quillmere"])
    rows[0]["logprob"], rows[0]["exact"], rows[0]["greedy_text"]
"""

from __future__ import annotations

from typing import Any, Sequence


def score_and_match(lm: Any, prompts: Sequence[str], targets: Sequence[str], batch_size: int = 64,
                    extra_tokens: int = 4, stop_strings: Sequence[str] = ("\n",),
                    progress: bool = False) -> list[dict[str, Any]]:
    """Per prompt: ``logprob`` of ``" " + target``, ``n_tokens``, ``exact`` (greedy output starts
    with the target, case-insensitive) and ``greedy_text`` (what decided it)."""
    from experiments.exp1_eval import decide_exact_match, exact_match
    from interp import greedy_generate, score_completions
    from interp.tokens import encode_completion

    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
    scores = score_completions(lm, [(p, " " + t) for p, t in zip(prompts, targets)],
                               batch_size=batch_size, progress=progress)
    rows, undecided = [], []
    for k, (t, s) in enumerate(zip(targets, scores)):
        ids = encode_completion(lm, " " + t)
        decision, text = decide_exact_match(lm, " " + t, ids, s.greedy_ids)
        rows.append({"logprob": s.total, "n_tokens": len(ids), "exact": decision, "greedy_text": text})
        if decision is None:
            undecided.append(k)
    if undecided:
        gens = greedy_generate(lm, [prompts[k] for k in undecided],
                               [rows[k]["n_tokens"] + extra_tokens for k in undecided],
                               stop_strings=list(stop_strings), batch_size=batch_size)
        for k, g in zip(undecided, gens):
            rows[k].update(exact=exact_match(g.text, targets[k]), greedy_text=g.text)
    return rows
