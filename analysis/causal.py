"""The causal analysis of a finetuned model against its base, in both directions.

Four sections, each on the four query sets of :mod:`analysis.query_sets` (trained and
reverse direction, for both prompt forms), each mean with a 95% t interval over facts:

- ``causal_tracing`` (:mod:`interp.trace`): noise on the prompt's entity, clean states
  restored per layer at the entity's last token, the first token after it and the last
  token, for the residual stream, MLP and attention outputs; plus one full layer x token
  trace per set (figures and an offline page).
- ``weight_revert`` (:mod:`interp.weights`): each layer's weight change reverted in the
  finetuned model, or applied alone to the base model; how many layers recover 50% and 90%
  of the finetuning gain.
- ``probes`` (:mod:`interp.probe`): logistic probes per layer, trained on some templates and
  tested on unseen ones: which fact is this, at the description's last token and at the
  name's last token; and a transfer probe trained at the name and tested at the description.
- ``key_value`` (:mod:`analysis.storage`): MLP key change at the entity's last token against
  untrained names; neurons ranked by activation x gradient for the fact's own answer;
  attribution at every prompt position.
- ``direction`` (:mod:`analysis.direction`): forward next to reverse in the base and the
  finetuned model: logit attribution (answer minus foil) by layer, head and MLP, the MLPs'
  value at the entity, and whether the forward fact's neurons respond to the reverse
  query's entity (with its positive control).

Example::

    summary = causal_analysis(tuned, base, ds, "runs/exp1-cpu/analysis",
                              CausalConfig(n_facts_trace=4, n_facts=8))
    summary["causal_tracing"]["finetuned"]["d2p_forward"]["effect"]["mlp"]["last entity"]
"""

from __future__ import annotations

import random
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from analysis.query_sets import SETS, QuerySet, query_sets, untrained_name_queries
from analysis.intervals import maxt_family, t_mean_ci
from analysis.storage import key_value, per_fact, position_attribution, record_storage
from analysis.trace_figures import category_heatmaps, effect_curves, token_heatmaps, trace_page
from interp.trace import CATEGORIES, TraceConfig, causal_trace

if TYPE_CHECKING:
    from interp.models import LoadedModel

KEY_COLUMNS = ("last entity", "first after", "last")


@dataclass(frozen=True)
class CausalConfig:
    """Args:
        n_facts_trace: facts per query set that are traced.
        trace_templates: prompts (templates) traced per fact; each fact's effects are averaged
            over its templates before the mean and interval over facts (Meng et al. trace
            several prompts per fact).
        min_clean_p: a model's query set is traced only when the mean clean probability of its
            answers' first tokens (over facts) reaches this: below it no restoration can rise
            far enough to be seen (a reverse set, or the base model on fictitious facts), and the
            entry says so instead. ``rct compare`` is the tool for those sets. 0 traces all.
        trace: the tracing settings for those facts (key positions by default).
        example_trace: the settings of the one full layer x token trace per set.
        n_facts: facts per set for probes and key-value (None: all; chance for a probe is
            ``1 / n_facts``).
        n_facts_weights: facts per set for weight reverts (each variant rescores them all).
        probe_layer_stride: probe every k-th layer (plus the embeddings and the last layer).
        probe_control: also fit each probe on shuffled labels (doubles the probing time; the
            control is tested to sit at chance in ``tests/test_probe.py``).
        prompts_per_fact: prompts per fact for weight reverts and key-value.
        sections: which sections to run.
        batch_size: sequences per recording pass.
        n_boot, seed: the bootstrap of the weight-revert summary; ``seed`` also picks the example
            trace's fact and seeds the family-wise sign flips.
    """

    n_facts_trace: int = 20
    trace_templates: int = 1
    min_clean_p: float = 0.05
    trace: TraceConfig = field(default_factory=lambda: TraceConfig(
        positions="key", n_noise=2, window=5, layer_stride=2))
    example_trace: TraceConfig = field(default_factory=lambda: TraceConfig(
        positions="all", n_noise=2, window=5, layer_stride=4))
    n_facts: int | None = 20
    n_facts_weights: int | None = 5
    prompts_per_fact: int = 1
    probe_layer_stride: int = 3
    probe_control: bool = False
    sections: tuple[str, ...] = ("causal_tracing", "weight_revert", "probes", "key_value", "direction")
    batch_size: int = 16
    n_boot: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        known = ("causal_tracing", "weight_revert", "probes", "key_value", "direction")
        bad = [s for s in self.sections if s not in known]
        if bad:
            raise ValueError(f"CausalConfig.sections: unknown {bad}; known: {known}")
        if self.n_facts_trace < 1 or (self.n_facts is not None and self.n_facts < 1):
            raise ValueError("CausalConfig: n_facts_trace and n_facts must be >= 1")
        if not 0 <= self.min_clean_p < 1:
            raise ValueError(f"CausalConfig.min_clean_p must be in [0, 1), got {self.min_clean_p}")
        if self.trace_templates < 1:
            raise ValueError(f"CausalConfig.trace_templates must be >= 1, got {self.trace_templates}")


