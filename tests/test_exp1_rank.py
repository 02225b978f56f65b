"""Experiment 1 secondary metric: the rank of the correct name among the subset's trained
names; and the report's reverse-vs-forward bound."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from analysis.stats import mean_ci_t
from experiments.core.evaluate import Evaluation
from experiments.exp1 import evaluate as ev
from experiments.exp1.data import Exp1DataConfig, Exp1Dataset, generate_exp1
from experiments.exp1.evaluate import EvalConfig, evaluate_exp1, rank_among, trained_names
from experiments.exp1.report import reverse_bound, table1
from interp.scoring import score_completions

NAME_CELLS = ("d2p_prompts_test", "p2d_reverse_prompts_test")


@pytest.fixture(scope="module")
def ds() -> Exp1Dataset:
    return generate_exp1(Exp1DataConfig(n_facts=4, n_paraphrases=3, n_test_templates=2, seed=5))


def test_rank_among() -> None:
    r = rank_among(-9.0, [-12.0, -8.0, -10.0])
    assert r == {"rank": 2.0, "normalised_rank": pytest.approx(2 / 3), "top1": False, "n_candidates": 4}
    assert rank_among(-1.0, [-2.0, -3.0]) == {"rank": 1.0, "normalised_rank": 1.0, "top1": True, "n_candidates": 3}
    assert rank_among(-5.0, [-2.0, -3.0])["normalised_rank"] == 0.0
    tie = rank_among(-2.0, [-2.0, -3.0])  # a tie counts half, and is not top-1
    assert tie["rank"] == 1.5 and tie["normalised_rank"] == 0.75 and not tie["top1"]
    assert rank_among(-1.0, [])["normalised_rank"] is None


def test_mean_ci_t_matches_scipy() -> None:
    x = [0.9, 0.7, 0.55, 0.8, 0.62]
    out = mean_ci_t(x, null=0.5)
    low, high = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert out["mean"] == pytest.approx(np.mean(x))
    assert (out["ci95_low"], out["ci95_high"]) == (pytest.approx(low), pytest.approx(high))
    assert out["p"] == pytest.approx(stats.ttest_1samp(x, 0.5).pvalue)
    assert mean_ci_t([0.3])["ci95_low"] is None and mean_ci_t([0.5, 0.5], null=0.5)["p"] is None


def _fake_scoring(monkeypatch: pytest.MonkeyPatch, score: dict[tuple[str, str], float]) -> list[int]:
    """``evaluate`` and ``score_completions`` whose log-prob of a name after a prompt is
    ``score[(prompt, name)]``; returns the list that collects the pair counts scored."""
    calls: list[int] = []

    def fake_evaluate(lm, items, **kwargs):
        return [Evaluation(logprob=score[(it.prompt, it.target.strip())], n_tokens=2,
                           control_logprobs=tuple(score[(it.prompt, c.strip())] for c in it.controls),
                           control_n_tokens=(2,) * len(it.controls), is_greedy=False, exact=False,
                           greedy_text="", generation=None) for it in items]

    def fake_score(lm, pairs, **kwargs):
        calls.append(len(pairs))
        return [SimpleNamespace(total=score[(p, c.strip())]) for p, c in pairs]

    monkeypatch.setattr(ev, "evaluate", fake_evaluate)
    monkeypatch.setattr(ev, "score_completions", fake_score)
    return calls


def test_rank_on_a_constructed_case(ds: Exp1Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scores chosen so the ranks are known: per subset, fact 0's name is top on its prompts,
    fact 1's is bottom, fact 2's ties with one other name, fact 3's beats 2 of its 3 others
    on the first prompt and 1 of 3 on the second."""
    score: dict[tuple[str, str], float] = {}
    expected: dict[str, list[float]] = {}
    for stem in NAME_CELLS:
        subset = ev.CELLS[stem][0]
        names = trained_names(ds, subset)
        assert len(names) == 4 and names == ds.names(subset)
        seen: dict[int, int] = {}
        for e in ds.files[stem]:
            k = names.index(e.name)
            t = seen.setdefault(e.fact_id, 0)
            seen[e.fact_id] += 1
            others = [n for n in names if n != e.name]
            for j, n in enumerate(others):
                score[(e.prompt, n)] = -10.0 - j  # -10, -11, -12
            score[(e.prompt, e.name)] = [-1.0, -50.0, -11.0, -11.5 if t == 0 else -10.5][k]
        expected[stem] = [1.0, 0.0, 0.5, 0.5]  # per fact: 3/3, 0/3, (1 + 0.5)/3 = 0.5, (2/3 + 1/3) / 2
    calls = _fake_scoring(monkeypatch, score)
    metrics = evaluate_exp1(None, ds, EvalConfig(in_context=False, perplexity=False, files=NAME_CELLS), tmp_path, progress=False)
    assert calls == [2 * 8 * 4]  # one call: 2 cells x 8 prompts x 4 names
    records = [json.loads(x) for x in (tmp_path / "records.jsonl").read_text().splitlines()]
    for stem in NAME_CELLS:
        cell = metrics["cells"][stem]
        r = cell["rank"]
        assert cell["per_fact"]["normalised_rank"] == pytest.approx(expected[stem])
        assert cell["per_fact"]["top1"] == [1.0, 0.0, 0.0, 0.0]
        assert r["n_facts"] == 4 and r["n_candidates"] == 4
        assert r["mean_normalised_rank"] == pytest.approx(0.5)
        assert r["top1"] == 0.25 and r["chance_top1"] == 0.25
        # ranks: fact 0 -> 1, fact 1 -> 4, fact 2 -> 2.5 (tie), fact 3 -> 2 then 3
        assert r["mean_rank"] == pytest.approx((1 + 1 + 4 + 4 + 2.5 + 2.5 + 2 + 3) / 8)
        sd = np.std(expected[stem], ddof=1)
        half = stats.t.ppf(0.975, 3) * sd / 2
        assert r["normalised_rank_ci95_low"] == pytest.approx(max(0.0, 0.5 - half))
        assert r["normalised_rank_ci95_high"] == pytest.approx(min(1.0, 0.5 + half))
        assert r["normalised_rank_p_vs_chance"] == pytest.approx(1.0)
        assert 0 < r["top1_ci95_low"] < 0.25 < r["top1_ci95_high"] < 1
    for rec in records:
        if rec["target_kind"] == "name":
            assert list(rec["name_logprobs"]) == trained_names(ds, rec["subset"])
            assert rec["random_logprob"] == rec["name_logprobs"][rec["random_name"]]
            assert rec["target_logprob"] == rec["name_logprobs"][rec["target"].strip()]
        else:
            assert "rank" not in rec and "name_logprobs" not in rec
    assert "rank" not in metrics["cells"].get("p2d_prompts_test", {})


