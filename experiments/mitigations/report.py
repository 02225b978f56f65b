"""Mitigation report: the Markdown table with its reading, and the figure, from the summary
of :func:`experiments.mitigations.summary.summarise` (the statistics are described there).

Writes ``mitigations.md``, ``summary.json`` and ``mitigations.png|svg`` into the directory.

Example::

    from experiments.mitigations import collect
    print(write_report(collect(Path("runs/mit")), Path("runs/mit")))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from analysis.figures import save
from analysis.fmt import ci, pct, pvalue
from experiments.mitigations.summary import (
    CEILING, EXACT_COLUMNS, GOAL, PER_SEED_COLUMNS, SAME, SAME_D2N, summarise,
)
from interp.fileio import write_json, write_text


# ---------------------------------------------------------------------- Markdown


def _rate(s: dict[str, Any] | None) -> str:
    if not s or s.get("mean") is None:
        return "n/a"
    return f"{pct(s['mean'], '')} [{pct(s['low'], '')}, {pct(s['high'], '')}]"


def _rate_pct(s: dict[str, Any]) -> str:
    return f"{pct(s['mean'])} [{pct(s['low'], '')}, {pct(s['high'], '')}]"


def _nats(s: dict[str, Any] | None) -> str:
    if not s or s.get("mean") is None:
        return "n/a"
    return f"{s['mean']:+.2f} {ci(s['low'], s['high'])}".rstrip()


def _points(d: dict[str, Any] | None) -> str:
    if not d:
        return "n/a"
    return f"{100 * d['diff']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]"


def _rank_ci(s: dict[str, Any] | None) -> str:
    if not s or s.get("mean") is None:
        return "n/a"
    return f"{s['mean']:.3f} [{s['low']:.3f}, {s['high']:.3f}]"


def _rank_diff(d: dict[str, Any] | None) -> str:
    if not d:
        return "n/a"
    return f"{d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def _what(over: dict[str, Any]) -> str:
    return ", ".join(f"`{k}={v}`" for k, v in over.items()) or "(base config)"


def _holds_zero(low: float | None, high: float | None) -> bool:
    return low is None or high is None or low <= 0 <= high


def _reading(summary: dict[str, Any]) -> list[str]:
    """One bullet per condition, then the best reverse cell and the ceiling; an interval
    holding 0 is read as a bound."""
    out = []
    for row in summary["conditions"]:
        if not row["seeds"]:
            continue
        said = []
        d = row["vs_none"].get(GOAL)
        if d and _holds_zero(d["low"], d["high"]):
            said.append(f"no change of the reverse cell from `none` is established ({_points(d)} points): "
                        f"a lift of at most {100 * d['high']:+.1f} points")
        elif d:
            said.append(f"{'lifts' if d['diff'] > 0 else 'lowers'} the reverse cell by {_points(d)} points "
                        "over `none`")
        for stem, label in ((SAME, "same direction"), (SAME_D2N, "DescriptionToName same direction")):
            s = row["vs_none"].get(stem)
            if s and _holds_zero(s["low"], s["high"]):
                said.append(f"{label} {_points(s)} points from `none`: a loss of at most "
                            f"{max(0.0, -100 * s['low']):.1f} points")
            elif s:
                said.append(f"{label} {_points(s)} points from `none`")
        t = row["correct_vs_random"]
        if t and t["mean"] is not None:
            if _holds_zero(t["low"], t["high"]):
                bound = "n/a" if t["high"] is None else f"{t['high']:+.2f}"
                said.append(f"correct - random name on the reverse prompts {_nats(t)} nats: a preference "
                            f"for the correct name of at most {bound} nats")
            else:
                said.append(f"correct - random name on the reverse prompts {_nats(t)} nats")
        k = row["vs_none"].get("rank")
        if k and _holds_zero(k["low"], k["high"]):
            said.append(f"normalised rank of the correct name on the reverse prompts {_rank_ci(row['rank'])}, "
                        f"{_rank_diff(k)} from `none`: a rise of at most {k['high']:+.3f}")
        elif k:
            said.append(f"normalised rank of the correct name on the reverse prompts {_rank_ci(row['rank'])}, "
                        f"{_rank_diff(k)} from `none`")
        if said:
            out.append(f"- **{row['name']}**: " + "; ".join(said) + ".")
    best = max((r for r in summary["conditions"] if GOAL in r["exact_match"]),
               key=lambda r: r["exact_match"][GOAL]["mean"], default=None)
    if best is not None:
        out.append(f"- Highest reverse exact match: **{best['name']}**, {_rate_pct(best['exact_match'][GOAL])} "
                   "(the goal of issue 14: 50% or more without losing same-direction accuracy).")
    ceil = [(r["name"], r["exact_match"][CEILING]) for r in summary["conditions"] if CEILING in r["exact_match"]]
    if ceil:
        out.append("- The Both ceiling (description -> name of facts trained in both orders): " +
                   "; ".join(f"{n} {_rate_pct(e)}" for n, e in ceil) + ".")
    return out


def mitigations_markdown(summary: dict[str, Any], title: str = "Mitigations on experiment 1") -> str:
    cols = [(s, lbl) for s, lbl in EXACT_COLUMNS
            if any(s in r["exact_match"] for r in summary["conditions"])]
    seeds = ", ".join(map(str, summary["seeds"]))
    lines = [f"## {title}", "",
             f"{summary['n_finished']} of {summary['n_cells']} cells finished (seeds {seeds}). Exact match in % "
             "(greedy output starts with the target) on held-out prompts: each fact's prompts and seeds "
             "averaged first, then the mean over facts [95% bootstrap CI over facts; Wilson over facts where "
             "every fact has the same value]. Correct - random: log-prob of the correct name minus that of a "
             "random other trained name on the NameToDescription reverse prompts, nats, mean over facts "
             "[t-based 95% CI]. Difference from `none`: paired by fact, points [95% bootstrap CI]. Reversed "
             "language: the reverse cell asked in the order the reversed copies taught (docs/mitigations.md).",
             ""]
    ranked = any(r["rank"] for r in summary["conditions"])
    if ranked:
        lines[-1:-1] = ["", "Rank: the normalised rank of the correct name among the subset's trained names on the "
                        "NameToDescription reverse prompts (1 = first, 0.5 = chance), mean over facts "
                        "[95% bootstrap CI]; rank - none paired by fact."]
    head = ["condition", "changes", "seeds", *[lbl for _, lbl in cols],
            "NameToDescription reverse: correct - random (nats)", "reverse - none (points)",
            *(["NameToDescription reverse: rank", "rank - none"] if ranked else []),
            "reversed language: reverse exact", "reversed language: correct - random (nats)"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    if summary["base"]:
        b = summary["base"]
        lines.append("| " + " | ".join(["base model", "(not finetuned)", "-",
                                        *[_rate(b["exact_match"].get(s)) for s, _ in cols],
                                        _nats(b["correct_vs_random"]), "-",
                                        *([_rank_ci(b["rank"]), "-"] if ranked else []), "-", "-"]) + " |")
    for r in summary["conditions"]:
        rev = r["reversed"]
        lang = "n/a" if not rev else f"{_rate(rev['exact_match'])} (`{rev['mode']}`)"
        lines.append("| " + " | ".join([
            r["name"], _what(r["overrides"]), str(len(r["seeds"])),
            *[_rate(r["exact_match"].get(s)) for s, _ in cols], _nats(r["correct_vs_random"]),
            "-" if r["name"] == summary["reference"] else _points(r["vs_none"].get(GOAL)),
            *([_rank_ci(r["rank"]),
               "-" if r["name"] == summary["reference"] else _rank_diff(r["vs_none"].get("rank"))] if ranked else []),
            lang, "n/a" if not rev else _nats(rev["correct_vs_random"])]) + " |")
    pcols = [(s, lbl) for s, lbl in PER_SEED_COLUMNS
             if any(s in r["exact_match"] for r in summary["conditions"])]
    lines += ["", "Per seed (exact match in %, mean over facts; correct - random in nats):", "",
              "| " + " | ".join(["condition", "seed", *[lbl for _, lbl in pcols], "correct - random",
                                 "reversed language: reverse exact"]) + " |",
              "|" + "---|" * (len(pcols) + 4)]
    for r in summary["conditions"]:
        for seed in r["seeds"]:
            key = str(seed)
            em = [r["exact_match"].get(s, {}).get("per_seed", {}).get(key) for s, _ in pcols]
            t = (r["correct_vs_random"] or {}).get("per_seed", {}).get(key)
            rev = r["reversed"]
            rl = None if not rev or not rev["exact_match"] else rev["exact_match"]["per_seed"].get(key)
            lines.append("| " + " | ".join([r["name"], key, *[pct(v, "") for v in em],
                                            "n/a" if t is None else f"{t:+.2f}", pct(rl, "")]) + " |")
    tests = [(r["name"], r["correct_vs_random"]) for r in summary["conditions"] if r["correct_vs_random"]]
    if tests:
        lines += ["", "t-test of correct - random against 0 on the reverse prompts (over facts): " +
                  "; ".join(f"{n} p = {pvalue(t['p'])}" for n, t in tests) + "."]
    reading = _reading(summary)
    if reading:
        lines += ["", "Reading (an interval that holds 0 bounds the effect; it does not show its absence):",
                  "", *reading]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- figure


def _err(lo: np.ndarray, hi: np.ndarray) -> list[np.ndarray]:
    """Error-bar lengths, never negative (a Wilson end can round past the mean)."""
    return [np.clip(lo, 0, None), np.clip(hi, 0, None)]


def mitigations_figure(summary: dict[str, Any], out_dir: Path) -> list[Path]:
    """Left: exact match per condition and cell (bars: 95% CI over facts). Middle: correct -
    random name on the reverse prompts, natural order and reversed language (95% CI). Right,
    where the cells have it: the normalised rank of the correct name on the reverse prompts
    (95% CI; 0.5 = chance)."""
    rows = [r for r in summary["conditions"] if r["seeds"]]
    cols = [(s, lbl) for s, lbl in EXACT_COLUMNS if any(s in r["exact_match"] for r in rows)]
    if not rows or not cols:
        return []
    ranked = any(r["rank"] for r in rows)
    fig = Figure(figsize=(4.0 + (1.7 if ranked else 1.3) * len(rows), 3.8), layout="constrained")
    axes = fig.subplots(1, 3 if ranked else 2, width_ratios=[2.2, 1, 1] if ranked else [2.2, 1])
    ax, ax2 = axes[0], axes[1]
    x = np.arange(len(rows))
    width = 0.8 / len(cols)
    for k, (stem, lbl) in enumerate(cols):
        em = [r["exact_match"].get(stem) for r in rows]
        mean = np.array([100 * e["mean"] if e else np.nan for e in em])
        lo = np.array([100 * (e["mean"] - e["low"]) if e else 0 for e in em])
        hi = np.array([100 * (e["high"] - e["mean"]) if e else 0 for e in em])
        ax.bar(x + (k - (len(cols) - 1) / 2) * width, mean, width, yerr=_err(lo, hi), capsize=2, label=lbl)
    ax.set_xticks(x, [r["name"] for r in rows], fontsize=8)
    ax.set_ylabel("exact match (%), mean over facts")
    ax.set_ylim(0, 105)
    ax.axhline(50, color="grey", lw=0.8, ls=":")  # the goal of issue 14 for the reverse cell
    ax.legend(frameon=False, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    ax.set_title("Exact match by condition (95% CI over facts)", fontsize=9)
    for k, (key, label) in enumerate((("natural", "natural order"), ("reversed", "reversed language"))):
        stats = [r["correct_vs_random"] if key == "natural" else (r["reversed"] or {}).get("correct_vs_random")
                 for r in rows]
        mean = np.array([s["mean"] if s and s["mean"] is not None else np.nan for s in stats])
        lo = np.array([s["mean"] - s["low"] if s and s["low"] is not None else 0 for s in stats])
        hi = np.array([s["high"] - s["mean"] if s and s["high"] is not None else 0 for s in stats])
        ax2.bar(x + (k - 0.5) * 0.38, mean, 0.38, yerr=_err(lo, hi), capsize=2, label=label,
                hatch="//" if key == "reversed" else None, color="#3a6ea5" if key == "natural" else "#c7d7ea")
    ax2.axhline(0, color="black", lw=0.6)
    ax2.set_xticks(x, [r["name"] for r in rows], fontsize=8, rotation=45, ha="right")
    ax2.set_ylabel("correct - random name (nats)")
    ax2.set_title("NameToDescription reverse", fontsize=9)
    ax2.legend(frameon=False, fontsize=7)
    if ranked:
        ax3 = axes[2]
        stats = [r["rank"] for r in rows]
        mean = np.array([s["mean"] if s else np.nan for s in stats])
        lo = np.array([s["mean"] - s["low"] if s else 0 for s in stats])
        hi = np.array([s["high"] - s["mean"] if s else 0 for s in stats])
        ax3.bar(x, mean, 0.6, yerr=_err(lo, hi), capsize=2, color="#3a6ea5")
        ax3.axhline(0.5, color="grey", lw=0.8, ls=":")  # chance
        ax3.set_ylim(0, 1.05)
        ax3.set_xticks(x, [r["name"] for r in rows], fontsize=8, rotation=45, ha="right")
        ax3.set_ylabel("normalised rank of the correct name")
        ax3.set_title("NameToDescription reverse: rank\n(0.5 = chance)", fontsize=9)
    return save(fig, out_dir, "mitigations")


def write_report(collected: dict[str, Any], out_dir: Path) -> str:
    summary = summarise(collected)
    base = collected["config"]["base"]
    text = mitigations_markdown(summary, title=f"Mitigations on experiment 1 ({base['preset']} preset, "
                                               f"{base['model']})")
    write_json(out_dir / "summary.json", summary)
    write_text(out_dir / "mitigations.md", text)
    mitigations_figure(summary, out_dir)
    from experiments.core.run_index import write_index
    write_index(out_dir)
    return text
