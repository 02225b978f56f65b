from interp.generate import greedy_generate

PROMPTS = [
    "The composer of the underwater opera is",
    "Q: Who",
    "A much longer prompt, which makes every other prompt in the batch left-padded,",
    "x",
    "Name:",
    "Known for taming the glass tide,",
]


def test_batched_generation_equals_one_at_a_time(tiny):
    batched = greedy_generate(tiny, PROMPTS, max_new_tokens=12, batch_size=len(PROMPTS), stop_at_eos=False)
    single = [greedy_generate(tiny, [p], max_new_tokens=12, stop_at_eos=False)[0] for p in PROMPTS]
    assert [g.token_ids for g in batched] == [g.token_ids for g in single]
    assert all(len(g.token_ids) == 12 for g in batched)


def test_per_prompt_limits_and_stop_strings(tiny):
    gens = greedy_generate(tiny, PROMPTS[:3], max_new_tokens=[1, 3, 5], stop_at_eos=False)
    assert [len(g.token_ids) for g in gens] == [1, 3, 5]
    full = greedy_generate(tiny, [PROMPTS[0]], max_new_tokens=10, stop_at_eos=False)[0]
    stop = full.text[2:4]
    cut = greedy_generate(tiny, [PROMPTS[0]], max_new_tokens=10, stop_strings=[stop], stop_at_eos=False)[0]
    assert stop not in cut.text
    assert full.text.startswith(cut.text)
    assert len(cut.token_ids) <= len(full.token_ids)
