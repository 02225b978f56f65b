"""The report of ``rct compare``: ``summary.json``, ``summary.md``, figures (PNG + SVG) and one
offline page (``compare.html``: the tables and the figures inlined, no network).

Example::

    write_report(compare_models(cursed, cured, ds), Path("runs/compare-demo"))
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from analysis.figures import save
from analysis.fmt import ci, pvalue
from interp.fileio import write_json, write_text

SET_TITLES = {"p2d_reverse": "reverse: description -> name (trained name first)",
              "d2p_reverse": "reverse: name -> description (trained description first)",
              "d2p_forward": "trained: description -> name", "p2d_forward": "trained: name -> description"}


def _num(x: float | None, fmt: str = "+.2f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _e(d: dict[str, Any]) -> str:
    return f"{_num(d['mean'])} {ci(d['ci_low'], d['ci_high'])}"


def _best(col: dict[str, Any], layers: list[int], sign: int = 1) -> tuple[int, int] | None:
    means = [sign * m if m is not None else -np.inf for m in col["mean"]]
    return None if not len(means) or max(means) == -np.inf else (int(np.argmax(means)), layers[int(np.argmax(means))])


def _patching_md(summary: dict[str, Any]) -> list[str]:
    lines = ["## Cross-model activation patching", "",
             "Effect: the patched run's whole-answer log-prob minus the target's own (nats), mean over "
             "facts with a 95% t interval; `p_fw`: family-wise p over every layer, site and position "
             "group of the set (max-T, sign flips of facts). Gap: source minus target. `cured->cursed` "
             "shows the largest rise (which state is enough), `cursed->cured` the largest drop (which "
             "is needed); the last column counts the sites moving the answer that way at p_fw < 0.05.", ""]
    for d, sets in summary["patching"].items():
        lines += [f"### {d}", "", "| set | target log-prob | source log-prob | gap | strongest site (layer) | effect | "
                  "share of gap | p_fw | cosine there | sites at p_fw < 0.05 |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for name, s in sets.items():
            best, best_key = None, None
            for key, col in s["effect"].items():
                sign = s.get("sign", 1)
                b = _best(col, s["layers"], sign)
                if b and (best is None or sign * col["mean"][b[0]] > sign * s["effect"][best_key]["mean"][best[0]]):
                    best, best_key = b, key
            if best is None:
                continue
            col = s["effect"][best_key]
            j, L = best
            share = col["mean"][j] / s["gap"]["mean"] if s["gap"]["mean"] * s.get("sign", 1) > 0 else None
            cos = s["cosine"][best_key][L]
            lines.append(f"| {name} | {_e(s['lp_target'])} | {_e(s['lp_source'])} | {_e(s['gap'])} | "
                         f"{best_key} ({L}) | {_num(col['mean'][j])} {ci(col['ci_low'][j], col['ci_high'][j])} | "
                         f"{_num(share, '.0%')} | {pvalue(col['p_family'][j])} | {_num(cos, '.3f')} | "
                         f"{len(s['restoring'])} |")
        lines.append("")
    return lines


def _grafting_md(summary: dict[str, Any]) -> list[str]:
    lines = ["## Weight grafting", "",
             "`graft`: the cursed model with the cured model's weights at one layer (attention, MLP or "
             "the whole layer); `ungraft`: the cured model with the cursed ones. Effects in nats, 95% t "
             "intervals; `p_fw` family-wise over layers and kinds. k50 / k90: layers (greedy order by "
             "single-layer graft effect, chosen on these data, so descriptive) needed for 50% / 90% of "
             "the mean gain.", "",
             "| set | cured - cursed | best graft (layer) | effect | p_fw | worst ungraft (layer) | effect | p_fw "
             "| k50 | k90 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in summary["grafting"].items():
        cells = []
        for part, sign in (("graft", 1), ("ungraft", -1)):
            best = None
            for kind, col in s[part].items():
                for j, m in enumerate(col["mean"]):
                    if m is not None and (best is None or sign * m > sign * best[2]):
                        best = (kind, j, m, col)
            kind, j, m, col = best
            cells.append(f"{kind} ({j}) | {_num(m)} {ci(col['ci_low'][j], col['ci_high'][j])} | "
                         f"{pvalue(col['p_family'][j])}")
        lines.append(f"| {name} | {_e(s['gain'])} | {cells[0]} | {cells[1]} | {s['k50']} | {s['k90']} |")
    return lines + [""]


def _knockout_md(summary: dict[str, Any]) -> list[str]:
    lines = ["## Attention knockout", "",
             "The last prompt token's attention to the entity / the other tokens / itself cut in a "
             "window of layers centred on the layer; effect: change of the whole answer's log-prob "
             "(nats, 95% t interval), the largest drop shown; `p_fw` family-wise over layers and edges.", "",
             "| model | set | clean log-prob | entity edge | other edge | self edge |", "|---|---|---|---|---|---|"]
    for model, sets in summary["knockout"].items():
        for name, s in sets.items():
            cells = []
            for edge in ("entity", "other", "self"):
                col = s["effect"].get(edge)
                if col is None:
                    cells.append("")
                    continue
                j = int(np.nanargmin([m if m is not None else np.nan for m in col["mean"]]))
                cells.append(f"{_num(col['mean'][j])} {ci(col['ci_low'][j], col['ci_high'][j])} at {s['layers'][j]}, "
                             f"p_fw {pvalue(col['p_family'][j])}")
            lines.append(f"| {model} | {name} | {_e(s['lp_clean'])} | " + " | ".join(cells) + " |")
    return lines + [""]


def _probes_md(summary: dict[str, Any]) -> list[str]:
    pr = summary["probes"]
    lines = ["## Transfer probe, with the cured model as its positive control", "",
             "Which fact? Trained at the name's last token (name -> description prompts), tested at the "
             "description's last token (description -> name prompts, unseen templates). Best layer's "
             "accuracy over facts with a 95% t interval; `p_fw`: family-wise p of 'above chance' over the "
             "probed layers (max-T). A null in the cursed model counts only where the cured model's probe "
             "detects the fact.", "",
             "| model | subset | chance | best layer | accuracy | p_fw | layers above chance |", "|---|---|---|---|---|---|---|"]
    for model in ("cursed", "cured"):
        for sub, r in pr.get(model, {}).items():
            j = int(np.argmax(r["accuracy"]))
            lines.append(f"| {model} | {sub} | {r['chance']:.3f} | {r['layers'][j]} | {r['accuracy'][j]:.3f} "
                         f"[{r['ci_low'][j]:.3f}, {r['ci_high'][j]:.3f}] | {pvalue(r['p_family'][j])} | "
                         f"{', '.join(map(str, r['layers_above_chance'])) or 'none'} |")
    if "control_passes" in pr:
        lines += ["", "Positive control (cured model detects the fact): "
                  + ", ".join(f"{k} {'passes' if v else 'FAILS'}" for k, v in pr["control_passes"].items()) + "."]
    return lines + [""]


def summary_md(summary: dict[str, Any]) -> str:
    lines = ["# rct compare: cursed model against cured model", ""]
    meta = summary.get("runs")
    if meta:
        lines += [f"- cursed: `{meta['cursed']}`", f"- cured: `{meta['cured']}`"]
    sets = ", ".join(f"{k} {v['n_facts']}" for k, v in summary["sets"].items())
    lines += [f"- facts per set: {sets}",
              f"- time: {', '.join(f'{k} {v:.0f} s' for k, v in summary['timing_s'].items())}", ""]
    if "patching" in summary:
        lines += _patching_md(summary)
    if "grafting" in summary:
        lines += _grafting_md(summary)
    if "knockout" in summary:
        lines += _knockout_md(summary)
    if "probes" in summary:
        lines += _probes_md(summary)
    if "direction" in summary:
        from analysis.direction import summary_markdown

        lines += ["## Forward against reverse, by direction", "", summary_markdown(summary["direction"])]
    return "\n".join(lines)


def _figures(summary: dict[str, Any], out: Path) -> list[Path]:
    paths: list[Path] = []
    for d, sets in summary.get("patching", {}).items():
        fig = Figure(figsize=(4.2 * len(sets), 3.4 * 3))
        axes = fig.subplots(3, len(sets), squeeze=False)
        for c, (name, s) in enumerate(sets.items()):
            for r, site in enumerate(s["sites"]):
                m = np.array([[np.nan if v is None else v for v in s["effect"][f"{site}/{g}"]["mean"]]
                              for g in s["groups"]])
                lim = max(float(np.nanmax(np.abs(m))) if np.isfinite(m).any() else 1.0, 1e-6)
                im = axes[r, c].imshow(m, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim)
                axes[r, c].set_yticks(range(len(s["groups"])), s["groups"], fontsize=7)
                ticks = range(0, len(s["layers"]), 5)
                axes[r, c].set_xticks(ticks, [s["layers"][i] for i in ticks])
                axes[r, c].set_title(f"{name}: {site}", fontsize=8)
                fig.colorbar(im, ax=axes[r, c], label="nats")
        fig.suptitle(f"patching {d}: change of the answer's log-prob")
        paths += save(fig, out, f"patching_{d.replace('->', '_into_')}")
    if "grafting" in summary:
        sets = summary["grafting"]
        fig = Figure(figsize=(4.2 * len(sets), 3.2))
        axes = fig.subplots(1, len(sets), squeeze=False)[0]
        for ax, (name, s) in zip(axes, sets.items()):
            for kind, col in s["graft"].items():
                ax.plot([np.nan if v is None else v for v in col["mean"]], label=f"graft {kind}")
            ax.axhline(s["gain"]["mean"], color="k", ls=":", label="cured - cursed")
            ax.set_title(name, fontsize=8)
            ax.set_xlabel("layer")
        axes[0].set_ylabel("nats")
        axes[0].legend(fontsize=7)
        paths += save(fig, out, "grafting")
    if "direction" in summary:
        from analysis.direction import plot_direction

        paths += plot_direction(summary["direction"], out)
    if "knockout" in summary:
        models = summary["knockout"]
        names = list(next(iter(models.values())))
        fig = Figure(figsize=(4.2 * len(names), 3.2 * len(models)))
        axes = fig.subplots(len(models), len(names), squeeze=False)
        for r, (model, sets) in enumerate(models.items()):
            for c, name in enumerate(names):
                s = sets[name]
                for edge, col in s["effect"].items():
                    axes[r, c].plot(s["layers"], [np.nan if v is None else v for v in col["mean"]], label=edge)
                axes[r, c].set_title(f"{model}: {name}", fontsize=8)
        axes[0, 0].legend(fontsize=7)
        fig.suptitle("attention knockout: change of the answer's log-prob (nats)")
        paths += save(fig, out, "knockout")
    return paths


def write_report(summary: dict[str, Any], out: Path) -> Path:
    """``summary.json``, ``summary.md``, figures and ``compare.html`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "summary.json", summary)
    md = summary_md(summary)
    write_text(out / "summary.md", md + "\n")
    imgs = [p for p in _figures(summary, out) if p.suffix == ".png"]
    body = "".join(f'<h2>{html.escape(p.stem)}</h2><img style="max-width:100%" '
                   f'src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">' for p in imgs)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>rct compare</title></head><body>"
            f"<pre style='white-space:pre-wrap'>{html.escape(md)}</pre>{body}</body></html>")
    write_text(out / "compare.html", page)
    return out
