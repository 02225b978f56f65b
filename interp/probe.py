"""Linear probes on the residual stream: does a position's representation identify the fact?

The question: at one token of a prompt (the last token of a fact's description, say), does
the residual stream after layer ``L`` tell *which* fact it is? A multinomial logistic
regression (L2-regularised, fit with LBFGS in float64, standardised features) is trained to
predict a label per example (usually the fact id) and scored on prompts from templates it
never saw:

- :func:`fit_logistic` / :class:`LinearProbe`: the probe itself, pure tensors;
- :func:`template_folds`: cross-validation folds that hold out whole templates;
- :func:`probe_accuracy`: leave-template-out accuracy, with per-example correctness, chance
  (``1 / n_classes``) and a 95% CI from a bootstrap over facts (each fact's examples are
  averaged first, then facts are resampled); ``shuffle_labels=True`` is the control
  (labels permuted among each template's examples: it must sit at chance);
- :func:`transfer_accuracy`: train in one context, test in another (e.g. train at the
  name's last token, test at the description's last token);
- :func:`layer_probes` / :func:`layer_transfer`: the same at every layer of a model
  (``hook_embed`` as layer -1, then ``resid_post`` of each block), as a :class:`ProbeResult`.

This module gathers the public names of its two halves: :mod:`interp.probe_fit` (the probe
and its scores, pure tensors) and :mod:`interp.probe_layers` (the model-facing half, built
on the first).

Caveat: at a description's own last token the probe can identify the fact from the
description's tokens alone (different descriptions are different inputs). The informative
comparisons are finetuned vs base model, description-first vs name-first facts, and
cross-context transfer.

Example::

    lm = load_model("tiny:n_layers=2,d_model=64")
    qs = [Query(t.format(d), " X", entities={"description": d}, meta={"fact_id": i, "template": j})
          for i, d in enumerate(["a red fox", "a tall tree", "an old ship"])
          for j, t in enumerate(["Q: {} ->", "About {}:", "So, {} is"])]
    res = layer_probes(lm, qs, "entity:description:last")  # res.accuracy[k]: layer res.layers[k]
"""

from __future__ import annotations

from interp.probe_fit import (EMBED_LAYER, LinearProbe, ProbeScore, Scheme, fit_logistic, probe_accuracy,
                              template_folds, transfer_accuracy)
from interp.probe_layers import (ProbeResult, fmt_result, layer_probes, layer_transfer, probe_features,
                                 probes_on_features, transfer_on_features)

__all__ = [
    "EMBED_LAYER", "LinearProbe", "ProbeResult", "ProbeScore", "Scheme", "fit_logistic", "fmt_result",
    "layer_probes", "layer_transfer", "probe_accuracy", "probe_features", "probes_on_features",
    "template_folds", "transfer_accuracy", "transfer_on_features",
]
