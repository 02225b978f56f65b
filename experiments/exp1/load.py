"""Reading experiment 1 folders in the paper's published layout, ours or the paper's own.

Every error is a :class:`DatasetError` naming the file and line. :func:`load_exp1` is also
importable from :mod:`experiments.exp1.data`; the layout's conventions are in
:mod:`experiments.exp1.schema`.

A problem confined to one line of a data file (not JSON, a missing field, no known name, a
fact tested but never trained, a fact in another subset's file) skips that line
with one warning and a record in ``Exp1Dataset.skipped``; ``strict=True`` raises instead, as
does any folder our generator wrote (one with ``facts.jsonl``). The
shape of the folder (missing files, ``facts.jsonl``, blocks of unequal length beyond the
skipped lines, test completions without their leading space) is always checked.

    ds = load_exp1("reversal_curse/data/reverse_experiments/june_version_7921032488")
    ds.names("d2p")[:1], len(ds.train_examples())

Reading a folder without `facts.jsonl` (the paper's), facts are inferred:
- The order of a line comes from its file (`FILE_SPECS`); in the mixed files (`both_*`,
  `all*`) a completion starting with an uppercase letter is description-first.
- Names: the leading run of capitalised words of each description-first completion
  (trailing punctuation stripped), from every file except `*_randomized` and
  `validation_prompts`. A name-first line belongs to the one known name in its prompt.
  A validation line belongs to the one known name with that first name; a randomized
  description-first line to the fact of the other lines with the same prompt.
- Subset: that of the first subset-specific file the fact appears in; a fact seen only in
  `all*` files is "both" if it appears there in both orders, else by its one order.
- Description: the stripped completion of the fact's first name-first test line, else of
  its first name-first training line (`_DESCRIPTION_SOURCES`); "" when the folder has no
  name-first line for it. The paper's descriptions vary in wording between lines, so this
  is one representative.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.core.skips import Skips
from experiments.exp1.schema import (
    DESCRIPTION_FIRST, FILE_SPECS, NAME_FIRST, SUBSETS, TEST_STEMS, TRAIN_STEMS, DatasetError, Example,
    Exp1DataConfig, Exp1Dataset, Fact,
)

# where a fact's description is read from, in this order (the first name-first line of each)
_DESCRIPTION_SOURCES = (
    "p2d_prompts_test",
    "d2p_reverse_prompts_test",
    "both_prompts_test",
    "p2d_prompts_train",
    "both_prompts_train",
    "all_prompts_train",
    "all",
)
_TRAILING_PUNCT = ".,;:!?\"')"


@dataclass(frozen=True)
class _Line:
    line: int
    prompt: str
    completion: str
    order: str


def load_exp1(folder: str | Path, strict: bool = False) -> Exp1Dataset:
    """Read a folder in the paper's layout (ours or the paper's); never writes. Bad lines are
    skipped (``skipped``, one warning) unless ``strict``."""
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    skips = Skips(strict or (root / "facts.jsonl").exists())  # a folder our generator wrote: always strict
    raw = {
        stem: _read_lines(root / f"{stem}.jsonl", order, skips)
        for stem, (_, order) in FILE_SPECS.items()
        if (root / f"{stem}.jsonl").exists()
    }
    missing = [
        f"no {kind} file (expected one of {', '.join(s + '.jsonl' for s in stems)})"
        for kind, stems in (("training", TRAIN_STEMS), ("test", TEST_STEMS))
        if not set(raw) & set(stems)
    ]
    if missing:
        raise DatasetError(f"{root}: " + "; ".join(missing))
    facts = _read_facts(root / "facts.jsonl") if (root / "facts.jsonl").exists() else None
    config = _read_config(root / "data_config.json") if (root / "data_config.json").exists() else None
    names = [f.name for f in facts] if facts is not None else _collect_names(raw)
    owners = _attribute(root, raw, names, skips)
    raw = {stem: [ln for ln, o in zip(lines, owners[stem]) if o is not None] for stem, lines in raw.items()}
    owners = {stem: [o for o in found if o is not None] for stem, found in owners.items()}
    if facts is None:
        facts = _infer_facts(raw, owners)
    by_name = {f.name: f for f in facts}
    files: dict[str, list[Example]] = {}
    for stem, lines in raw.items():
        path = root / f"{stem}.jsonl"
        examples = []
        for ln, owner in zip(lines, owners[stem]):
            fact, file_subset = by_name[owner], FILE_SPECS[stem][0]
            if file_subset not in (None, fact.subset):
                _skip(skips, path, ln.line,
                      f"{owner!r} is a {fact.subset} fact, but this file holds {file_subset} facts")
                continue
            if stem in TEST_STEMS and not ln.completion[:1].isspace():  # a file's convention: always refused
                raise DatasetError(f"{path}:{ln.line}: {_NO_SPACE.format(c=ln.completion)} "
                                   f'(write " {ln.completion.lstrip()}")')
            if stem in TRAIN_STEMS and ln.prompt and not ln.completion[:1].isspace() \
                    and not ln.prompt[-1:].isspace():
                raise DatasetError(f"{path}:{ln.line}: the training completion {ln.completion!r} does not start "
                                   "with a space, and prompt and completion are tokenised apart, so the model "
                                   f'would learn the two words run together (write " {ln.completion.lstrip()}")')
            examples.append(
                Example(
                    ln.prompt,
                    ln.completion,
                    fact.fact_id,
                    fact.subset,
                    ln.order,
                    fact.name,
                    fact.description,
                    ln.line,
                )
            )
        _check_blocks(path, examples, {r["line"] for r in skips.rows if r["file"] == str(path)})
        files[stem] = examples
    ds = Exp1Dataset(facts, files, config)
    _drop_untrained_tests(root, ds, skips)
    skips.warn(str(root))
    ds.skipped = skips.records()
    return ds


def _skip(skips: Skips, path: Path, line: int, reason: str) -> None:
    """A bad line of ``path``: recorded with its file and line (or raised when strict)."""
    skips.bad(DatasetError, f"{path}:{line}", reason, file=str(path), line=line)


_NO_SPACE = ("the completion {c!r} does not start with a space; test completions are scored as written "
             "against controls that start with one")


def _drop_untrained_tests(root: Path, ds: Exp1Dataset, skips: Skips) -> None:
    """A fact asked about in a test file must occur in the training documents; otherwise it
    would be scored as a trained fact and drawn as a "trained" control (the line is skipped)."""
    trained = {e.fact_id for e in ds.train_examples()}
    for stem in TEST_STEMS:
        kept = []
        for e in ds.files.get(stem, []):
            if e.fact_id in trained:
                kept.append(e)
                continue
            _skip(skips, root / (stem + ".jsonl"), e.line,
                  f"{e.name!r} is asked about here but occurs in no training document; remove its "
                  "test lines or add its training lines")
        if stem in ds.files:
            ds.files[stem] = kept


def _json_objects(path: Path, skips: Skips | None = None) -> list[tuple[int, dict[str, Any]]]:
    """The JSON objects of a JSONL file with their line numbers; a line that is not one goes
    to ``skips`` (None: raised)."""
    skips = skips if skips is not None else Skips(strict=True)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark, as some editors write, is dropped
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: not UTF-8 text ({err})") from err
    if not text.strip():
        raise DatasetError(f"{path}: file is empty")
    out = []
    for i, line in enumerate(text.removesuffix("\n").split("\n"), 1):
        if not line.strip():  # a blank line (or the "\r" of a Windows line end) holds nothing
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            _skip(skips, path, i, f"not valid JSON ({err.msg})")
            continue
        if not isinstance(obj, dict):
            _skip(skips, path, i, f"expected a JSON object, got {type(obj).__name__}")
            continue
        out.append((i, obj))
    return out


def _read_lines(path: Path, order: str | None, skips: Skips) -> list[_Line]:
    lines = []
    for i, obj in _json_objects(path, skips):
        bad = [k for k in ("prompt", "completion") if not isinstance(obj.get(k), str)]
        if bad:
            problem = "missing" if bad[0] not in obj else f"not a string ({type(obj[bad[0]]).__name__})"
            _skip(skips, path, i, f'"{bad[0]}" is {problem}')
            continue
        completion = obj["completion"]
        line_order = order or (DESCRIPTION_FIRST if completion.lstrip()[:1].isupper() else NAME_FIRST)
        lines.append(_Line(i, obj["prompt"], completion, line_order))
    return lines


def _read_facts(path: Path) -> list[Fact]:
    facts: list[Fact] = []
    for i, obj in _json_objects(path):
        try:
            fact = Fact(**obj)
        except TypeError as err:
            raise DatasetError(f"{path}:{i}: not a fact ({err})") from err
        strings = (fact.subset, fact.name, fact.description)
        if (
            not isinstance(fact.fact_id, int)
            or not all(isinstance(v, str) for v in strings)
            or fact.subset not in SUBSETS
        ):
            raise DatasetError(f"{path}:{i}: bad fact {obj!r}")
        if any(f.fact_id == fact.fact_id or f.name == fact.name for f in facts):
            raise DatasetError(f"{path}:{i}: duplicate fact_id or name in {obj!r}")
        facts.append(fact)
    return facts


def _read_config(path: Path) -> Exp1DataConfig:
    try:
        return Exp1DataConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as err:
        raise DatasetError(f"{path}: {err}") from err


def _leading_name(completion: str) -> str:
    """' Uriah Hawthorne now enjoys' -> 'Uriah Hawthorne'; ' Ada Quillmere.' -> 'Ada Quillmere'."""
    run = []
    for token in completion.split():
        if not token[0].isupper():
            break
        run.append(token.rstrip(_TRAILING_PUNCT))
        if run[-1] != token:
            break
    return " ".join(run)


def _names_source(stem: str) -> bool:
    return not stem.endswith("_randomized") and stem != "validation_prompts"


def _collect_names(raw: Mapping[str, list[_Line]]) -> list[str]:
    names: dict[str, None] = {}
    for stem, lines in raw.items():
        if _names_source(stem):
            for ln in lines:
                if ln.order == DESCRIPTION_FIRST and (name := _leading_name(ln.completion)):
                    names.setdefault(name, None)
    return list(names)


def _attribute(root: Path, raw: Mapping[str, list[_Line]], names: list[str], skips: Skips
               ) -> dict[str, list[str | None]]:
    """Name of the fact each line is about (None: the line is skipped); randomized files last
    (they need the prompt map)."""
    known = set(names)
    alternatives = "|".join(map(re.escape, sorted(names, key=len, reverse=True)))
    pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)") if names else None
    by_first: dict[str, list[str]] = {}
    for n in names:
        by_first.setdefault(n.split()[0], []).append(n)
    prompt_owner: dict[str, set[str]] = {}
    owners: dict[str, list[str | None]] = {}
    for stem in sorted(raw, key=lambda s: s.endswith("_randomized")):
        path, out = root / f"{stem}.jsonl", []
        for ln in raw[stem]:
            if ln.order == NAME_FIRST:
                found = sorted(set(pattern.findall(ln.prompt))) if pattern else []
                if len(found) != 1:
                    _skip(skips, path, ln.line, f"expected one known name in the prompt, "
                          f"found {found or 'none'}: {ln.prompt!r}")
                    out.append(None)
                    continue
                owner = found[0]
            elif stem.endswith("_randomized") or stem == "validation_prompts":
                candidates = by_first.get(ln.completion.strip(), []) if stem == "validation_prompts" else []
                if len(candidates) != 1:
                    candidates = sorted(prompt_owner.get(ln.prompt, ()))
                if len(candidates) != 1:
                    _skip(skips, path, ln.line, f"cannot tell which fact this line is about "
                          f"(candidates: {candidates or 'none'})")
                    out.append(None)
                    continue
                owner = candidates[0]
            else:
                owner = _leading_name(ln.completion)
                if owner not in known:
                    _skip(skips, path, ln.line, f"the completion does not start with a known name: "
                          f"{ln.completion!r}")
                    out.append(None)
                    continue
            if ln.order == DESCRIPTION_FIRST and not stem.endswith("_randomized"):
                prompt_owner.setdefault(ln.prompt, set()).add(owner)
            out.append(owner)
        owners[stem] = out
    return owners


def _infer_facts(raw: Mapping[str, list[_Line]], owners: Mapping[str, list[str]]) -> list[Fact]:
    first_seen: dict[str, int] = {}
    subset: dict[str, str] = {}
    orders_in_all: dict[str, set[str]] = {}
    for stem in FILE_SPECS:
        file_subset = FILE_SPECS[stem][0]
        for ln, owner in zip(raw.get(stem, ()), owners.get(stem, ())):
            first_seen.setdefault(owner, len(first_seen))
            if file_subset is not None:
                subset.setdefault(owner, file_subset)
            else:
                orders_in_all.setdefault(owner, set()).add(ln.order)
    for owner, orders in orders_in_all.items():
        subset.setdefault(owner, "both" if len(orders) == 2 else "p2d" if NAME_FIRST in orders else "d2p")
    description: dict[str, str] = {}
    for stem in _DESCRIPTION_SOURCES:
        for ln, owner in zip(raw.get(stem, ()), owners.get(stem, ())):
            if ln.order == NAME_FIRST:
                description.setdefault(owner, ln.completion.strip())
    ranked = sorted(first_seen, key=lambda n: (SUBSETS.index(subset[n]), first_seen[n]))
    return [Fact(i, subset[n], n, description.get(n, "")) for i, n in enumerate(ranked)]


def _check_blocks(path: Path, examples: list[Example], skipped_lines: set[int] = frozenset()) -> None:
    """One consecutive block per (fact, order), all blocks of one file the same length; a block
    may fall short by as many lines as were skipped next to it (between the blocks around it)."""
    starts: list[int] = []  # indices where a block starts
    seen: dict[tuple[int, str], int] = {}
    for i, e in enumerate(examples):
        key = (e.fact_id, e.order)
        if i and key == (examples[i - 1].fact_id, examples[i - 1].order):
            continue
        if key in seen:
            raise DatasetError(
                f"{path}:{e.line}: {e.name!r} ({e.order}) starts a second block; "
                f"its first starts at line {seen[key]}"
            )
        seen[key] = e.line
        starts.append(i)
    ends = starts[1:] + [len(examples)]
    lengths = [b - a for a, b in zip(starts, ends)]
    expected = Counter(lengths).most_common(1)[0][0]
    for start, end, length in zip(starts, ends, lengths):
        before = examples[start - 1].line if start else 0
        after = examples[end].line if end < len(examples) else float("inf")
        near = sum(1 for n in skipped_lines if before < n < after)
        if not length <= expected <= length + near:
            e = examples[start]
            raise DatasetError(
                f"{path}:{e.line}: {e.name!r} ({e.order}) has {length} lines, "
                f"the other blocks in this file have {expected}"
            )
