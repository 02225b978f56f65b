"""Figures for the inside-the-model analysis (PNG + SVG each, through :func:`analysis.figures.save`).

Uses ``matplotlib.figure.Figure`` directly: no pyplot, no global backend switch, safe on
machines without a display and in notebooks.

- :func:`component_heatmaps`: layer x component (attention, MLP) mean scores for forward
  queries, reverse queries, and their difference (input: :func:`interp.attribution.compare`).
- :func:`neuron_bars`: horizontal bars for labelled values (top neurons).
- :func:`logit_lens_curves`: mean (and spread) answer log-prob after each layer per set.

Example::

    paths = component_heatmaps(compare(fwd, rev), out_dir, "dla_contrast")
    logit_lens_curves({"forward": lens_f, "reverse": lens_r}, out_dir, "lens")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from analysis.figures import save


def component_heatmaps(cmp: Mapping[str, Any], out_dir: str | Path, stem: str,
                       title: str = "") -> list[Path]:
    """Three panels (forward, reverse, forward - reverse), rows = layers, cols = attn/MLP."""
    grids = {
        "forward": np.array([cmp["forward"]["attn"]["mean"], cmp["forward"]["mlp"]["mean"]]).T,
        "reverse": np.array([cmp["reverse"]["attn"]["mean"], cmp["reverse"]["mlp"]["mean"]]).T,
        "forward - reverse": np.array([cmp["difference"]["attn"], cmp["difference"]["mlp"]]).T,
    }  # each [L, 2]
    n_layers = grids["forward"].shape[0]
    fig = Figure(figsize=(7.5, max(3.0, 0.22 * n_layers + 1.5)))
    lim = max(1e-6, max(float(np.abs(g).max()) for g in grids.values()))
    axes = fig.subplots(1, 3, sharey=True)
    for ax, (name, g) in zip(axes, grids.items()):
        im = ax.imshow(g, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_title(f"{name}\n(n={cmp.get('n_' + name, '')})" if name != "forward - reverse" else name,
                     fontsize=9)
        ax.set_xticks([0, 1], ["attn", "MLP"])
    step = max(1, n_layers // 15)
    axes[0].set_yticks(range(0, n_layers, step))
    axes[0].set_ylabel("layer")
    fig.colorbar(im, ax=list(axes), shrink=0.8, label=cmp.get("kind", "score"))
    fig.suptitle(title or f"mean {cmp.get('kind', '')} per layer and component", fontsize=10, y=1.04)
    return save(fig, out_dir, stem)


def head_heatmaps(forward: Any, reverse: Any, out_dir: str | Path, stem: str, title: str = "") -> list[Path]:
    """The per-head view: three panels (forward, reverse, forward - reverse), rows = layers,
    columns = heads, each the mean over queries of an attribution's ``heads`` ``[query, layer,
    head]`` (e.g. :func:`interp.attribution.direct_logit_attribution`'s, or its ``subset``)."""
    f = np.asarray(forward.heads.float().mean(0)) if hasattr(forward, "heads") else np.asarray(forward)
    r = np.asarray(reverse.heads.float().mean(0)) if hasattr(reverse, "heads") else np.asarray(reverse)
    if f.shape != r.shape or f.ndim != 2:
        raise ValueError(f"head_heatmaps: expected two [layer, head] means of one shape, got {f.shape} and {r.shape}")
    grids = {"forward": f, "reverse": r, "forward - reverse": f - r}
    n_layers, n_heads = f.shape
    fig = Figure(figsize=(3.0 * 3 + 1.5, max(3.0, 0.22 * n_layers + 1.5)))
    lim = max(1e-6, max(float(np.abs(g).max()) for g in grids.values()))
    axes = fig.subplots(1, 3, sharey=True)
    for ax, (name, g) in zip(axes, grids.items()):
        im = ax.imshow(g, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("head")
        ax.set_xticks(range(0, n_heads, max(1, n_heads // 8)))
    axes[0].set_yticks(range(0, n_layers, max(1, n_layers // 15)))
    axes[0].set_ylabel("layer")
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="mean attribution")
    fig.suptitle(title or "mean attribution per layer and head", fontsize=10, y=1.04)
    return save(fig, out_dir, stem)


def neuron_bars(items: Sequence[tuple[str, float]], out_dir: str | Path, stem: str,
                title: str, xlabel: str = "mean contribution (logit)") -> list[Path]:
    """Horizontal bars, largest first (items: (label, value))."""
    items = list(items)[::-1]
    fig = Figure(figsize=(6.5, max(2.0, 0.3 * len(items) + 1.0)))
    ax = fig.subplots()
    vals = [v for _, v in items]
    ax.barh(range(len(items)), vals, color=["tab:red" if v > 0 else "tab:blue" for v in vals])
    ax.set_yticks(range(len(items)), [label for label, _ in items], fontsize=8)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    return save(fig, out_dir, stem)


def logit_lens_curves(curves: Mapping[str, torch.Tensor], out_dir: str | Path, stem: str,
                      title: str = "logit lens: first answer token") -> list[Path]:
    """Mean +- std over queries of the answer log-prob after each layer, one line per set."""
    fig = Figure(figsize=(6.5, 3.8))
    ax = fig.subplots()
    for name, lens in curves.items():  # lens: [n, L]
        if lens.numel() == 0:
            continue
        mean, sd = lens.mean(0).numpy(), (lens.std(0) if lens.shape[0] > 1 else torch.zeros(lens.shape[1])).numpy()
        x = np.arange(len(mean))
        ax.plot(x, mean, marker=".", label=f"{name} (n={lens.shape[0]})")
        ax.fill_between(x, mean - sd, mean + sd, alpha=0.15)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("after layer")
    ax.set_ylabel("log p(first answer token)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return save(fig, out_dir, stem)
