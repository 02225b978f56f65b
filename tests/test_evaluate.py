"""The shared evaluator (experiments.core.evaluate) and the control draw (experiments.core.controls)."""

from __future__ import annotations

import random

import pytest

from experiments.core.controls import draw_controls
from experiments.core.evaluate import Item, decide_exact_match, evaluate, exact_match
from interp import greedy_generate
from interp.tokens import encode_completion

PROMPTS = ["The composer of the underwater opera is", "Q: Who wrote Tides of Glass?\nA:", "Name:",
           "A much longer prompt that pads every other prompt in its batch quite a lot, and then", "Short"]


def greedy_and_other_items(lm) -> list[Item]:
    """Per prompt, a target greedy decoding produces (its first three greedy tokens) and one it
    does not (two greedy tokens, then other words); each with a control."""
    gens = greedy_generate(lm, PROMPTS, max_new_tokens=3, stop_at_eos=False)
    items = []
    for prompt, gen in zip(PROMPTS, gens):
        produced = lm.tokenizer.decode(list(gen.token_ids))
        items.append(Item(prompt, produced, controls=(" Orla Quillmere",)))
        items.append(Item(prompt, lm.tokenizer.decode(list(gen.token_ids[:2])) + " zebra crossing",
                          controls=(" Tamsin Veller", " Lucie")))
    return items


def test_is_greedy_is_whether_greedy_generation_starts_with_the_target(tiny):
    items = greedy_and_other_items(tiny)
    results = evaluate(tiny, items, batch_size=4)
    for it, res in zip(items, results):
        want = encode_completion(tiny, it.target)
        gen = greedy_generate(tiny, [it.prompt], max_new_tokens=len(want), stop_at_eos=False)[0]
        assert res.is_greedy == (list(gen.token_ids[: len(want)]) == want), it
        assert res.n_tokens == len(want)
    assert any(r.is_greedy for r in results) and not all(r.is_greedy for r in results)


def test_decided_exact_match_equals_generating_every_item(tiny):
    items = greedy_and_other_items(tiny)
    fast = evaluate(tiny, items, batch_size=3)
    full = evaluate(tiny, items, batch_size=3, generate_all=True)
    assert [r.exact for r in fast] == [r.exact for r in full]
    assert any(r.exact for r in fast) and not all(r.exact for r in fast)
    for it, res in zip(items, full):
        assert res.generation is not None and res.exact == exact_match(res.generation, it.target)
    # without generate_all, only the undecided items are generated
    assert sum(r.generation is not None for r in fast) < len(fast)


def test_control_logprobs_equal_scoring_the_control_as_a_target(tiny):
    items = greedy_and_other_items(tiny)
    results = evaluate(tiny, items, batch_size=4)
    as_targets = evaluate(tiny, [Item(it.prompt, c) for it in items for c in it.controls], batch_size=4)
    flat = [(lp, n) for r in results for lp, n in zip(r.control_logprobs, r.control_n_tokens)]
    assert len(flat) == len(as_targets) == 15
    for (lp, n), ref in zip(flat, as_targets):
        assert lp == pytest.approx(ref.logprob, abs=1e-4)
        assert n == ref.n_tokens


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_batch_size_does_not_change_results(tiny, batch_size):
    items = greedy_and_other_items(tiny)
    base = evaluate(tiny, items, batch_size=len(items), generate_all=True)
    got = evaluate(tiny, items, batch_size=batch_size, generate_all=True)
    for a, b in zip(base, got):
        assert b.logprob == pytest.approx(a.logprob, abs=1e-4)
        assert list(b.control_logprobs) == pytest.approx(list(a.control_logprobs), abs=1e-4)
        assert (b.is_greedy, b.exact, b.generation) == (a.is_greedy, a.exact, a.generation)


def test_generation_limit_and_stop_strings(tiny):
    item = Item("Q: Who wrote Tides of Glass?\nA:", " Orla Quillmere")
    res = evaluate(tiny, [item], generate_all=True, max_new_tokens=2)[0]
    ref = greedy_generate(tiny, [item.prompt], max_new_tokens=2)[0]
    assert res.generation == ref.text
    gen = greedy_generate(tiny, [item.prompt], max_new_tokens=6)[0].text
    stop = gen[1:3]
    assert len(stop) == 2
    res = evaluate(tiny, [item], generate_all=True, max_new_tokens=6, stop_strings=(stop,))[0]
    assert res.generation == gen[: gen.index(stop)]
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(tiny, [item], batch_size=0)


def test_exact_match_definition():
    assert exact_match("  Orla Quillmere, the composer", " orla quillmere")
    assert not exact_match(" Orla", " Orla Quillmere")


def test_exact_match_decision_without_generation(tiny):
    target = " Orla Quillmere"
    ids = tiny.tokenizer(target, add_special_tokens=False)["input_ids"]
    assert decide_exact_match(tiny, target, ids, ids) == (True, target)
    wrong = list(ids)
    wrong[3] = tiny.tokenizer("x", add_special_tokens=False)["input_ids"][0]
    assert decide_exact_match(tiny, target, ids, wrong) == (False, " Orx")
    # greedy emits a newline first: after stripping, the text so far is still a prefix
    newline = tiny.tokenizer("\n", add_special_tokens=False)["input_ids"][0]
    assert decide_exact_match(tiny, target, ids, [newline] + ids[1:])[0] is None
    eos = [tiny.tokenizer.eos_token_id] + ids[1:]
    assert decide_exact_match(tiny, target, ids, eos) == (False, "")


def test_control_draw_is_never_correct_and_repeats_with_the_seed():
    rng = random.Random(1)
    names = [f"name{i}" for i in range(6)]
    requests = [(names, set(rng.sample(names, rng.randint(1, 5)))) for _ in range(200)]
    drawn = draw_controls(requests, seed=7)
    for (group, correct), pick in zip(requests, drawn):
        assert pick in group and pick not in correct
    assert draw_controls(requests, seed=7) == drawn
    assert draw_controls(requests, seed="7-p2d") == draw_controls(requests, seed="7-p2d")
    assert draw_controls(requests, seed=8) != drawn  # another seed, other picks
    # no candidate left: None, and the draw goes on as if that request were absent
    assert draw_controls([(["a"], {"a"})] + requests, seed=7) == [None] + drawn