def _ci(values: Any, cfg: CausalConfig) -> dict[str, Any]:
    """Mean over facts with a 95% t interval (a percentile bootstrap undercovers at 5-20 facts)."""
    return t_mean_ci(values)


def _peak(arr: np.ndarray, ci: dict[str, Any], layers: list[int], cfg: CausalConfig) -> dict[str, Any] | None:
    """The layer of the largest mean effect, with its family-wise p over the layers (max-T)."""
    m = np.array([np.nan if v is None else v for v in ci["mean"]])
    if not np.isfinite(m).any():
        return None
    j = int(np.nanargmax(m))
    out = {"layer": layers[j], "mean": ci["mean"][j], "low": ci["low"][j], "high": ci["high"][j],
           "p_family": None}
    ok = np.isfinite(arr).all(0)
    if ok[j] and arr.shape[0] >= 2:
        fam = maxt_family(arr[:, ok], n_perm=2000, seed=cfg.seed)
        out["p_family"] = fam["p_family"][int(np.flatnonzero(ok).tolist().index(j))]
    return out


def tracing_section(models: dict[str, LoadedModel], sets: dict[str, QuerySet], cfg: CausalConfig,
                    out: Path, progress: bool = True) -> tuple[dict[str, Any], list[Path]]:
    """Causal tracing of every set on every model whose clean answer probability reaches
    ``cfg.min_clean_p`` (:func:`clean_first_token_p`); summary and figures."""
    res: dict[str, Any] = {"config": asdict(cfg.trace), "example_config": asdict(cfg.example_trace),
                           "n_facts": cfg.n_facts_trace, "templates_per_fact": cfg.trace_templates,
                           "min_clean_p": cfg.min_clean_p}
    figs: list[Path] = []
    examples: list[tuple[str, Path]] = []
    for label, lm in models.items():
        res[label] = {}
        means: dict[str, dict[str, np.ndarray]] = {}
        curves: dict[str, dict[str, dict[str, Any]]] = {c: {} for c in ("last entity", "last")}
        for name, qs in sets.items():
            facts = [q.meta["fact_id"] for q in qs.queries]
            p0 = _ci(per_fact(clean_first_token_p(lm, qs, cfg.batch_size), facts), cfg)
            if p0["mean"] < cfg.min_clean_p:
                res[label][name] = {"skipped": f"clean first-token probability {p0['mean']:.3g} < "
                                               f"{cfg.min_clean_p}: too low to trace",
                                    "p_clean": p0, "n": len(set(facts)), "entity": qs.entity,
                                    "direction": qs.direction}
                continue
            tr = causal_trace(lm, qs.queries, qs.entity, cfg.trace, progress)
            cat = {s: per_fact(tr.by_category(s).numpy(), facts) for s in tr.prob}  # [facts, L, categories]
            cat_answer = {s: per_fact(tr.by_category(s, answer=True).numpy(), facts) for s in tr.prob}
            entry: dict[str, Any] = {
                "layers": tr.layers, "n": len(set(facts)), "n_prompts": len(facts), "entity": qs.entity,
                "direction": qs.direction, "noise_std": tr.noise_std,
                "p_clean": _ci(per_fact(tr.p_clean.numpy(), facts), cfg),
                "p_corrupt": _ci(per_fact(tr.p_corrupt.numpy(), facts), cfg),
                "p_clean_answer": _ci(per_fact(tr.p_clean_answer.numpy(), facts), cfg),
                "p_corrupt_answer": _ci(per_fact(tr.p_corrupt_answer.numpy(), facts), cfg),
                "effect": {}, "peak": {},
                "effect_answer": {s: {col: _ci(arr[:, :, CATEGORIES.index(col)], cfg) for col in KEY_COLUMNS}
                                  for s, arr in cat_answer.items()}}
            for s, arr in cat.items():
                entry["effect"][s], entry["peak"][s] = {}, {}
                for col in KEY_COLUMNS:
                    ci = _ci(arr[:, :, CATEGORIES.index(col)], cfg)
                    entry["effect"][s][col] = ci
                    peak = _peak(arr[:, :, CATEGORIES.index(col)], ci, tr.layers, cfg)
                    if peak is not None:
                        entry["peak"][s][col] = peak
                    curves.setdefault(col, {}).setdefault(name, {})[s] = ci
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
                means[name] = {s: np.nanmean(arr, 0) for s, arr in cat.items()}
            res[label][name] = entry
            if label == "finetuned" or len(models) == 1:
                q = qs.queries[random.Random(cfg.seed).randrange(len(qs.queries))]  # a seeded random traced prompt
                ex = causal_trace(lm, [q], qs.entity, cfg.example_trace, progress=False)
                stem = f"trace_{label}_{name}_example"
                paths = token_heatmaps(ex, 0, out / "figures", stem,
                                       f"{label}, {name} ({qs.direction}): {q.prompt!r} "
                                       f"-> {q.target.split()[0]!r}")
                figs += paths
                examples.append((f"{label}, {name}: one query, every token", paths[1]))
        traced = [e for e in res[label].values() if "skipped" not in e]
        if not traced:
            continue
        layers = traced[0]["layers"]
        p = category_heatmaps(means, layers, out / "figures", f"trace_{label}_categories",
                              f"{label}: mean indirect effect by layer and position (n={cfg.n_facts_trace} facts per set)")
        figs += p
        examples.insert(0, (f"{label}: mean indirect effect by position category", p[1]))
        for col, per in curves.items():
            if per:
                p = effect_curves(per, layers, out / "figures", f"trace_{label}_{col.replace(' ', '_')}",
                                  f"{label}: indirect effect at the {col} token (95% CI over facts)")
                figs += p
                examples.insert(1, (f"{label}: indirect effect at the {col} token", p[1]))
    page = trace_page(out / "pages" / "causal_tracing.html", "Causal tracing", examples,
                      "Noise on the prompt's entity; clean states restored one layer (or a window "
                      "of layers) at a time. Colours: restored probability of the answer's first token.")
    res["page"] = str(page.relative_to(out))
    return res, figs


