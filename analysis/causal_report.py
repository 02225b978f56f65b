"""The causal sections of ``analysis/summary.json`` as Markdown (appended to ``summary.md``).

Example::

    text = causal_markdown(json.loads(Path("runs/exp1-cpu/analysis/summary.json").read_text()))
"""

from __future__ import annotations

from typing import Any, Mapping

SET_LABELS = {
    "d2p_forward": "D2P facts, description -> name (trained)",
    "p2d_reverse": "P2D facts, description -> name (reverse)",
    "p2d_forward": "P2D facts, name -> description (trained)",
    "d2p_reverse": "D2P facts, name -> description (reverse)",
}


def ci(d: Mapping[str, Any] | None, fmt: str = "{:.3g}", j: int | None = None) -> str:
    """``mean [low, high]`` of an interval dict (element ``j`` for per-layer lists)."""
    if not d:
        return "-"
    vals = [d["mean"], d.get("low", d.get("ci_low")), d.get("high", d.get("ci_high"))]
    if j is not None:
        vals = [v[j] if v is not None else None for v in vals]
    if any(v is None for v in vals):
        return "-"
    return f"{fmt.format(vals[0])} [{fmt.format(vals[1])}, {fmt.format(vals[2])}]"


def _noise_reference(config: Mapping[str, Any]) -> str:
    return ("traced entities' token embeddings" if config.get("noise_reference", "entity") == "entity"
            else "embedding matrix")


def _tracing(t: Mapping[str, Any]) -> list[str]:
    lines = ["## Causal tracing", "",
             f"{t['n_facts']} facts per set, {t.get('templates_per_fact', 1)} prompt(s) each (averaged per "
             f"fact); noise {t['config']['noise']}x the SD of the "
             f"{_noise_reference(t['config'])}, "
             f"{t['config']['n_noise']} samples; MLP/attention windows of {t['config']['window']} "
             "layers. Peak = the layer with the largest mean indirect effect (restored minus corrupted "
             "probability of the answer's first token), with its 95% t interval over facts and, as p_fw, "
             "its family-wise p over the traced layers (max-T, sign flips of facts).", ""]
    for label in ("finetuned", "base"):
        if label not in t:
            continue
        lines += [f"### {label}", "",
                  "| set | p clean | p corrupted | resid @ last entity | MLP @ last entity | attn @ last token |",
                  "|---|---|---|---|---|---|"]
        for name, e in t[label].items():
            if "skipped" in e:
                lines.append(f"| {SET_LABELS.get(name, name)} | {ci(e['p_clean'])} | not traced: "
                             f"{e['skipped']} | - | - | - |")
                continue

            def peak(site: str, col: str) -> str:
                p = e["peak"].get(site, {}).get(col)
                if not p:
                    return "-"
                fw = "" if p.get("p_family") is None else f", p_fw {p['p_family']:.2g}"
                return f"L{p['layer']}: {p['mean']:.3g} [{p['low']:.3g}, {p['high']:.3g}]{fw}"
            lines.append(f"| {SET_LABELS.get(name, name)} | {ci(e['p_clean'])} | {ci(e['p_corrupt'])} | "
                         f"{peak('resid', 'last entity')} | {peak('mlp', 'last entity')} | {peak('attn', 'last')} |")
        lines.append("")
    lines += [f"Page: {t.get('page', '-')}", ""]
    return lines


def _key_value(kv: Mapping[str, Any]) -> list[str]:
    lines = ["## Key-value storage at the entity's last token", "",
             "Key change = ||k_ft - k_base|| / ||k_base|| of `mlp_post`, averaged over layers; "
             "attribution = activation x gradient of the own answer's first-token log-prob, summed over "
             "all neurons at that token; half-mass = neurons carrying half the positive attribution.", "",
             "| set | key change (mean over layers) | minus untrained names | attribution ft | attribution base | half-mass ft |",
             "|---|---|---|---|---|---|"]
    for name, e in kv.get("key_value", {}).items():
        def layer_mean(d: Mapping[str, Any] | None) -> str:
            if not d:
                return "-"
            m = [v for v in d["mean"] if v is not None]
            return f"{sum(m) / len(m):.3g}" if m else "-"
        lines.append(f"| {SET_LABELS.get(name, name)} | {layer_mean(e.get('key_change'))} | "
                     f"{layer_mean(e.get('key_change_minus_untrained'))} | {ci(e['finetuned']['total'])} | "
                     f"{ci(e['base']['total'])} | {e['finetuned']['half_mass_neurons']} |")
    lines.append("")
    pos = kv.get("positions", {})
    if pos:
        groups = next(iter(pos.values()))["finetuned"]["groups"]
        lines += ["Attribution (activation x gradient, summed over layers) by prompt position, finetuned:", "",
                  "| set | site | " + " | ".join(groups) + " |", "|---|---|" + "---|" * len(groups)]
        for name, e in pos.items():
            for site in ("attn_out", "mlp_out"):
                d = e["finetuned"][site]["by_group"]
                lines.append(f"| {SET_LABELS.get(name, name)} | {site} | " +
                             " | ".join(ci(d, j=j) for j in range(len(groups))) + " |")
        lines.append("")
    return lines


