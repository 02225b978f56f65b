"""Figures for weight-change localisation (input: :func:`interp.weights.localisation_summary`).

:func:`localisation_curves`: one row per query set, two panels: the single-layer apply gain
(base + that layer's finetuned weights) and revert loss (finetuned with that layer set back to
base) per layer, per kind and for the whole layer, with 95% bootstrap bands; and the fraction
of the mean finetuning gain recovered by applying the top-``k`` layers, with the 50% / 90%
lines and the last point that adds the non-layer parameters (the finetuned model).

Example::

    s = localisation_summary(localise(tuned, base, {"forward_d2p": pairs}))
    localisation_curves(s, "out", "weights")     # [out/weights.png, out/weights.svg]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
from matplotlib.figure import Figure

from analysis.figures import save

_COLOURS = {"attn": "tab:orange", "mlp": "tab:blue", "norm": "tab:green", "layer": "0.3"}


def _band(ax: Any, x: np.ndarray, stat: Mapping[str, list[float]], label: str, colour: str,
          style: str, lw: float = 1.2) -> None:
    ax.plot(x, stat["mean"], style, color=colour, marker=".", ms=4, lw=lw, label=label,
            alpha=0.5 if lw > 2 else 1.0)
    ax.fill_between(x, stat["ci_low"], stat["ci_high"], color=colour, alpha=0.1, lw=0)


def localisation_curves(summary: Mapping[str, Any], out_dir: str | Path, stem: str,
                        title: str = "where finetuning changed the weights") -> list[Path]:
    """Per query set: per-layer apply gain (solid) and revert loss (dashed); cumulative recovery."""
    sets = summary["sets"]
    if not sets:
        raise ValueError("localisation_curves: the summary has no query sets")
    n_layers = summary["n_layers"]
    fig = Figure(figsize=(10, 3.2 * len(sets)))
    axes = np.atleast_2d(fig.subplots(len(sets), 2, squeeze=False))
    x = np.arange(n_layers)
    for (name, s), (ax_l, ax_c) in zip(sets.items(), axes):
        for kind in ["layer", *summary["kinds"]]:  # whole layer first, so the kinds draw on top
            colour = _COLOURS.get(kind, "tab:purple")
            lw = 3.0 if kind == "layer" else 1.2
            _band(ax_l, x, s["apply_gain"][kind], f"apply {kind}", colour, "-", lw)
            _band(ax_l, x, s["revert_loss"][kind], f"revert {kind}", colour, "--", lw)
        nl = s["non_layer"]
        for key, marker in (("apply_gain", "o"), ("revert_loss", "x")):
            st = nl[key]
            ax_l.errorbar([n_layers], [st["mean"]], fmt=marker, color="tab:red", ms=5,
                          yerr=[[st["mean"] - st["ci_low"]], [st["ci_high"] - st["mean"]]],
                          label=f"{key.split('_')[0]} non-layer")
        step = max(1, n_layers // 15)
        ticks = [*range(0, n_layers, step), n_layers]
        ax_l.set_xticks(ticks, [str(i) for i in ticks[:-1]] + ["nl"])
        ax_l.axhline(0, color="k", lw=0.5)
        ax_l.axhline(s["gain"]["mean"], color="tab:red", lw=0.8, ls=":", label="finetuning gain")
        ax_l.set_xlabel("layer (nl: embeddings, final norm, other)")
        ax_l.set_ylabel("Δ log p(completion) (nats)")
        n = f"n={s['n_pairs']}" + (f", {s['n_units']} facts" if s["unit"] == "fact" else "")
        ax_l.set_title(f"{name} ({n}): apply gain / revert loss", fontsize=9)
        ax_l.legend(fontsize=6, ncol=2)

        k = np.arange(1, n_layers + 2)  # last point: all layers + non-layer
        frac = s["cumulative"]["fraction"]
        if frac is None:
            ax_c.text(0.5, 0.5, f"no positive finetuning gain\n(mean {s['gain']['mean']:.3g} nats)",
                      ha="center", va="center", transform=ax_c.transAxes, fontsize=9)
        else:
            ax_c.plot(k[:-1], frac[:-1], marker=".", color="tab:blue", label="top-k layers")
            ax_c.plot(k[-2:], frac[-2:], ls=":", marker="s", color="tab:blue", ms=4,
                      label="+ non-layer (= finetuned)")
            for level, key in ((0.5, "k50"), (0.9, "k90")):
                ax_c.axhline(level, color="0.5", lw=0.7, ls="--")
                if s[key] is not None:
                    ax_c.axvline(s[key], color="tab:red", lw=0.7, ls=":")
                    ax_c.text(s[key], level, f" {key}={s[key]}", fontsize=7, va="bottom")
            ax_c.legend(fontsize=7, loc="lower right")
            ax_c.set_ylim(min(0.0, min(frac)) - 0.05, max(1.0, max(frac)) + 0.05)
        ticks = [*range(1, n_layers + 1, step), n_layers + 1]
        ax_c.set_xticks(ticks, [str(i) for i in ticks[:-1]] + ["+nl"], fontsize=7)
        ax_c.set_xlabel("k (layers applied, by own apply gain)")
        ax_c.set_ylabel("fraction of mean gain")
        ax_c.set_title(f"{name}: cumulative recovery", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, out_dir, stem)
