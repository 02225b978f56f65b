"""Pool ``rct compare`` over finetuning seeds: one cursed/cured pair per seed, the same facts.

Each seed's ``summary.json`` keeps every column's per-fact values (``per_fact``). For every
column and layer, :func:`pool_summaries` puts the seeds' values into a ``[seed, fact]`` table
and gives its mean with the crossed t interval of :func:`analysis.intervals.crossed_t_interval`
(its variance counts the facts, the seeds and their interaction), and a family-wise p over all
columns and layers of a set (Holm over the crossed-t p values; the single-seed report uses
max-T over the same family).

It also confirms: the sites that the *first* summary names as restoring (family-wise p < 0.05)
are tested again on the *other* seeds alone, Holm over those sites only: pooled over those
seeds (crossed interval; with two other seeds the seed term has one degree of freedom, so
this is strict), and on each other seed by itself (t over facts, ``confirmed_per_seed``). A
site picked on one seed and found again on two fresh seeds is not a selection effect.

Example::

    from analysis.compare_pool import pool_dirs
    pooled = pool_dirs(["runs/cmp-s0", "runs/cmp-s1", "runs/cmp-s2"], out="runs/cmp-pooled")
    pooled["patching"]["cured->cursed"]["p2d_reverse"]["restoring"][:3]

CLI: ``rct compare-seeds DIR DIR [DIR...] --out OUT``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from analysis.intervals import crossed_t_interval
from analysis.stats import holm
from interp.fileio import write_json, write_text


def _table(per_seed: list[list[list[float | None]]]) -> np.ndarray:
    """``[seed][fact][layer]`` lists (None for no value) -> float array with NaN."""
    return np.array([[[np.nan if v is None else v for v in row] for row in seed] for seed in per_seed],
                    dtype=float)


def _crossed(x: np.ndarray) -> dict[str, Any] | None:
    """``x`` ``[seed, fact]``: facts missing (NaN) in any seed are dropped."""
    keep = np.isfinite(x).all(0)
    if keep.sum() < 2:
        return None
    r = crossed_t_interval(x[:, keep])
    return {k: r[k] for k in ("mean", "ci_low", "ci_high", "p", "df", "n_seeds", "n_facts")}


def _columns(per_seed: list[dict[str, Any]], layers: list[int]) -> dict[str, dict[str, list[Any]]]:
    """Per column, per layer: the crossed interval over ``[seed, fact]``."""
    out = {}
    for col in per_seed[0]:
        arr = _table([s[col] for s in per_seed])  # [seed, fact, layer]
        rows = [_crossed(arr[:, :, j]) for j in range(len(layers))]
        out[col] = {f: [None if r is None else r[f] for r in rows] for f in ("mean", "ci_low", "ci_high", "p")}
    return out


def _holm_family(cols: dict[str, dict[str, list[Any]]]) -> None:
    """Adds ``p_family`` to every column: Holm over every column and layer of the set."""
    flat = [(c, j, p) for c, d in cols.items() for j, p in enumerate(d["p"])]
    adj = holm([p for _, _, p in flat])
    for c in cols:
        cols[c]["p_family"] = [None] * len(cols[c]["p"])
    for (c, j, _), a in zip(flat, adj):
        cols[c]["p_family"][j] = a


def _named(cols: dict[str, dict[str, list[Any]]], layers: list[int], gap: float | None, sign: int = 1
           ) -> list[dict[str, Any]]:
    rows = []
    for c, d in cols.items():
        for j, L in enumerate(layers):
            p, m = d["p_family"][j], d["mean"][j]
            if p is not None and p < 0.05 and m is not None and sign * m > 0:
                rows.append({"site": c, "layer": L, "effect": m, "ci_low": d["ci_low"][j],
                             "ci_high": d["ci_high"][j], "p_family": p,
                             "fraction_of_gap": m / gap if gap and sign * gap > 0 else None})
    return sorted(rows, key=lambda r: -sign * r["effect"])


def _confirm(first: list[dict[str, Any]], rest: list[dict[str, Any]], layers: list[int]
             ) -> list[dict[str, Any]]:
    """The first seed's named sites, tested on the other seeds' per-fact columns ``rest`` only
    (Holm over these sites)."""
    rows = []
    for r in first:
        j = layers.index(r["layer"])
        arr = _table([s[r["site"]] for s in rest])[:, :, j]
        c = _crossed(arr)
        rows.append({"site": r["site"], "layer": r["layer"], "first_seed_effect": r["effect"],
                     **({"effect": None, "ci_low": None, "ci_high": None, "p": None} if c is None else
                        {"effect": c["mean"], "ci_low": c["ci_low"], "ci_high": c["ci_high"], "p": c["p"]})})
    for r, a in zip(rows, holm([r["p"] for r in rows])):
        r["p_holm"] = a
        r["confirmed"] = bool(a is not None and a < 0.05 and r["effect"] is not None
                              and np.sign(r["effect"]) == np.sign(r["first_seed_effect"]))
    for r in rows:
        r["confirmed_per_seed"] = []
    for s in rest:  # each other seed alone (t over facts, Holm over the sites)
        one = [_crossed(_table([s[r["site"]]])[:, :, layers.index(r["layer"])]) for r in rows]
        for r, c, a in zip(rows, one, holm([None if c is None else c["p"] for c in one])):
            r["confirmed_per_seed"].append(bool(c is not None and a is not None and a < 0.05
                                                and np.sign(c["mean"]) == np.sign(r["first_seed_effect"])))
    return rows


def _check(summaries: Sequence[dict[str, Any]], names: Sequence[str]) -> None:
    if len(summaries) < 2:
        raise ValueError(f"pooling needs at least 2 compare summaries, got {len(summaries)}")
    ref = summaries[0]
    for name, s in zip(names[1:], summaries[1:]):
        for set_name, d in ref["sets"].items():
            if set_name not in s["sets"]:
                raise ValueError(f"{name}: no query set {set_name!r} (present in {names[0]})")
            if "fact_ids" not in d or d.get("fact_ids") != s["sets"][set_name].get("fact_ids"):
                raise ValueError(f"{name}: the facts of {set_name} differ from {names[0]}'s "
                                 "(or a summary predates per-fact storage: rerun rct compare)")
        for section in ("patching", "grafting", "knockout"):
            if (section in ref) != (section in s):
                raise ValueError(f"{name}: section {section!r} present in only one of the summaries")


def pool_summaries(summaries: Sequence[dict[str, Any]], names: Sequence[str] | None = None) -> dict[str, Any]:
    """Pool compare summaries of several seeds (see the module docstring); ``names`` label them
    in errors and in the result (default ``seed-0``, ``seed-1``...)."""
    names = list(names or [f"summary {i}" for i in range(len(summaries))])
    _check(summaries, names)
    ref = summaries[0]
    out: dict[str, Any] = {"n_seeds": len(summaries), "runs": [s.get("runs", {}) for s in summaries],
                           "sources": names, "sets": ref["sets"]}
    if "patching" in ref:
        out["patching"] = {}
        for d, sets in ref["patching"].items():
            out["patching"][d] = {}
            for set_name, e in sets.items():
                per = [s["patching"][d][set_name]["per_fact"] for s in summaries]
                gap = _crossed(np.array([p["gap"] for p in per], dtype=float))
                cols = _columns([p["effect"] for p in per], e["layers"])
                _holm_family(cols)
                sign = e.get("sign", 1)
                named = _named(cols, e["layers"], gap["mean"] if gap else None, sign)
                out["patching"][d][set_name] = {
                    "layers": e["layers"], "gap": gap, "effect": cols, "restoring": named,
                    "confirm": _confirm(e["restoring"], [p["effect"] for p in per[1:]], e["layers"])}
    if "grafting" in ref:
        out["grafting"] = {}
        for set_name, e in ref["grafting"].items():
            per = [s["grafting"][set_name]["per_fact"] for s in summaries]
            layers = list(range(len(next(iter(e["graft"].values()))["mean"])))
            gain = _crossed(np.array([p["gain"] for p in per], dtype=float))
            graft = _columns([p["graft"] for p in per], layers)
            _holm_family(graft)
            out["grafting"][set_name] = {"gain": gain, "graft": graft,
                                         "graft_restoring": _named(graft, layers, gain["mean"] if gain else None),
                                         "k50_per_seed": [s["grafting"][set_name]["k50"] for s in summaries],
                                         "k90_per_seed": [s["grafting"][set_name]["k90"] for s in summaries]}
    if "knockout" in ref:
        out["knockout"] = {}
        for model, sets in ref["knockout"].items():
            out["knockout"][model] = {}
            for set_name, e in sets.items():
                cols = _columns([s["knockout"][model][set_name]["per_fact"]["effect"] for s in summaries],
                                e["layers"])
                _holm_family(cols)
                out["knockout"][model][set_name] = {"layers": e["layers"], "effect": cols,
                                                    "removing": _named(cols, e["layers"], None, -1)}
    return out


def _fmt(d: dict[str, Any] | None, fmt: str = "+.2f") -> str:
    m = None if d is None else d.get("mean", d.get("effect"))
    if m is None:
        return "n/a"
    lo, hi = d.get("ci_low", d.get("low")), d.get("ci_high", d.get("high"))
    if lo is None or hi is None:
        return f"{m:{fmt}}"
    return f"{m:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def summary_markdown(p: dict[str, Any]) -> str:
    """The pooled result in Markdown: per set the gap, the sites named on all seeds together,
    and the first seed's sites confirmed on the others."""
    lines = [f"# rct compare pooled over {p['n_seeds']} seeds", "",
             "Means over seeds x facts with 95% crossed t intervals (fact, seed and interaction "
             "variance); `p_fw`: Holm over every column and layer of the set. *Confirmed*: a site "
             "named restoring on the first seed, tested again on the other seeds alone (Holm over "
             "those sites).", "", "Sources: " + ", ".join(f"`{s}`" for s in p["sources"]), ""]
    for d, sets in p.get("patching", {}).items():
        lines += [f"## Patching {d}", ""]
        for name, e in sets.items():
            lines += [f"### {name}: gap {_fmt(e['gap'])} nats", ""]
            top = e["restoring"][:6]
            if top:
                lines += ["| site | layer | effect (nats) | fraction of gap | p_fw |", "|---|---|---|---|---|"]
                lines += [f"| {r['site']} | {r['layer']} | {_fmt(r)} | "
                          f"{'n/a' if r['fraction_of_gap'] is None else format(r['fraction_of_gap'], '.0%')} | "
                          f"{r['p_family']:.2g} |" for r in top]
            else:
                lines.append("No site passes the family-wise test.")
            conf = e["confirm"]
            if conf:
                n_ok = sum(r["confirmed"] for r in conf)
                each = [sum(r["confirmed_per_seed"][k] for r in conf) for k in range(len(conf[0]["confirmed_per_seed"]))]
                every = sum(all(r["confirmed_per_seed"]) for r in conf)
                lines += ["", f"First seed's {len(conf)} named site(s): {n_ok} confirmed on the other seeds pooled "
                          f"(crossed interval); on each other seed alone: {', '.join(map(str, each))} "
                          f"({every} on every one). "
                          "Strongest: " + "; ".join(
                              f"{r['site']} L{r['layer']} {_fmt(r)}" for r in sorted(
                                  conf, key=lambda r: -abs(r['effect'] or 0))[:3])]
            lines.append("")
    for name, e in p.get("grafting", {}).items():
        best = e["graft_restoring"][:3]
        lines += [f"## Grafting {name}: cured-minus-cursed gain {_fmt(e['gain'])} nats; k50 per seed "
                  f"{e['k50_per_seed']}, k90 {e['k90_per_seed']}", "",
                  "Strongest single-layer grafts: " + ("; ".join(f"{r['site']} L{r['layer']} {_fmt(r)}"
                                                                 for r in best) or "none passes"), ""]
    for model, sets in p.get("knockout", {}).items():
        for name, e in sets.items():
            rm = e["removing"][:3]
            lines.append(f"- knockout, {model}, {name}: " + ("; ".join(
                f"{r['site']} L{r['layer']} {_fmt(r)}" for r in rm) or "no edge removes the answer family-wise"))
    return "\n".join(lines) + "\n"


def pool_dirs(dirs: Sequence[str | Path], out: str | Path | None = None) -> dict[str, Any]:
    """Read ``DIR/summary.json`` of each compare folder, pool them, and write ``OUT/summary.json``
    and ``OUT/summary.md`` when ``out`` is given."""
    summaries, names = [], []
    for d in dirs:
        path = Path(d) / "summary.json"
        if not path.is_file():
            raise ValueError(f"{path}: missing (not an rct compare output folder?)")
        try:
            summaries.append(json.loads(path.read_text()))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
        names.append(str(d))
    pooled = pool_summaries(summaries, names)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "summary.json", pooled)
        write_text(out / "summary.md", summary_markdown(pooled))
    return pooled