def causal_markdown(s: Mapping[str, Any]) -> str:
    """Markdown for whichever causal sections ``s`` has ("" when none)."""
    lines: list[str] = []
    if "causal_tracing" in s:
        lines += _tracing(s["causal_tracing"])
    if "weight_revert" in s:
        lines += _weights(s["weight_revert"])
    if "probes" in s:
        lines += _probes(s["probes"])
    if "key_value" in s:
        lines += _key_value(s["key_value"])
    if "direction" in s:
        from analysis.direction import summary_markdown

        lines += ["## Forward against reverse, by direction", "", summary_markdown(s["direction"])]
    if "causal_seconds" in s:
        lines += ["Seconds per section: " + ", ".join(f"{k} {v}" for k, v in s["causal_seconds"].items()), ""]
    return "\n".join(lines)


def _weights(w: Mapping[str, Any]) -> list[str]:
    lines = ["## Weight-change localisation", "",
             "Metric = log p(answer's first token) - log p(first token of another fact's answer), same "
             "prompt (nats); "
             "gain = finetuned minus base. Per layer: the largest "
             "loss when that layer's change is reverted in the finetuned model, and the largest gain "
             "when it alone is applied to the base model. k50/k90: fewest layers (ranked by their own "
             "apply gain) recovering 50%/90% of the gain.", "",
             "| set | gain | top revert loss (layer, kind) | top apply gain (layer, kind) | k50 | k90 |",
             "|---|---|---|---|---|---|"]
    for name, e in w.get("sets", w).items():
        if not isinstance(e, Mapping) or "gain" not in e:
            continue

        def top(key: str) -> str:
            best = None
            for kind, d in e[key].items():
                for L, v in enumerate(d["mean"]):
                    if best is None or v > best[0]:
                        best = (v, L, kind, d)
            if best is None:
                return "-"
            v, L, kind, d = best
            return f"{ci(d, j=L)} (L{L} {kind})"
        lines.append(f"| {SET_LABELS.get(name, name)} | {ci(e['gain'])} | {top('revert_loss')} | "
                     f"{top('apply_gain')} | {e.get('k50')} | {e.get('k90')} |")
    return lines + [""]


def _probes(p: Mapping[str, Any]) -> list[str]:
    lines = ["## Probes: which fact is it?", "",
             "Logistic probes per layer on the residual stream, trained on some templates and tested on "
             "held-out templates (transfer: trained at the name's last token, tested at the description's). "
             "Accuracy with a 95% CI over facts; chance = 1 / number of facts.", "",
             "| model | probe | chance | embedding | best layer | shuffled labels at that layer |",
             "|---|---|---|---|---|---|"]
    for label, per in p.items():
        if label in ("layers", "control") or not isinstance(per, Mapping):
            continue
        for name, r in per.items():
            if not isinstance(r, Mapping) or "accuracy" not in r:
                continue
            acc = r["accuracy"]
            j = max(range(len(acc)), key=lambda i: acc[i])
            emb = r["layers"].index(-1) if -1 in r["layers"] else 0
            sh = f"{r['shuffled'][j]:.2f}" if r.get("shuffled") else "-"
            lines.append(f"| {label} | {name} | {r['chance']:.3f} | {acc[emb]:.2f} [{r['ci_low'][emb]:.2f}, "
                         f"{r['ci_high'][emb]:.2f}] | L{r['layers'][j]}: {acc[j]:.2f} [{r['ci_low'][j]:.2f}, "
                         f"{r['ci_high'][j]:.2f}] | {sh} |")
    return lines + [""]
