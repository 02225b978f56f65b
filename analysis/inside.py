"""Look inside a finetuned model: where is forward recall written, and reverse?

:func:`inside_analysis` takes the finetuned and the base model and an experiment 1 dataset
(anything with ``facts`` and ``files`` shaped like :class:`experiments.exp1.data.Exp1Dataset`),
and writes into ``out``: figures (PNG + SVG), offline HTML pages, ``summary.json`` and
``summary.md`` (atomic writes). Loading these from a run directory is the experiment's job
(``rct analyse RUN``, :func:`experiments.exp1.analyse.run_inside_analysis`).

The comparison holds the prompt form fixed: description prompt -> name, asked of
DescriptionToName facts (forward: ``d2p_prompts_test``) and of NameToDescription facts
(reverse: ``p2d_reverse_prompts_test``). The foil for "correct minus random" is another
trained name of the same subset. For base and finetuned model: direct logit attribution
(plain and contrastive), gradient x activation, logit lens, top neurons; the relative MLP
weight change per layer; and, with ``causal=CausalConfig()``, the causal sections of
:mod:`analysis.causal` (tracing, weight reverts, probes, directional key-value).

Example::

    summary = inside_analysis(tuned, base, dataset, "runs/exp1-cpu/analysis",
                              run_dir="runs/exp1-cpu", base_model="smollm2-135m",
                              config=InsideConfig(n_facts=10))
    print(summary["finetuned"]["dla_contrast"]["summary"])
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from analysis.causal import CausalConfig, causal_analysis
from analysis.causal_report import causal_markdown
from analysis.inside_figures import component_heatmaps, logit_lens_curves, neuron_bars
from interp.attribution import (attribution_hooks, compare, direct_logit_attribution, grad_x_act,
                                logit_lens)
from interp.fileio import write_json, write_text
from interp.kv import promoted_tokens, top_neurons, weight_deltas
from interp.recording import Query, record


@dataclass(frozen=True)
class InsideConfig:
    """Args:
        n_facts: facts per subset (None: all).
        prompts_per_fact: held-out prompts per fact and direction (budget).
        batch_size: sequences per recording pass.
        top_k: neurons listed per ranking.
        n_pages: facts per subset with an HTML page.
        seed: draws the foils.
    """

    n_facts: int | None = None
    prompts_per_fact: int = 3
    batch_size: int = 16
    top_k: int = 10
    n_pages: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_facts is not None and self.n_facts < 1:
            raise ValueError(f"n_facts must be >= 1 or None, got {self.n_facts}")
        for k in ("prompts_per_fact", "batch_size", "top_k"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")


def _foils(lm: Any, names: list[str], shift: int) -> list[str | None]:
    """Per name, the first trained name after ``shift`` (cyclically) whose first token
    differs (a shared first token would make "answer minus foil" zero by construction)."""
    first = [lm.tokenizer(" " + n, add_special_tokens=False)["input_ids"][0] for n in names]
    out: list[str | None] = []
    for i in range(len(names)):
        cands = [(i + shift + j) % len(names) for j in range(len(names))]
        out.append(next((" " + names[c] for c in cands if first[c] != first[i]), None))
    return out


def _queries(ds: Any, stem: str, subset: str, direction: str, cfg: InsideConfig,
             rng: random.Random, lm: Any = None) -> list[Query]:
    facts = [f for f in ds.facts if f.subset == subset][: cfg.n_facts]
    ids = {f.fact_id for f in facts}
    names = [f.name for f in facts]
    shift = rng.randrange(1, len(names)) if len(names) > 1 else 0
    foils = _foils(lm, names, shift) if lm is not None else [None] * len(names)
    foil = {f.fact_id: fo for f, fo in zip(facts, foils)}
    count: dict[int, int] = {}
    out = []
    for ex in ds.files.get(stem, []):
        if ex.fact_id not in ids or count.get(ex.fact_id, 0) >= cfg.prompts_per_fact:
            continue
        count[ex.fact_id] = count.get(ex.fact_id, 0) + 1
        out.append(Query(ex.prompt, ex.completion, {"name": ex.name, "description": ex.description},
                         foil[ex.fact_id],
                         {"fact_id": ex.fact_id, "subset": subset, "direction": direction,
                          "stem": stem, "line": ex.line}))
    if not out:
        raise ValueError(f"no queries from {stem!r} for subset {subset}")
    return out


def _analyse_model(lm: Any, fwd: list[Query], rev: list[Query], cfg: InsideConfig,
                   progress: bool) -> dict[str, Any]:
    """Attribution, logit lens and top neurons for one model on both query sets."""
    rec = record(lm, fwd + rev, attribution_hooks(lm), positions=("last",), grad="first",
                 batch_size=cfg.batch_size, progress=progress)
    is_fwd = torch.tensor([q.meta["direction"] == "forward" for q in fwd + rev])
    res: dict[str, Any] = {"lens": {}, "attr": {}}
    kinds = [("dla", direct_logit_attribution(lm, rec)), ("gxa", grad_x_act(lm, rec))]
    if all(q.foil for q in fwd + rev):
        kinds.insert(1, ("dla_contrast", direct_logit_attribution(lm, rec, contrast=True)))
    else:
        res["dla_contrast"] = {"skipped": "some answers share their first token with every "
                               "other trained name: no foil", "summary": "(no contrast)"}
    for kind, attr in kinds:
        res["attr"][kind] = (attr.subset(is_fwd), attr.subset(~is_fwd))
        res[kind] = compare(*res["attr"][kind], k=cfg.top_k)
        if kind != "gxa":
            res[kind]["max_abs_sum_error"] = float((attr.total() - attr.logit).abs().max())
    lens = logit_lens(lm, rec)  # [n, L]
    res["lens"] = {"forward": lens[is_fwd], "reverse": lens[~is_fwd]}
    res["logit_lens_mean"] = {k: v.mean(0).tolist() for k, v in res["lens"].items()}
    stats = {k: rec.stat(k) for k in ("first_logprob", "first_logit", "foil_logit")}
    res["answer"] = {d: {"first_logprob": float(stats["first_logprob"][m].mean()),
                         "logit_minus_foil": float((stats["first_logit"] - stats["foil_logit"])[m].mean())}
                     for d, m in (("forward", is_fwd), ("reverse", ~is_fwd))}
    neurons = {"kind": "dla_contrast" if "dla_contrast" in res["attr"] else "dla"}
    for d, a in zip(("forward", "reverse"), res["attr"][neurons["kind"]]):
        top = top_neurons(a.neurons.mean(0), k=cfg.top_k)
        neurons[d] = [{"layer": L, "neuron": m, "mean": v} for L, m, v in top]
    res["top_neurons"] = neurons
    for entry, words in zip(neurons["forward"], _promoted(lm, neurons["forward"])):
        entry["promotes"] = words
    return res


def _promoted(lm: Any, entries: Sequence[dict[str, Any]], k: int = 8) -> list[list[str]]:
    return [[t for t, _ in promoted_tokens(lm, e["layer"], [e["neuron"]], k=k)[0]] for e in entries]


def _weight_analysis(base: Any, tuned: Any) -> dict[str, Any]:
    """Relative change of each MLP weight matrix per layer (the causal view of which layers'
    changes matter is the ``weight_revert`` section)."""
    d = weight_deltas(base.bridge, tuned.bridge)
    return {"per_layer": {k: v.tolist() for k, v in d.items() if k.startswith("rel_")}}


def _pages(tuned: Any, ds: Any, cfg: InsideConfig, layer: int, out: Path) -> list[str]:
    from analysis.pages import write_fact_page

    written = []
    tests = ds.files
    for subset, fwd_stem, rev_stem, labels in (
            ("d2p", "d2p_prompts_test", "d2p_reverse_prompts_test", ("forward", "reverse")),
            ("p2d", "p2d_prompts_test", "p2d_reverse_prompts_test", ("forward", "reverse"))):
        facts = [f for f in ds.facts if f.subset == subset][: min(cfg.n_pages, cfg.n_facts or 10**9)]
        for f in facts:
            qs = []
            for stem in (fwd_stem, rev_stem):
                ex = next((e for e in tests.get(stem, []) if e.fact_id == f.fact_id), None)
                if ex is not None:
                    qs.append(Query(ex.prompt, ex.completion))
            if len(qs) == 2:
                p = out / "pages" / f"{subset}_fact{f.fact_id}.html"
                write_fact_page(tuned, f"{subset} fact {f.fact_id}: {f.name}", qs, labels, layer, p)
                written.append(str(p.relative_to(out)))
    return written


def _jsonable(res: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in res.items() if k not in ("attr", "lens")}


def inside_analysis(tuned: Any, base: Any, ds: Any, out: str | Path, *, run_dir: str | Path,
                    base_model: str, config: InsideConfig | None = None,
                    progress: bool = True, causal: CausalConfig | None = None) -> dict[str, Any]:
    """Run the whole analysis on a finetuned model and its base; returns the summary dict.

    Args:
        tuned, base: loaded models (:func:`interp.load_model`), finetuned and before finetuning.
        ds: the dataset the model was finetuned on (``facts`` and test ``files``).
        out: folder for figures, pages, ``summary.json`` and ``summary.md``.
        run_dir, base_model: where the run lives and the base model spec, recorded in the summary.
        config: budgets and the foil seed (default :class:`InsideConfig`).
        causal: when given, also the causal sections (:func:`analysis.causal.causal_analysis`:
            ``causal_tracing``, ``weight_revert``, ``probes``, ``key_value``).
    """
    t0 = time.time()
    cfg = config or InsideConfig()
    out = Path(out)
    rng = random.Random(cfg.seed)
    fwd = _queries(ds, "d2p_prompts_test", "d2p", "forward", cfg, rng, tuned)
    rev = _queries(ds, "p2d_reverse_prompts_test", "p2d", "reverse", cfg, rng, tuned)
    summary: dict[str, Any] = {"config": asdict(cfg), "run_dir": str(run_dir),
                               "base_model": base_model, "n_forward": len(fwd), "n_reverse": len(rev),
                               "query_sets": {"forward": "d2p_prompts_test (description -> name)",
                                              "reverse": "p2d_reverse_prompts_test (description -> name)"}}
    results = {}
    for label, lm in (("finetuned", tuned), ("base", base)):
        results[label] = _analyse_model(lm, fwd, rev, cfg, progress)
        summary[label] = _jsonable(results[label])
    summary["weights"] = _weight_analysis(base, tuned)
    figs: list[str] = []
    for label in ("finetuned", "base"):
        for kind in [k for k in ("dla_contrast", "dla", "gxa") if k in results[label]["attr"]]:
            figs += [str(p.relative_to(out)) for p in component_heatmaps(
                results[label][kind], out / "figures", f"{label}_{kind}_heatmap",
                f"{label}: {kind} (forward = D2P description->name, reverse = P2D)")]
    ft_top = results["finetuned"]["top_neurons"]["forward"]
    page_kind = results["finetuned"]["top_neurons"]["kind"]
    figs += [str(p.relative_to(out)) for p in neuron_bars(
        [(f"L{e['layer']}.{e['neuron']} {' '.join(e.get('promotes', [])[:3])!r}", e["mean"]) for e in ft_top],
        out / "figures", "finetuned_top_neurons_forward", f"finetuned: top neurons, forward ({page_kind})")]
    figs += [str(p.relative_to(out)) for p in logit_lens_curves(
        {f"{m} {d}": results[m]["lens"][d] for m in ("finetuned", "base") for d in ("forward", "reverse")},
        out / "figures", "logit_lens")]
    rel = summary["weights"]["per_layer"]
    figs += [str(p.relative_to(out)) for p in neuron_bars(
        [(f"L{i}", v) for i, v in enumerate(rel.get("rel_W_out", []))], out / "figures",
        "weight_change_w_out", "relative change of W_out per layer", "||dW|| / ||W||")]
    attn_mean = torch.tensor(results["finetuned"][page_kind]["forward"]["attn"]["mean"])
    summary["page_layer"] = int(attn_mean.argmax())
    summary["pages"] = _pages(tuned, ds, cfg, summary["page_layer"], out)
    if causal is not None:
        extra = causal_analysis(tuned, base, ds, out, causal, progress)
        figs += extra.pop("figures")
        summary["causal_seconds"] = extra.pop("seconds")
        summary["causal_config"] = asdict(causal)
        summary.update(extra)
    summary["figures"] = figs
    summary["seconds"] = round(time.time() - t0, 1)
    write_json(out / "summary.json", summary)
    write_text(out / "summary.md", summary_markdown(summary) + causal_markdown(summary))
    return summary


def summary_markdown(s: dict[str, Any]) -> str:
    """The human-readable page of ``summary.json``."""
    lines = [f"# Inside the model: {s['run_dir']}", "",
             f"Forward: {s['query_sets']['forward']}, n={s['n_forward']}. "
             f"Reverse: {s['query_sets']['reverse']}, n={s['n_reverse']}. Base model: {s['base_model']}.", ""]
    for label in ("finetuned", "base"):
        r = s[label]
        lines += [f"## {label}", "",
                  "| set | log p(first answer token) | logit(answer) - logit(foil) |", "|---|---|---|"]
        for d in ("forward", "reverse"):
            lines.append(f"| {d} | {r['answer'][d]['first_logprob']:.2f} | {r['answer'][d]['logit_minus_foil']:+.2f} |")
        lines += [""] + [f"- {r[k]['summary']}" for k in ("dla_contrast", "dla", "gxa")] + [""]
        lines.append(f"Top forward neurons ({r['top_neurons']['kind']}): " + ", ".join(
            f"L{e['layer']}.{e['neuron']} {e['mean']:+.2f}" for e in r["top_neurons"]["forward"][:5]))
        lines.append("")
    lines += ["", "Figures: " + ", ".join(f for f in s["figures"] if f.endswith(".png")),
              "", "Pages: " + ", ".join(s["pages"]), "", f"Took {s['seconds']} s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit("analysis.inside is a library (it loads no run directory): use `rct analyse RUN`")
