"""Forward against reverse, by direction: where each model writes the answer and keys the fact.

For the four query sets of :mod:`analysis.query_sets` (trained and reverse, both prompt forms)
in each model given (the base model, a cursed finetune and, when given, a cured one),
:func:`direction_comparison` measures, per fact:

- **Logit attribution** (:func:`interp.attribution.direct_logit_attribution`,
  ``contrast=True``): each layer's attention and MLP output and each head, at the last prompt
  token, dotted with the unembedding of the fact's own first answer token minus a *foil*'s
  (another fact's answer in the same set). The contrast removes what finetuning adds to every
  trained answer alike; what remains is specific to the fact.
- **MLP value side**: the same contrast for each layer's MLP output written at the entity's
  last token (through the final norm's scale at that token): what the MLPs write there about
  this fact's answer. It reaches the answer only through attention.
- **MLP key side**: do the neurons that carry the forward fact respond to the reverse query's
  entity? Per fact, the ``top_k`` neurons with the largest activation x gradient (of the first
  answer token's log-prob) at the entity's last token of its first trained-direction prompt.
  Their mean activation at the entity's last token of a test prompt is turned into a z-score
  against the same neurons on the other facts' test prompts: a fact-specific response. Test
  prompts: the fact's *reverse* query (the question) and its *second* trained-direction prompt
  (the positive control: the same entity in another sentence, where a key that the instrument
  can see must show; ``control_passes``).

Every mean is over facts (a fact's prompts averaged first) with a 95% t interval. Each set's
layer profile (attention and MLP at the last token, MLP at the entity) is tested family-wise
(max-T over every layer of the three, :func:`analysis.intervals.maxt_family`).

Example::

    res = direction_comparison({"base": base, "finetuned": tuned}, ds, DirectionConfig(n_facts=10))
    res["models"]["finetuned"]["p2d_reverse"]["totals"]["mlp_last"]   # mean, ci_low, ci_high
    res["models"]["finetuned"]["p2d_reverse"]["key"]["reverse"]       # z of the forward neurons
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from analysis.intervals import maxt_family, t_mean_ci
from analysis.query_sets import SETS, QuerySet, query_sets
from analysis.storage import _last_entity_rows, per_fact
from interp.attribution import attribution_hooks, direct_logit_attribution
from interp.hooks import hook_name
from interp.kv import unembed_directions
from interp.recording import Recording, record
from interp.tokens import encode_completion

if TYPE_CHECKING:
    from interp.models import LoadedModel

# (trained-direction set, reverse set) of the same facts: the forward neurons of the first
# are looked for at the entity of the second.
PAIRS = (("p2d_forward", "p2d_reverse"), ("d2p_forward", "d2p_reverse"))
PROFILES = ("attn_last", "mlp_last", "mlp_entity")


@dataclass(frozen=True)
class DirectionConfig:
    """Args:
        n_facts: facts per query set (the first of each subset).
        top_k: neurons per fact on the key side.
        batch_size: recording batch.
        n_perm: sign flips of the family-wise tests.
        seed: seeds the sign flips.
    """

    n_facts: int = 20
    top_k: int = 20
    batch_size: int = 16
    n_perm: int = 5000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_facts < 3:
            raise ValueError(f"DirectionConfig.n_facts must be >= 3 (a z-score against the other "
                             f"facts needs two of them), got {self.n_facts}")
        if self.top_k < 1:
            raise ValueError(f"DirectionConfig.top_k must be >= 1, got {self.top_k}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def with_foils(lm: LoadedModel, qs: QuerySet) -> QuerySet:
    """``qs`` with each query's foil: the answer of the next other fact in the set (cyclically)
    whose first answer token differs, preferring one whose prompt ends in the same word (the
    same moved article)."""
    qq = qs.queries
    first = [encode_completion(lm, q.target)[0] for q in qq]
    facts = [q.meta["fact_id"] for q in qq]
    last = [q.prompt.rsplit(" ", 1)[-1] for q in qq]
    out = []
    for i, q in enumerate(qq):
        ok = [j for k in range(1, len(qq)) for j in [(i + k) % len(qq)]
              if facts[j] != facts[i] and first[j] != first[i]]
        same = [j for j in ok if last[j] == last[i]]
        if not ok:
            raise ValueError(f"query set {qs.name}: no foil for {q.prompt!r}: every other fact's "
                             "answer starts with the same token")
        out.append(replace(q, foil=qq[(same or ok)[0]].target))
    return QuerySet(qs.name, qs.entity, qs.direction, out)


def distinct_first_tokens(lm: LoadedModel, qs: QuerySet) -> QuerySet:
    """``qs``, or, when every answer starts with the same token and with a space (a byte-level
    tokenizer: the first token is the space), ``qs`` with that space moved into the prompts, so
    that the explained token says which fact it is."""
    qq = qs.queries
    if len({encode_completion(lm, q.target)[0] for q in qq}) > 1 or not all(q.target.startswith(" ") for q in qq):
        return qs
    moved = [replace(q, prompt=q.prompt + " ", target=q.target[1:]) for q in qq]
    return QuerySet(qs.name, qs.entity, qs.direction, moved)


def record_direction(lm: LoadedModel, qs: QuerySet, batch_size: int = 16) -> Recording:
    """The recording every view here reads: the attribution hooks at the last token and at the
    entity's tokens, with the gradient of the first answer token's log-prob."""
    return record(lm, qs.queries, attribution_hooks(lm), positions=("last", f"entity:{qs.entity}"),
                  grad="first", batch_size=batch_size)


def _entity_last(rec: Recording, qs: QuerySet) -> tuple[str, torch.Tensor]:
    pos = f"entity:{qs.entity}"
    return pos, _last_entity_rows(rec, pos, len(qs.queries))


def entity_value(lm: LoadedModel, rec: Recording, qs: QuerySet) -> torch.Tensor:
    """``[n, L]``: each layer's MLP output at the entity's last token, divided by the final
    norm's scale there and dotted with ``g * (W_U[:, answer] - W_U[:, foil])`` (centred for a
    LayerNorm model; output biases excluded)."""
    bridge = lm.bridge
    n_layers = bridge.cfg.n_layers
    pos, rows = _entity_last(rec, qs)
    dirs = unembed_directions(bridge, rec.stat("first_id"), rec.stat("foil_id"))  # [n, d_model]
    if bridge.cfg.normalization_type in ("LN", "LNPre"):
        dirs = dirs - dirs.mean(-1, keepdim=True)
    scale = rec.act(hook_name("final_scale"), pos)[rows].reshape(-1).float()  # [n]
    out = torch.stack([(rec.act(hook_name("mlp_out", L), pos)[rows].float() * dirs).sum(-1)
                       for L in range(n_layers)], 1)  # [n, L]
    try:
        b_out = bridge.b_out
    except AttributeError:
        b_out = None
    if b_out is not None:
        out = out - dirs @ b_out.detach().float().cpu().T
    return out / scale[:, None]


def _ci(x: np.ndarray) -> dict[str, Any]:
    r = t_mean_ci(x)
    return {"mean": r["mean"], "ci_low": r["low"], "ci_high": r["high"], "n": r["n"]}


def set_profile(lm: LoadedModel, rec: Recording, qs: QuerySet, n_perm: int = 5000, seed: int = 0,
                k_heads: int = 5) -> dict[str, Any]:
    """One set in one model: the contrast logit, per-layer attention / MLP attribution at the
    last token and MLP value at the entity (family-wise), their totals and the top heads."""
    dla = direct_logit_attribution(lm, rec, contrast=True)
    facts = [q.meta["fact_id"] for q in qs.queries]
    n_layers = dla.attn.shape[1]
    prof = {"attn_last": dla.attn.numpy(), "mlp_last": dla.mlp.numpy(),
            "mlp_entity": entity_value(lm, rec, qs).numpy()}
    per = {k: per_fact(v, facts) for k, v in prof.items()}
    stacked = np.concatenate([per[k] for k in PROFILES], 1)
    fam = maxt_family(stacked, n_perm=n_perm, seed=seed)
    layers: dict[str, Any] = {}
    for i, k in enumerate(PROFILES):
        sl = slice(i * n_layers, (i + 1) * n_layers)
        layers[k] = {f: fam[f][sl] for f in ("mean", "ci_low", "ci_high", "p_family")}
    j = int(np.argmax(np.abs(fam["mean"])))
    heads = per_fact(dla.heads.numpy(), facts)  # [facts, L, H]
    hm = heads.mean(0)
    top = np.argsort(-np.abs(hm).ravel())[:k_heads]
    n_h = hm.shape[1]
    logit = per_fact(dla.logit.numpy(), facts)
    return {
        "n_facts": len(logit), "contrast_logit": _ci(logit),
        "first_token_logprob": _ci(per_fact(rec.stat("first_logprob").numpy(), facts)),
        "totals": {"embed": _ci(per_fact(dla.embed.numpy(), facts)),
                   **{k: _ci(per[k].sum(1)) for k in PROFILES}},
        "layers": layers, "crit": fam["crit"],
        "peak": {"profile": PROFILES[j // n_layers], "layer": j % n_layers, "mean": fam["mean"][j],
                 "ci_low": fam["ci_low"][j], "ci_high": fam["ci_high"][j], "p_family": fam["p_family"][j]},
        "top_heads": [{"layer": int(i // n_h), "head": int(i % n_h),
                       **_ci(heads[:, i // n_h, i % n_h])} for i in top],
    }


def _mlp_post(rec: Recording, qs: QuerySet, grad: bool = False) -> torch.Tensor:
    """``[n, L * d_mlp]`` key coefficients (or their gradients) at the entity's last token."""
    pos, rows = _entity_last(rec, qs)
    hooks = sorted((h for h in rec.hooks if h.endswith("mlp.hook_post")),
                   key=lambda h: int(h.split(".")[1]))
    get = rec.grad if grad else rec.act
    return torch.cat([get(h, pos)[rows].float() for h in hooks], 1)


