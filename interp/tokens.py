"""The one tokenisation path of the toolkit.

Every stage (finetuning, scoring, generation, recording) turns text into ids here, so a name
is the same tokens in a training document, a forward prompt and a reverse prompt:

- a prompt is ``[bos] + tok(prompt)`` (``bos`` decided once per model, see
  :class:`interp.models.LoadedModel`), tokenised without the tokenizer's own special tokens;
- a completion is ``tok(completion)`` tokenised on its own and appended, never re-tokenised
  together with the prompt (so its tokens do not depend on the prompt).

Example::

    p, c = encode_pair(lm, "Q: Who wrote Tides of Glass? A:", " Orla Quillmere")
    ids = p + c          # the scored / trained sequence
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence, Union

import torch


class HasTokenizer(Protocol):
    """What tokenisation needs of a model: its tokenizer, its BOS decision and its device.
    A :class:`interp.models.LoadedModel` is one; naming the need here keeps this module
    below the modules that load models."""

    tokenizer: Any
    bos_token_id: int | None

    @property
    def device(self) -> torch.device: ...


def _ids(lm: HasTokenizer, text: str) -> list[int]:
    return list(lm.tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_prompt(lm: HasTokenizer, prompt: str) -> list[int]:
    """``[bos] + tok(prompt)``; BOS only when the model has one."""
    bos = [] if lm.bos_token_id is None else [lm.bos_token_id]
    return bos + _ids(lm, prompt)


def encode_completion(lm: HasTokenizer, completion: str) -> list[int]:
    """``tok(completion)`` on its own (no BOS); an empty result is an error."""
    completion_ids = _ids(lm, completion)
    if not completion_ids:
        raise ValueError(f"completion {completion!r} tokenises to nothing")
    return completion_ids


def encode_pair(lm: HasTokenizer, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """Prompt ids (with BOS) and completion ids, tokenised separately."""
    return encode_prompt(lm, prompt), encode_completion(lm, completion)


@dataclass(frozen=True)
class TokenReversed:
    """A training document read backwards token by token (reverse training at the token
    level): :func:`encode_documents` encodes it as ``[bos] + reversed(tok(text))``, with the
    loss on every token after BOS whatever ``loss_on`` says (it has no prompt/completion split).

    Example::

        encode_documents(lm, [TokenReversed("Ada is")], "sequence")[0][0]
        # [bos] + tok("Ada is")[::-1]
    """

    text: str


Document = Union[tuple[str, str], TokenReversed]


def encode_documents(lm: HasTokenizer, docs: Sequence[Document], loss_on: str
                     ) -> list[tuple[list[int], list[int]]]:
    """(ids, labels) per document, as training sees them: ``loss_on="sequence"`` takes the
    loss on every token after BOS (the paper's setting), ``"completion"`` on the completion
    only; labels are -100 where no loss is taken. A :class:`TokenReversed` document is
    ``[bos] + reversed(tok(text))`` with the loss on every token after BOS."""
    out = []
    for doc in docs:
        if isinstance(doc, TokenReversed):
            ids = encode_prompt(lm, "") + encode_completion(lm, doc.text)[::-1]
            labels = [-100] + ids[1:] if lm.bos_token_id is not None else list(ids)
            out.append((ids, labels))
            continue
        prompt, completion = doc
        p, c = encode_pair(lm, prompt, completion)
        ids = p + c
        if loss_on == "sequence":
            labels = [-100] + ids[1:] if lm.bos_token_id is not None else list(ids)
        else:
            labels = [-100] * len(p) + c
        out.append((ids, labels))
    return out


def encode_with_offsets(lm: HasTokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Prompt ids as in :func:`encode_prompt` and each token's character span in ``text``
    (BOS gets ``(0, 0)``). Needs a fast tokenizer."""
    enc = lm.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    if lm.bos_token_id is not None:
        ids, offsets = [lm.bos_token_id] + ids, [(0, 0)] + offsets
    return ids, offsets


def token_span(offsets: Sequence[tuple[int, int]], start: int, end: int) -> list[int]:
    """Positions of the tokens overlapping characters ``[start, end)``."""
    return [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start]


def pad_id(lm: HasTokenizer) -> int:
    tok = lm.tokenizer
    for tid in (tok.pad_token_id, tok.eos_token_id, lm.bos_token_id, 0):
        if tid is not None:
            return int(tid)
    return 0


def pad_batch(
    seqs: Sequence[Sequence[int]], pad: int, side: str = "right", device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad id lists into ``(ids, attention_mask, position_ids)``, each ``[batch, pos]``.

    Position ids count real tokens only, so a left-padded sequence sees the same positions
    as it would alone.
    """
    if side not in ("left", "right"):
        raise ValueError(f"side must be left or right, got {side!r}")
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        sl = slice(width - len(s), width) if side == "left" else slice(0, len(s))
        ids[i, sl] = torch.tensor(list(s), dtype=torch.long)
        mask[i, sl] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), pos.to(device)


def encode_texts(lm: HasTokenizer, texts: Sequence[str]) -> torch.Tensor:
    """``[batch, pos]`` ids of texts that tokenise to the same length (no padding)."""
    seqs = [encode_prompt(lm, t) for t in texts]
    if len({len(s) for s in seqs}) != 1:
        raise ValueError("encode_texts needs texts of equal token length; use pad_batch")
    return torch.tensor(seqs, dtype=torch.long, device=lm.device)
