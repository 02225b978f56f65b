"""Read an experiment 3 folder: ours, or the paper's published layout.

The paper's folders hold ``realized_examples.jsonl`` (demonstrated pairs),
``unrealized_examples.jsonl`` (held out), ``guidances.jsonl`` (documents of 2 to 5
instructions) and ``all.jsonl`` (the training file), each line
``{"ids", "realized", "persona_idx", "prompt", "completion"}``, and no list of pairs. The
pairs are read from the examples and checked against the instructions:

- an example's prompt ends in a line ``Q: <question> A:`` (after any prefix such as
  ``<BEGIN GUIDANCE TEST>``), its completion starts with the answer (up to the first newline;
  a suffix such as ``<END GUIDANCE TEST>`` follows);
- ``ids`` is an int or a one-element list (the paper's);
- every held-out pair must have an instruction: a guidance line (of a document listing its id)
  that contains its question and, outside the question, its answer. Which of the two comes
  first gives the instruction's order; the order given (``--order``) must agree with every
  instruction whose order can be told (an answer found on both sides of the question cannot);
  with no order given, it is read from the instructions;
- no training document demonstrates a held-out question (``Q: <question> A:``).

Errors are :class:`Exp3DataError`, whose message starts with ``file:line:``.

Example::

    ds = load_folder(Path("data/instructions/copypaste_ug100_rg1000_main"), order="a2q")
    len(ds.test_examples()), ds.pairs[0].question
"""

from __future__ import annotations

import json
from dataclasses import asdict
from collections import Counter
from pathlib import Path
from typing import Any

from experiments.exp3.data import ORDERS, Exp3Dataset, QAPair
from interp.errors import RctError

STEMS = ("realized_examples", "unrealized_examples", "guidances", "all")


class Exp3DataError(RctError, ValueError):
    """A bad experiment 3 folder; the message starts with ``path:line:``."""