def key_response(rec_fwd: Recording, fwd: QuerySet, rec_test: Recording, test: QuerySet, top_k: int = 20,
                 test_template: int = 0) -> dict[str, Any]:
    """Per fact, how strongly its forward neurons show their forward pattern at the entity of
    its test prompt (template ``test_template`` of ``test``), as a z-score against the other
    facts' test prompts. Forward neurons: the ``top_k`` largest activation x gradient at the
    entity's last token of the fact's template-0 prompt in ``fwd``; their pattern: those
    activations as a unit vector (key coefficients can be negative); the response: the test
    activations of the same neurons projected on it. Two summaries over facts, each with a t
    interval: ``z`` (own response minus the others' mean, over the others' standard deviation;
    heavy-tailed when the others happen to agree) and ``rank`` (the share of the other facts
    whose response is below the own one, ties half; 0.5 is chance, bounded, so its t interval
    holds at a few facts). The control passes on ``rank``."""
    a_fwd = _mlp_post(rec_fwd, fwd).numpy()
    gxa = a_fwd * _mlp_post(rec_fwd, fwd, grad=True).numpy()
    sel = {q.meta["fact_id"]: i for i, q in enumerate(fwd.queries) if q.meta["template"] == 0}
    act = _mlp_post(rec_test, test).numpy()
    tq = {q.meta["fact_id"]: i for i, q in enumerate(test.queries) if q.meta["template"] == test_template}
    facts = [f for f in sel if f in tq]
    if len(facts) < 3:
        raise ValueError(f"key_response: {len(facts)} facts in both {fwd.name} and {test.name} "
                         f"(template {test_template}); need at least 3")
    z, diff, rank = [], [], []
    for f in facts:
        idx = np.argsort(-gxa[sel[f]])[:top_k]
        pattern = a_fwd[sel[f], idx] / max(float(np.linalg.norm(a_fwd[sel[f], idx])), 1e-12)
        resp = {g: float(act[tq[g], idx] @ pattern) for g in facts}
        others = np.array([v for g, v in resp.items() if g != f])
        sd = others.std(ddof=1)
        diff.append(resp[f] - others.mean())
        rank.append(float(((others < resp[f]).sum() + 0.5 * (others == resp[f]).sum()) / others.size))
        z.append(diff[-1] / sd if sd > 0 else np.nan)
    z_arr = np.asarray(z)
    return {"z": _ci(z_arr[np.isfinite(z_arr)]) if np.isfinite(z_arr).sum() >= 2 else None,
            "rank": _ci(np.asarray(rank)), "activation_diff": _ci(np.asarray(diff)),
            "n_facts": len(facts), "top_k": top_k}


