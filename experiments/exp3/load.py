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

Errors are :class:`Exp3DataError`, whose message starts with ``file:line:``. A problem
confined to one row is skipped instead, unless ``strict``: an example that cannot be read
(not JSON, a missing field, an empty question or answer, as the paper's published example 32,
whose completion holds only ``<END GUIDANCE TEST>``), a guidance row that cannot be read, a
guidance that names an id but holds no instruction for it, and a held-out pair left without
an instruction. A skipped example is neither evaluated nor checked, and guidances that name it
are not checked for it; the training file is used as published (its unreadable rows aside).
``Exp3Dataset.skipped`` lists every skipped row with its ``file:line``, the reason and the id.
A folder our generator wrote (it has ``order.json``) is always read strictly.

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

from experiments.core.skips import Skips
from experiments.exp3.schema import ORDERS, Exp3Dataset, QAPair
from interp.errors import RctError

STEMS = ("realized_examples", "unrealized_examples", "guidances", "all")


class Exp3DataError(RctError, ValueError):
    """A bad experiment 3 folder; the message starts with ``path:line:``."""


def read_rows(path: Path, skips: Skips | None = None) -> tuple[list[dict[str, Any]], list[int]]:
    """The JSON rows of ``path`` and their line numbers (blank lines skipped); every row needs
    string ``prompt`` and ``completion`` fields and a non-empty completion. A row without them
    is handed to ``skips`` (None: strict, the first one raises)."""
    skips = skips if skips is not None else Skips(strict=True)
    if not path.is_file():
        raise Exp3DataError(f"{path}: missing (an experiment 3 folder holds realized_examples.jsonl, "
                            "unrealized_examples.jsonl, guidances.jsonl and all.jsonl)")
    rows, lines = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        problem = _row_problem(line)
        if problem:
            skips.bad(Exp3DataError, f"{path}:{n}", problem)
            continue
        rows.append(json.loads(line))
        lines.append(n)
    if not rows:
        raise Exp3DataError(f"{path}: no examples")
    return rows, lines


def _row_problem(line: str) -> str | None:
    """Why a line is not a usable row, or None."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        return f"not JSON ({e.msg})"
    if not isinstance(row, dict):
        return "expected a JSON object"
    for key in ("prompt", "completion"):
        if not isinstance(row.get(key), str):
            return f"field {key!r} must be a string"
    if not row["completion"].strip():
        return "empty completion"
    return None


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
    completion's first line is the answer (a completion that starts with a line break has an
    empty answer: ``" \\n\\n<END GUIDANCE TEST>"`` holds a suffix, not an answer)."""
    last = row["prompt"].rstrip().split("\n")[-1].strip()
    if not (last.startswith("Q:") and last.endswith("A:")) or len(last) < 5:
        raise Exp3DataError(f"{where}: the prompt must end with 'Q: <question> A:', got {row['prompt'][-60:]!r}")
    question = last[2:-2].strip()
    answer = row["completion"].lstrip(" \t").split("\n")[0].strip()
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


def _examples(folder: Path, files: dict[str, list[dict[str, Any]]], lines: dict[str, list[int]],
              skips: Skips) -> dict[int, tuple[str, str, bool, str]]:
    """id -> (question, answer, realized, where) from both example files; an example that
    cannot be read goes to ``skips`` (with its id where it has one)."""
    found: dict[int, tuple[str, str, bool, str]] = {}
    for stem in ("realized_examples", "unrealized_examples"):
        for row, n in zip(files[stem], lines[stem]):
            where = f"{folder / (stem + '.jsonl')}:{n}"
            try:
                i = example_id(row, where)
            except Exp3DataError as e:
                skips.bad(Exp3DataError, where, str(e).removeprefix(f"{where}: "))
                continue
            if stem == "unrealized_examples" and not row["prompt"].strip():
                skips.bad(Exp3DataError, where, "test examples need a prompt", id=i)
                continue
            try:
                q, a = parse_example(row, where)
            except Exp3DataError as e:
                skips.bad(Exp3DataError, where, str(e).removeprefix(f"{where}: "), id=i)
                continue
            if i in found and found[i][:2] != (q, a):
                raise Exp3DataError(f"{where}: id {i} is also {found[i][3]} with another question or answer")
            if stem == "unrealized_examples" and i in found and found[i][2]:
                raise Exp3DataError(f"{where}: id {i} is held out here but demonstrated at {found[i][3]}")
            found.setdefault(i, (q, a, stem == "realized_examples", where))
    return found