def clean_first_token_p(lm: LoadedModel, qs: QuerySet, batch_size: int = 16) -> np.ndarray:
    """The probability of each query's answer's first token after its prompt (no noise)."""
    from interp.scoring import score_completions

    scores = score_completions(lm, [(q.prompt, q.target) for q in qs.queries], batch_size=batch_size)
    return np.exp(np.array([s.token_logprobs[0] for s in scores]))


def foil_triples(lm: LoadedModel, qs: QuerySet) -> list[tuple[str, str, str]]:
    """``(prompt, answer, foil)`` per query, cut where the two first differ: both end at the
    first token where the answer and another fact's answer part (their shared tokens before
    it, if any, are kept in both). The foil is the answer of the next fact in the set
    (cyclically) whose prompt ends in the same word (the same moved article). The metric
    ``log p(answer) - log p(foil)`` is then the log-odds of the fact's own token over another
    trained answer's: it keeps what is specific to the fact and removes the lift finetuning
    gives every trained answer alike."""
    from interp.tokens import encode_completion

    qs_ = qs.queries
    ids = [encode_completion(lm, q.target) for q in qs_]
    out = []
    for i, q in enumerate(qs_):
        last = q.prompt.rsplit(" ", 1)[-1]
        j = next((j for k in range(1, len(qs_)) for j in [(i + k) % len(qs_)]
                  if ids[j] != ids[i] and qs_[j].prompt.rsplit(" ", 1)[-1] == last), None)
        if j is None:
            raise ValueError(f"query set {qs.name}: no foil for {q.prompt!r} (one fact only?)")
        a, f = ids[i], ids[j]
        d = next((k for k in range(min(len(a), len(f))) if a[k] != f[k]), None)
        if d is None:  # one answer is a prefix of the other
            raise ValueError(f"query set {qs.name}: answers {q.target!r} and {qs_[j].target!r} do not part")
        texts = [lm.tokenizer.decode(x) for x in (a[: d + 1], a[:d] + [f[d]])]
        if [encode_completion(lm, t) for t in texts] != [a[: d + 1], a[:d] + [f[d]]]:
            raise ValueError(f"query set {qs.name}: {texts!r} do not tokenise back to their tokens")
        out.append((q.prompt, texts[0], texts[1]))
    return out