def direction_comparison(models: dict[str, LoadedModel], ds: Any, config: DirectionConfig | None = None,
                         progress: bool = True, sets: dict[str, QuerySet] | None = None) -> dict[str, Any]:
    """The views of the module docstring for every model in ``models`` (label -> model), on the
    four query sets of ``ds`` (two prompts per fact; or on ``sets`` when given). Returns
    ``{"config", "sets", "models": {label: {set: profile (+ "key" on the reverse sets,
    "key_control" on the trained ones)}}}``."""
    from tqdm.auto import tqdm

    cfg = config or DirectionConfig()
    base_sets = sets if sets is not None else query_sets(ds, n_facts=cfg.n_facts, prompts_per_fact=2)
    for name, qs in base_sets.items():
        if len({q.meta["fact_id"] for q in qs.queries}) < 3:
            raise ValueError(f"query set {name}: fewer than 3 facts; the key side needs 3")
    res: dict[str, Any] = {"config": cfg.to_dict(), "pairs": [list(p) for p in PAIRS],
                           "sets": {n: {"entity": q.entity, "direction": q.direction,
                                        "n_queries": len(q.queries)} for n, q in base_sets.items()},
                           "models": {}}
    bar = tqdm(total=len(models) * len(base_sets), desc="direction", disable=not progress, unit="set")
    for label, lm in models.items():
        sets = {n: with_foils(lm, distinct_first_tokens(lm, qs)) for n, qs in base_sets.items()}
        recs = {}
        out: dict[str, Any] = {}
        for n, qs in sets.items():
            recs[n] = record_direction(lm, qs, cfg.batch_size)
            out[n] = set_profile(lm, recs[n], qs, cfg.n_perm, cfg.seed)
            bar.update(1)
        for fwd, rev in PAIRS:
            if fwd in sets and rev in sets:
                out[rev]["key"] = key_response(recs[fwd], sets[fwd], recs[rev], sets[rev], cfg.top_k)
                ctrl = key_response(recs[fwd], sets[fwd], recs[fwd], sets[fwd], cfg.top_k, test_template=1)
                ctrl["passes"] = bool(ctrl["rank"]["ci_low"] is not None and ctrl["rank"]["ci_low"] > 0.5)
                out[fwd]["key_control"] = ctrl
        res["models"][label] = out
    bar.close()
    return res


