"""Figures for linear probes: accuracy per layer with 95% CI bands (PNG + SVG via
:func:`analysis.figures.save`; ``matplotlib.figure.Figure`` only, no pyplot).

Each curve is a :class:`interp.probe.ProbeResult` or its ``to_dict()`` (keys ``layers``,
``accuracy``, ``ci_low``, ``ci_high``, ``chance``, optionally ``shuffled``). Layer -1 (the
embedding, ``hook_embed``) is labelled "emb". Chance is a dashed grey line; the
shuffled-label control, when present, a thin dotted line in the curve's colour.

Example::

    probe_curves({"finetuned D2P": ft.to_dict(), "base D2P": base.to_dict()},
                 out_dir, "probe_desc_last", "which fact? (description's last token)")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
from matplotlib.figure import Figure

from analysis.figures import save


def _as_dict(curve: Any) -> Mapping[str, Any]:
    d = curve.to_dict() if hasattr(curve, "to_dict") else curve
    missing = [k for k in ("layers", "accuracy", "ci_low", "ci_high", "chance") if k not in d]
    if missing:
        raise KeyError(f"probe curve lacks {missing}; pass ProbeResult.to_dict()")
    return d


def probe_curves(curves: Mapping[str, Any], out_dir: str | Path, stem: str, title: str = "",
                 show_control: bool = True) -> list[Path]:
    """Accuracy vs layer per curve, with its CI band, chance, and the shuffled control."""
    if not curves:
        raise ValueError("probe_curves: no curves")
    fig = Figure(figsize=(6.5, 3.8))
    ax = fig.subplots()
    all_layers: set[int] = set()
    chances: set[float] = set()
    for i, (name, curve) in enumerate(curves.items()):
        d = _as_dict(curve)
        x = np.asarray(d["layers"], dtype=int)  # [n_layers]
        color = f"C{i % 10}"
        n = f", {d['n_facts']} facts" if "n_facts" in d else ""
        ax.plot(x, d["accuracy"], marker=".", color=color, label=f"{name}{n}")
        ax.fill_between(x, d["ci_low"], d["ci_high"], color=color, alpha=0.15, lw=0)
        if show_control and len(d.get("shuffled") or ()) == len(x):
            ax.plot(x, d["shuffled"], ls=":", lw=1, color=color, alpha=0.8)
        all_layers |= set(x.tolist())
        chances.add(round(float(d["chance"]), 6))
    for j, c in enumerate(sorted(chances)):
        ax.axhline(c, ls="--", color="0.5", lw=1,
                   label=("chance" if len(chances) == 1 else f"chance {c:.3f}") if j < 3 else None)
    if show_control and any(len(_as_dict(c).get("shuffled") or ()) for c in curves.values()):
        ax.plot([], [], ls=":", color="0.3", label="shuffled-label control")
    layers = sorted(all_layers)
    step = max(1, len(layers) // 16)
    ticks = layers[::step]
    ax.set_xticks(ticks, ["emb" if L == -1 else str(L) for L in ticks])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("layer (residual stream after the block)")
    ax.set_ylabel("held-out accuracy")
    ax.set_title(title or "linear probe accuracy per layer (95% CI over facts)", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    return save(fig, out_dir, stem)