def _orders(folder: Path, files: dict[str, list[dict[str, Any]]], lines: dict[str, list[int]],
            examples: dict[int, tuple[str, str, bool, str]], order: str | None, skips: Skips,
            skipped_ids: set[int]) -> tuple[str, dict[str, int]]:
    """Check that every held-out pair has an instruction; the order of the instructions. A
    held-out pair left without one is removed from ``examples`` into ``skips``."""
    path = folder / "guidances.jsonl"
    counts: Counter[str] = Counter()
    instructed: set[int] = set()
    for row, n in zip(files["guidances"], lines["guidances"]):
        where = f"{path}:{n}"
        try:
            ids = guidance_ids(row, where)
        except Exp3DataError as e:
            skips.bad(Exp3DataError, where, str(e).removeprefix(f"{where}: "))
            continue
        for i in dict.fromkeys(ids):  # an id listed twice: its lines are all seen once
            if i in skipped_ids:
                counts["skipped_id"] += 1
                continue
            if i not in examples:
                counts["no_example"] += 1
                continue
            q, a, _, ex_where = examples[i]
            seen = [o for text in row["completion"].split("\n") if (o := instruction_order(text, q, a)) is not None]
            if not seen:
                skips.bad(Exp3DataError, where, f"lists id {i} but no line holds its question and answer "
                          f"({ex_where}: {q!r} -> {a!r})", id=i)
                continue
            instructed.add(i)
            for o in seen:
                counts[o] += 1
                if order is not None and o in ORDERS and o != order:
                    first = "question" if o == "q2a" else "answer"
                    raise Exp3DataError(f"{where}: the instruction for id {i} puts the {first} first ({o}), "
                                        f"but the order given is {order}")
    for i, (q, _, realized, w) in list(examples.items()):
        if not realized and i not in instructed:
            skips.bad(Exp3DataError, w, f"held-out id {i} has no instruction in {path}", id=i)
            del examples[i]
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


def load_folder(folder: Path, order: str | None = None, strict: bool = False) -> Exp3Dataset:
    """Read and check an experiment 3 folder (see the module docstring). ``order`` is read
    from our ``order.json`` when present (and must agree with it), else from the instructions.
    A row-level problem skips the row (listed in ``skipped``, one warning); ``strict`` raises
    it instead, as it always does in a folder our generator wrote (one with ``order.json``).

    Raises:
        Exp3DataError: naming the file and line.
    """
    folder = Path(folder)
    if order is not None and order not in ORDERS:
        raise Exp3DataError(f"unknown order {order!r}; choose from {ORDERS}")
    if not folder.is_dir():
        raise Exp3DataError(f"{folder}: not a folder")
    skips = Skips(strict or (folder / "order.json").exists())  # a folder our generator wrote: always strict
    files, lines = {}, {}
    for stem in STEMS:
        files[stem], lines[stem] = read_rows(folder / f"{stem}.jsonl", skips)
    if (folder / "order.json").exists():
        saved = json.loads((folder / "order.json").read_text())["order"]
        if order is not None and order != saved:
            raise Exp3DataError(f"{folder / 'order.json'}: order is {saved!r}, not {order!r}")
        order = saved
    examples = _examples(folder, files, lines, skips)
    skipped_ids = {r["id"] for r in skips.rows if "id" in r}
    order, counts = _orders(folder, files, lines, examples, order, skips, skipped_ids)
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
    for stem in ("realized_examples", "unrealized_examples"):  # skipped examples are not asked
        kept = [k for k, row in enumerate(files[stem]) if _row_id(row) in examples]
        files[stem], lines[stem] = [files[stem][k] for k in kept], [lines[stem][k] for k in kept]
    pairs = [QAPair(i, q, a, categories.get(i, ""), realized) for i, (q, a, realized, _) in sorted(examples.items())]
    files["pairs"] = [asdict(p) for p in pairs]
    counts["skipped_rows"] = len(skips)
    skips.warn(str(folder))
    return Exp3Dataset(order, pairs, files, lines, source=str(folder), checks=counts, skipped=skips.records())


def _row_id(row: dict[str, Any]) -> int | None:
    ids = row.get("ids")
    ids = ids[0] if isinstance(ids, list) and len(ids) == 1 else ids
    return ids if isinstance(ids, int) and not isinstance(ids, bool) else None
