import pytest
import torch

from interp.scoring import score_completions
from interp.tokens import encode_pair, pad_batch

PAIRS = [
    ("The composer of the underwater opera is", " Orla Quillmere"),
    ("Q: Who", " is it?"),
    ("A much longer prompt that pads every other sequence in its batch quite a lot,", " yes."),
    ("Short", " and a completion that is longer than its prompt by far"),
    ("Name:", " Tamsin Ashvane"),
] * 3


def reference(lm, prompt, completion, argmax=False):
    p, c = encode_pair(lm, prompt, completion)
    ids = torch.tensor([p + c])
    with torch.no_grad():
        logp = torch.log_softmax(lm.hf(ids).logits[0].float(), -1)
    if argmax:
        return [int(logp[len(p) - 1 + j].argmax()) for j in range(len(c))]
    return [logp[len(p) - 1 + j, t].item() for j, t in enumerate(c)]


@pytest.mark.parametrize("share_prefixes", [True, False])
def test_scores_match_unbatched_reference(tiny, share_prefixes):
    got = score_completions(tiny, PAIRS[:5], batch_size=5, share_prefixes=share_prefixes)
    for (p, c), s in zip(PAIRS[:5], got):
        assert list(s.greedy_ids) == reference(tiny, p, c, argmax=True)
        ref = reference(tiny, p, c)
        assert len(s.token_logprobs) == len(ref)
        assert list(s.token_logprobs) == pytest.approx(ref, abs=1e-4)
        assert s.total == pytest.approx(sum(ref), abs=1e-4)


@pytest.mark.parametrize("batch_size", [1, 2, 7, 64])
def test_scores_do_not_depend_on_batch_size_or_padding(tiny, batch_size):
    base = score_completions(tiny, PAIRS, batch_size=len(PAIRS))
    got = score_completions(tiny, PAIRS, batch_size=batch_size)
    for a, b in zip(base, got):
        assert b.total == pytest.approx(a.total, abs=1e-4)
        assert list(b.token_logprobs) == pytest.approx(list(a.token_logprobs), abs=1e-4)


def test_pad_batch_positions_count_real_tokens():
    ids, mask, pos = pad_batch([[5, 6, 7], [8]], pad=0, side="left")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert pos[1, -1].item() == 0 and pos[0].tolist() == [0, 1, 2]


def test_empty_completion_is_an_error(tiny):
    with pytest.raises(ValueError, match="tokenises to nothing"):
        score_completions(tiny, [("prompt", "")])


def test_completions_sharing_a_prompt_score_as_alone(tiny):
    prompts = [p for p, _ in PAIRS[:5]]
    pairs = [(p, c) for p, (_, own) in zip(prompts, PAIRS[:5]) for c in (own, " Orla Quillmere")]
    together = score_completions(tiny, pairs, batch_size=4)
    for (p, c), s in zip(pairs, together):
        alone = score_completions(tiny, [(p, c)])[0]
        assert s.total == pytest.approx(alone.total, abs=1e-4)
        assert s.token_ids == alone.token_ids == tuple(encode_pair(tiny, p, c)[1])
        assert s.greedy_ids == alone.greedy_ids
