"""Experiment 2: the pairs file, the queries and their controls, and a run on a tiny model."""

from __future__ import annotations

import json

import pytest

from experiments.core.evaluate import exact_match
from experiments.core.rundir import RunDirError

from experiments.cli import main as rct
from experiments.exp2 import (Exp2Config, build_prompt, child_question, control_names, evaluate_exp2,
                              in_few_shot, parent_question, run_exp2, shares_name, summarise_exp2)
from experiments.core.skips import DataWarning, Skips
from experiments.exp2.data import ParentChildPair, PairsError, load_pairs, read_pairs, write_pairs
from interp import score_completions

TINY = "tiny:n_layers=2,d_model=64,n_heads=4,n_kv_heads=2,d_mlp=96"
HEADER = "child,parent,parent_type,child_prediction,can_reverse\n"


def test_shipped_list_is_valid_and_disjoint_from_the_few_shot_examples():
    pairs = load_pairs()
    assert len(pairs) >= 150
    assert {p.parent_type for p in pairs} == {"mother", "father"}
    assert not any(in_few_shot(p) for p in pairs)


@pytest.mark.parametrize("body, match", [
    ("child,parent\nA,B\n", ":1: missing column"),
    (HEADER + "A,B,aunt,,\n", ":2: parent_type must be mother or father"),
    (HEADER + "A,B,mother,,\n,C,father,,\n", ":3: child and parent must not be empty"),
    (HEADER + "A,B,mother,,maybe\n", ":2: can_reverse must be True or False"),
    (HEADER + "A,B,mother,,,extra\n", ":2: more fields"),
    (HEADER, "no pairs"),
    (HEADER + "A,B,mother,,\nC,D,father,,\n\"E,F,mother,,\nG,H,father,,\nI,J,mother,,\n",
     ":4: a quote opened on this line is never closed"),
])
def test_bad_pairs_files_name_file_and_line(tmp_path, body, match):
    path = tmp_path / "pairs.csv"
    path.write_text(body)
    with pytest.raises(PairsError, match=match):
        load_pairs(path, strict=True)
    with pytest.raises(PairsError, match="no such file"):
        load_pairs(tmp_path / "missing.csv")


def test_a_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_bytes(("\ufeff" + HEADER + "A,B,mother,,\n").encode("utf-8"))
    assert [(p.child, p.parent) for p in load_pairs(path, strict=True)] == [("A", "B")]


def test_a_bad_row_of_published_pairs_is_skipped_and_named(tmp_path):
    """One malformed row among good ones: skipped with one warning naming its line, recorded
    for the manifest; strict refuses the file."""
    path = tmp_path / "pairs.csv"
    path.write_text(HEADER + "A,B,mother,,\nC,D,aunt,,\nE,F,father,,\n,G,mother,,\n")
    with pytest.warns(DataWarning, match=r"skipped 2 bad rows \(first: .*pairs.csv:3: parent_type"):
        pairs = load_pairs(path)
    assert [(p.child, p.parent) for p in pairs] == [("A", "B"), ("E", "F")]
    skips = Skips()
    with pytest.warns(DataWarning):
        read_pairs(path, skips)
    assert [r["line"] for r in skips.records()] == [3, 5]
    with pytest.raises(PairsError, match=":3: parent_type"):
        load_pairs(path, strict=True)


def test_repeated_pairs_keep_the_first_and_are_reported(tmp_path):
    """The paper's published file repeats some (child, parent) rows."""
    path = tmp_path / "pairs.csv"
    path.write_text(HEADER + "A,B,mother,,\nC,D,father,,\nA,B,mother,,\nA,B,mother,,\n")
    pairs, dropped = read_pairs(path)
    assert [(p.child, p.parent) for p in pairs] == [("A", "B"), ("C", "D")]
    assert [(d["line"], d["first_line"]) for d in dropped] == [(4, 2), (5, 2)]
    with pytest.warns(UserWarning, match=r"dropped 2 repeated .* lines 4, 5"):
        assert load_pairs(path) == pairs
    path.write_text(HEADER + "A,B,mother,,\nA,B,aunt,,\n")
    with pytest.raises(PairsError, match=":3: parent_type"):  # a repeat is still validated
        read_pairs(path)


def test_pairs_round_trip_in_the_published_layout(tmp_path):
    pairs = [ParentChildPair("A b", "C b", "mother", "A b", True), ParentChildPair("D", "E", "father")]
    path = write_pairs(pairs, tmp_path / "parent_child_pairs.csv")
    assert path.read_text().splitlines()[0] == HEADER.strip()
    assert load_pairs(path) == pairs


