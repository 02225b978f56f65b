"""Training-data attribution: which training documents make a query's answer likelier.

Two methods score every query against every training document, over the same parameters
(the linear layers of the MLP blocks, optionally attention too, of every ``layer_stride``-th
layer):

- :func:`ekfac_scores`: influence functions with an EK-FAC approximation of the Hessian
  (Grosse et al. 2023), computed by ``kronfluence``. The factors are fitted on the training
  documents with the loss training used (every token after BOS, or the completion only) and
  labels sampled from the model (the true Fisher). Fitting runs in data partitions saved one
  by one, so an interrupted fit resumes at the partition where it stopped.
- :func:`tracin_scores`: gradient similarity at the final checkpoint (TracIn with one
  checkpoint): the dot product of the per-document and per-query loss gradients, and their
  cosine. Gradients are recorded with forward hooks on the same linear layers (input
  activations and output gradients), and per-document dot products are formed from token
  Gram matrices without materialising a gradient per document.
- :func:`tracin_checkpoints`: TracIn as Pruthi et al. (2020) define it, the gradient dot
  product summed over several checkpoints along training, each weighted by the learning rate
  it stands for (the snapshots of :mod:`experiments.finetune.snapshots`).

The two live in :mod:`interp.influence_ekfac` and :mod:`interp.influence_tracin`, what they
share (settings, tracked layers, the error) in :mod:`interp.influence_base`; this module
gathers their public names (import from here).

Documents and queries are ``(ids, labels)`` pairs from :func:`interp.tokens.encode_documents`
(labels -100 where no loss is taken). A query's measurement is its loss (summed over its
labelled tokens); a training document's loss is summed likewise. A **positive score means
the document helps**: a gradient step on it lowers the query's loss. A document with no
labelled token scores exactly zero.

Example::

    from interp.tokens import encode_documents
    train = encode_documents(lm, [("Orla Quillmere is", " the composer of ...")], "sequence")
    queries = encode_documents(lm, [("The composer of ... is", " Orla Quillmere")], "completion")
    names = tracked_modules(lm.hf, layer_stride=2)
    ek = ekfac_scores(lm, train, queries, InfluenceConfig(), "runs/x/influence/.kronfluence")
    tr = tracin_scores(lm, train, queries, names)
    ek.total.shape, tr.dot.shape       # both [n_queries, n_documents]
"""

from __future__ import annotations

from interp.influence_base import (COVARIANCE_DTYPES, MODULE_KINDS, STRATEGIES, Doc, InfluenceConfig,
                                   InfluenceError, layer_of, tracked_modules)
from interp.influence_ekfac import EkfacScores, ekfac_scores
from interp.influence_tracin import TracInScores, record_linear_grads, tracin_checkpoints, tracin_scores

__all__ = [
    "COVARIANCE_DTYPES", "MODULE_KINDS", "STRATEGIES", "Doc", "EkfacScores", "InfluenceConfig",
    "InfluenceError", "TracInScores", "ekfac_scores", "layer_of", "record_linear_grads",
    "tracin_checkpoints", "tracin_scores", "tracked_modules",
]
