"""rct analyse traces a model's query set only when its clean answer probability can be
restored visibly: the gate's probability is the one tracing reports, sets below it are named
as not traced, and the report says why."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from analysis.causal import CausalConfig, clean_first_token_p, tracing_section
from analysis.causal_report import _tracing
from analysis.query_sets import query_sets
from interp.models import load_model
from interp.trace import causal_trace


@pytest.fixture(scope="module")
def lm():
    return load_model("tiny:n_layers=2,d_model=32,seed=3")


@pytest.fixture(scope="module")
def sets():
    from experiments.exp1.generator import generate_exp1
    from experiments.exp1.schema import Exp1DataConfig

    ds = generate_exp1(Exp1DataConfig(n_facts=6, n_paraphrases=2, n_test_templates=2, seed=2))
    return {n: qs for n, qs in query_sets(ds, n_facts=2, prompts_per_fact=1).items()
            if n in ("d2p_forward", "p2d_reverse")}


def test_gate_probability_is_the_traced_clean_probability(lm, sets) -> None:
    qs = sets["d2p_forward"]
    tr = causal_trace(lm, qs.queries, qs.entity, CausalConfig().trace, progress=False)
    np.testing.assert_allclose(clean_first_token_p(lm, qs), tr.p_clean.numpy(), rtol=1e-4, atol=1e-7)


def test_sets_below_the_gate_are_named_not_traced(lm, sets, tmp_path) -> None:
    cfg = CausalConfig(n_facts_trace=2, trace_templates=1, min_clean_p=0.5,
                       trace=replace(CausalConfig().trace, layer_stride=1))
    res, figs = tracing_section({"finetuned": lm}, sets, cfg, tmp_path, progress=False)
    for name in sets:  # a random model's answers sit far below 0.5
        e = res["finetuned"][name]
        assert "too low to trace" in e["skipped"] and e["p_clean"]["mean"] < 0.5 and "effect" not in e
    assert figs == []
    md = "\n".join(_tracing(res))
    assert md.count("not traced") == len(sets)

    res, figs = tracing_section({"finetuned": lm}, sets, replace(cfg, min_clean_p=0.0), tmp_path, progress=False)
    assert all("skipped" not in e and e["n"] == 2 for e in res["finetuned"].values()) and figs


def test_gate_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="min_clean_p"):
        CausalConfig(min_clean_p=1.5)