def test_controls_are_wrong_answers_of_the_same_role():
    pairs = [ParentChildPair("Charlie Sheen", "Martin Sheen", "father"),
             ParentChildPair("Emilio Estevez", "Martin Sheen", "father"),
             ParentChildPair("Jane Fonda", "Henry Fonda", "father"),
             ParentChildPair("Carrie Fisher", "Debbie Reynolds", "mother"),
             ParentChildPair("Carrie Fisher", "Eddie Fisher", "father")]
    for seed in range(20):
        for pair, (wrong_parent, wrong_child) in zip(pairs, control_names(pairs, seed)):
            # a sibling answers "Name a child of Martin Sheen." too, so it is never the control
            assert wrong_child not in {p.child for p in pairs if p.parent == pair.parent}
            assert wrong_parent not in {p.parent for p in pairs if p.child == pair.child}
            if wrong_parent is not None:
                assert next(p for p in pairs if p.parent == wrong_parent).parent_type == pair.parent_type
    # the only mother has no other mother to be compared with
    assert control_names(pairs, 0)[3][0] is None
    assert control_names(pairs, 3) == control_names(pairs, 3)


def test_questions_and_prompt():
    pair = ParentChildPair("Liv Tyler", "Steven Tyler", "father")
    assert parent_question(pair) == "Who is Liv Tyler's father?"
    assert child_question(pair) == "Name a child of Steven Tyler."
    prompt = build_prompt(parent_question(pair))
    assert prompt.endswith("\n\nQ: Who is Liv Tyler's father?\nA:")
    assert shares_name(pair) and not shares_name(ParentChildPair("Liza Minnelli", "Judy Garland", "mother"))


def test_evaluation_records_and_summary(tiny):
    pairs = load_pairs()[:6]
    cfg = Exp2Config(model=TINY, batch_size=5)
    records = evaluate_exp2(tiny, pairs, cfg, progress=False)
    assert len(records) == 12 and [r["query"] for r in records[:2]] == ["parent", "child"]
    # each record's log-prob is the plain score of the name after the prompt
    ref = score_completions(tiny, [(build_prompt(r["question"]), " " + r["target"]) for r in records],
                            share_prefixes=False)
    for r, s in zip(records, ref):
        assert r["logprob"] == pytest.approx(s.total, abs=1e-4)
        # the exact-match flag agrees with the greedy text that decided it
        assert r["exact"] == exact_match(r["greedy_text"], r["target"])
    m = summarise_exp2(records)
    assert m["queries"]["parent"]["n"] == 6 and m["parent_vs_child"]["n_pairs"] == 6
    assert m["queries"]["child"]["gap_vs_random"]["n"] == 6
    assert m["parent_vs_child"]["diff"]["gap_vs_random"]["n"] == 6
    for q in ("parent", "child"):  # every mean has its family-clustered interval
        for metric in ("beaten", "logprob", "exact_match"):
            c = m["queries"][q][metric]
            assert c["low"] <= c["mean"] <= c["high"]


def test_run_directory_and_cli(tmp_path, capsys):
    out = tmp_path / "e2"
    metrics = run_exp2(Exp2Config(model=TINY, limit=4), out, progress=False)
    for name in ("config.json", "manifest.json", "records.jsonl", "metrics.json", "exp2.md", "figure5.png"):
        assert (out / name).exists(), name
    assert metrics["n_pairs"] == 4
    assert len((out / "records.jsonl").read_text().splitlines()) == 8
    assert json.loads((out / "manifest.json").read_text())["versions"]["torch"]
    before = (out / "metrics.json").stat().st_mtime_ns
    run_exp2(Exp2Config(model=TINY, limit=4), out, resume=True, progress=False)  # kept, not recomputed
    assert (out / "metrics.json").stat().st_mtime_ns == before
    with pytest.raises(RunDirError, match="already holds a run"):
        run_exp2(Exp2Config(model=TINY, limit=4), out, progress=False)
    with pytest.raises(RunDirError, match="differs at limit: 4 in the run, 3 now"):
        run_exp2(Exp2Config(model=TINY, limit=3), out, resume=True, progress=False)
    assert rct(["exp2", "--out", str(tmp_path / "cli"), "--model", TINY, "--limit", "3", "--quiet"]) == 0
    assert "Experiment 2" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text("child,parent\n")
    assert rct(["exp2", "--out", str(tmp_path / "x"), "--model", TINY, "--pairs", str(bad)]) == 2
    assert "missing column" in capsys.readouterr().err
