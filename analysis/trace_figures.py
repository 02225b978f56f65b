"""Figures and the offline page for causal tracing (PNG + SVG through :func:`analysis.figures.save`).

- :func:`token_heatmaps`: one query, one panel per site: layer x prompt token, colour = the
  restored probability of the answer (Meng et al.'s figure 1 layout).
- :func:`category_heatmaps`: mean indirect effect per layer and position category, one
  panel per (site, query set), side by side.
- :func:`effect_curves`: mean indirect effect by layer with 95% CIs over facts, at the
  entity's last token and at the last token, one line per query set.
- :func:`trace_page`: an HTML page that inlines the SVGs (opens offline).

Example::

    paths = token_heatmaps(trace, 0, "out", "trace_q0", "finetuned, d2p forward")
    trace_page("out/causal_tracing.html", "Causal tracing", [("q0", paths[1])])
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from analysis.figures import save
from interp.fileio import write_text
from interp.trace import CATEGORIES, Trace

SITE_TITLES = {"resid": "residual stream", "mlp": "MLP output (window)", "attn": "attention output (window)"}
CMAPS = {"resid": "Purples", "mlp": "Greens", "attn": "Reds"}


def token_heatmaps(trace: Trace, i: int, out_dir: str | Path, stem: str, title: str) -> list[Path]:
    """Query ``i`` of ``trace``: restored probability per (layer, token) for each site."""
    sites = list(trace.prob)
    cols = trace.columns[i]
    labels = [repr(trace.tokens[i][p])[1:-1] + ("*" if p in trace.span[i] else "") for p, _ in cols]
    fig = Figure(figsize=(3.6 * len(sites) + 1, 0.28 * len(cols) + 2.2))
    axes = fig.subplots(1, len(sites), squeeze=False, gridspec_kw={"wspace": 0.55})[0]
    for ax, s in zip(axes, sites):
        data = trace.prob[s][i, :, : len(cols)].numpy().T  # [tokens, layers]
        im = ax.imshow(data, aspect="auto", cmap=CMAPS[s], vmin=float(trace.p_corrupt[i]),
                       vmax=max(float(np.nanmax(data)), float(trace.p_clean[i]), 1e-9))
        ax.set_yticks(range(len(cols)), labels, fontsize=7)
        ax.set_xticks(range(len(trace.layers))[::max(1, len(trace.layers) // 8)],
                      [str(x) for x in trace.layers][::max(1, len(trace.layers) // 8)], fontsize=7)
        ax.set_xlabel("layer")
        ax.set_title(SITE_TITLES[s], fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.05).ax.tick_params(labelsize=7)
    fig.suptitle(f"{title}\np(clean)={float(trace.p_clean[i]):.3g}, p(corrupted)="
                 f"{float(trace.p_corrupt[i]):.3g}; * = corrupted entity token", fontsize=9)
    return save(fig, out_dir, stem)


def category_heatmaps(means: Mapping[str, Mapping[str, np.ndarray]], layers: Sequence[int],
                      out_dir: str | Path, stem: str, title: str) -> list[Path]:
    """``means[set][site]`` is ``[layers, categories]`` (NaN where no token of a category was
    traced); one panel per (site row, set column), shared colour scale per site."""
    sets = list(means)
    sites = list(next(iter(means.values())))
    fig = Figure(figsize=(2.9 * len(sets) + 1, 2.6 * len(sites) + 0.8))
    axes = fig.subplots(len(sites), len(sets), squeeze=False, gridspec_kw={"wspace": 0.45})
    for r, s in enumerate(sites):
        vmax = max(float(np.nanmax(np.abs(means[k][s]))) if np.isfinite(means[k][s]).any() else 0
                   for k in sets) or 1e-9
        for c, k in enumerate(sets):
            ax = axes[r][c]
            m = np.asarray(means[k][s], dtype=float)
            keep = [j for j in range(m.shape[1]) if np.isfinite(m[:, j]).any()]
            im = ax.imshow(m[:, keep].T, aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax)
            ax.set_yticks(range(len(keep)), [CATEGORIES[j] for j in keep], fontsize=7)
            step = max(1, len(layers) // 6)
            ax.set_xticks(range(len(layers))[::step], [str(x) for x in layers][::step], fontsize=7)
            if r == 0:
                ax.set_title(k, fontsize=9)
            if c == 0:
                ax.set_ylabel(SITE_TITLES[s], fontsize=8)
            if c == len(sets) - 1:
                fig.colorbar(im, ax=ax, fraction=0.05).ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    return save(fig, out_dir, stem)


def effect_curves(curves: Mapping[str, Mapping[str, Any]], layers: Sequence[int],
                  out_dir: str | Path, stem: str, title: str) -> list[Path]:
    """``curves[label][site]`` is a dict with ``mean``, ``low``, ``high`` (one per layer);
    one panel per site, one line (with its CI band) per label."""
    sites = list(next(iter(curves.values())))
    fig = Figure(figsize=(4.2 * len(sites), 3.4))
    axes = fig.subplots(1, len(sites), squeeze=False)[0]
    for ax, s in zip(axes, sites):
        for label, per_site in curves.items():
            d = per_site[s]
            m = np.asarray(d["mean"], dtype=float)
            ax.plot(layers, m, label=label, lw=1.4)
            ax.fill_between(layers, np.asarray(d["low"], dtype=float), np.asarray(d["high"], dtype=float),
                            alpha=0.18)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_title(SITE_TITLES[s], fontsize=9)
        ax.set_xlabel("layer")
        ax.set_ylabel("indirect effect (probability)")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return save(fig, out_dir, stem)


def trace_page(path: str | Path, title: str, figures: Sequence[tuple[str, Path]],
               intro: str = "") -> Path:
    """An HTML page with each figure's SVG inlined under its caption (no external files)."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             "<style>body{font-family:sans-serif;max-width:1400px;margin:auto}"
             "svg{max-width:100%;height:auto}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>" if intro else ""]
    for caption, svg in figures:
        text = Path(svg).read_text()
        text = text[text.find("<svg"):]
        parts += [f"<h2>{html.escape(caption)}</h2>", text]
    parts.append("</body></html>")
    path = Path(path)
    write_text(path, "\n".join(parts))
    return path
