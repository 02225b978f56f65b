"""Bad rows in published data: skipped and counted, or refused with ``strict``.

The loaders of the paper's layouts (experiment 1 folders, experiment 2's CSV, experiment 3
folders) are strict about a folder's shape but not about one defective row: the paper's own
experiment 3 folder has an example with an empty answer, and refusing the whole folder for it
would leave a user with nothing to run. A loader hands each row-level problem to a
:class:`Skips`: with ``strict`` it raises the loader's error at once (file and line in the
message), otherwise the row is recorded, left out, and :meth:`Skips.warn` prints one line with
the count and the first place. The records go into the run's manifest (``data_skipped``).

Example::

    skips = Skips(strict=False)
    for n, row in enumerate(rows, 1):
        if not row["completion"].strip():
            skips.bad(DatasetError, f"{path}:{n}", "empty completion", id=row.get("ids"))
            continue
    skips.warn(str(path))          # "warning: data/x: skipped 1 bad row (first: data/x.jsonl:3: ...)"
    skips.records()                # [{"at": "data/x.jsonl:3", "reason": "empty completion", "id": 7}]
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any


class DataWarning(UserWarning):
    """Rows of a published dataset were skipped (``rct`` prints it as one line)."""


@dataclass
class Skips:
    """The rows a loader left out, or (``strict``) the first of them raised."""

    strict: bool = False
    rows: list[dict[str, Any]] = field(default_factory=list)

    def bad(self, error: type[Exception], at: str, reason: str, **info: Any) -> None:
        """A defective row at ``at`` (``path:line``): raise ``error(f"{at}: {reason}")`` when
        strict, else record it with ``info`` (an id, a question) for the manifest."""
        if self.strict:
            raise error(f"{at}: {reason}")
        self.rows.append({"at": at, "reason": reason, **info})

    def __len__(self) -> int:
        return len(self.rows)

    def records(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.rows]

    def warn(self, what: str) -> None:
        """One line naming ``what`` was read, the count, and the first skipped row."""
        if not self.rows:
            return
        n, first = len(self.rows), self.rows[0]
        warnings.warn(f"{what}: skipped {n} bad row{'s' if n > 1 else ''} (first: {first['at']}: "
                      f"{first['reason']}); --strict refuses them instead", DataWarning, stacklevel=2)


def one_line_data_warnings() -> None:
    """Show :class:`DataWarning` as ``warning: <message>`` on one line (the command line's
    format); other warnings keep Python's."""
    plain = warnings.formatwarning
    if getattr(plain, "rct_one_line", False):
        return

    def fmt(message: Any, category: type[Warning], filename: str, lineno: int, line: str | None = None) -> str:
        if issubclass(category, DataWarning):
            return f"warning: {message}\n"
        return plain(message, category, filename, lineno, line)

    fmt.rct_one_line = True  # type: ignore[attr-defined]
    warnings.formatwarning = fmt  # type: ignore[assignment]
    warnings.simplefilter("always", DataWarning)