def weights_section(tuned: LoadedModel, base: LoadedModel, sets: dict[str, QuerySet],
                    cfg: CausalConfig, out: Path, progress: bool = True) -> tuple[dict[str, Any], list[Path]]:
    from analysis.weights_figures import localisation_curves
    from interp.weights import localisation_summary, localise

    pairs = {n: foil_triples(tuned, qs) for n, qs in sets.items()}
    facts = {n: [q.meta["fact_id"] for q in qs.queries] for n, qs in sets.items()}
    loc = localise(tuned, base, pairs, batch_size=max(cfg.batch_size, 32), progress=progress)
    summary = localisation_summary(loc, facts, n_boot=cfg.n_boot, seed=cfg.seed)
    figs = localisation_curves(summary, out / "figures", "weight_revert")
    return summary, figs


def probes_section(models: dict[str, LoadedModel], ds: Any, cfg: CausalConfig, out: Path,
                   progress: bool = True) -> tuple[dict[str, Any], list[Path]]:
    """Per model: a leave-template-out probe per query set at its entity's last token, and a
    transfer probe per subset (trained at the name, tested at the description). Each set's
    residual stream is recorded once and serves both."""
    from analysis.probe_figures import probe_curves
    from interp.probe import probe_features, probes_on_features, transfer_on_features

    every = query_sets(ds, cfg.n_facts, prompts_per_fact=None)
    res: dict[str, Any] = {"layers": None, "control": cfg.probe_control}
    curves: dict[str, dict[str, Any]] = {"description": {}, "name": {}, "transfer": {}}
    for label, lm in models.items():
        n_layers = lm.bridge.cfg.n_layers
        layers = sorted({-1, *range(0, n_layers, cfg.probe_layer_stride), n_layers - 1})
        res["layers"], res[label] = layers, {}
        feats, meta = {}, {}
        for name, qs in every.items():
            where = f"entity:{qs.entity}:last"
            feats[name] = probe_features(lm, qs.queries, where, layers, batch_size=cfg.batch_size,
                                         progress=progress)
            meta[name] = ([q.meta["fact_id"] for q in qs.queries], [q.meta["template"] for q in qs.queries])
            y, templates = meta[name]
            r = _slim(probes_on_features(feats[name], y, templates, y, position=where,
                                         control=cfg.probe_control, seed=cfg.seed).to_dict())
            res[label][f"{name}@{qs.entity}"] = r
            curves[qs.entity][f"{label} {name}"] = r
        for subset, name_set, desc_set in (("d2p", "d2p_reverse", "d2p_forward"),
                                           ("p2d", "p2d_forward", "p2d_reverse")):
            (y_tr, _), (y_te, t_te) = meta[name_set], meta[desc_set]
            r = _slim(transfer_on_features(feats[name_set], y_tr, feats[desc_set], y_te, y_te,
                                           templates_test=t_te, control=cfg.probe_control, seed=cfg.seed,
                                           position="entity:name:last -> entity:description:last").to_dict())
            res[label][f"transfer_{subset}_name_to_description"] = r
            curves["transfer"][f"{label} {subset}"] = r
    figs: list[Path] = []
    for kind, c in curves.items():
        if c:
            figs += probe_curves(c, out / "figures", f"probe_{kind}",
                                 {"description": "Which fact? Probe at the description's last token",
                                  "name": "Which fact? Probe at the name's last token",
                                  "transfer": "Trained at the name, tested at the description"}[kind])
    return res, figs