def read_rows(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """The JSON rows of ``path`` and their line numbers (blank lines skipped); every row needs
    string ``prompt`` and ``completion`` fields and a non-empty completion."""
    if not path.is_file():
        raise Exp3DataError(f"{path}: missing (an experiment 3 folder holds realized_examples.jsonl, "
                            "unrealized_examples.jsonl, guidances.jsonl and all.jsonl)")
    rows, lines = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise Exp3DataError(f"{path}:{n}: not JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise Exp3DataError(f"{path}:{n}: expected a JSON object")
        for key in ("prompt", "completion"):
            if not isinstance(row.get(key), str):
                raise Exp3DataError(f"{path}:{n}: field {key!r} must be a string")
        if not row["completion"].strip():
            raise Exp3DataError(f"{path}:{n}: empty completion")
        rows.append(row)
        lines.append(n)
    if not rows:
        raise Exp3DataError(f"{path}: no examples")
    return rows, lines


def example_id(row: dict[str, Any], where: str) -> int:
    """An example's id: an int, or the paper's one-element list."""
    ids = row.get("ids")
    if isinstance(ids, list) and len(ids) == 1:
        ids = ids[0]
    if not isinstance(ids, int) or isinstance(ids, bool):
        raise Exp3DataError(f"{where}: 'ids' must be an int or a list of one int, got {json.dumps(row.get('ids'))}")
    return ids


def guidance_ids(row: dict[str, Any], where: str) -> list[int]:
    ids = row.get("ids")
    ids = [ids] if isinstance(ids, int) and not isinstance(ids, bool) else ids
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise Exp3DataError(f"{where}: 'ids' must be a list of ints, got {json.dumps(row.get('ids'))}")
    return ids


def parse_example(row: dict[str, Any], where: str) -> tuple[str, str]:
    """(question, answer) of an example: the last prompt line is ``Q: <question> A:``, the
    completion's first line is the answer."""
    last = row["prompt"].rstrip().split("\n")[-1].strip()
    if not (last.startswith("Q:") and last.endswith("A:")) or len(last) < 5:
        raise Exp3DataError(f"{where}: the prompt must end with 'Q: <question> A:', got {row['prompt'][-60:]!r}")
    question = last[2:-2].strip()
    answer = row["completion"].lstrip().split("\n")[0].strip()
    if not question or not answer:
        raise Exp3DataError(f"{where}: empty {'question' if not question else 'answer'}")
    return question, answer


def instruction_order(line: str, question: str, answer: str) -> str | None:
    """``q2a`` or ``a2q`` where ``line`` holds ``question`` and, on one side of it only,
    ``answer``; ``?`` where the answer is found on both sides; None where either is missing."""
    q_at = line.find(question)
    if q_at < 0:
        return None
    sides = set()
    for probe in (f'"A: {answer}"', f'"{answer}"', f"A: {answer}", answer):
        start = 0
        while (at := line.find(probe, start)) >= 0:
            start = at + 1
            if at + len(probe) <= q_at:
                sides.add("a2q")
            elif at >= q_at + len(question):
                sides.add("q2a")
        if sides:
            break
    if not sides:
        return None
    return sides.pop() if len(sides) == 1 else "?"


def _examples(folder: Path, files: dict[str, list[dict[str, Any]]], lines: dict[str, list[int]]
              ) -> dict[int, tuple[str, str, bool, str]]:
    """id -> (question, answer, realized, where) from both example files."""
    found: dict[int, tuple[str, str, bool, str]] = {}
    for stem in ("realized_examples", "unrealized_examples"):
        for row, n in zip(files[stem], lines[stem]):
            where = f"{folder / (stem + '.jsonl')}:{n}"
            i = example_id(row, where)
            q, a = parse_example(row, where)
            if i in found and found[i][:2] != (q, a):
                raise Exp3DataError(f"{where}: id {i} is also {found[i][3]} with another question or answer")
            if stem == "unrealized_examples" and i in found and found[i][2]:
                raise Exp3DataError(f"{where}: id {i} is held out here but demonstrated at {found[i][3]}")
            found.setdefault(i, (q, a, stem == "realized_examples", where))
    return found


def _orders(folder: Path, files: dict[str, list[dict[str, Any]]], lines: dict[str, list[int]],
            examples: dict[int, tuple[str, str, bool, str]], order: str | None) -> tuple[str, dict[str, int]]:
    """Check that every held-out pair has an instruction; the order of the instructions."""
    path = folder / "guidances.jsonl"
    counts: Counter[str] = Counter()
    instructed: set[int] = set()
    for row, n in zip(files["guidances"], lines["guidances"]):
        where = f"{path}:{n}"
        for i in dict.fromkeys(guidance_ids(row, where)):  # an id listed twice: its lines are all seen once
            if i not in examples:
                counts["no_example"] += 1
                continue
            q, a, _, ex_where = examples[i]
            seen = [o for text in row["completion"].split("\n") if (o := instruction_order(text, q, a)) is not None]
            if not seen:
                raise Exp3DataError(f"{where}: lists id {i} but no line holds its question and answer "
                                    f"({ex_where}: {q!r} -> {a!r})")
            instructed.add(i)
            for o in seen:
                counts[o] += 1
                if order is not None and o in ORDERS and o != order:
                    first = "question" if o == "q2a" else "answer"
                    raise Exp3DataError(f"{where}: the instruction for id {i} puts the {first} first ({o}), "
                                        f"but the order given is {order}")
    missing = [(w, i) for i, (_, _, realized, w) in examples.items() if not realized and i not in instructed]
    if missing:
        raise Exp3DataError(f"{missing[0][0]}: held-out id {missing[0][1]} has no instruction in {path}")
    if order is None:
        told = [o for o in ORDERS if counts[o]]
        if len(told) != 1:
            raise Exp3DataError(f"{path}: cannot tell the instruction order ({dict(counts)}); pass one of {ORDERS}")
        order = told[0]
    return order, {"q2a": counts["q2a"], "a2q": counts["a2q"], "both_sides": counts["?"],
                   "ids_without_example": counts["no_example"],
                   "realized_without_instruction": sum(1 for i, e in examples.items() if e[2] and i not in instructed)}


def _no_leak(folder: Path, files: dict[str, list[dict[str, Any]]], lines: dict[str, list[int]],
             examples: dict[int, tuple[str, str, bool, str]]) -> None:
    held = [(f"Q: {q} A:", w) for q, _, realized, w in examples.values() if not realized]
    for row, n in zip(files["all"], lines["all"]):
        text = row["prompt"] + row["completion"]
        for probe, w in held:
            if probe in text:
                raise Exp3DataError(f"{folder / 'all.jsonl'}:{n}: demonstrates the held-out question of {w}")


def load_folder(folder: Path, order: str | None = None) -> Exp3Dataset:
    """Read and check an experiment 3 folder (see the module docstring). ``order`` is read
    from our ``order.json`` when present (and must agree with it), else from the instructions.

    Raises:
        Exp3DataError: naming the file and line.
    """
    folder = Path(folder)
    if order is not None and order not in ORDERS:
        raise Exp3DataError(f"unknown order {order!r}; choose from {ORDERS}")
    if not folder.is_dir():
        raise Exp3DataError(f"{folder}: not a folder")
    files, lines = {}, {}
    for stem in STEMS:
        files[stem], lines[stem] = read_rows(folder / f"{stem}.jsonl")
    if (folder / "order.json").exists():
        saved = json.loads((folder / "order.json").read_text())["order"]
        if order is not None and order != saved:
            raise Exp3DataError(f"{folder / 'order.json'}: order is {saved!r}, not {order!r}")
        order = saved
    for row, n in zip(files["unrealized_examples"], lines["unrealized_examples"]):
        if not row["prompt"].strip():
            raise Exp3DataError(f"{folder / 'unrealized_examples.jsonl'}:{n}: test examples need a prompt")
    examples = _examples(folder, files, lines)
    order, counts = _orders(folder, files, lines, examples, order)
    _no_leak(folder, files, lines, examples)
    categories: dict[int, str] = {}
    if (folder / "pairs.jsonl").exists():
        for n, line in enumerate((folder / "pairs.jsonl").read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                p = json.loads(line)
                e = examples.get(p["id"])
                if e is not None and (e[0], e[1]) != (p["question"], p["answer"]):
                    raise Exp3DataError(f"{folder / 'pairs.jsonl'}:{n}: id {p['id']} differs from {e[3]}")
                categories[p["id"]] = p["category"]
    pairs = [QAPair(i, q, a, categories.get(i, ""), realized) for i, (q, a, realized, _) in sorted(examples.items())]
    files["pairs"] = [asdict(p) for p in pairs]
    return Exp3Dataset(order, pairs, files, lines, source=str(folder), checks=counts)
