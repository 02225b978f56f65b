"""The plan of the house, checked: no import circle between the project's own modules, no
module over 400 lines, and the three layers' arrows pointing one way (``experiments`` ->
``analysis`` -> ``interp``).

Every import statement counts, wherever it stands: at the top, inside a function, or under
``if TYPE_CHECKING:`` (a reader meets them all). ``from a.b import c`` is an arrow to the
module ``a.b.c`` when there is one, else to ``a.b``; relative imports are resolved. Package
``__init__`` files count as the module of their package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("interp", "analysis", "experiments")
MAX_LINES = 400
LAYER = {"interp": 0, "analysis": 1, "experiments": 2}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _target(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of a dotted name that is one of the project's modules."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in modules:
            return ".".join(parts[:k])
    return None


def import_graph(modules: dict[str, Path] | None = None) -> dict[str, set[str]]:
    """Module -> the project's modules it imports (see the module docstring)."""
    modules = _modules() if modules is None else modules
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                names = [f"{base}.{a.name}" for a in node.names]
            for name in names:
                hit = _target(name, modules)
                if hit is not None and hit != mod:
                    graph[mod].add(hit)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_finds_a_planted_circle(tmp_path) -> None:
    """Positive control: a two-file circle through a function-level import, and a
    TYPE_CHECKING one, are both found; a one-way pair is not."""
    (tmp_path / "a.py").write_text("def f():\n    from pkg.b import g\n")
    (tmp_path / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    (tmp_path / "c.py").write_text("from . import a\n")
    (tmp_path / "__init__.py").write_text("")
    mods = {"pkg": tmp_path / "__init__.py", **{f"pkg.{n}": tmp_path / f"{n}.py" for n in "abc"}}
    graph = import_graph(mods)
    assert graph["pkg.c"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.b"]]


def test_no_import_circles() -> None:
    found = cycles(import_graph())
    assert not found, "modules that import each other (directly or around a loop): " + "; ".join(
        " <-> ".join(g) for g in found)


def test_layers_point_one_way() -> None:
    """interp imports neither analysis nor experiments; analysis does not import experiments."""
    bad = [f"{m} -> {t}" for m, targets in import_graph().items() for t in targets
           if LAYER[t.split(".")[0]] > LAYER[m.split(".")[0]]]
    assert not bad, bad


@pytest.mark.parametrize("pkg", PACKAGES)
def test_no_module_over_400_lines(pkg: str) -> None:
    long = {str(p.relative_to(ROOT)): n for m, p in _modules().items() if m.split(".")[0] == pkg
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them along ideas): {long}"
