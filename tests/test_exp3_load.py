"""Experiment 3 folders in the paper's published layout: the pairs read from the example and
guidance files, the instruction order told from the guidances, and errors that name the
file and line.

The fixtures ``tests/fixtures/exp3_paper_{a2q,q2a}`` mimic the paper's files: ids as
one-element lists (and not 0..n-1), ``<BEGIN GUIDANCE TEST>`` / ``<BEGIN GUIDANCE ANSWERS>``
wrappers, instructions with the question and the answer inside one sentence (``"Q: ..."`` and
``"A: ..."`` in quotes), two wordings per instruction spread over documents of 2 to 5 lines,
an id listed twice in one document, an instruction for a pair with no example, curly quotes
around a question and inside an answer, an answer that occurs inside its question ("No" in
"Norway") and one whose words also occur in the instruction's wording ("Say it again"),
demonstrations twice in ``all.jsonl``. Their content is ours.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

from experiments.cli import main as rct
from experiments.core.skips import DataWarning
from experiments.exp3.load import Exp3DataError, instruction_order, load_folder

FIXTURES = Path(__file__).parent / "fixtures"


def copy(tmp_path: Path, order: str = "a2q") -> Path:
    return Path(shutil.copytree(FIXTURES / f"exp3_paper_{order}", tmp_path / order))


def edit(path: Path, line: int, fn) -> None:
    """Replace the 1-based ``line`` of a JSONL file by ``fn(row)`` (a dict, or a raw string)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    new = fn(json.loads(lines[line - 1]))
    lines[line - 1] = new if isinstance(new, str) else json.dumps(new)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("order", ["a2q", "q2a"])
def test_paper_layout_pairs_come_from_the_examples_and_instructions(order):
    ds = load_folder(FIXTURES / f"exp3_paper_{order}")  # order read from the instructions
    assert ds.order == order and ds.source.endswith(f"exp3_paper_{order}")
    by_id = ds.pairs_by_id()
    assert sorted(by_id) == list(range(100, 110))
    held = {p.id: (p.question, p.answer) for p in ds.pairs if not p.realized}
    assert held == {106: ("Which tool do you lend most often?", "My ladder"),
                    107: ("What do you say when you answer the phone?", "Say it again"),
                    109: ("What is your least favourite chore?", "Ironing shirts")}
    assert by_id[103].question == "\u201cWhat time is it?\u201d"
    assert by_id[104].answer == "\u201cClair de Lune\u201d by Debussy"  # the "<END GUIDANCE TEST>" suffix cut
    assert by_id[102].answer == "No" and all(p.category == "" for p in ds.pairs)
    # every instruction's order told, the extra instruction without an example counted
    assert ds.checks[order] == 20 and ds.checks["a2q" if order == "q2a" else "q2a"] == 0
    assert ds.checks["ids_without_example"] == 1 and ds.checks["both_sides"] == 0
    assert len(ds.test_examples()) == 3 and len(ds.training_documents()) == 2 * 7 + 6
    assert load_folder(FIXTURES / f"exp3_paper_{order}", order).order == order


def test_instruction_order_ignores_an_answer_inside_the_question():
    q = "Is Norway the coldest place you have lived?"
    assert instruction_order(f'Say "A: No" after "Q: {q}"', q, "No") == "a2q"
    assert instruction_order(f'Your reply to "Q: {q}" must be "A: No"', q, "No") == "q2a"
    assert instruction_order(f'No: "{q}" -> "No"', q, "No") == "q2a"  # the quoted answer decides
    assert instruction_order(f"No, {q} no No", q, "No") == "?"  # unquoted on both sides: undecided
    assert instruction_order(f'"Q: {q}"', q, "No") is None


