"""Run a batch of token sequences with each distinct prefix computed once.

Scoring workloads repeat prefixes: one prompt with a correct and a random name, or many prompts
built from one template ("Quick question: who is the ..."). A transformer's per-token work
(embeddings, projections, MLPs, norms: nearly all of its FLOPs) depends only on a token's
prefix, so :func:`tree_forward` merges the batch into a trie and runs that work once per
trie node. Attention is the one place where tokens meet; there the nodes are gathered back
into the usual padded ``[sequence, position]`` layout, attention runs exactly as in a padded
batch (same shapes, same mask, the model's own attention function), and each node takes its
output from one sequence that contains it.

Because every operation a token sees is the one it would see in a padded batch, the results
match padded scoring (bit for bit on the CPU runs we tested; within float rounding in
general), while the work falls by the number of tokens the trie saves.

It needs a Hugging Face model whose attention goes through ``ALL_ATTENTION_FUNCTIONS``
(Llama, Mistral, Qwen2, GPT-2, GPT-NeoX in transformers 5; see
:data:`interp.scoring.TREE_MODEL_TYPES`).

Example::

    tree = PrefixTree.build([[0, 5, 6, 7], [0, 5, 6, 9]])
    tree.tokens     # [0, 5, 6, 7, 9]: the prefix 0 5 6 is one set of nodes
    tree.paths      # [[0, 1, 2, 3], [0, 1, 2, 4]]: the node at each position of each sequence
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch

ATTENTION_NAME = "rct_prefix_tree"


@dataclass
class PrefixTree:
    """A trie over sequences; nodes in creation order (a parent comes before its children)."""

    tokens: list[int] = field(default_factory=list)
    depths: list[int] = field(default_factory=list)
    owners: list[tuple[int, int]] = field(default_factory=list)  # (sequence, position) that made the node
    paths: list[list[int]] = field(default_factory=list)  # per sequence, the node at each position

    @classmethod
    def build(cls, seqs: Sequence[Sequence[int]]) -> PrefixTree:
        tree, roots = cls(), {}
        children: list[dict[int, int]] = []
        for s, seq in enumerate(seqs):
            if not len(seq):
                raise ValueError(f"sequence {s} is empty")
            level, path = roots, []
            for depth, tok in enumerate(seq):
                node = level.get(int(tok))
                if node is None:
                    node = len(tree.tokens)
                    tree.tokens.append(int(tok))
                    tree.depths.append(depth)
                    tree.owners.append((s, depth))
                    children.append({})
                    level[int(tok)] = node
                path.append(node)
                level = children[node]
            tree.paths.append(path)
        return tree

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class TreeIndex:
    """What the attention function needs to move between node and sequence layouts."""

    gather: torch.Tensor  # [n_seq, width] node index at each (sequence, position); padding -> node 0
    scatter: torch.Tensor  # [n_nodes] flat (sequence * width + position) each node reads its output from
    mask: torch.Tensor  # [n_seq, 1, width, width] the padded batch's attention mask
    inner: str  # the model's attention implementation ("eager", "sdpa")


def tree_inputs(
    tree: PrefixTree, attn_implementation: str, dtype: torch.dtype, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, TreeIndex]:
    """``(input_ids [1, n], position_ids [1, n], index)`` for :func:`tree_forward`."""
    width = max(len(p) for p in tree.paths)
    gather = torch.zeros((len(tree.paths), width), dtype=torch.long)
    lengths = torch.tensor([len(p) for p in tree.paths])
    for s, path in enumerate(tree.paths):
        gather[s, : len(path)] = torch.tensor(path)
    scatter = torch.tensor([s * width + d for s, d in tree.owners])
    keep = torch.ones(width, width, dtype=torch.bool).tril()[None] & (torch.arange(width) < lengths[:, None])[:, None]
    if attn_implementation == "eager":  # additive, as transformers builds it for eager attention
        mask = torch.zeros(keep.shape, dtype=dtype).masked_fill_(~keep, torch.finfo(dtype).min)
    else:  # boolean, True = attend
        mask = keep
    index = TreeIndex(gather.to(device), scatter.to(device), mask[:, None].to(device), attn_implementation)
    ids = torch.tensor([tree.tokens], device=device)
    pos = torch.tensor([tree.depths], device=device)
    return ids, pos, index


def _inner_attention(module: torch.nn.Module, name: str) -> Any:
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if name == "eager":
        fn = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
        if fn is None:
            raise ValueError(f"{type(module).__name__} has no eager_attention_forward to run the prefix tree with")
        return fn
    return ALL_ATTENTION_FUNCTIONS[name]


def _tree_attention(module, query, key, value, attention_mask, *args, rct_tree: TreeIndex | None = None, **kwargs):
    if rct_tree is None:
        raise RuntimeError(f"attention implementation {ATTENTION_NAME!r} is only for interp.prefix_tree.tree_forward")
    if query.shape[0] != 1:
        raise ValueError(f"prefix-tree attention expects one packed row, got batch {query.shape[0]}")

    def to_seq(x: torch.Tensor) -> torch.Tensor:  # [1, heads, nodes, d] -> [seq, heads, width, d]
        return x[0][:, rct_tree.gather].permute(1, 0, 2, 3)

    out, _ = _inner_attention(module, rct_tree.inner)(
        module, to_seq(query), to_seq(key), to_seq(value), rct_tree.mask, *args, **kwargs)
    # out: [seq, width, heads, d] -> the node layout [1, nodes, heads, d]
    return out.reshape(-1, *out.shape[2:])[rct_tree.scatter][None], None


@contextlib.contextmanager
def _attention_switched(hf: torch.nn.Module) -> Iterator[str]:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION_NAME, _tree_attention)
    cfg = hf.config
    inner = cfg._attn_implementation
    cfg._attn_implementation = ATTENTION_NAME
    try:
        yield inner
    finally:
        cfg._attn_implementation = inner


def tree_forward(body: torch.nn.Module, hf: torch.nn.Module, tree: PrefixTree) -> torch.Tensor:
    """Final hidden states ``[n_nodes, d_model]`` of ``body`` (the model without its head)
    for every node of ``tree``. ``hf`` is the model that owns ``body`` (its config selects
    the attention implementation, switched for the duration of the call)."""
    with _attention_switched(hf) as inner:
        ids, pos, index = tree_inputs(tree, inner, hf.dtype, hf.device)
        out = body(input_ids=ids, position_ids=pos, attention_mask=index.mask[:1, :, :1, :1],
                   rct_tree=index, use_cache=False)
    return out.last_hidden_state[0]
