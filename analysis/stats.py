"""Statistics for correct-vs-control comparisons, at the level of facts.

A fact's held-out prompts are not independent samples, so each fact's prompts are averaged
first (as the paper does) and the tests run over facts: a paired t-test on the per-fact means,
and a two-sample Kolmogorov-Smirnov test on the two sets of per-fact means.

Example::

    paired_tests([-7.4, -6.9, -8.0], [-7.5, -7.1, -7.7])["t_pvalue"]
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from typing import Any, Hashable, Iterable, Sequence

import numpy as np
from scipy import stats


def per_group_means(keys: Iterable[Hashable], values: Iterable[float]) -> dict[Hashable, float]:
    """Mean of ``values`` per key, in first-seen key order."""
    acc: dict[Hashable, list[float]] = defaultdict(list)
    for k, v in zip(keys, values):
        acc[k].append(float(v))
    return {k: float(np.mean(v)) for k, v in acc.items()}


def paired_tests(correct: Sequence[float], control: Sequence[float]) -> dict[str, float | int | None]:
    """Paired t-test and KS test of ``correct`` vs ``control`` (one value per fact each).

    Returns n, the two means, the mean difference with its 95% confidence interval
    (t-based, over the paired differences: ``diff_ci95_low``/``diff_ci95_high``), Cohen's d_z
    (mean difference over the SD of the differences), and the p-values; p-values and the CI
    are None when n < 2 or the differences have no spread.
    """
    a, b = np.asarray(correct, dtype=float), np.asarray(control, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired_tests: {a.size} correct values vs {b.size} control values")
    n = int(a.size)
    diff = a - b
    out: dict[str, float | int | None] = {
        "n": n,
        "mean_correct": float(a.mean()) if n else None,
        "mean_control": float(b.mean()) if n else None,
        "mean_diff": float(diff.mean()) if n else None,
        "diff_ci95_low": None, "diff_ci95_high": None,
        "cohen_dz": None, "t_stat": None, "t_pvalue": None, "ks_stat": None, "ks_pvalue": None,
    }
    if n >= 2 and float(diff.std(ddof=1)) > 0:
        t = stats.ttest_rel(a, b)
        half = float(stats.t.ppf(0.975, n - 1) * diff.std(ddof=1) / math.sqrt(n))
        out.update(cohen_dz=float(diff.mean() / diff.std(ddof=1)), t_stat=float(t.statistic),
                   t_pvalue=float(t.pvalue), diff_ci95_low=float(diff.mean()) - half,
                   diff_ci95_high=float(diff.mean()) + half)
    if n >= 2:
        ks = stats.ks_2samp(a, b)
        out.update(ks_stat=float(ks.statistic), ks_pvalue=float(ks.pvalue))
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


def bootstrap_mean_ci(values: Sequence[Sequence[float]] | np.ndarray, n_boot: int = 2000,
                      seed: int = 0, level: float = 0.95) -> dict[str, list | float]:
    """Mean over the first axis (one row per fact) with a percentile bootstrap CI that
    resamples rows (facts); NaN rows are dropped per column. Returns ``mean``, ``low``,
    ``high`` (lists for multi-dimensional input, floats for one value per fact; None where a
    column has no finite value, so the result is valid JSON) and ``n``.

    Example::

        bootstrap_mean_ci([0.2, 0.5, 0.1])          # {'mean': 0.266..., 'low': ..., ...}
        bootstrap_mean_ci(np.ones((30, 4)))["mean"]  # [1.0, 1.0, 1.0, 1.0]
    """
    x = np.asarray(values, dtype=float)
    scalar = x.ndim == 1
    x2 = x.reshape(x.shape[0], -1)  # [n, k]
    n = x2.shape[0]
    if n == 0:
        raise ValueError("bootstrap_mean_ci: no values")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))  # [boot, n]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(x2, axis=0)  # [k]
        boots = np.nanmean(x2[idx], axis=1)  # [boot, k]
        alpha = (1 - level) / 2
        low, high = np.nanquantile(boots, alpha, axis=0), np.nanquantile(boots, 1 - alpha, axis=0)
    shape = x.shape[1:]

    def out(a: np.ndarray) -> list | float | None:
        return _finite(float(a[0])) if scalar else _finite(a.reshape(shape).tolist())
    return {"mean": out(mean), "low": out(low), "high": out(high), "n": int(n)}


def _finite(x: Any) -> Any:
    """NaN and infinities -> None, recursively through lists."""
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x if isinstance(x, float) and math.isfinite(x) else None if isinstance(x, float) else x