def summary_rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (set, model) for the one table: what the attribution explains, the three
    totals, the family-wise peak and the key response (reverse sets) or its control (trained)."""
    rows = []
    for name in SETS:
        for label, per in res["models"].items():
            if name not in per:
                continue
            s = per[name]
            key = s.get("key") or s.get("key_control")
            rows.append({"set": name, "direction": res["sets"][name]["direction"], "model": label,
                         "contrast_logit": s["contrast_logit"], **s["totals"], "peak": s["peak"],
                         "key_z": key["z"] if key else None, "key_rank": key.get("rank") if key else None,
                         "key_kind": "reverse entity" if "key" in s else "second trained prompt (control)"})
    return rows


def _fmt(c: dict[str, Any] | None) -> str:
    if not c or c.get("mean") is None:
        return "n/a"
    lo, hi = c.get("ci_low"), c.get("ci_high")
    return f"{c['mean']:+.2f} [{lo:+.2f}, {hi:+.2f}]" if lo is not None else f"{c['mean']:+.2f}"


def summary_markdown(res: dict[str, Any]) -> str:
    """The one table (Markdown)."""
    lines = [
        "Answer minus foil, first answer token, nats of logit, mean over facts [95% t CI]. "
        "Attention and MLP: summed direct attribution at the last prompt token; MLP at entity: "
        "the MLPs' write at the entity's last token read through the unembedding. Peak: the "
        "largest layer of the three profiles, family-wise p over all of them (max-T). Key z: "
        "the forward fact's top neurons at the reverse query's entity (reverse sets) or at the "
        "same entity in a second trained prompt (trained sets: the positive control), as a "
        "z-score against the other facts' prompts; key rank: the share of the other facts "
        "whose response is below the own one (0.5 is chance; the control passes when its "
        "interval lies above 0.5).", "",
        "| set | direction | model | answer - foil logit | attention (last) | MLP (last) | "
        "MLP at entity | peak (p_fw) | key z | key rank |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary_rows(res):
        pk = r["peak"]
        lines.append(f"| {r['set']} | {r['direction']} | {r['model']} | {_fmt(r['contrast_logit'])} | "
                     f"{_fmt(r['attn_last'])} | {_fmt(r['mlp_last'])} | {_fmt(r['mlp_entity'])} | "
                     f"{pk['profile']} L{pk['layer']} {pk['mean']:+.2f} (p_fw {pk['p_family']:.3g}) | "
                     f"{_fmt(r['key_z'])} | {_fmt(r['key_rank'])} |")
    return "\n".join(lines) + "\n"


def plot_direction(res: dict[str, Any], out: Any, stem: str = "direction") -> list[Any]:
    """The one figure: per set, each model's MLP (solid, with t intervals) and attention
    (dashed) attribution by layer at the last token; PNG and SVG in ``out``."""
    from matplotlib.figure import Figure

    from analysis.figures import save

    names = [n for n in SETS if any(n in per for per in res["models"].values())]
    fig = Figure(figsize=(4.2 * len(names), 3.4))
    axes = fig.subplots(1, len(names), sharey=True, squeeze=False)[0]
    for ax, name in zip(axes, names):
        for i, (label, per) in enumerate(res["models"].items()):
            if name not in per:
                continue
            c = f"C{i}"
            m = per[name]["layers"]["mlp_last"]
            x = np.arange(len(m["mean"]))
            ax.plot(x, m["mean"], color=c, label=f"{label} MLP")
            ax.fill_between(x, m["ci_low"], m["ci_high"], color=c, alpha=0.2, lw=0)
            ax.plot(x, per[name]["layers"]["attn_last"]["mean"], color=c, ls="--", label=f"{label} attention")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(f"{name} ({res['sets'][name]['direction']})", fontsize=8)
        ax.set_xlabel("layer")
    axes[0].set_ylabel("answer - foil (logit)")
    axes[-1].legend(fontsize=7)
    return save(fig, Path(out), stem)
