"""Linear probes on features, pure tensors: the probe, its folds and its held-out accuracy.

A multinomial logistic regression (L2-regularised, fit with LBFGS in float64, standardised
features) predicts a label per example (usually the fact id) and is scored on examples from
templates it never saw:

- :func:`fit_logistic` / :class:`LinearProbe`: the probe itself;
- :func:`template_folds`: cross-validation folds that hold out whole templates;
- :func:`probe_accuracy`: leave-template-out accuracy with a 95% t interval over
  facts, and the shuffled-label control (``shuffle_labels=True``);
- :func:`transfer_accuracy`: train in one context, test in another.

Nothing here touches a model: :mod:`interp.probe_layers` records the features at every layer
and calls these; :mod:`interp.probe` re-exports both (import from there).

Example::

    score = probe_accuracy(X, facts, templates)   # X [n, d]; one label and template per row
    score.accuracy, score.ci_low, score.chance
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Hashable, Iterator, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

Scheme = Literal["leave_template_out", "template_kfold"]
EMBED_LAYER = -1  # the layer index of hook_embed in a ProbeResult


# ---------------------------------------------------------------------------- the probe


@dataclass(frozen=True, eq=False)
class LinearProbe:
    """A fitted multinomial logistic regression on standardised features.

    Args:
        weight: ``[d, n_classes]`` on standardised features.
        bias: ``[n_classes]``.
        mean: ``[d]`` training mean (zeros without standardisation).
        std: ``[d]`` training std (ones without standardisation; 1 for constant features).
        n_iter: LBFGS iterations run.
        loss: final training objective (mean cross-entropy + ``l2 / 2 * |W|^2``).
    """

    weight: Float[Tensor, "d n_classes"]
    bias: Float[Tensor, "n_classes"]
    mean: Float[Tensor, "d"]
    std: Float[Tensor, "d"]
    n_iter: int
    loss: float

    def logits(self, X: Float[Tensor, "n d"] | np.ndarray) -> Float[Tensor, "n n_classes"]:
        X = torch.as_tensor(X).to(self.weight.dtype)
        if X.ndim != 2 or X.shape[1] != self.weight.shape[0]:
            raise ValueError(f"probe expects [n, {self.weight.shape[0]}] features, got {tuple(X.shape)}")
        return ((X - self.mean) / self.std) @ self.weight + self.bias  # [n, n_classes]

    def predict_proba(self, X: Float[Tensor, "n d"] | np.ndarray) -> Float[Tensor, "n n_classes"]:
        return torch.softmax(self.logits(X), dim=-1)

    def predict(self, X: Float[Tensor, "n d"] | np.ndarray) -> Int[Tensor, "n"]:
        return self.logits(X).argmax(dim=-1)


def fit_logistic(
    X: Float[Tensor, "n d"] | np.ndarray,
    y: Int[Tensor, "n"] | np.ndarray,
    n_classes: int,
    *,
    l2: float = 1e-2,
    max_iter: int = 200,
    standardize: bool = True,
    tol: float = 1e-5,
) -> LinearProbe:
    """Fit ``softmax(((X - mean) / std) @ W + b)`` to labels ``y`` in ``0..n_classes-1``.

    Minimises mean cross-entropy + ``l2 / 2 * |W|^2`` (bias not penalised) with LBFGS (strong
    Wolfe line search) from zeros, in float64 on the CPU, one thread: deterministic; stops
    when no gradient entry exceeds ``tol`` or after ``max_iter`` iterations. With
    more features than examples the fit runs in the span of the examples (exact: the optimum
    lies there). Classes without a training example get a low bias and are never predicted.
    """
    with _one_thread():  # small matmuls: threads only add overhead (30x on a loaded 2-core CPU)
        return _fit(X, y, n_classes, l2, max_iter, standardize, tol)


@contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _fit(X: Any, y: Any, n_classes: int, l2: float, max_iter: int, standardize: bool,
         tol: float) -> LinearProbe:
    X = torch.as_tensor(X).detach().to("cpu", torch.float64)  # [n, d]
    y = torch.as_tensor(y).detach().to("cpu").long()  # [n]
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0] or X.shape[0] == 0:
        raise ValueError(f"fit_logistic: X [n, d] and y [n], got {tuple(X.shape)} and {tuple(y.shape)}")
    if n_classes < 2 or int(y.min()) < 0 or int(y.max()) >= n_classes:
        raise ValueError(f"fit_logistic: labels must lie in 0..{n_classes - 1} (n_classes >= 2), "
                         f"got {int(y.min())}..{int(y.max())}")
    if not torch.isfinite(X).all():
        raise ValueError("fit_logistic: X has non-finite values")
    if l2 < 0 or max_iter < 1:
        raise ValueError(f"fit_logistic: need l2 >= 0 and max_iter >= 1, got {l2}, {max_iter}")
    d = X.shape[1]
    if standardize:
        mean, std = X.mean(0), X.std(0, unbiased=False)  # [d] each
        std = torch.where(std > 1e-12 * (1.0 + mean.abs()), std, torch.ones_like(std))
    else:
        mean, std = torch.zeros(d, dtype=X.dtype), torch.ones(d, dtype=X.dtype)
    Z = (X - mean) / std  # [n, d]
    basis = None
    if d > Z.shape[0]:  # the optimal W lies in Z's row space: fit there (an exact rotation)
        basis = torch.linalg.svd(Z, full_matrices=False).Vh.T  # [d, n], orthonormal columns
        Z = Z @ basis  # [n, n]
    W = torch.zeros(Z.shape[1], n_classes, dtype=X.dtype, requires_grad=True)
    b = torch.zeros(n_classes, dtype=X.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, history_size=20,
                            tolerance_grad=tol, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(Z @ W + b, y) + 0.5 * l2 * (W * W).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
        loss = float(closure().detach())
    n_iter = int(opt.state[W].get("n_iter", 0))
    weight = W.detach() if basis is None else basis @ W.detach()  # [d, n_classes]
    return LinearProbe(weight, b.detach(), mean, std, n_iter, loss)


# ---------------------------------------------------------------- cross-validated scores


@dataclass(frozen=True, eq=False)
class ProbeScore:
    """Held-out accuracy of a probe.

    Args:
        correct: ``[n]`` bool, whether each example was classified right (when held out).
        pred: ``[n]`` predicted class codes (indices into ``classes``).
        facts: ``[n]`` the fact of each example (the unit of the interval).
        accuracy: mean over facts of each fact's mean correctness.
        ci_low, ci_high: 95% t interval over facts (per-fact accuracies), clipped to [0, 1].
        chance: ``1 / n_classes``.
        n_classes, n_facts, n_templates: counts (n_templates 0 when unknown).
        classes: the label values, in code order.
    """

    correct: np.ndarray
    pred: np.ndarray
    facts: np.ndarray
    accuracy: float
    ci_low: float
    ci_high: float
    chance: float
    n_classes: int
    n_facts: int
    n_templates: int
    classes: tuple

    @property
    def n_examples(self) -> int:
        return int(self.correct.shape[0])


def _codes(values: Sequence[Hashable] | np.ndarray, classes: Sequence[Hashable] | None = None
           ) -> tuple[np.ndarray, tuple]:
    """Values -> int codes (first-seen order unless ``classes`` is given)."""
    vals = [v.item() if isinstance(v, np.generic) else v for v in
            (values.tolist() if isinstance(values, (np.ndarray, Tensor)) else values)]
    classes = tuple(dict.fromkeys(vals)) if classes is None else tuple(classes)
    lookup = {c: i for i, c in enumerate(classes)}
    missing = [v for v in vals if v not in lookup]
    if missing:
        raise ValueError(f"label {missing[0]!r} is not among the probe's classes")
    return np.array([lookup[v] for v in vals], dtype=np.int64), classes


def template_folds(groups_template: Sequence[Hashable] | np.ndarray, *,
                   scheme: Scheme = "leave_template_out", n_folds: int | None = None
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train_idx, test_idx)`` per fold; each fold holds out whole templates.

    ``leave_template_out``: one fold per template (first-seen order). ``template_kfold``:
    templates dealt round-robin into ``n_folds`` groups. Every example is tested exactly once,
    and no template is in both the train and test side of a fold.
    """
    codes, templates = _codes(groups_template)
    if len(templates) < 2:
        raise ValueError(f"template_folds: need at least 2 templates to hold one out, got {len(templates)}")
    if scheme == "leave_template_out":
        held = [[t] for t in range(len(templates))]
    elif scheme == "template_kfold":
        if n_folds is None or not 2 <= n_folds <= len(templates):
            raise ValueError(f"template_kfold: n_folds must be in 2..{len(templates)}, got {n_folds}")
        held = [list(range(k, len(templates), n_folds)) for k in range(n_folds)]
    else:
        raise ValueError(f"scheme: expected leave_template_out or template_kfold, got {scheme!r}")
    folds = []
    for ts in held:
        test = np.isin(codes, ts)
        folds.append((np.flatnonzero(~test), np.flatnonzero(test)))
    return folds


