"""Experiment 2 data: real child-parent pairs, in the paper's published CSV layout.

``parent_child_pairs.csv`` has the header ``child,parent,parent_type,child_prediction,can_reverse``:
``parent_type`` is ``mother`` or ``father``; ``child_prediction`` and ``can_reverse`` hold a
reference model's answer to the reverse question and whether it was right (the paper filled
them from GPT-4; our own list leaves them empty). Only ``child``, ``parent`` and
``parent_type`` are required.

The toolkit ships its own list (``experiments/data/exp2_parent_child.csv``): 156 pairs of
well-known public figures and their parents, written for this project.

Example::

    pairs = load_pairs()                       # the shipped list
    pairs = load_pairs("path/to/parent_child_pairs.csv")
    pairs[0].child, pairs[0].parent, pairs[0].parent_type
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from experiments.core.skips import Skips
from interp.errors import RctError
from interp.fileio import write_text

DEFAULT_PAIRS = Path(__file__).resolve().parents[1] / "data" / "exp2_parent_child.csv"
COLUMNS = ("child", "parent", "parent_type", "child_prediction", "can_reverse")
REQUIRED = ("child", "parent", "parent_type")


class PairsError(RctError, ValueError):
    """A bad pairs file; the message starts with ``path:line:``."""


@dataclass(frozen=True)
class ParentChildPair:
    child: str
    parent: str
    parent_type: str  # "mother" | "father"
    child_prediction: str | None = None
    can_reverse: bool | None = None


def _bool(raw: str, where: str) -> bool | None:
    v = raw.strip().lower()
    if v == "":
        return None
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise PairsError(f"{where}: can_reverse must be True or False (or empty), got {raw!r}")


def load_pairs(path: str | Path | None = None, strict: bool = False) -> list[ParentChildPair]:
    """Read and validate a pairs CSV (default: the shipped list). Errors name file and line.
    A repeated (child, parent) row is dropped (the first is kept), with a warning that names
    the lines; :func:`read_pairs` returns them too. A malformed row is skipped with a warning
    (``strict``: raised)."""
    pairs, dropped = read_pairs(path, Skips(strict))
    if dropped:
        warnings.warn(f"{path or DEFAULT_PAIRS}: dropped {len(dropped)} repeated (child, parent) "
                      f"row(s), lines {', '.join(str(d['line']) for d in dropped)} (the first is kept)",
                      stacklevel=2)
    return pairs


def read_pairs(path: str | Path | None = None, skips: Skips | None = None
               ) -> tuple[list[ParentChildPair], list[dict[str, object]]]:
    """``(pairs, dropped)``: the validated pairs, and per repeated (child, parent) row its
    ``line``, ``child``, ``parent`` and the ``first_line`` that was kept (the paper's
    published file repeats some pairs). A malformed row (an empty name, an unknown
    parent_type, a bad can_reverse, extra fields) goes to ``skips``, which records it and
    warns once; with ``skips=None`` or a strict one it is an error naming file and line. A
    missing file or column is always an error."""
    path = Path(path) if path is not None else DEFAULT_PAIRS
    own = skips is None
    skips = Skips(strict=True) if skips is None else skips
    if not path.is_file():
        raise PairsError(f"{path}: no such file (expected a CSV with columns {', '.join(COLUMNS)})")
    with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: a byte-order mark is dropped
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise PairsError(f"{path}:1: missing column(s) {', '.join(missing)}; header is {header}")
        pairs: list[ParentChildPair] = []
        seen: dict[tuple[str, str], int] = {}
        dropped: list[dict[str, object]] = []
        start = reader.line_num + 1  # the line a row starts on (line_num is where it ended)
        for row in reader:
            where = f"{path}:{start}"
            spans = reader.line_num > start
            start = reader.line_num + 1
            if spans and any("\n" in (v or "") for v in row.values() if isinstance(v, str)):
                raise PairsError(f"{where}: a quote opened on this line is never closed (the field runs "
                                 f"on to line {reader.line_num}); close it or remove it")
            try:
                pair = _pair(row, where)
            except PairsError as e:
                skips.bad(PairsError, where, str(e).removeprefix(f"{where}: "), line=reader.line_num)
                continue
            if (pair.child, pair.parent) in seen:
                dropped.append({"line": reader.line_num, "child": pair.child, "parent": pair.parent,
                                "first_line": seen[(pair.child, pair.parent)]})
                continue
            seen[(pair.child, pair.parent)] = reader.line_num
            pairs.append(pair)
    if not pairs:
        raise PairsError(f"{path}: no pairs")
    if not own:
        skips.warn(str(path))
    return pairs, dropped


def _pair(row: dict[str, str | None], where: str) -> ParentChildPair:
    """One CSV row as a pair; :class:`PairsError` naming ``where`` when malformed."""
    if None in row:
        raise PairsError(f"{where}: more fields than the header has")
    child, parent = (row["child"] or "").strip(), (row["parent"] or "").strip()
    ptype = (row["parent_type"] or "").strip().lower()
    if not child or not parent:
        raise PairsError(f"{where}: child and parent must not be empty")
    if ptype not in ("mother", "father"):
        raise PairsError(f"{where}: parent_type must be mother or father, got {row['parent_type']!r}")
    pred = (row.get("child_prediction") or "").strip() or None
    return ParentChildPair(child, parent, ptype, pred, _bool(row.get("can_reverse") or "", where))


def write_pairs(pairs: list[ParentChildPair], path: str | Path) -> Path:
    """Write pairs in the published layout (atomically)."""
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for p in pairs:
        row = asdict(p)
        row["child_prediction"] = row["child_prediction"] or ""
        row["can_reverse"] = "" if row["can_reverse"] is None else str(row["can_reverse"])
        w.writerow(row)
    return write_text(path, buf.getvalue())
