"""Prefix-tree scoring: the trie, and equality with padded batches on several architectures."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from interp.prefix_tree import PrefixTree, tree_forward
from interp.scoring import score_completions, supports_prefix_sharing

# shared prompts, shared template heads, a pair whose prompt is another's prefix, one-token names
PAIRS = [
    ("Quick question: who is the glassblower of Quorness? It is", " Fenna Umbermarsh"),
    ("Quick question: who is the glassblower of Quorness? It is", " Melisande Gormstrand"),
    ("Quick question: who is the first walker of Keshhaven? It is", " Melisande Gormstrand"),
    ("Quick question: who", " is it"),
    ("The name of the glassblower of Quorness is", " Fenna Umbermarsh"),
    ("The name of the glassblower of Quorness is", " F"),
    ("Q", " x"),
]


def test_trie_merges_shared_prefixes():
    tree = PrefixTree.build([[0, 5, 6, 7], [0, 5, 6, 9], [0, 5], [1, 5]])
    assert tree.tokens == [0, 5, 6, 7, 9, 1, 5]
    assert tree.depths == [0, 1, 2, 3, 3, 0, 1]
    assert tree.paths == [[0, 1, 2, 3], [0, 1, 2, 4], [0, 1], [5, 6]]
    # every node is read back from the sequence and position that created it
    assert tree.owners[4] == (1, 3) and tree.owners[6] == (3, 1)
    for s, path in enumerate(tree.paths):
        for d, node in enumerate(path):
            owner_s, owner_d = tree.owners[node]
            assert owner_d == d and tree.paths[owner_s][d] == node


def test_empty_sequence_is_an_error():
    with pytest.raises(ValueError, match="sequence 1 is empty"):
        PrefixTree.build([[1, 2], []])


def test_tree_hidden_states_equal_separate_forwards(tiny):
    seqs = [[0, 40, 41, 42, 43], [0, 40, 41, 50], [0, 40, 41, 42, 43, 44, 45], [0, 60]]
    tree = PrefixTree.build(seqs)
    assert len(tree) == 9  # 16 tokens, 9 distinct prefixes
    body = tiny.hf.base_model
    with torch.no_grad():
        hidden = tree_forward(body, tiny.hf, tree)
        for seq, path in zip(seqs, tree.paths):
            alone = body(input_ids=torch.tensor([seq])).last_hidden_state[0]
            torch.testing.assert_close(hidden[path], alone, atol=1e-5, rtol=1e-5)
    assert tiny.hf.config._attn_implementation == "eager"  # switched back


def _other_arch(tiny, model_type: str, attn: str):
    from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM

    vocab = tiny.hf.config.vocab_size
    if model_type == "gpt2":
        cfg = GPT2Config(vocab_size=vocab, n_positions=256, n_embd=48, n_layer=2, n_head=4,
                         attn_implementation=attn)
        hf = GPT2LMHeadModel(cfg)
    else:
        cfg = GPTNeoXConfig(vocab_size=vocab, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=96, max_position_embeddings=256, attn_implementation=attn)
        hf = GPTNeoXForCausalLM(cfg)
    return dataclasses.replace(tiny, name=f"tiny-{model_type}", hf=hf.eval())


@pytest.mark.parametrize("arch", ["llama-eager", "llama-sdpa", "gpt2-eager", "gpt2-sdpa",
                                  "gpt_neox-eager", "gpt_neox-sdpa"])
def test_prefix_tree_scores_equal_padded_scores(tiny, arch):
    model_type, attn = arch.split("-")
    if model_type == "llama":
        lm = dataclasses.replace(tiny)
        if attn != "eager":
            import copy

            lm = dataclasses.replace(tiny, hf=copy.deepcopy(tiny.hf))
            lm.hf.set_attn_implementation(attn)
    else:
        lm = _other_arch(tiny, model_type, attn)
    assert supports_prefix_sharing(lm)
    padded = score_completions(lm, PAIRS, share_prefixes=False)
    for batch_size in (1, 3, 64):
        tree = score_completions(lm, PAIRS, share_prefixes=True, batch_size=batch_size)
        for a, b in zip(padded, tree):
            assert len(b.token_logprobs) == len(a.token_logprobs)
            assert list(b.token_logprobs) == pytest.approx(list(a.token_logprobs), abs=1e-5)
            assert b.greedy_ids == a.greedy_ids
    assert lm.hf.config._attn_implementation == attn


def test_attention_switch_is_undone_after_an_error(tiny, monkeypatch):
    import interp.prefix_tree as pt

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(pt, "_inner_attention", lambda module, name: boom)
    with pytest.raises(RuntimeError, match="boom"):
        score_completions(tiny, PAIRS[:2], share_prefixes=True)
    assert tiny.hf.config._attn_implementation == "eager"


def test_unsupported_model_gets_padded_batches_or_a_clear_error(tiny):
    import copy

    lm = dataclasses.replace(tiny, hf=copy.deepcopy(tiny.hf))
    lm.hf.config.model_type = "some_new_arch"
    assert not supports_prefix_sharing(lm)
    ref = score_completions(tiny, PAIRS[:3])
    got = score_completions(lm, PAIRS[:3])  # default: falls back to padded batches
    assert [s.total for s in got] == pytest.approx([s.total for s in ref], abs=1e-5)
    with pytest.raises(ValueError, match="share_prefixes=True needs a model type"):
        score_completions(lm, PAIRS[:3], share_prefixes=True)


def test_prompt_with_no_tokens_and_no_bos_is_an_error(tiny):
    lm = dataclasses.replace(tiny, bos_token_id=None)
    with pytest.raises(ValueError, match="tokenises to nothing and the model has no BOS"):
        score_completions(lm, [("", " x")])


def test_gemma3_shares_prefixes_only_within_its_sliding_window():
    """Tiny Gemma 3 (an 8-token sliding window): the prefix tree's one mask per sequence is the
    model's own mask only while every sequence fits in the window. Within it, tree scores equal
    padded ones; beyond it the default falls back to padded batches (which apply the window),
    and forcing the tree is refused."""
    from interp import load_model
    from interp.scoring import fits_window
    from interp.tokens import encode_pair

    lm = load_model("tiny:arch=gemma3,n_layers=2,n_kv_heads=2,seed=1")
    assert lm.hf.config.sliding_window == 8 and supports_prefix_sharing(lm)
    short = [("Q: a", " b c"), ("Q: a", " d"), ("Hi", " th")]
    assert fits_window(lm, [encode_pair(lm, p, c) for p, c in short])
    padded = score_completions(lm, short, share_prefixes=False)
    tree = score_completions(lm, short, share_prefixes=True)
    for a, b in zip(padded, tree):
        assert list(b.token_logprobs) == pytest.approx(list(a.token_logprobs), abs=1e-5)
    long = PAIRS[:2]
    assert not fits_window(lm, [encode_pair(lm, p, c) for p, c in long])
    default = score_completions(lm, long)
    assert [s.total for s in default] == pytest.approx([s.total for s in score_completions(lm, long, share_prefixes=False)], abs=1e-6)
    with pytest.raises(ValueError, match="sliding window"):
        score_completions(lm, long, share_prefixes=True)
