"""Attribution of the whole answer, or of any chosen answer token, not only the first.

Direct logit attribution explains one token's logit at the position that predicts it. The
answer's first token is often a function word (" the"), shared by most answers, and explaining
it says nothing about the fact. :func:`answer_token_queries` splits each query into one query
per answer token (the answer's earlier tokens moved into the prompt, teacher forced, checked
to tokenise to the very same ids), so that the last prompt position predicts that token;
:func:`answer_dla` runs :func:`interp.attribution.direct_logit_attribution` on them and, for
``token="all"``, sums each query's rows: the whole answer's summed logit, split into the same
parts (embedding, attention and MLP per layer, heads, neurons, bias), which still sum exactly
to it.

Example::

    from interp.answer_tokens import answer_dla
    whole = answer_dla(lm, queries)              # every answer token, summed per query
    second = answer_dla(lm, queries, token=1)    # the answer's second token only
    whole.total() - whole.logit                  # ~0: the parts sum to the summed logits
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import TYPE_CHECKING, Sequence

import torch

from interp.attribution import Attribution, attribution_hooks, direct_logit_attribution
from interp.recording import Query, record
from interp.tokens import encode_pair

if TYPE_CHECKING:
    from interp.loaded import LoadedModel


def answer_token_queries(lm: LoadedModel, queries: Sequence[Query], token: int | str = "all"
                         ) -> tuple[list[Query], list[int]]:
    """One query per explained answer token: ``token`` an index into each answer's tokens, or
    ``"all"``. Returns the queries and, for each, the index of the query it came from. Raises
    when the answer is shorter than ``token + 1`` tokens, or when moving its tokens into the
    prompt would tokenise differently (the explained token would then not be the answer's)."""
    out, owner = [], []
    for i, q in enumerate(queries):
        p_ids, c_ids = encode_pair(lm, q.prompt, q.target)
        ks = range(len(c_ids)) if token == "all" else [int(token)]
        for k in ks:
            if not 0 <= k < len(c_ids):
                raise ValueError(f"query {i} ({q.prompt!r}): token {k} asked, the answer {q.target!r} has "
                                 f"{len(c_ids)} token(s)")
            head = lm.tokenizer.decode(c_ids[:k])
            tail = lm.tokenizer.decode(c_ids[k:])
            nq = replace(q, prompt=q.prompt + head, target=tail, foil=None,
                         meta={**dict(q.meta), "answer_token": k, "query_index": i})
            if encode_pair(lm, nq.prompt, nq.target) != (p_ids + c_ids[:k], c_ids[k:]):
                raise ValueError(f"query {i}: the answer {q.target!r} does not split at token {k} without "
                                 "retokenising; explain the whole answer with grad='sum' gradients instead")
            out.append(nq)
            owner.append(i)
    return out, owner


def answer_dla(lm: LoadedModel, queries: Sequence[Query], token: int | str = "all",
               batch_size: int = 16) -> Attribution:
    """Direct logit attribution of answer token ``token`` (an index) or of every answer token
    summed per query (``"all"``; kind ``dla_answer``). ``logit`` is the explained logit (the
    sum of the answer tokens' logits for ``"all"``)."""
    split, owner = answer_token_queries(lm, queries, token)
    with warnings.catch_warnings():  # each split query explains its own token, by construction
        warnings.filterwarnings("ignore", message=r"record\(\): the answer's first token")
        rec = record(lm, split, attribution_hooks(lm), positions=("last",), batch_size=batch_size)
    a = direct_logit_attribution(lm, rec)
    if token != "all":
        return a
    idx = torch.tensor(owner)

    def summed(x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros((len(queries), *x.shape[1:]), dtype=x.dtype)
        return out.index_add_(0, idx, x)
    return Attribution("dla_answer", *(summed(getattr(a, f)) for f in
                                       ("embed", "attn", "mlp", "heads", "neurons", "bias", "logit")))
