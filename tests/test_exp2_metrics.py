"""Experiment 2 measurement: the rank metric, scoring over a cached header, family-clustered
statistics, the exploratory split, and temperature sampling."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analysis.stats import bootstrap_mean_ci, cluster_bootstrap_mean_ci, cluster_signflip_pvalue, holm
from experiments.cli import main as rct
from experiments.core.config import ConfigError, build
from experiments.exp2 import (Exp2Config, any_sample_matches, build_prompt, candidate_names, evaluate_exp2, families,
                              rank_stats, run_exp2, sample_completions, score_candidates, summarise_exp2)
from experiments.exp2.data import ParentChildPair, load_pairs
from interp import score_completions
from interp.generate import greedy_generate

TINY = "tiny:n_layers=2,d_model=64,n_heads=4,n_kv_heads=2,d_mlp=96"
FAMILY = [ParentChildPair("Kim Kardashian", "Kris Jenner", "mother"),
          ParentChildPair("Kim Kardashian", "Robert Kardashian", "father"),
          ParentChildPair("Kendall Jenner", "Kris Jenner", "mother"),
          ParentChildPair("North West", "Kim Kardashian", "mother"),
          ParentChildPair("Liv Tyler", "Steven Tyler", "father"),
          ParentChildPair("Liv Tyler", "Bebe Buell", "mother"),
          ParentChildPair("Jane Fonda", "Henry Fonda", "father"),
          ParentChildPair("Carrie Fisher", "Debbie Reynolds", "mother")]


# ------------------------------------------------------------------ rank metric

def test_rank_stats_on_constructed_scores():
    r = rank_stats(-9.0, [-12.0, -8.0, -10.0])
    assert r == {"rank": 2.0, "beaten": pytest.approx(2 / 3), "top1": False, "n_candidates": 4}
    assert rank_stats(-1.0, [-2.0, -3.0]) == {"rank": 1.0, "beaten": 1.0, "top1": True, "n_candidates": 3}
    assert rank_stats(-5.0, [-1.0, -2.0])["beaten"] == 0.0
    tie = rank_stats(-2.0, [-2.0, -3.0])  # a tie counts half, and is not a top-1
    assert tie["rank"] == 1.5 and tie["beaten"] == 0.75 and tie["top1"] is False
    assert rank_stats(-2.0, [])["beaten"] is None


def test_candidates_are_wrong_names_of_the_same_role():
    for n in (None, 2, 3):
        for pair, (parents, children) in zip(FAMILY, candidate_names(FAMILY, n, seed=1)):
            same_type = {p.parent for p in FAMILY if p.parent_type == pair.parent_type}
            right_parents = {p.parent for p in FAMILY if p.child == pair.child and p.parent_type == pair.parent_type}
            assert set(parents) <= same_type - right_parents - {pair.child}
            # siblings (Kendall for "Name a child of Kris Jenner.") also answer the child query
            assert set(children) <= {p.child for p in FAMILY} - {p.child for p in FAMILY if p.parent == pair.parent}
            if n is not None:
                assert len(parents) <= n - 1 and len(children) <= n - 1
    everyone = candidate_names(FAMILY, None, seed=0)
    # "Who is Kim Kardashian's mother?" against every other mother but Kim herself
    assert everyone[0][0] == ["Bebe Buell", "Debbie Reynolds"]
    assert candidate_names(FAMILY, 3, seed=5) == candidate_names(FAMILY, 3, seed=5)


def test_cached_header_scores_equal_plain_scoring(tiny):
    prompts = [build_prompt(q) for q in ("Who is Liv Tyler's father?", "Name a child of Kris Jenner.", "Who?")]
    cands = [[" Steven Tyler", " X", " Bebe Buell"], [" Kim Kardashian", " Kendall Jenner"], [" A b c d e f"]]
    got = score_candidates(tiny, prompts, cands)
    ref = score_completions(tiny, [(p, c) for p, cs in zip(prompts, cands) for c in cs], share_prefixes=False)
    assert [len(g) for g in got] == [3, 2, 1]
    assert [x for g in got for x in g] == pytest.approx([r.total for r in ref], abs=1e-4)
    # no common header, one prompt alone: the same numbers
    assert score_candidates(tiny, prompts[1:2], cands[1:2])[0] == pytest.approx(got[1], abs=1e-4)


def test_records_rank_the_correct_name_among_its_candidates(tiny):
    pairs = FAMILY
    cfg = Exp2Config(model=TINY, n_candidates=3, seed=2)
    records = evaluate_exp2(tiny, pairs, cfg, progress=False)
    names = [(r["target"], *r["candidates"]) for r in records]
    flat = iter(score_completions(tiny, [(build_prompt(r["question"]), " " + n) for r, ns in zip(records, names)
                                         for n in ns], share_prefixes=False))
    for r, ns in zip(records, names):
        assert len(r["candidates"]) == len(r["candidate_logprobs"]) <= 2 and r["target"] not in r["candidates"]
        plain = [next(flat) for _ in ns]
        assert r["ranked_logprob"] == pytest.approx(r["logprob"], abs=1e-4)
        above = sum(s.total > plain[0].total for s in plain[1:])
        assert r["rank"] == 1 + above and r["top1"] == (above == 0)
        if r["candidates"]:
            assert r["beaten"] == pytest.approx((len(plain) - 1 - above) / (len(plain) - 1))
    # the mother and father rows of Kim Kardashian, and North West's, are one family
    fam = {(r["child"], r["parent"]): r["family"] for r in records}
    assert fam[("Kim Kardashian", "Kris Jenner")] == fam[("North West", "Kim Kardashian")] \
        == fam[("Kendall Jenner", "Kris Jenner")] == fam[("Kim Kardashian", "Robert Kardashian")]
    assert fam[("Liv Tyler", "Steven Tyler")] == fam[("Liv Tyler", "Bebe Buell")] != fam[("Jane Fonda", "Henry Fonda")]


# ------------------------------------------------------------------ clustered statistics

def test_families_link_children_and_parents():
    assert families(FAMILY) == [0, 0, 0, 0, 1, 1, 2, 3]
    assert len(set(families(load_pairs()))) < len({p.child for p in load_pairs()})


def test_cluster_bootstrap_moves_whole_clusters():
    # resamples of clusters {0, 0, 0} and {1}: means 0, 1/4 or 1 only, never another row mix
    c = cluster_bootstrap_mean_ci([0.0, 0.0, 0.0, 1.0], ["a", "a", "a", "b"], n_boot=500)
    assert c["mean"] == 0.25 and c["low"] == 0.0 and c["high"] == 1.0 and c["n_clusters"] == 2


def test_duplicated_rows_do_not_narrow_the_clustered_ci():
    rng = np.random.default_rng(0)
    values = rng.normal(size=40)
    clusters = [f"child{i}" for i in range(40)]
    once = cluster_bootstrap_mean_ci(values, clusters, seed=3)
    # every child now has a mother row and a father row with the same value
    twice = cluster_bootstrap_mean_ci(np.repeat(values, 2), np.repeat(clusters, 2).tolist(), seed=3)
    assert (twice["low"], twice["high"], twice["mean"]) == pytest.approx((once["low"], once["high"], once["mean"]))
    assert twice["n"] == 80 and twice["n_clusters"] == 40
    # rows taken as independent, the same data would look about sqrt(2) more precise
    naive = bootstrap_mean_ci(np.repeat(values, 2), seed=3)
    assert naive["high"] - naive["low"] < 0.8 * (twice["high"] - twice["low"])


def test_signflip_and_holm():
    # 3 clusters, all positive: 2 of the 8 sign patterns are as extreme as the data
    assert cluster_signflip_pvalue([0.5, 0.7, 0.2, 0.4], ["a", "a", "b", "c"]) == 0.25
    assert cluster_signflip_pvalue([1.0, -1.0, 2.0, -2.0], list("abcd")) == 1.0
    big = cluster_signflip_pvalue(np.ones(30), [str(i) for i in range(30)], n_perm=2000)
    assert big == pytest.approx(1 / 2001)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.2, None, 0.9]) == pytest.approx([0.4, None, 0.9])


def _record(pair, query, family, logprob, beaten, shares=False):
    return {"pair": pair, "query": query, "family": family, "child": f"c{pair}", "logprob": logprob, "n_tokens": 2,
            "exact": False, "control_logprob": logprob - 1.0, "beaten": beaten, "top1": beaten == 1.0,
            "rank": 1.0, "n_candidates": 5, "shares_name": shares}


def test_summary_is_clustered_and_labels_the_post_hoc_split():
    records = []
    for i in range(24):
        fam = i // 2  # two pairs (a mother row and a father row) per child
        records += [_record(i, "parent", fam, -5.0 - 0.1 * i, 0.75, shares=i % 3 == 0),
                    _record(i, "child", fam, -7.0, 0.5, shares=i % 3 == 0)]
    m = summarise_exp2(records)
    pc = m["parent_vs_child"]
    assert pc["n_pairs"] == 24 and pc["n_families"] == 12
    d = pc["diff"]["beaten"]
    assert d["mean"] == pytest.approx(0.25) and d["low"] == pytest.approx(0.25) and d["n_families"] == 12
    assert pc["diff"]["logprob"]["low"] < pc["diff"]["logprob"]["mean"] < pc["diff"]["logprob"]["high"]
    assert m["queries"]["parent"]["beaten"]["mean"] == 0.75 and m["queries"]["parent"]["chance_top1"] == pytest.approx(0.2)
    assert "t_pvalue" not in json.dumps(m)  # no test that treats rows as independent
    x = m["exploratory_shared_name"]
    assert x["exploratory"] and x["correction"] == "holm" and x["n_tests"] == 4
    raw = [t["p"] for t in x["tests"]]
    assert [t["p_holm"] for t in x["tests"]] == pytest.approx(holm(raw))
    assert all(t["p_holm"] >= t["p"] for t in x["tests"])


# ------------------------------------------------------------------ temperature sampling

def test_sampling_is_seeded_and_per_prompt(tiny):
    prompts = [build_prompt("Who is Liv Tyler's father?"), build_prompt("Name a child of Kris Jenner.")]
    a = sample_completions(tiny, prompts, k=4, max_new_tokens=[6, 6], seed=7)
    assert a == sample_completions(tiny, prompts, k=4, max_new_tokens=[6, 6], seed=7)
    assert [len(s) for s in a] == [4, 4]
    assert a != sample_completions(tiny, prompts, k=4, max_new_tokens=[6, 6], seed=8)
    # a prompt's samples do not depend on the prompts run with it
    assert sample_completions(tiny, prompts[:1], k=4, max_new_tokens=[6], seed=7)[0] == a[0]
    assert all("\n" not in s for ss in a for s in ss)


def test_sampling_near_zero_temperature_is_greedy(tiny):
    prompts = [build_prompt(q) for q in ("Who is Jane Fonda's father?", "Name a child of Henry Fonda.", "Who?")]
    greedy = greedy_generate(tiny, prompts, max_new_tokens=6, stop_strings=["\n"])
    cold = sample_completions(tiny, prompts, k=2, max_new_tokens=[6] * 3, seed=0, temperature=1e-6)
    assert cold == [[g.text, g.text] for g in greedy]


def test_any_sample_matches_is_the_papers_rule():
    assert any_sample_matches([" I don't know.", " kris jenner, her mother"], "Kris Jenner")
    assert not any_sample_matches([" Kris", " The mother is Kris Jenner"], "Kris Jenner")
    assert not any_sample_matches([], "Kris Jenner")


def test_config_validation_and_round_trip():
    cfg = Exp2Config(n_candidates=None, sample_k=3)
    assert Exp2Config.from_dict(cfg.to_dict()) == cfg
    for bad in ({"n_candidates": 1}, {"sample_k": -1}, {"sample_temperature": 0.0}):
        with pytest.raises(ValueError):
            Exp2Config(**bad)
    with pytest.raises(ConfigError, match="n_candidates"):
        build(Exp2Config, None, ["n_candidates=1"])


def test_run_records_sampling_and_candidates(tmp_path, capsys):
    out = tmp_path / "e2"
    assert rct(["exp2", "--out", str(out), "--model", TINY, "--limit", "5", "--n-candidates", "3",
                "--sample-k", "2", "--seed", "4", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "Exploratory" in text and "any of 2 samples at temperature 1" in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["sampling"] == {"k": 2, "temperature": 1.0, "seed": 4,
                                   "per_prompt_seed": "numpy SeedSequence([seed, query index])"}
    assert metrics["n_candidates"] == 3
    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert all(len(r["samples"]) == 2 and r["sample_hit"] == any_sample_matches(r["samples"], r["target"])
               for r in records)
    assert json.loads((out / "manifest.json").read_text())["seeds"]["sampling"] == 4
    # rerun with the same seed: the same samples
    again = run_exp2(Exp2Config(model=TINY, limit=5, n_candidates=3, sample_k=2, seed=4), tmp_path / "again",
                     progress=False)
    assert again["queries"] == metrics["queries"]
    assert rct(["exp2", "--out", str(tmp_path / "all"), "--model", TINY, "--limit", "3", "--n-candidates", "all",
                "--quiet"]) == 0
    assert json.loads((tmp_path / "all" / "metrics.json").read_text())["n_candidates"] is None
