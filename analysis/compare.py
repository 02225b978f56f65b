"""What does the cursed model lack? A cursed model against a cured one, causally.

Two finetunes of one base model on the same facts with the same seed, one without reversed
copies (*cursed*: the reverse query fails) and one with them (*cured*: it works; made by
``rct mitigations``). On the reverse query sets (and the trained ones as a reference; sets as
in :mod:`analysis.query_sets`), :func:`compare_models` runs three causal comparisons:

- ``patching`` (:mod:`interp.cross_patch`): the cured model's state at one site, layer window
  and position group put into the cursed model's run (``cured->cursed``: which state is
  enough to bring the answer), and the other way (``cursed->cured``: which is needed); the
  cosine between the two models' states at each site.
- ``grafting`` (:func:`interp.weights.localise` with the cured model as the "finetuned" one
  and the cursed model as its "base"): the cursed model given the cured model's attention or
  MLP weights at one layer (``graft``), the cured model given the cursed ones (``ungraft``),
  and the greedy cumulative curve with the layers needed for 50% / 90% of the reverse gain.
- ``knockout`` (:mod:`interp.knockout`): the last token's attention to the entity, to the
  other tokens and to itself cut in a window of 9 layers, in both models.
- ``probes``: the transfer probe (which fact? trained at the name's last token of the
  name -> description prompts, tested at the description's last token of the description ->
  name prompts; all test templates) in both models. The cured model is its positive control:
  there the description does lead to the name, so a probe that stays at chance there cannot
  support "the description does not carry the name" in the cursed model.
- ``direction`` (:mod:`analysis.direction`): logit attribution by layer, head and MLP, the MLPs'
  value at the entity and the key response of the forward fact's neurons to the reverse
  query's entity, forward next to reverse, in the base model (when given), the cursed and the
  cured one; the trained sets' second prompts are the key side's positive control.

Every effect is the whole answer's log-prob change in nats (first-token probabilities are
kept too), averaged over facts (one prompt per fact) with a t interval; each set's peak over
layers, sites and position groups is tested family-wise (max-T over all of them,
:func:`analysis.intervals.maxt_family`). A site "restores" the answer when its family-wise
p < 0.05; :func:`restoring_sites` lists them.

Example::

    summary = compare_models(cursed, cured, ds, "runs/mit-cpu/cells/entity__seed-0/compare",
                             CompareConfig(n_facts=4))
    summary["patching"]["cured->cursed"]["p2d_reverse"]["restoring"][:3]
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from analysis.intervals import crossed_t_interval, maxt_family
from analysis.query_sets import SETS, QuerySet, query_sets
from interp.cross_patch import CrossPatch, PatchConfig, check_same_shape, cross_patch, layer_list
from interp.knockout import Knockout, KnockoutConfig, attention_knockout
from interp.trace_sites import site_modules

if TYPE_CHECKING:
    from interp.models import LoadedModel

SECTIONS = ("patching", "grafting", "knockout", "probes", "direction")
REVERSE_SETS = ("p2d_reverse", "d2p_reverse")
DIRECTIONS = ("cured->cursed", "cursed->cured")


@dataclass(frozen=True)
class CompareConfig:
    """Args:
        n_facts: facts per query set (the first of each subset), one prompt each.
        sets: query sets (:data:`analysis.query_sets.SETS`); the reverse ones first.
        sections: which of :data:`SECTIONS` to run.
        patch, knockout: the patching and knockout settings (by default at every 3rd layer:
            windows of 5 (patching) and 9 (knockout) centred there still cover every layer, at a
            third of the cost; ``rct compare --layer-stride 1`` for every layer).
        batch_size: scoring batch in grafting.
        necessity_sets: the sets also patched the other way (``cursed->cured``, which state is
            needed); by default the reverse sets only: on the trained sets both models know the
            answer, so there is no cure to take away.
        graft_sets: the sets whose cured-minus-cursed gain is located by weight grafting; by
            default the reverse sets only (on the trained sets the gain is about zero, so no
            fraction of it can be located).
        probe_layer_stride: the transfer probe at every k-th layer (and the embeddings and the
            last layer).
        n_perm: sign flips of the family-wise tests.
        seed: seeds the sign flips.
    """

    n_facts: int = 20
    sets: tuple[str, ...] = ("p2d_reverse", "d2p_reverse", "d2p_forward", "p2d_forward")
    sections: tuple[str, ...] = SECTIONS
    patch: PatchConfig = field(default_factory=lambda: PatchConfig(layer_stride=3))
    knockout: KnockoutConfig = field(default_factory=lambda: KnockoutConfig(layer_stride=3))
    batch_size: int = 32
    necessity_sets: tuple[str, ...] = REVERSE_SETS
    graft_sets: tuple[str, ...] = REVERSE_SETS
    probe_layer_stride: int = 3
    n_perm: int = 5000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_facts < 2:
            raise ValueError(f"CompareConfig.n_facts must be >= 2 (intervals over facts), got {self.n_facts}")
        bad = [s for s in self.sets if s not in SETS]
        if bad or not self.sets:
            raise ValueError(f"CompareConfig.sets: unknown query set {bad[0] if bad else '(none)'}; "
                             f"expected some of {tuple(SETS)}")
        for key in ("necessity_sets", "graft_sets"):
            bad = [s for s in getattr(self, key) if s not in self.sets]
            if bad:
                raise ValueError(f"CompareConfig.{key}: {bad[0]!r} is not one of the compared sets {self.sets}")
        bad = [s for s in self.sections if s not in SECTIONS]
        if bad or not self.sections:
            raise ValueError(f"CompareConfig.sections: unknown section {bad[0] if bad else '(none)'}; "
                             f"expected some of {SECTIONS}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ci(values: Any) -> dict[str, float]:
    r = crossed_t_interval(np.asarray(values, dtype=float))
    return {k: r[k] for k in ("mean", "ci_low", "ci_high", "p")}


def _family(columns: dict[str, np.ndarray], n_perm: int, seed: int) -> dict[str, Any]:
    """Max-T over every column of every key (``[fact, layer]`` each), as one family."""
    keys = list(columns)
    widths = [columns[k].shape[1] for k in keys]
    stacked = np.concatenate([columns[k] for k in keys], axis=1)
    ok = np.isfinite(stacked).all(0)
    res = maxt_family(stacked[:, ok], n_perm=n_perm, seed=seed)
    full = {f: [None] * stacked.shape[1] for f in ("mean", "ci_low", "ci_high", "p_family", "sim_low", "sim_high")}
    for j, col in enumerate(np.flatnonzero(ok)):
        for f in full:
            full[f][col] = res[f][j]
    out, at = {}, 0
    for k, w in zip(keys, widths):
        out[k] = {f: full[f][at: at + w] for f in full}
        at += w
    return {"columns": out, "crit": res["crit"], "n_tests": int(ok.sum())}


def _rows(columns: dict[str, np.ndarray]) -> dict[str, list[list[float | None]]]:
    """Each column's ``[fact, layer]`` values, rounded to 1e-4 (NaN as None): kept in the
    summary so that :mod:`analysis.compare_pool` can pool seeds fact by fact."""
    return {k: [[None if not np.isfinite(v) else round(float(v), 4) for v in row] for row in np.asarray(a)]
            for k, a in columns.items()}


def _restoring(fam: dict[str, Any], layers: list[int], gap: float, label: str, sign: int = 1
               ) -> list[dict[str, Any]]:
    """Columns whose effect has the sign ``sign`` at family-wise p < 0.05, largest first."""
    rows = []
    for key, col in fam["columns"].items():
        for j, L in enumerate(layers):
            p = col["p_family"][j]
            if p is not None and p < 0.05 and sign * col["mean"][j] > 0:
                rows.append({"site": key, "layer": L, "effect": col["mean"][j], "ci_low": col["ci_low"][j],
                             "ci_high": col["ci_high"][j], "p_family": p,
                             "fraction_of_gap": col["mean"][j] / gap if sign * gap > 0 else None, "what": label})
    return sorted(rows, key=lambda r: -sign * r["effect"])


def restoring_sites(summary: dict[str, Any], set_name: str, direction: str = "cured->cursed"
                    ) -> list[dict[str, Any]]:
    """The patched sites (``site/group``) and layers that move ``set_name``'s answer towards the
    source model at family-wise p < 0.05 (up for ``cured->cursed``, down for ``cursed->cured``),
    strongest first, as stored in a :func:`compare_models` summary."""
    return summary["patching"][direction][set_name]["restoring"]


def patching_summary(res: CrossPatch, n_perm: int, seed: int, sign: int = 1) -> dict[str, Any]:
    """Means, t intervals and family-wise tests of one set's patching; ``sign`` -1 when the
    source is the model that fails (the interesting effects are drops)."""
    gap = (res.lp_source - res.lp_target).numpy()
    cols, pcols, first = {}, {}, {}
    for s in res.config.sites:
        eff = res.effect(s).numpy()  # [n, layer, group]
        for g, gname in enumerate(res.groups):
            cols[f"{s}/{gname}"] = eff[:, :, g]
            first[f"{s}/{gname}"] = (res.p_first[s][:, :, g] - res.p_target[:, None]).numpy().mean(0).tolist()
            pcols[f"{s}/{gname}"] = np.nanmean(res.cosine[s][:, :, g].numpy(), 0).tolist()
    fam = _family(cols, n_perm, seed)
    g_mean = float(gap.mean())
    return {"n": len(gap), "layers": res.layers, "groups": res.groups, "sites": list(res.config.sites),
            "lp_target": _ci(res.lp_target.numpy()), "lp_source": _ci(res.lp_source.numpy()),
            "p_target": float(res.p_target.mean()), "p_source": float(res.p_source.mean()),
            "gap": _ci(gap), "effect": fam["columns"], "first_token_prob_change": first,
            "cosine": pcols, "crit": fam["crit"], "n_tests": fam["n_tests"],
            "sign": sign, "restoring": _restoring(fam, res.layers, g_mean, "patching", sign),
            "per_fact": {"gap": [round(float(v), 4) for v in gap], "effect": _rows(cols)}}


def knockout_summary(res: Knockout, n_perm: int, seed: int) -> dict[str, Any]:
    cols = {e: res.effect(e).numpy() for e in res.config.edges}
    fam = _family(cols, n_perm, seed)
    return {"n": len(res.lp_clean), "layers": res.layers, "window": res.config.window,
            "lp_clean": _ci(res.lp_clean.numpy()), "p_clean": float(res.p_clean.mean()),
            "effect": fam["columns"], "crit": fam["crit"], "n_tests": fam["n_tests"],
            "per_fact": {"effect": _rows(cols)},
            "first_token_prob_change": {e: (res.p_first[e] - res.p_clean[:, None]).numpy().mean(0).tolist()
                                        for e in res.config.edges}}


def grafting_summary(loc: Any, n_perm: int, seed: int) -> dict[str, Any]:
    out = {}
    for name, s in loc.sets.items():
        lt, lb = s.lp_tuned.numpy(), s.lp_base.numpy()  # cured, cursed
        graft = {k: s.apply.numpy()[:, j].T - lb[:, None] for j, k in enumerate(loc.kinds)}
        graft["layer"] = s.apply_layer.numpy().T - lb[:, None]
        ungraft = {k: s.revert.numpy()[:, j].T - lt[:, None] for j, k in enumerate(loc.kinds)}
        ungraft["layer"] = s.revert_layer.numpy().T - lt[:, None]
        fam_g, fam_u = _family(graft, n_perm, seed), _family(ungraft, n_perm, seed)
        gain = lt - lb
        layers = list(range(loc.n_layers))
        frac = s.recovered()
        out[name] = {"n": len(gain), "lp_cured": _ci(lt), "lp_cursed": _ci(lb), "gain": _ci(gain),
                     "graft": fam_g["columns"], "ungraft": fam_u["columns"],
                     "graft_restoring": _restoring(fam_g, layers, float(gain.mean()), "graft"),
                     "ungraft_breaking": _restoring(fam_u, layers, -float(gain.mean()), "ungraft", -1),
                     "cumulative": {"order": list(s.order),
                                    "fraction": None if frac is None else frac.tolist()},
                     "k50": s.k50, "k90": s.k90,
                     "per_fact": {"gain": [round(float(v), 4) for v in gain], "graft": _rows(graft),
                                  "ungraft": _rows(ungraft)}}
    return out


def _pairs(qs: QuerySet) -> list[tuple[str, str]]:
    return [(q.prompt, q.target) for q in qs.queries]


def compare_models(cursed: LoadedModel, cured: LoadedModel, ds: Any, out: str | Path | None = None,
                   config: CompareConfig | None = None, progress: bool = True,
                   base: LoadedModel | None = None) -> dict[str, Any]:
    """Run the sections of ``config`` on the two models (same base, facts and seed: the caller
    checks, :func:`experiments.exp1.compare.check_runs` for run directories); writes the report
    to ``out`` when given (:mod:`analysis.compare_report`) and returns the summary dict.
    ``base``: the base model both were finetuned from, read by the ``direction`` section only."""
    from interp.weights import localise

    cfg = config or CompareConfig()
    check_same_shape(cursed, cured, "rct compare")
    n_layers = len(site_modules(cursed.hf)["resid"])
    for c in (cfg.patch, cfg.knockout):
        layer_list(c.layers, 1, n_layers)  # a layer out of range fails here, before any work
    sets = query_sets(ds, n_facts=cfg.n_facts, prompts_per_fact=1, sets=cfg.sets)
    for name, qs in sets.items():
        if len(qs.queries) < 2:
            raise ValueError(f"query set {name}: {len(qs.queries)} fact(s); intervals need at least 2")
    summary: dict[str, Any] = {"config": cfg.to_dict(), "sets": {n: {"n_facts": len(q.queries),
                               "entity": q.entity, "direction": q.direction,
                               "fact_ids": [str(x.meta.get("fact_id", i)) for i, x in enumerate(q.queries)]}
                               for n, q in sets.items()},
                               "timing_s": {}}
    models = {"cursed": cursed, "cured": cured}
    if "patching" in cfg.sections:
        t0 = time.perf_counter()
        summary["patching"] = {}
        for d in DIRECTIONS:
            tgt, src, sign = (cursed, cured, 1) if d == "cured->cursed" else (cured, cursed, -1)
            summary["patching"][d] = {
                name: patching_summary(cross_patch(tgt, src, qs.queries, qs.entity, cfg.patch, progress),
                                       cfg.n_perm, cfg.seed, sign) for name, qs in sets.items()
                if sign == 1 or name in cfg.necessity_sets}
        summary["timing_s"]["patching"] = time.perf_counter() - t0
    if "grafting" in cfg.sections:
        t0 = time.perf_counter()
        loc = localise(cured, cursed, {n: _pairs(q) for n, q in sets.items() if n in cfg.graft_sets},
                       batch_size=cfg.batch_size,
                       progress=progress)
        summary["grafting"] = grafting_summary(loc, cfg.n_perm, cfg.seed)
        summary["timing_s"]["grafting"] = time.perf_counter() - t0
    if "knockout" in cfg.sections:
        t0 = time.perf_counter()
        summary["knockout"] = {m: {name: knockout_summary(attention_knockout(lm, qs.queries, qs.entity,
                                                                             cfg.knockout, progress),
                                                          cfg.n_perm, cfg.seed)
                                   for name, qs in sets.items()} for m, lm in models.items()}
        summary["timing_s"]["knockout"] = time.perf_counter() - t0
    if "probes" in cfg.sections:
        t0 = time.perf_counter()
        summary["probes"] = probe_summary(models, ds, cfg, progress)
        summary["timing_s"]["probes"] = time.perf_counter() - t0
    if "direction" in cfg.sections:
        from analysis.direction import DirectionConfig, direction_comparison

        t0 = time.perf_counter()
        dcfg = DirectionConfig(n_facts=max(cfg.n_facts, 3), n_perm=cfg.n_perm, seed=cfg.seed)
        summary["direction"] = direction_comparison({**({"base": base} if base is not None else {}), **models},
                                                    ds, dcfg, progress)
        summary["timing_s"]["direction"] = time.perf_counter() - t0
    if out is not None:
        from analysis.compare_report import write_report
        write_report(summary, Path(out))
    return summary


def probe_summary(models: dict[str, LoadedModel], ds: Any, cfg: CompareConfig, progress: bool = True
                  ) -> dict[str, Any]:
    """The transfer probe per subset in each model: accuracy per layer over facts (t interval),
    family-wise p of "above chance" over the layers (max-T), and whether it is above chance at
    any layer (``detects``). ``control_passes``: the cured model's probe detects the fact on the
    subset whose reverse query the cure fixed (each subset here)."""
    from interp.probe import probe_features, transfer_on_features

    every = query_sets(ds, cfg.n_facts, prompts_per_fact=None,
                       sets=("p2d_forward", "p2d_reverse", "d2p_reverse", "d2p_forward"))
    out: dict[str, Any] = {}
    for label, lm in models.items():
        n_layers = len(site_modules(lm.hf)["resid"])
        layers = sorted({-1, *range(0, n_layers, cfg.probe_layer_stride), n_layers - 1})
        out[label] = {}
        for subset, name_set, desc_set in (("p2d", "p2d_forward", "p2d_reverse"),
                                           ("d2p", "d2p_reverse", "d2p_forward")):
            tr, te = every[name_set].queries, every[desc_set].queries
            f_tr = probe_features(lm, tr, "entity:name:last", layers, progress=progress)
            f_te = probe_features(lm, te, "entity:description:last", layers, progress=progress)
            y_tr, y_te = [q.meta["fact_id"] for q in tr], [q.meta["fact_id"] for q in te]
            r = transfer_on_features(f_tr, y_tr, f_te, y_te, templates_test=[q.meta["template"] for q in te],
                                     control=False, seed=cfg.seed)
            facts = sorted(set(r.facts), key=str)
            per_fact = np.array([[np.mean([c for c, f in zip(r.correct[j], r.facts) if f == fact])
                                  for j in range(len(layers))] for fact in facts])  # [fact, layer]
            fam = maxt_family(per_fact - r.chance, n_perm=cfg.n_perm, seed=cfg.seed)
            hits = [j for j, (m, p) in enumerate(zip(fam["mean"], fam["p_family"])) if m > 0 and p < 0.05]
            out[label][subset] = {"layers": layers, "chance": r.chance, "n_facts": len(facts),
                                  "accuracy": [m + r.chance for m in fam["mean"]],
                                  "ci_low": [x + r.chance for x in fam["ci_low"]],
                                  "ci_high": [x + r.chance for x in fam["ci_high"]],
                                  "p_family": fam["p_family"], "detects": bool(hits),
                                  "layers_above_chance": [layers[j] for j in hits]}
    if "cured" in out:
        out["control_passes"] = {sub: out["cured"][sub]["detects"] for sub in out["cured"]}
    return out
