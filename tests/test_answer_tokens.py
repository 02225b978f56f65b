"""Attribution of the whole answer or of a chosen answer token: the parts still sum to the
explained logits, and those are the model's own logits at the predicting positions."""

from __future__ import annotations

import pytest
import torch

from interp.answer_tokens import answer_dla, answer_token_queries
from interp.models import load_model
from interp.recording import Query
from interp.tokens import encode_pair


@pytest.fixture(scope="module")
def lm():
    return load_model("tiny:n_layers=2,d_model=64,seed=4")


QS = [Query("The composer of Tides of Glass is", " Orla Venn"), Query("Ben Hall is the", " first pilot")]


def _logits(lm, q):
    p, c = encode_pair(lm, q.prompt, q.target)
    with torch.no_grad():
        out = lm.hf(torch.tensor([p + c])).logits[0].float()
    return torch.stack([out[len(p) - 1 + k, t] for k, t in enumerate(c)])  # each answer token's logit


def test_whole_answer_parts_sum_to_the_summed_logits(lm) -> None:
    a = answer_dla(lm, QS)
    assert a.kind == "dla_answer" and a.attn.shape[0] == 2
    torch.testing.assert_close(a.total(), a.logit, atol=1e-3, rtol=1e-5)
    want = torch.stack([_logits(lm, q).sum() for q in QS])
    torch.testing.assert_close(a.logit, want, atol=1e-3, rtol=1e-5)


def test_a_chosen_token_is_that_tokens_logit(lm) -> None:
    second = answer_dla(lm, QS, token=1)
    torch.testing.assert_close(second.logit, torch.stack([_logits(lm, q)[1] for q in QS]), atol=1e-3, rtol=1e-5)
    split, owner = answer_token_queries(lm, QS[:1], "all")
    assert owner == [0] * len(split) and split[1].meta["answer_token"] == 1
    with pytest.raises(ValueError, match="token 99 asked"):
        answer_token_queries(lm, QS, 99)