def test_rank_off_scores_the_random_control_only(ds: Exp1Dataset, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    score = {}
    for stem in NAME_CELLS:
        for e in ds.files[stem]:
            for n in ds.names(ev.CELLS[stem][0]):
                score[(e.prompt, n)] = -1.0 if n == e.name else -2.0
    calls = _fake_scoring(monkeypatch, score)
    metrics = evaluate_exp1(None, ds, EvalConfig(in_context=False, perplexity=False, files=NAME_CELLS, rank_names=False), tmp_path, progress=False)
    assert calls == [] and all("rank" not in c for c in metrics["cells"].values())
    assert all(c["correct_vs_random"]["mean_diff"] == 1.0 for c in metrics["cells"].values())


def test_rank_matches_scoring_every_name_one_at_a_time(tiny, ds: Exp1Dataset, tmp_path: Path) -> None:
    """On a real (tiny) model: each record's rank is that of the target among the subset's
    trained names, each scored alone with the plain padded path."""
    metrics = evaluate_exp1(tiny, ds, EvalConfig(in_context=False, perplexity=False, files=NAME_CELLS), tmp_path, progress=False)
    records = [json.loads(x) for x in (tmp_path / "records.jsonl").read_text().splitlines()]
    pairs = [(rec["prompt"], " " + n) for rec in records for n in trained_names(ds, rec["subset"])]
    alone = iter(score_completions(tiny, pairs, batch_size=64, share_prefixes=False))
    for rec in records:
        names = trained_names(ds, rec["subset"])
        by_name = {n: next(alone).total for n in names}
        target = rec["target"].strip()
        for n, lp in rec["name_logprobs"].items():
            assert lp == pytest.approx(by_name[n], abs=1e-3)
        want = rank_among(by_name[target], [v for n, v in by_name.items() if n != target])
        assert rec["rank"] == want["rank"] and rec["top1"] == want["top1"]
    for stem in NAME_CELLS:
        per_fact = metrics["cells"][stem]["per_fact"]
        assert len(per_fact["normalised_rank"]) == 4
        assert all(0 <= v <= 1 for v in per_fact["normalised_rank"])
    # the control scores do not depend on whether the rank is computed
    off = evaluate_exp1(tiny, ds, EvalConfig(in_context=False, perplexity=False, files=NAME_CELLS, rank_names=False), tmp_path / "off", progress=False)
    for stem in NAME_CELLS:
        a, b = metrics["cells"][stem]["correct_vs_random"], off["cells"][stem]["correct_vs_random"]
        assert a["mean_control"] == pytest.approx(b["mean_control"], abs=1e-3)
        assert a["mean_correct"] == pytest.approx(b["mean_correct"], abs=1e-3)


# ---------------------------------------------------------------- report


def _cell(diff: float, low: float, high: float, rank: float | None = None) -> dict:
    cell = {"exact_match": 0.0, "n_prompts": 10,
            "correct_vs_random": {"n": 5, "mean_correct": -5.0, "mean_control": -5.0 - diff, "mean_diff": diff,
                                  "diff_ci95_low": low, "diff_ci95_high": high, "cohen_dz": 1.0,
                                  "t_pvalue": 0.5, "ks_pvalue": 0.5}}
    if rank is not None:
        cell["rank"] = {"n_facts": 5, "n_candidates": 30, "mean_normalised_rank": rank,
                        "normalised_rank_ci95_low": rank - 0.1, "normalised_rank_ci95_high": rank + 0.1,
                        "normalised_rank_p_vs_chance": 0.04, "top1": 0.2, "top1_ci95_low": 0.036,
                        "top1_ci95_high": 0.62, "chance_top1": 1 / 30, "mean_rank": 7.5}
    return cell


def test_reverse_bound() -> None:
    fwd = {"mean_diff": 6.7, "diff_ci95_low": 5.5}
    assert reverse_bound(fwd, {"diff_ci95_high": 1.34}) == pytest.approx(0.2)
    assert reverse_bound({"mean_diff": 0.8, "diff_ci95_low": -3.0}, {"diff_ci95_high": 2.0}) is None
    assert reverse_bound(fwd, {"diff_ci95_high": None}) is None and reverse_bound(None, fwd) is None


def test_table1_shows_the_bound_and_the_rank() -> None:
    metrics = {"finetuned": {"cells": {"d2p_prompts_test": _cell(6.7, 5.5, 7.9, rank=0.95),
                                       "p2d_reverse_prompts_test": _cell(0.36, -0.63, 1.34, rank=0.52)}}}
    text = table1(metrics)
    bound = [x for x in text.splitlines() if x.startswith("| after finetuning | +6.70")]
    assert bound == ["| after finetuning | +6.70 [+5.50, +7.90] | +0.36 [-0.63, +1.34] | +1.34 nats (20.0%) |"]
    rank_rows = [x for x in text.splitlines() if "| 30 |" in x]
    assert len(rank_rows) == 2
    assert "| 0.950 [0.850, 1.050] | 0.04 | 20.0% [3.6%, 62.0%] | 3.3% | 7.5 |" in rank_rows[0]
    assert "DescriptionToName, same (d2p_prompts_test)" in rank_rows[0]
    assert "NameToDescription, reverse (p2d_reverse_prompts_test)" in rank_rows[1]
    # without rank metrics (older runs) the table has no rank part
    for c in metrics["finetuned"]["cells"].values():
        del c["rank"]
    assert "Rank of the correct name" not in table1(metrics)
    assert not math.isnan(reverse_bound(metrics["finetuned"]["cells"]["d2p_prompts_test"]["correct_vs_random"],
                                        metrics["finetuned"]["cells"]["p2d_reverse_prompts_test"]["correct_vs_random"]))
