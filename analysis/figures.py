"""Saving matplotlib figures without touching the user's backend.

Figures in this toolkit are built as ``matplotlib.figure.Figure`` objects (no pyplot), so
building one never selects or switches the global backend: a notebook keeps its inline
backend, a script without a display needs none. :func:`save` draws through the Agg canvas
directly and writes PNG and SVG atomically.

Example::

    from matplotlib.figure import Figure
    fig = Figure(figsize=(4, 3))
    fig.subplots().plot([0, 1], [1, 0])
    save(fig, "out", "demo")   # [out/demo.png, out/demo.svg]
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def save(fig: Figure, out_dir: str | Path, stem: str) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` atomically; return both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    paths = []
    for ext in ("png", "svg"):
        target = out_dir / f"{stem}.{ext}"
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}-", suffix=f".{ext}", dir=out_dir)
        os.close(fd)
        try:
            fig.savefig(tmp, format=ext, dpi=120, bbox_inches="tight")
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        paths.append(target)
    return paths