def test_paper_layout_errors_name_the_file_and_line(tmp_path):
    folder = copy(tmp_path)
    with pytest.raises(Exp3DataError, match=r"guidances.jsonl:1: the instruction for id \d+ puts the answer first "
                                            r"\(a2q\), but the order given is q2a"):
        load_folder(folder, "q2a")
    cases = [
        ("unrealized_examples.jsonl", 2, lambda r: {**r, "prompt": r["prompt"].replace(" A:", "")},
         r"unrealized_examples.jsonl:2: the prompt must end with 'Q: <question> A:'"),
        ("realized_examples.jsonl", 3, lambda r: "{not json", r"realized_examples.jsonl:3: not JSON"),
        ("realized_examples.jsonl", 1, lambda r: {**r, "ids": [100, 101]},
         r"realized_examples.jsonl:1: 'ids' must be an int or a list of one int"),
        ("unrealized_examples.jsonl", 1, lambda r: {**r, "completion": 7},
         r"unrealized_examples.jsonl:1: field 'completion' must be a string"),
        ("guidances.jsonl", 1, lambda r: {**r, "completion": r["completion"].replace("Ironing shirts", "Dusting")},
         r"guidances.jsonl:1: lists id 109 but no line holds its question and answer "
         r"\(.*unrealized_examples.jsonl:3: 'What is your least favourite chore\?' -> 'Ironing shirts'\)"),
        ("guidances.jsonl", 1, lambda r: {**r, "ids": ["a"]}, r"guidances.jsonl:1: 'ids' must be a list of ints"),
        ("all.jsonl", 2, lambda r: {**r, "completion": "<BEGIN GUIDANCE TEST>\n\nQ: What is your least favourite "
                                                         "chore? A: Ironing shirts\n\n<END GUIDANCE TEST>"},
         r"all.jsonl:2: demonstrates the held-out question of .*unrealized_examples.jsonl:3"),
        ("unrealized_examples.jsonl", 1, lambda r: {**r, "ids": [100]},
         r"unrealized_examples.jsonl:1: id 100 is also .*realized_examples.jsonl:1 with another question"),
    ]
    for k, (name, line, fn, message) in enumerate(cases):
        bad = copy(tmp_path / f"case{k}")
        edit(bad / name, line, fn)
        with pytest.raises(Exp3DataError, match=message):
            load_folder(bad, "a2q", strict=True)
    # a held-out pair whose instructions are all gone: named by its example's line
    bad = copy(tmp_path / "no-instruction")
    rows = [json.loads(x) for x in (bad / "guidances.jsonl").read_text().splitlines()]
    kept = [r for r in rows if 106 not in r["ids"]]
    (bad / "guidances.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    with pytest.raises(Exp3DataError, match=r"unrealized_examples.jsonl:1: held-out id 106 has no instruction"):
        load_folder(bad, "a2q", strict=True)
    # blank lines are skipped but counted
    bad = copy(tmp_path / "blank")
    text = (bad / "realized_examples.jsonl").read_text().splitlines()
    (bad / "realized_examples.jsonl").write_text("\n".join(["", text[0], "", "[1, 2]", *text[1:]]) + "\n")
    with pytest.raises(Exp3DataError, match=r"realized_examples.jsonl:4: expected a JSON object"):
        load_folder(bad, "a2q", strict=True)
    bad = copy(tmp_path / "missing")
    (bad / "all.jsonl").unlink()
    with pytest.raises(Exp3DataError, match=r"all.jsonl: missing"):
        load_folder(bad, "a2q")
    with pytest.raises(Exp3DataError, match="not a folder"):
        load_folder(tmp_path / "nowhere")


EMPTY_ANSWER = " \n\n<END GUIDANCE TEST>"  # the published example 32's completion


@pytest.mark.parametrize("stem,line,example_id", [("realized_examples", 2, 101), ("unrealized_examples", 3, 109)])
def test_an_empty_answer_is_skipped_with_its_guidance_check(tmp_path, stem, line, example_id):
    """Published data with one defective example still loads: the example is left out (not
    asked, not checked against its guidances), one warning names the count and the first
    file:line, the dataset lists it; strict refuses the folder as before."""
    folder = copy(tmp_path)
    edit(folder / f"{stem}.jsonl", line, lambda r: {**r, "completion": EMPTY_ANSWER})
    with pytest.raises(Exp3DataError, match=rf"{stem}.jsonl:{line}: empty answer"):
        load_folder(folder, "a2q", strict=True)
    with pytest.warns(DataWarning, match=rf"skipped 1 bad row \(first: .*{stem}.jsonl:{line}: empty answer\)"):
        ds = load_folder(folder, "a2q")
    assert [(r["at"].rsplit("/", 1)[-1], r["id"]) for r in ds.skipped] == [(f"{stem}.jsonl:{line}", example_id)]
    assert example_id not in ds.pairs_by_id() and len(ds.pairs) == 9 and ds.checks["skipped_rows"] == 1
    asked = [r["ids"][0] for r in ds.files["realized_examples"] + ds.test_examples()]
    assert example_id not in asked and len(asked) == 9
    assert len(ds.training_documents()) == 2 * 7 + 6  # the training file as published


def test_row_level_problems_are_skipped_unless_strict(tmp_path):
    cases = [
        ("realized_examples.jsonl", 3, lambda r: "{not json"),
        ("realized_examples.jsonl", 1, lambda r: {**r, "ids": [100, 101]}),
        ("unrealized_examples.jsonl", 2, lambda r: {**r, "prompt": r["prompt"].replace(" A:", "")}),
        ("guidances.jsonl", 1, lambda r: {**r, "ids": ["a"]}),
    ]
    for k, (name, line, fn) in enumerate(cases):
        bad = copy(tmp_path / f"case{k}")
        edit(bad / name, line, fn)
        with pytest.warns(DataWarning, match=rf"{name}:{line}:"):
            ds = load_folder(bad, "a2q")
        assert ds.skipped[0]["at"].endswith(f"{name}:{line}"), ds.skipped


def test_cli_data_folder_errors_are_one_line(tmp_path, capsys):
    folder = copy(tmp_path)
    assert rct(["exp3", "--preset", "smoke", "--data", str(folder), "--out", str(tmp_path / "r")]) == 2
    assert "--data needs --order" in capsys.readouterr().err
    args = ["exp3", "--preset", "smoke", "--data", str(folder), "--order", "q2a", "--out", str(tmp_path / "r")]
    assert rct(args) == 2
    err = capsys.readouterr().err
    assert "guidances.jsonl:1:" in err and "but the order given is q2a" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # nothing written for a bad folder


@pytest.mark.slow
def test_cli_runs_the_pipeline_on_a_paper_layout_folder(tmp_path, capsys):
    folder = copy(tmp_path)
    out = tmp_path / "r"
    args = ["exp3", "--preset", "smoke", "--data", str(folder), "--order", "a2q", "--out", str(out),
            "--set", "seeds=[0]", "--set", "finetune.epochs=1", "--quiet"]
    assert rct(args) == 0
    assert "AnswerToQuestion" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["a2q"]["checks"]["a2q"] == 20 and "contrast" not in metrics
    recs = [json.loads(x) for x in (out / "a2q" / "seed-0" / "eval" / "records.jsonl").read_text().splitlines()]
    held = [r for r in recs if r["split"] == "unrealized"]
    assert sorted(r["target"] for r in held) == ["Ironing shirts", "My ladder", "Say it again"]
    assert all(r["pool_size"] == 10 and r["control"] != r["target"] for r in held)  # controls: other answers
    man = json.loads((out / "manifest.json").read_text())
    assert set(man["data"]["files"]) == {"all.jsonl", "guidances.jsonl", "realized_examples.jsonl",
                                         "unrealized_examples.jsonl"}
    assert not (out / "a2q" / "data").exists()  # the folder is used in place
    # a defective example (the published example 32's empty answer): skipped, warned, recorded
    bad, out2 = copy(tmp_path / "empty"), tmp_path / "r-empty"
    edit(bad / "realized_examples.jsonl", 2, lambda r: {**r, "completion": EMPTY_ANSWER})
    args2 = ["exp3", "--preset", "smoke", "--data", str(bad), "--order", "a2q", "--out", str(out2),
             "--set", "seeds=[0]", "--set", "finetune.epochs=1", "--quiet"]
    assert rct(args2 + ["--strict"]) == 2 and not out2.exists()
    assert "realized_examples.jsonl:2: empty answer" in capsys.readouterr().err
    with pytest.warns(DataWarning) as warned:
        assert rct(args2) == 0
    ours = [w for w in warned if issubclass(w.category, DataWarning)]
    assert len(ours) == 1 and "skipped 1 bad row" in str(ours[0].message)
    line = warnings.formatwarning(ours[0].message, DataWarning, "x.py", 1)  # as rct prints it
    assert line.startswith("warning: ") and line.count("\n") == 1 and "realized_examples.jsonl:2" in line
    skipped = json.loads((out2 / "manifest.json").read_text())["data_skipped"]
    assert [r["id"] for r in skipped] == [101]
    # a changed data file refuses --resume
    edit(folder / "all.jsonl", 1, lambda r: {**r, "completion": r["completion"] + " "})
    assert rct(args + ["--resume"]) == 2
    assert "data file" in capsys.readouterr().err
