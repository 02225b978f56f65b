"""``analysis`` is a leaf: it imports ``interp`` and nothing from ``experiments``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ANALYSIS = Path(__file__).resolve().parents[1] / "analysis"
MODULES = sorted(p.stem for p in ANALYSIS.glob("*.py") if p.stem != "__init__")


def test_every_analysis_module_is_found() -> None:
    assert {"figures", "fmt", "inside", "inside_figures", "pages", "stats"} <= set(MODULES)


def test_importing_analysis_loads_no_experiments_module() -> None:
    imports = "; ".join(["import analysis"] + [f"import analysis.{m}" for m in MODULES])
    code = (f"{imports}; import sys; "
            "bad = sorted(m for m in sys.modules if m == 'experiments' or m.startswith('experiments.')); "
            "assert not bad, bad")
    res = subprocess.run([sys.executable, "-c", code], cwd=ANALYSIS.parent, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]


def test_no_experiments_import_anywhere_in_analysis() -> None:
    """Function-level imports too, which importing the modules would not run."""
    found = []
    for path in sorted(ANALYSIS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] == "experiments"]
    assert not found, found
