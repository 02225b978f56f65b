"""One run directory rule for every command.

A run directory holds ``config.json`` (the resolved config), ``manifest.json`` (versions,
commit, seeds, device and precision with their reasons, a hash of the config, hashes of
external data files, and each finished stage with its time) and whatever the stages write.

- :meth:`RunDir.open` creates the folder, or refuses an existing non-empty one unless
  ``resume`` is given; with ``resume`` it continues only a run of the same kind whose config
  and data are unchanged, and says which field or file differs. A folder that is not a run
  (no ``config.json``) is never written into.
- :meth:`RunDir.stage` runs a stage once: a finished stage is skipped on resume, and its time
  is recorded in the manifest when it ends. Stages write their files atomically
  (:mod:`interp.fileio`), so an interrupted stage leaves nothing half-written.

Example::

    run = RunDir.open("runs/x", cfg, kind="exp1", resume=args.resume, manifest=environment())
    with run.stage("finetune") as info:
        if info is not None:            # None: finished in an earlier session
            info["steps"] = train(...)
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from experiments.core.config import config_hash, first_difference, to_dict
from interp.errors import RctError
from interp.fileio import write_json


class RunDirError(RctError, ValueError):
    """A run directory that cannot be created, continued or read as asked."""


def hash_files(folder: str | Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (relative path -> digest)."""
    folder = Path(folder)
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _writable(path: Path) -> bool:
    probe = path
    while not probe.exists():
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def _read_json(path: Path) -> dict[str, Any]:
    """A run's JSON file; a damaged one is a one-line :class:`RunDirError` naming file and line."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RunDirError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); "
                          "was it edited by hand?") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{path}: expected a JSON object at the top level")
    return data


@dataclass
class RunDir:
    """A run directory on disk (see the module docstring)."""

    path: Path

    # ------------------------------------------------------------------ creating

    @classmethod
    def open(cls, path: str | Path, config: Any, kind: str, resume: bool = False,
             data_dir: str | Path | None = None, manifest: dict[str, Any] | None = None) -> RunDir:
        """Create ``path`` for a new run, or continue the run there (``resume``).

        Args:
            config: the resolved config (a dataclass); written to ``config.json``.
            kind: what made the run (``exp1``, ``exp2``, ``exp3``, ``sweep``).
            data_dir: an external data folder whose files are hashed, so that a resumed run
                refuses data that changed in between.
            manifest: what else the manifest records (environment, seeds, device...).
        Raises:
            RunDirError: the folder is a file, not writable, not empty and not a run, a run
                of another kind, or a run with another config or data (naming the field or file).
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunDirError(f"--out {path} is a file, not a folder; choose another --out")
        data = hash_files(data_dir) if data_dir else None
        if (path / "config.json").exists():
            run = cls(path)
            if not resume:
                raise RunDirError(f"{path} already holds a run; pass --resume to continue it "
                                  "or choose another --out")
            run._check_same(config, kind, data, data_dir)
            return run
        if path.exists() and any(path.iterdir()):
            if resume:
                raise RunDirError(f"--resume: {path} is not a run directory (no config.json) and is "
                                  "not empty; nothing there was touched; choose another --out")
            raise RunDirError(f"{path} exists and is not empty; choose another --out")
        blocking = next((a for a in path.parents if a.exists() and not a.is_dir()), None)
        if blocking is not None:
            raise RunDirError(f"--out {path}: {blocking} is a file, so no folder can be made below it; "
                              "choose another --out")
        if not _writable(path):
            raise RunDirError(f"--out {path}: cannot write there (permission denied)")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"--out {path}: cannot make the folder ({e.strerror or e})") from None
        man = {"kind": kind, **(manifest or {}), "config_hash": config_hash(config), "stages": {}}
        if data is not None:
            man["data"] = {"dir": str(Path(data_dir).resolve()), "files": data}
        write_json(path / "manifest.json", man)
        write_json(path / "config.json", to_dict(config))  # last: its presence marks a run
        return cls(path)

    @classmethod
    def existing(cls, path: str | Path, kind: str | None = None) -> RunDir:
        """A run directory made earlier (for commands that take ``RUN``)."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunDirError(f"{path} is a file, not a run directory")
        if not (path / "config.json").exists():
            raise RunDirError(f"{path} is not a run directory (no config.json): create it with "
                              f"`rct {kind or 'exp1'} --out {path}`" + (" or `rct init`" if kind in (None, "exp1") else ""))
        run = cls(path)
        if kind and run.kind not in (kind, None):
            raise RunDirError(f"{path} holds an {run.kind} run, not {kind}")
        return run

    def _check_same(self, config: Any, kind: str, data: dict[str, str] | None,
                    data_dir: str | Path | None) -> None:
        if self.kind not in (kind, None):
            raise RunDirError(f"{self.path} holds an {self.kind} run, not {kind}; choose another --out")
        old = self.config_dict()
        recorded = self.manifest().get("config_hash")  # None in runs made before it was recorded
        if (recorded is not None and recorded != config_hash(config)) or old != to_dict(config):
            diff = first_difference(old, to_dict(config))
            where = (f"{diff[0]}: {json.dumps(diff[1])} in the run, {json.dumps(diff[2])} now"
                     if diff else "config.json was edited since the run started")
            raise RunDirError(f"--resume {self.path}: the run's config differs at {where}; "
                              "choose another --out")
        recorded = self.manifest().get("data")
        if data is not None and recorded is not None and recorded["files"] != data:
            changed = sorted(k for k in set(recorded["files"]) | set(data)
                             if recorded["files"].get(k) != data.get(k))
            raise RunDirError(f"--resume {self.path}: data file {Path(str(data_dir)) / changed[0]} "
                              f"changed since the run started ({len(changed)} file(s) differ); "
                              "choose another --out")

    def check_unchanged(self, data_dir: str | Path | None = None) -> None:
        """Refuse (one line) a run whose ``config.json`` was edited after it was made, or whose
        external data folder changed since: every stage command checks, so that no stage runs
        on, or reports as used, something the run did not start with. Runs made before the
        manifest recorded the hashes are not checked."""
        man = self.manifest()
        recorded = man.get("config_hash")
        if recorded is not None and config_hash(self.config_dict()) != recorded:
            raise RunDirError(f"{self.path / 'config.json'} was edited after the run was made (its hash differs "
                              "from manifest.json's); restore it, or start a new run with the new config")
        rec = man.get("data")
        if data_dir is not None and rec is not None and Path(data_dir).is_dir():
            now = hash_files(data_dir)
            changed = sorted(k for k in set(rec["files"]) | set(now) if rec["files"].get(k) != now.get(k))
            if changed:
                raise RunDirError(f"{self.path}: data file {Path(str(data_dir)) / changed[0]} changed since the run "
                                  f"started ({len(changed)} file(s) differ); the run's results would mix two "
                                  "datasets: restore the data or start a new run")

    # ------------------------------------------------------------------ reading

    def config_dict(self) -> dict[str, Any]:
        return _read_json(self.path / "config.json")

    def manifest(self) -> dict[str, Any]:
        p = self.path / "manifest.json"
        return _read_json(p) if p.exists() else {"stages": {}}

    @property
    def kind(self) -> str | None:
        return self.manifest().get("kind")

    def done(self, stage: str) -> bool:
        return stage in self.manifest().get("stages", {})

    # ------------------------------------------------------------------ stages

    def record_stage(self, stage: str, info: dict[str, Any]) -> None:
        man = self.manifest()
        man.setdefault("stages", {})[stage] = {"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **info}
        write_json(self.path / "manifest.json", man)

    @contextmanager
    def stage(self, name: str, redo: bool = False) -> Iterator[dict[str, Any] | None]:
        """Run a stage once: yields an info dict to fill (recorded with the stage's seconds
        when the block ends without error), or None when the stage finished earlier."""
        if self.done(name) and not redo:
            yield None
            return
        info: dict[str, Any] = {}
        t0 = time.perf_counter()
        yield info
        self.record_stage(name, {"seconds": round(time.perf_counter() - t0, 2), **info})
