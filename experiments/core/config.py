"""Configs as data: typed dataclasses as the schema, OmegaConf for merging and type checks.

Every stage's config is a frozen dataclass whose ``__post_init__`` validates values. This
module turns files and overrides into those dataclasses, and back:

- :func:`build` merges a base (a dataclass instance, a dict or a YAML/JSON file), then
  ``KEY=VALUE`` overrides (``--set finetune.epochs=2``, values parsed as YAML), then typed
  assignments (``--model``), checks every key and type against the schema with OmegaConf
  structured configs, and builds the dataclass;
- :func:`to_dict` / :func:`from_dict` round-trip a config through JSON (``config.json``);
- :func:`load_preset` reads ``experiments/presets/<experiment>/<name>.yaml``, files a user can
  copy, edit and pass back with ``--config``.

Errors are :class:`ConfigError`, one line naming the key and what it allows.

Example::

    cfg = build(Exp1Config, "experiments/presets/exp1/cpu.yaml", ["finetune.lr=1e-4"])
    assert from_dict(Exp1Config, to_dict(cfg)) == cfg
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

from interp.errors import RctError

T = TypeVar("T")
PRESETS_DIR = Path(__file__).resolve().parents[1] / "presets"


class ConfigError(RctError, ValueError):
    """A config file, override or value that does not fit the schema."""


def _fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _schema_at(cls: type, dotted: str) -> type | None:
    """The dataclass that holds the last key of ``dotted`` (None when the path leaves the schema)."""
    node: Any = cls
    for part in dotted.split(".")[:-1]:
        hit = {f.name: f for f in dataclasses.fields(node)}.get(part)
        default = None
        if hit is not None:
            if hit.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                default = hit.default_factory()  # type: ignore[misc]
            elif hit.default is not dataclasses.MISSING:
                default = hit.default
        if not dataclasses.is_dataclass(default):
            return None
        node = type(default)
    return node


def _explain(cls: type, exc: Exception, where: str) -> ConfigError:
    """One line out of an OmegaConf or validation error."""
    key = getattr(exc, "full_key", None) or ""
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if type(exc).__name__ == "ConfigKeyError" and key:
        holder = _schema_at(cls, key)
        allowed = ", ".join(_fields(holder)) if holder else "?"
        section = f"keys of {key.rsplit('.', 1)[0]}" if "." in key else "top-level keys"
        return ConfigError(f"{where}: unknown key {key!r}; {section} are: {allowed}")
    if key:
        return ConfigError(f"{where}: {key}: {first}")
    return ConfigError(f"{where}: {first}")


def _plain(value: Any) -> Any:
    """Dataclass instances, tuples and paths as JSON-able data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config as plain data (tuples become lists), as written to ``config.json``."""
    return _plain(cfg)


def read_file(path: str | Path) -> dict[str, Any]:
    """A YAML or JSON config file as a dict; errors name the file."""
    from omegaconf import OmegaConf

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder; give a YAML/JSON file (a copied preset)")
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    if not path.read_text(encoding="utf-8", errors="replace").strip():
        raise ConfigError(f"config file {path} is empty; copy a preset (experiments/presets/) and edit it, "
                          "or use --preset")
    try:
        data = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as e:  # noqa: BLE001 - YAML and IO errors of many kinds: one line out
        raise ConfigError(f"{path}: not a valid YAML/JSON config ({str(e).splitlines()[0][:200]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    return data


def build(cls: type[T], base: Any = None, overrides: Sequence[str] = (),
          assign: Mapping[str, Any] | None = None, where: str = "config") -> T:
    """Build a ``cls`` from ``base`` (instance, dict, file path or None for the defaults),
    ``KEY=VALUE`` overrides and typed ``assign`` values, in that order.

    Raises:
        ConfigError: an unknown key, a value of the wrong type, or a value the dataclass's
            own validation refuses; the message names the key.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(base, (str, Path)):
        where, base = str(base), read_file(base)
    data = to_dict(base) if dataclasses.is_dataclass(base) else dict(base or {})
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), data)
    except OmegaConfBaseException as e:
        raise _explain(cls, e, where) from None
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. finetune.epochs=2; "
                              f"top-level keys are: {', '.join(_fields(cls))}")
        try:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([item]))
        except OmegaConfBaseException as e:
            raise _explain(cls, e, f"--set {item}") from None
        _instantiate(cls, merged, f"--set {item}")  # the dataclass's own checks, per override
    for key, value in (assign or {}).items():
        nested: Any = value
        for part in reversed(key.split(".")):
            nested = {part: nested}
        try:
            merged = OmegaConf.merge(merged, nested)
        except OmegaConfBaseException as e:
            raise _explain(cls, e, f"{key}={value!r}") from None
    return _instantiate(cls, merged, where)


def _instantiate(cls: type[T], merged: Any, where: str) -> T:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        raise _explain(cls, e, where) from None
    except (ValueError, TypeError) as e:  # the dataclass's own __post_init__ validation
        raise ConfigError(f"{where}: {e}") from None


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "config") -> T:
    """Inverse of :func:`to_dict` (with the same checks as :func:`build`)."""
    return build(cls, dict(data), where=where)


def config_hash(cfg: Any) -> str:
    """SHA-256 of the config's canonical JSON (recorded next to a run's results)."""
    return hashlib.sha256(json.dumps(to_dict(cfg), sort_keys=True).encode()).hexdigest()


def first_difference(a: Any, b: Any, prefix: str = "") -> tuple[str, Any, Any] | None:
    """The first dotted key where two configs (or their dicts) differ, with both values."""
    a = to_dict(a) if dataclasses.is_dataclass(a) else a
    b = to_dict(b) if dataclasses.is_dataclass(b) else b
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            hit = first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
            if hit:
                return hit
        return None
    return None if a == b else (prefix.rstrip("."), a, b)


def preset_names(experiment: str) -> list[str]:
    return sorted(p.stem for p in (PRESETS_DIR / experiment).glob("*.yaml"))


def load_preset(cls: type[T], experiment: str, name: str) -> T:
    """``experiments/presets/<experiment>/<name>.yaml`` as a ``cls``."""
    path = PRESETS_DIR / experiment / f"{name}.yaml"
    if not path.exists():
        names = preset_names(experiment)
        import difflib

        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown {experiment} preset {name!r}; choose from {names}{hint}")
    return build(cls, path)


def write_preset(cfg: Any, path: str | Path, header: str = "") -> Path:
    """Write a config as a commented YAML file (used to create the preset files)."""
    from omegaconf import OmegaConf

    from interp.fileio import write_text

    text = OmegaConf.to_yaml(OmegaConf.create(to_dict(cfg)))
    lines = "".join(f"# {x}\n" if x else "#\n" for x in header.splitlines())
    return write_text(path, lines + text)


class ConfigMixin:
    """``to_dict``/``from_dict``/``override`` for a config dataclass, through this module."""

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
        return from_dict(cls, data, where=cls.__name__)

    def override(self: T, assignments: Sequence[str]) -> T:
        """A copy with ``KEY=VALUE`` overrides applied (see :func:`build`)."""
        return build(type(self), self, assignments)
