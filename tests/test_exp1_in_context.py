"""The in-context control of experiment 1: each reverse prompt again after a sentence of the
fact in its trained order."""

from __future__ import annotations

import pytest

from experiments.exp1 import words
from experiments.exp1.data import Exp1DataConfig, Exp1Dataset, generate_exp1
from experiments.exp1.evaluate import (IN_CONTEXT_CELLS, IN_CONTEXT_OF, EvalConfig, context_sentences,
                                       evaluate_exp1, exp1_items)
from experiments.exp1.report import figure4, table1


@pytest.fixture(scope="module")
def ds() -> Exp1Dataset:
    return generate_exp1(Exp1DataConfig(n_facts=4, n_paraphrases=3, n_test_templates=2, seed=5))


def test_the_in_context_prompt_holds_the_fact_then_the_query(ds) -> None:
    records = exp1_items(ds, EvalConfig())
    facts = {f.fact_id: f for f in ds.facts}
    for stem, source in IN_CONTEXT_OF.items():
        reverse = [r for r in records if r["file"] == source]
        ctx = [r for r in records if r["file"] == stem]
        assert len(ctx) == len(reverse) == 4 * 2  # every fact, every held-out prompt
        for r, c in zip(reverse, ctx):
            f = facts[c["fact_id"]]
            assert c["prompt"] == f"{c['context']} {r['prompt']}" and c["query"] == r["prompt"]
            assert (c["target"], c["random_name"], c["rank_names"]) == (r["target"], r["random_name"],
                                                                         r["rank_names"])
            name_at, desc_at = c["context"].find(f.name), c["context"].find(f.description)
            assert name_at >= 0 and desc_at >= 0, c["context"]  # the canonical wording is shown
            # the trained order: name first for NameToDescription, description first for the other
            assert (name_at < desc_at) == (f.subset == "p2d")
    # the sentence is the first training template of the trained order, filled with the fact
    for subset, template in (("p2d", words.NAME_FIRST_TRAIN[0]), ("d2p", words.DESCRIPTION_FIRST_TRAIN[0])):
        for fact_id, text in context_sentences(ds, subset).items():
            f = facts[fact_id]
            assert text == template.replace("{name}", f.name).replace("{description}", f.description)
    assert not any(r["file"] in IN_CONTEXT_CELLS for r in exp1_items(ds, EvalConfig(in_context=False)))


def test_in_context_cells_are_scored_ranked_and_reported(tiny, ds, tmp_path) -> None:
    m = evaluate_exp1(tiny, ds, EvalConfig(batch_size=8), tmp_path, progress=False)
    name_cell = m["cells"]["p2d_reverse_in_context"]
    assert name_cell["n_facts"] == 4 and name_cell["direction"] == "reverse, fact in context"
    assert name_cell["correct_vs_random"]["n"] == 4 and name_cell["rank"]["n_candidates"] == 4
    assert "rank" not in m["cells"]["d2p_reverse_in_context"]  # a description target
    text = table1({"base": m})
    assert "The in-context control" in text and "(p2d_reverse_prompts_test)" in text
    assert "reverse, fact in context (p2d_reverse_in_context)" in text  # in the rank table too
    figure4({"base": m}, tmp_path / "fig")  # Figure 4 keeps the paper's cells only
    assert (tmp_path / "fig.png").exists()


def test_evaluation_reports_heldout_perplexity(tiny, ds, tmp_path) -> None:
    m = evaluate_exp1(tiny, ds, EvalConfig(batch_size=8, in_context=False, files=("d2p_prompts_test",)),
                      tmp_path, progress=False)
    assert m["perplexity"]["n_tokens"] > 1000 and m["perplexity"]["perplexity"] > 1
    assert "Perplexity on the shipped held-out prose" in table1({"base": m})
    assert "perplexity" not in evaluate_exp1(tiny, ds, EvalConfig(perplexity=False, files=("d2p_prompts_test",)),
                                             tmp_path / "off", progress=False)