def _fact_interval(correct: np.ndarray, fact_codes: np.ndarray, n_boot: int, seed: int
               ) -> tuple[float, float, float]:
    """Accuracy (mean of per-fact means) and its 95% t interval over facts, clipped to [0, 1]
    (a percentile bootstrap undercovers at 5-20 facts; ``n_boot`` and ``seed`` are unused and
    kept for callers)."""
    from scipy import stats

    n_f = int(fact_codes.max()) + 1
    per_fact = (np.bincount(fact_codes, weights=correct.astype(float), minlength=n_f)
                / np.bincount(fact_codes, minlength=n_f))  # [n_facts]
    m = float(per_fact.mean())
    if n_f < 2:
        return m, m, m
    half = float(stats.t.ppf(0.975, n_f - 1) * per_fact.std(ddof=1) / np.sqrt(n_f))
    return m, max(0.0, m - half), min(1.0, m + half)


def _shuffle_within(codes: np.ndarray, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Permute ``codes`` among the examples of each group (each template keeps its labels,
    so every fold keeps its class balance; a fact's labels become independent across
    templates, so a held-out label is independent of everything the probe saw: chance)."""
    out = codes.copy()
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        out[idx] = codes[idx[rng.permutation(len(idx))]]
    return out


def _as_2d(X: Any) -> Tensor:
    X = torch.as_tensor(X).detach().to("cpu", torch.float64)
    if X.ndim != 2:
        raise ValueError(f"features must be [n, d], got {tuple(X.shape)}")
    return X


def probe_accuracy(
    X: Float[Tensor, "n d"] | np.ndarray,
    y: Sequence[Hashable] | np.ndarray,
    groups_template: Sequence[Hashable] | np.ndarray,
    groups_fact: Sequence[Hashable] | np.ndarray | None = None,
    *,
    scheme: Scheme = "leave_template_out",
    n_folds: int | None = None,
    l2: float = 1e-2,
    max_iter: int = 200,
    standardize: bool = True,
    shuffle_labels: bool = False,
    seed: int = 0,
    n_boot: int = 2000,
) -> ProbeScore:
    """Cross-validated probe accuracy, holding out whole templates (see :func:`template_folds`).

    Args:
        y: the label of each example (any hashable; e.g. the fact id).
        groups_template: the template of each example.
        groups_fact: the fact of each example, the unit of the interval (default: ``y``).
        shuffle_labels: the control: permute ``y`` across the examples of each template
            (seeded) before fitting; a fact's label no longer agrees across templates.
        seed: seeds the permutation (``numpy.random.default_rng``).

    Raises ValueError for fewer than 2 templates or classes, or when a held-out example's
    class has no training example in its fold (the probe could not name it).
    """
    X = _as_2d(X)
    codes, classes = _codes(y)
    facts = np.asarray(y if groups_fact is None else groups_fact, dtype=object)
    fact_codes, _ = _codes(facts)
    if not len(codes) == len(fact_codes) == len(groups_template) == X.shape[0]:
        raise ValueError(f"probe_accuracy: X has {X.shape[0]} rows, y {len(codes)}, "
                         f"groups_template {len(groups_template)}, groups_fact {len(fact_codes)}")
    if len(classes) < 2:
        raise ValueError(f"probe_accuracy: need at least 2 classes, got {len(classes)}")
    t_codes, templates = _codes(groups_template)
    if shuffle_labels:
        codes = _shuffle_within(codes, t_codes, np.random.default_rng([seed, 1]))
    folds = template_folds(groups_template, scheme=scheme, n_folds=n_folds)
    pred = np.full(len(codes), -1, dtype=np.int64)
    for train, test in folds:
        unseen = np.setdiff1d(codes[test], codes[train])
        if unseen.size:
            held = sorted({templates[t] for t in t_codes[test]}, key=str)
            raise ValueError(f"probe_accuracy: class {classes[unseen[0]]!r} has no training "
                             f"example when templates {held} are held out")
        probe = fit_logistic(X[train], torch.from_numpy(codes[train]), len(classes), l2=l2,
                             max_iter=max_iter, standardize=standardize)
        pred[test] = probe.predict(X[test]).numpy()
    correct = pred == codes
    acc, lo, hi = _fact_interval(correct, fact_codes, n_boot, seed)
    return ProbeScore(correct, pred, facts, acc, lo, hi, 1.0 / len(classes), len(classes),
                      int(fact_codes.max()) + 1, len(templates), classes)


def transfer_accuracy(
    X_train: Float[Tensor, "n_train d"] | np.ndarray,
    y_train: Sequence[Hashable] | np.ndarray,
    X_test: Float[Tensor, "n_test d"] | np.ndarray,
    y_test: Sequence[Hashable] | np.ndarray,
    facts_test: Sequence[Hashable] | np.ndarray | None = None,
    *,
    templates_test: Sequence[Hashable] | None = None,
    l2: float = 1e-2,
    max_iter: int = 200,
    standardize: bool = True,
    shuffle_labels: bool = False,
    seed: int = 0,
    n_boot: int = 2000,
) -> ProbeScore:
    """Train on ``(X_train, y_train)``, test on ``(X_test, y_test)``: cross-context transfer.

    Chance is ``1 / (number of training classes)``; every test label must occur in training
    (ValueError otherwise). The standardisation is the training set's. ``shuffle_labels``
    permutes ``y_train``. ``facts_test`` (default ``y_test``) is the unit of the interval.
    """
    X_train, X_test = _as_2d(X_train), _as_2d(X_test)
    if X_train.shape[1] != X_test.shape[1]:
        raise ValueError(f"transfer_accuracy: {X_train.shape[1]} train features vs {X_test.shape[1]} test")
    codes_tr, classes = _codes(y_train)
    if len(classes) < 2:
        raise ValueError(f"transfer_accuracy: need at least 2 training classes, got {len(classes)}")
    try:
        codes_te, _ = _codes(y_test, classes)
    except ValueError as e:
        raise ValueError(f"transfer_accuracy: a test {e}") from None
    facts = np.asarray(y_test if facts_test is None else facts_test, dtype=object)
    fact_codes, _ = _codes(facts)
    if not X_train.shape[0] == len(codes_tr) or not X_test.shape[0] == len(codes_te) == len(fact_codes):
        raise ValueError("transfer_accuracy: features, labels and facts differ in length")
    if shuffle_labels:
        codes_tr = codes_tr[np.random.default_rng([seed, 1]).permutation(len(codes_tr))]
    probe = fit_logistic(X_train, torch.from_numpy(codes_tr), len(classes), l2=l2,
                         max_iter=max_iter, standardize=standardize)
    pred = probe.predict(X_test).numpy()
    correct = pred == codes_te
    acc, lo, hi = _fact_interval(correct, fact_codes, n_boot, seed)
    n_t = len(set(templates_test)) if templates_test is not None else 0
    return ProbeScore(correct, pred, facts, acc, lo, hi, 1.0 / len(classes), len(classes),
                      int(fact_codes.max()) + 1, n_t, classes)
