"""load_run(path): a finished run in one call, and forward against reverse in one more."""

from __future__ import annotations

import pytest

from experiments.exp1.load_run import load_run
from interp.errors import RctError
from test_attribution import make_fake_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_fake_run(tmp_path_factory.mktemp("lr") / "run")


def test_load_run_gives_models_data_and_the_four_sets(run_dir) -> None:
    run = load_run(run_dir)
    assert set(run.sets) == {"d2p_forward", "p2d_reverse", "p2d_forward", "d2p_reverse"}
    q = run.sets["p2d_reverse"].queries[0]
    assert "fact_id" in q.meta and q.entities[run.sets["p2d_reverse"].entity] in q.prompt
    assert run.base is not None and run.tuned.hf is not run.base.hf
    rows = run.forward_vs_reverse(n_facts=3, top_k=3, n_perm=100)
    assert len(rows) == 8 and {r["model"] for r in rows} == {"base", "finetuned"}
    rev = next(r for r in rows if r["set"] == "p2d_reverse" and r["model"] == "finetuned")
    assert rev["key_kind"] == "reverse entity" and rev["contrast_logit"]["ci_low"] <= rev["contrast_logit"]["mean"]
    assert run.forward_vs_reverse_markdown().count("| p2d_reverse |") == 2


def test_load_run_errors_name_the_run(run_dir, tmp_path) -> None:
    with pytest.raises(RctError, match="n_facts must be >= 3"):
        load_run(run_dir, base=False).forward_vs_reverse(n_facts=2)
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(run_dir, bare)
    shutil.rmtree(bare / "model")
    with pytest.raises(RctError, match="has no finetuned model yet"):
        load_run(bare)
    with pytest.raises(RctError, match="not a run directory"):
        load_run(tmp_path)
