"""The one base class of the errors a user can fix.

``rct`` prints an :class:`RctError` as one line (what is wrong and where: the file, line, field
or flag) and exits with status 2; any other exception is a bug or a machine problem and keeps
its traceback. Library code raises a subclass (``ModelLoadError``, ``DatasetError``,
``ConfigError``, ``RunDirError``, ...), each also a ``ValueError`` or ``RuntimeError`` as
before, so existing ``except`` clauses keep working.

Example::

    try:
        load_model("no/such-model")
    except RctError as e:
        print(e)   # one line: what is missing and what to do
"""

from __future__ import annotations


class RctError(Exception):
    """An error in what the user asked for; its message is one line that names the place."""


class ModelLoadError(RctError, RuntimeError):
    """A model spec that cannot be loaded; the message says what is missing and what to do."""