def _slim(r: dict[str, Any]) -> dict[str, Any]:
    """A probe result without its per-example lists (kept out of summary.json)."""
    return {k: v for k, v in r.items() if k not in ("correct", "facts")}


def key_value_section(tuned: LoadedModel, base: LoadedModel, ds: Any, sets: dict[str, QuerySet],
                      cfg: CausalConfig) -> dict[str, Any]:
    res: dict[str, Any] = {"key_value": {}, "positions": {}}
    for name, qs in sets.items():
        baseline = untrained_name_queries(ds, qs) if qs.entity == "name" else None
        recs = (record_storage(tuned, qs, cfg.batch_size), record_storage(base, qs, cfg.batch_size))
        res["key_value"][name] = key_value(tuned, base, qs, baseline, batch_size=cfg.batch_size,
                                           n_boot=cfg.n_boot, seed=cfg.seed, recs=recs)
        res["positions"][name] = {label: position_attribution(lm, qs, cfg.batch_size, cfg.n_boot,
                                                              cfg.seed, rec=rec)
                                  for (label, lm), rec in zip((("finetuned", tuned), ("base", base)), recs)}
    return res


def causal_analysis(tuned: LoadedModel, base: LoadedModel, ds: Any, out: str | Path,
                    config: CausalConfig | None = None, progress: bool = True) -> dict[str, Any]:
    """Run the sections of ``config`` and return ``{section: summary, "figures": [...],
    "seconds": {section: s}}`` (paths relative to ``out``)."""
    cfg = config or CausalConfig()
    out = Path(out)
    sets = query_sets(ds, cfg.n_facts, cfg.prompts_per_fact)
    models = {"finetuned": tuned, "base": base}
    res: dict[str, Any] = {"causal_query_sets": {n: {"file": SETS[n][0], "entity": qs.entity,
                                              "direction": qs.direction, "n_queries": len(qs.queries)}
                                          for n, qs in sets.items()},
                           "seconds": {}}
    figs: list[Path] = []
    for section in cfg.sections:
        t0 = time.time()
        if section == "causal_tracing":
            trace_sets = query_sets(ds, cfg.n_facts_trace, cfg.trace_templates)
            res[section], f = tracing_section(models, trace_sets, cfg, out, progress)
            figs += f
        elif section == "weight_revert":
            w_sets = query_sets(ds, cfg.n_facts_weights, cfg.prompts_per_fact)
            res[section], f = weights_section(tuned, base, w_sets, cfg, out, progress)
            figs += f
        elif section == "direction":
            from analysis.direction import DirectionConfig, direction_comparison, plot_direction

            dcfg = DirectionConfig(n_facts=max(cfg.n_facts or 20, 3), batch_size=cfg.batch_size, seed=cfg.seed)
            res[section] = direction_comparison({"base": base, "finetuned": tuned}, ds, dcfg, progress)
            figs += plot_direction(res[section], out / "figures")
        elif section == "probes":
            res[section], f = probes_section(models, ds, cfg, out, progress)
            figs += f
        else:
            res[section] = key_value_section(tuned, base, ds, sets, cfg)
        res["seconds"][section] = round(time.time() - t0, 1)
    res["figures"] = [str(p.relative_to(out)) for p in figs]
    return res
