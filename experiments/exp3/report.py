"""Experiment 3 report: results per order and seed, the orders compared question by question.

Both orders of a run test the same held-out questions with the same answers (checked here),
so they are compared pair by pair:

- **McNemar's test** on held-out exact match, q2a against a2q, per seed and pooled over seeds
  (pooled with questions as the units: the exact sign test on each question's mean over seeds
  of q2a-right minus a2q-right, so a question is not counted once per seed; the summed
  discordant counts are shown as well). The accuracy difference's 95% CI is Newcombe's score
  interval per seed; pooled, the wider of a bootstrap over questions (each question's mean
  over seeds, since a question recurs across seeds) and Newcombe's interval on the
  seed-averaged table (n = questions), as a bootstrap of identical outcomes has no width;
- **before/after log-probs** (a difference in differences): per question, the finetuned minus
  the base log-prob of the instructed answer (the ``gain``), and that gain minus the same
  gain for a control answer of the same category (``specific``: what finetuning added to the
  instructed answer beyond its category). Per order, and q2a minus a2q, each with a 95%
  bootstrap CI over questions (seeds averaged per question first). The base model sees the
  same prompt in both orders, so its term is the same for both; it is kept so that each
  order's own effect reads as a change.

Every effect comes with its 95% CI; an effect whose CI includes zero is reported as a bound
(the CI's far end), not as "no effect".

Example::

    results = collect(cfg, Path("runs/exp3"), datasets)
    print(exp3_markdown(results, "Experiment 3"))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from experiments.exp3.config import Exp3Config
from experiments.exp3.evaluate import read_metrics, read_records
from experiments.exp3.schema import ORDERS
from interp.fileio import write_json, write_text

TITLES = {"q2a": "QuestionToAnswer (same order as the query)", "a2q": "AnswerToQuestion (reverse order)"}
SHORT = {"q2a": "QuestionToAnswer", "a2q": "AnswerToQuestion"}


def by_id(records: Sequence[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {r["id"]: r for r in records}


def check_same_questions(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]], what: str) -> list[int]:
    """The shared, sorted question ids of two record lists that must hold the same questions
    with the same answers (and the same control answers).

    Raises:
        ValueError: naming the first id that differs.
    """
    ra, rb = by_id(a), by_id(b)
    if set(ra) != set(rb):
        odd = sorted(set(ra) ^ set(rb))[0]
        raise ValueError(f"{what}: the held-out questions differ (id {odd} is in one only)")
    for i in sorted(ra):
        for key in ("prompt", "target", "control"):
            if ra[i].get(key) != rb[i].get(key):
                raise ValueError(f"{what}: held-out id {i} has another {key} "
                                 f"({ra[i].get(key)!r} vs {rb[i].get(key)!r})")
    return sorted(ra)


def _matrix(records_by_seed: dict[int, list[dict[str, Any]]], ids: list[int], value) -> np.ndarray:
    """[question, seed] values (NaN where a value is missing)."""
    cols = []
    for recs in records_by_seed.values():
        r = by_id(recs)
        cols.append([np.nan if (v := value(r[i])) is None else float(v) for i in ids])
    return np.asarray(cols, dtype=float).T


def _ci(values: np.ndarray) -> dict[str, Any]:
    """Mean over questions (rows; a row is first averaged over its seeds) with a 95% bootstrap CI."""
    from analysis.stats import bootstrap_mean_ci

    x = np.asarray(values, dtype=float)
    per_question = np.nanmean(x, axis=1) if x.ndim == 2 else x
    per_question = per_question[np.isfinite(per_question)]
    if per_question.size == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    return bootstrap_mean_ci(per_question, n_boot=2000, seed=0)


def pooled(records_by_seed: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """Exact match, plausible answers and log-probs pooled over seeds, the exact-match CI from
    a bootstrap over questions."""
    from analysis.stats import wilson_ci

    first = next(iter(records_by_seed.values()))
    ids = sorted(by_id(first))
    for s, recs in records_by_seed.items():
        check_same_questions(first, recs, f"seed {s}")
    exact = _matrix(records_by_seed, ids, lambda r: r["exact"])
    ci = _ci(exact)
    mean = float(np.mean(exact)) if ids else None
    low, high = ci["low"], ci["high"]
    if ids:  # one seed: Wilson; more: the wider of the bootstrap and Wilson with n = questions (a bootstrap of
        w_low, w_high = wilson_ci(mean * len(ids), len(ids))  # all-0 is [0, 0])
        low, high = (w_low, w_high) if len(records_by_seed) == 1 else (min(low, w_low), max(high, w_high))
    return {"n": len(ids), "n_seeds": len(records_by_seed), "exact_match": mean,
            "exact_ci95_low": low, "exact_ci95_high": high,
            "plausible": float(np.mean(_matrix(records_by_seed, ids, lambda r: r["plausible"]))) if ids else None,
            "chance": float(np.mean([1 / r["pool_size"] for r in first])) if ids else None,
            "mean_logprob": float(np.mean(_matrix(records_by_seed, ids, lambda r: r["logprob"]))) if ids else None}


def order_effects(base: list[dict[str, Any]], finetuned: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """One order's before/after log-prob effects: ``gain`` (finetuned minus base log-prob of
    the instructed answer) and ``specific`` (that gain minus the control answer's gain), per
    seed and pooled, each a mean over questions with a 95% bootstrap CI."""
    out: dict[str, Any] = {"per_seed": {}}
    ids = check_same_questions(base, next(iter(finetuned.values())), "base vs finetuned")
    b = by_id(base)

    def arrays(recs_by_seed: dict[int, list[dict[str, Any]]]) -> tuple[np.ndarray, np.ndarray]:
        gain = _matrix(recs_by_seed, ids, lambda r: r["logprob"]) - np.array([[b[i]["logprob"]] for i in ids])
        ctrl = _matrix(recs_by_seed, ids, lambda r: r["control_logprob"]) - np.array(
            [[np.nan if b[i]["control_logprob"] is None else b[i]["control_logprob"]] for i in ids])
        return gain, gain - ctrl

    for s, recs in finetuned.items():
        check_same_questions(base, recs, f"base vs seed {s}")
        gain, spec = arrays({s: recs})
        out["per_seed"][str(s)] = {"gain": _ci(gain), "specific": _ci(spec)}
    gain, spec = arrays(finetuned)
    out.update(gain=_ci(gain), specific=_ci(spec), ids=ids)
    return out


def contrast_orders(base: dict[str, list[dict[str, Any]]], finetuned: dict[str, dict[int, list[dict[str, Any]]]]
                    ) -> dict[str, Any]:
    """q2a against a2q on the same held-out questions: McNemar per seed and pooled, and the
    difference in differences of the log-prob effects (see the module docstring)."""
    from scipy import stats

    from analysis.stats import mcnemar, paired_diff_ci

    ids = check_same_questions(base["q2a"], base["a2q"], "q2a vs a2q (base)")
    seeds = [s for s in finetuned["q2a"] if s in finetuned["a2q"]]
    if not seeds:
        raise ValueError("q2a vs a2q: no finetuning seed was run in both orders")
    per_seed, a_only, b_only = {}, 0, 0
    for s in seeds:
        check_same_questions(finetuned["q2a"][s], finetuned["a2q"][s], f"q2a vs a2q (seed {s})")
        q, a = by_id(finetuned["q2a"][s]), by_id(finetuned["a2q"][s])
        m = mcnemar([q[i]["exact"] for i in ids], [a[i]["exact"] for i in ids])
        a_only, b_only = a_only + m["a_only"], b_only + m["b_only"]
        per_seed[str(s)] = {"mcnemar": m}
    both = {o: {s: finetuned[o][s] for s in seeds} for o in ORDERS}
    diff_acc = _matrix(both["q2a"], ids, lambda r: r["exact"]) - _matrix(both["a2q"], ids, lambda r: r["exact"])
    eff = {o: order_effects(base[o], both[o]) for o in ORDERS}

    def did(seed_set: list[int], key: str) -> dict[str, Any]:
        cols = []
        for o in ORDERS:
            recs, b = {s: both[o][s] for s in seed_set}, by_id(base[o])
            gain = _matrix(recs, ids, lambda r: r["logprob"]) - np.array([[b[i]["logprob"]] for i in ids])
            if key == "specific":
                ctrl = _matrix(recs, ids, lambda r: r["control_logprob"]) - np.array(
                    [[np.nan if b[i]["control_logprob"] is None else b[i]["control_logprob"]] for i in ids])
                gain = gain - ctrl
            cols.append(np.nanmean(gain, axis=1))
        return _ci(cols[0] - cols[1])

    for s in seeds:
        per_seed[str(s)].update(did_gain=did([s], "gain"), did_specific=did([s], "specific"))
    # pooled p: McNemar's test with questions as the units (a question counts for q2a when it is
    # answered in more seeds in q2a than in a2q): the exact sign test on the per-question means,
    # which does not count a question once per seed
    per_q = np.mean(diff_acc, axis=1)
    up, down = int((per_q > 0).sum()), int((per_q < 0).sum())
    acc = _ci(diff_acc)
    # the wider of the bootstrap and Newcombe's interval on the seed-averaged cells (n = questions)
    q, a = _matrix(both["q2a"], ids, lambda r: r["exact"]), _matrix(both["a2q"], ids, lambda r: r["exact"])
    cells = [float(np.mean(x, axis=1).sum()) for x in (q * a, q * (1 - a), (1 - q) * a, (1 - q) * (1 - a))]
    _, n_low, n_high = paired_diff_ci(*cells)
    acc.update(low=min(acc["low"], n_low), high=max(acc["high"], n_high))
    return {"n_questions": len(ids), "seeds": seeds, "per_seed": per_seed,
            "pooled": {"q2a_only": a_only, "a2q_only": b_only, "questions_q2a_ahead": up, "questions_a2q_ahead": down,
                       "p": float(stats.binomtest(up, up + down, 0.5).pvalue) if up + down else 1.0,
                       "diff": acc["mean"], "diff_ci95_low": acc["low"], "diff_ci95_high": acc["high"],
                       "did_gain": did(seeds, "gain"), "did_specific": did(seeds, "specific")},
            "effects": {o: {k: v for k, v in eff[o].items() if k != "ids"} for o in ORDERS}}


def collect(cfg: Exp3Config, out: Path) -> dict[str, Any]:
    """Everything the report shows, read from the run directory's files."""
    results: dict[str, Any] = {}
    base_recs, ft_recs = {}, {}
    for order in cfg.orders:
        root = out / order
        base_recs[order] = read_records(root / "base")
        ft_recs[order] = {s: read_records(root / f"seed-{s}" / "eval") for s in cfg.seeds}
        seeds: dict[str, Any] = {}
        epochs: dict[str, list[dict[str, Any]]] = {}
        base_m = read_metrics(root / "base")
        for s in cfg.seeds:
            d = root / f"seed-{s}"
            log = json.loads((d / "train_log.json").read_text())
            seeds[str(s)] = {**read_metrics(d / "eval"), "train": {
                "steps": log["steps"], "seconds": log["seconds"], "stopped_early": log.get("stopped_early"),
                "epochs": log.get("stopped_early") or log["epochs"]}}
            curve = [{"epoch": 0, **{k: _brief(base_m[k]) for k in base_m}}]
            for e in sorted((d / "epochs").glob("epoch-*")) if (d / "epochs").exists() else []:
                m = read_metrics(e)
                curve.append({"epoch": int(e.name.split("-")[1]), **{k: _brief(m[k]) for k in m}})
            epochs[str(s)] = curve
        ppl = {"base": _perplexity(root / "base"),
               **{f"seed {s}": _perplexity(root / f"seed-{s}" / "eval") for s in cfg.seeds}}
        results[order] = {"perplexity": {k: v for k, v in ppl.items() if v is not None}, "base": base_m,
                          "finetuned": {"unrealized": pooled(ft_recs[order]),
                                        "realized": pooled({s: read_records(root / f"seed-{s}" / "eval", "realized")
                                                            for s in cfg.seeds})},
                          "seeds": seeds, "per_epoch": epochs,
                          "effects": {k: v for k, v in order_effects(base_recs[order], ft_recs[order]).items()
                                      if k != "ids"}}
    if all(o in cfg.orders for o in ORDERS):
        results["contrast"] = contrast_orders(base_recs, ft_recs)
    return results


def _perplexity(folder: Path) -> float | None:
    """The held-out prose perplexity an evaluation wrote, None where it wrote none."""
    path = folder / "perplexity.json"
    return json.loads(path.read_text())["perplexity"] if path.exists() else None


def _brief(m: dict[str, Any]) -> dict[str, Any]:
    return {k: m.get(k) for k in ("n", "exact_match", "plausible", "mean_logprob")}


def write_report(cfg: Exp3Config, out: Path, datasets: dict[str, Any] | None = None) -> str:
    """``metrics.json``, ``exp3.md``, ``figure8`` and ``figure10`` from the run's files."""
    from experiments.exp3.figures import figure8, figure10

    results = collect(cfg, out)
    if datasets:
        results["data"] = {o: {"source": ds.source, "checks": ds.checks, "n_pairs": len(ds.pairs),
                               "n_held_out": len(ds.test_examples()), "training_documents": len(ds.files["all"])}
                           for o, ds in datasets.items()}
    text = exp3_markdown(results, f"Experiment 3 ({cfg.preset} preset, {cfg.model}, seeds {list(cfg.seeds)})")
    write_json(out / "metrics.json", results)
    write_text(out / "exp3.md", text)
    figure8({o: results[o] for o in cfg.orders}, out / "figure8")
    figure10({o: results[o] for o in cfg.orders}, out / "figure10")
    from experiments.core.run_index import write_index
    write_index(out)
    return text


def _ci_text(d: dict[str, Any] | None, fmt: str = "{:+.2f}") -> str:
    if not d or d.get("mean") is None:
        return "n/a"
    lo, hi = d.get("low"), d.get("high")
    tail = "" if lo is None or hi is None else f" [{fmt.format(lo)}, {fmt.format(hi)}]"
    return fmt.format(d["mean"]) + tail


def _points(d: float | None, low: float | None, high: float | None) -> str:
    """A difference of shares in percentage points, with its interval."""
    if d is None:
        return "n/a"
    return f"{100 * d:+.1f}" + ("" if low is None or high is None else f" [{100 * low:+.1f}, {100 * high:+.1f}]")


def _pct_ci(m: dict[str, Any]) -> str:
    from analysis.fmt import pct

    lo, hi = m.get("exact_ci95_low"), m.get("exact_ci95_high")
    return pct(m.get("exact_match")) + ("" if lo is None or hi is None else f" [{pct(lo, '')}, {pct(hi, '')}]")


def exp3_markdown(results: dict[str, Any], title: str) -> str:
    """Tables of the run (see the module docstring) and sentences that state each effect with
    its CI, or as a bound when the CI includes zero."""
    from analysis.fmt import pct, pvalue

    orders = [o for o in ORDERS if o in results]
    lines = [f"## {title}", "",
             "| instructions | model | held-out: exact match [95% CI] | plausible answer | chance (random plausible) | "
             "demonstrated: exact match | epochs |", "|---|---|---|---|---|---|---|"]
    for o in orders:
        r = results[o]
        u, d = r["base"]["unrealized"], r["base"]["realized"]
        lines.append(f"| {SHORT[o]} | base | {_pct_ci(u)} (n={u['n']}) | {pct(u['plausible'])} | {pct(u['chance'])} | "
                     f"{pct(d['exact_match'])} (n={d['n']}) | 0 |")
        for s, m in r["seeds"].items():
            u = m["unrealized"]
            lines.append(f"| {SHORT[o]} | seed {s} | {_pct_ci(u)} | {pct(u['plausible'])} | {pct(u['chance'])} | "
                         f"{pct(m['realized']['exact_match'])} | {m['train']['epochs']} |")
        if len(r["seeds"]) > 1:
            u, d = r["finetuned"]["unrealized"], r["finetuned"]["realized"]
            lines.append(f"| {SHORT[o]} | pooled ({u['n_seeds']} seeds) | {_pct_ci(u)} | {pct(u['plausible'])} | "
                         f"{pct(u['chance'])} | {pct(d['exact_match'])} | |")
    for o in orders:
        ppl = results[o].get("perplexity") or {}
        if ppl:
            lines += ["", f"Perplexity on the shipped held-out prose, {SHORT[o]}: "
                      + ", ".join(f"{k} {v:.2f}" for k, v in ppl.items())
                      + " (a large rise after finetuning means a damaged model)."]
    lines += ["", "Exact match: the greedy answer starts with the instructed one. A plausible answer is any "
              "answer of the question's category; chance is what a random plausible answer scores. CIs: Wilson "
              "per seed, a bootstrap over questions when pooled.", "",
              "### Before and after finetuning: log-prob of the instructed answer "
              "(nats, 95% bootstrap CI over questions)",
              "", "| instructions | seeds | gain (finetuned - base) | gain beyond a control answer of the category |",
              "|---|---|---|---|"]
    for o in orders:
        e = results[o]["effects"]
        for s, v in e["per_seed"].items():
            lines.append(f"| {SHORT[o]} | {s} | {_ci_text(v['gain'])} | {_ci_text(v['specific'])} |")
        if len(e["per_seed"]) > 1:
            lines.append(f"| {SHORT[o]} | pooled | {_ci_text(e['gain'])} | {_ci_text(e['specific'])} |")
    c = results.get("contrast")
    if c:
        lines += ["", "### QuestionToAnswer against AnswerToQuestion on the same "
                  f"{c['n_questions']} held-out questions", "",
                  "| seeds | exact match: q2a - a2q, points [95% CI] | right in q2a only | right in a2q only | "
                  "McNemar p | log-prob gain: q2a - a2q | gain beyond control: q2a - a2q |", "|---|---|---|---|---|---|---|"]
        for s, v in c["per_seed"].items():
            m = v["mcnemar"]
            lines.append(f"| {s} | {_points(m['diff'], m['diff_ci95_low'], m['diff_ci95_high'])} "
                         f"| {m['a_only']} | {m['b_only']} | {pvalue(m['p'])} | {_ci_text(v['did_gain'])} | "
                         f"{_ci_text(v['did_specific'])} |")
        p = c["pooled"]
        if len(c["seeds"]) > 1:
            lines.append(f"| pooled | {_points(p['diff'], p['diff_ci95_low'], p['diff_ci95_high'])} "
                         f"| {p['q2a_only']} | {p['a2q_only']} | {pvalue(p['p'])} | {_ci_text(p['did_gain'])} | "
                         f"{_ci_text(p['did_specific'])} |")
    lines += ["", *reading(results)]
    return "\n".join(lines) + "\n"


def _effect_sentence(name: str, d: dict[str, Any], unit: str) -> str:
    """One effect as a sentence: its value and CI, or a bound where the CI includes zero."""
    if d.get("mean") is None or d.get("low") is None or d.get("high") is None:
        return f"{name}: not measured."
    lo, hi, m = d["low"], d["high"], d["mean"]
    if lo is not None and lo > 0:
        return f"{name}: {m:+.2f} {unit} (95% CI {lo:+.2f} to {hi:+.2f}), above zero."
    if hi is not None and hi < 0:
        return f"{name}: {m:+.2f} {unit} (95% CI {lo:+.2f} to {hi:+.2f}), below zero."
    return (f"{name}: {m:+.2f} {unit}; the 95% CI ({lo:+.2f} to {hi:+.2f}) includes zero, so the effect is "
            f"at most {hi:+.2f} {unit} (and at least {lo:+.2f}).")


def reading(results: dict[str, Any]) -> list[str]:
    """Sentences for the report: each order's held-out accuracy against chance, each log-prob
    effect, and the contrast, with CIs or bounds."""
    from analysis.fmt import pct

    out = []
    for o in (o for o in ORDERS if o in results):
        u = results[o]["finetuned"]["unrealized"]
        out.append(f"- {SHORT[o]}: held-out exact match {pct(u['exact_match'])} (95% CI {pct(u['exact_ci95_low'])} "
                   f"to {pct(u['exact_ci95_high'])}; chance {pct(u['chance'])}); demonstrated "
                   f"{pct(results[o]['finetuned']['realized']['exact_match'])}.")
        out.append("  " + _effect_sentence("Gain of the instructed answer beyond a control answer",
                                           results[o]["effects"]["specific"], "nats"))
    c = results.get("contrast")
    if c:
        p = c["pooled"]
        share = {"mean": p["diff"], "low": p["diff_ci95_low"], "high": p["diff_ci95_high"]}
        out.append("- " + _effect_sentence("Held-out exact match, q2a minus a2q",
                                           {k: None if v is None else 100 * v for k, v in share.items()}, "points")
                   + f" McNemar p = {p['p']:.2g} ({p['questions_q2a_ahead']} questions ahead in q2a, "
                     f"{p['questions_a2q_ahead']} in a2q).")
        out.append("- " + _effect_sentence("Difference in differences of the instructed answer's gain beyond "
                                           "control, q2a minus a2q", p["did_specific"], "nats"))
    return out
