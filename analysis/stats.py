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


def wilson_ci(k: float, n: float, level: float = 0.95) -> tuple[float | None, float | None]:
    """Wilson score interval of a proportion ``k / n`` (None, None when n == 0); ``k`` may be
    fractional (a mean over repeats, with ``n`` the number of independent units).

    Example::

        wilson_ci(0, 40)   # (0.0, 0.0876...): 0 of 40 bounds the rate below 8.8%
    """
    if n == 0:
        return None, None
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar(a: Sequence[bool], b: Sequence[bool], level: float = 0.95) -> dict[str, float | int | None]:
    """McNemar's exact test of two paired binary outcomes (one pair per question), with the
    difference in proportions ``mean(a) - mean(b)`` and its interval (:func:`paired_diff_ci`).

    Returns n, ``a_only`` (a right, b wrong), ``b_only``, ``both``, ``neither``, the two
    proportions, ``diff`` with ``diff_ci95_low``/``diff_ci95_high``, and ``p`` (two-sided exact
    binomial test of ``a_only`` against ``a_only + b_only`` at 1/2; 1.0 with no discordant pair).

    Example::

        mcnemar([True, True, False], [False, True, False])["a_only"]   # 1
    """
    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if x.shape != y.shape:
        raise ValueError(f"mcnemar: {x.size} outcomes vs {y.size}")
    n = int(x.size)
    both, a_only = int((x & y).sum()), int((x & ~y).sum())
    b_only, neither = int((~x & y).sum()), int((~x & ~y).sum())
    out: dict[str, float | int | None] = {"n": n, "a_only": a_only, "b_only": b_only, "both": both,
                                          "neither": neither, "p_a": None, "p_b": None, "diff": None,
                                          "diff_ci95_low": None, "diff_ci95_high": None, "p": None}
    if n == 0:
        return out
    d, low, high = paired_diff_ci(both, a_only, b_only, neither, level)
    discordant = a_only + b_only
    p = float(stats.binomtest(a_only, discordant, 0.5).pvalue) if discordant else 1.0
    out.update(p_a=(both + a_only) / n, p_b=(both + b_only) / n, diff=d, diff_ci95_low=low, diff_ci95_high=high, p=p)
    return out


def paired_diff_ci(both: float, a_only: float, b_only: float, neither: float, level: float = 0.95
                   ) -> tuple[float, float, float]:
    """Difference of two paired proportions, ``(both + a_only - both - b_only) / n``, and its
    Newcombe (1998, method 10) square-and-add interval from the two Wilson intervals, from the
    four cells of the paired table (which may be fractional: means over repeats of the same
    units). The correlation estimate is shrunk (numerator ``both * neither - a_only * b_only
    - n/2``, floored at 0, when positive), so the interval keeps a width when the two arms
    agree on every pair. Returns (diff, low, high).

    Example::

        paired_diff_ci(5, 10, 2, 23)   # (0.2, 0.030..., 0.357...)
    """
    n = both + a_only + b_only + neither
    if n <= 0:
        raise ValueError("paired_diff_ci: no pairs")
    p1, p2 = (both + a_only) / n, (both + b_only) / n
    l1, u1 = wilson_ci(both + a_only, n, level)
    l2, u2 = wilson_ci(both + b_only, n, level)
    denom = (both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither)
    num = both * neither - a_only * b_only
    num = max(num - n / 2, 0.0) if num > 0 else num
    phi = num / math.sqrt(denom) if denom > 0 else 0.0
    d = p1 - p2
    low = d - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = d + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return d, max(-1.0, low), min(1.0, high)


def cluster_bootstrap_mean_ci(values: Sequence[float], clusters: Sequence[Hashable], n_boot: int = 2000,
                              seed: int = 0, level: float = 0.95) -> dict[str, float | int | None]:
    """Mean of ``values`` (one per row) with a percentile bootstrap CI that resamples whole
    clusters: a drawn cluster brings all its rows, so rows that share a cluster (the mother
    and father rows of one child) never count as independent evidence.

    The mean of a resample is its rows' mean (clusters weighted by their row counts).
    Returns ``mean``, ``low``, ``high`` (None when there are no rows), ``n`` (rows) and
    ``n_clusters``.

    Example::

        cluster_bootstrap_mean_ci([1.0, 1.0, 0.0], ["a", "a", "b"])  # low 0.0, high 1.0
    """
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or len(clusters) != x.size:
        raise ValueError(f"cluster_bootstrap_mean_ci: {x.size} values but {len(clusters)} cluster labels")
    if not np.all(np.isfinite(x)):
        raise ValueError("cluster_bootstrap_mean_ci: values must be finite")
    if x.size == 0:
        return {"mean": None, "low": None, "high": None, "n": 0, "n_clusters": 0}
    ids = {c: i for i, c in enumerate(dict.fromkeys(clusters))}
    label = np.array([ids[c] for c in clusters])
    sums = np.bincount(label, weights=x, minlength=len(ids))  # [clusters]
    counts = np.bincount(label, minlength=len(ids)).astype(float)  # [clusters]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(ids), size=(n_boot, len(ids)))  # [boot, clusters]
    boots = sums[idx].sum(1) / counts[idx].sum(1)  # [boot]
    alpha = (1 - level) / 2
    return {"mean": float(x.mean()), "low": float(np.quantile(boots, alpha)),
            "high": float(np.quantile(boots, 1 - alpha)), "n": int(x.size), "n_clusters": len(ids)}


def cluster_signflip_pvalue(diffs: Sequence[float], clusters: Sequence[Hashable], n_perm: int = 10000,
                            seed: int = 0) -> float | None:
    """Two-sided p-value for "the mean paired difference is 0", flipping the sign of each
    cluster's differences together (a cluster's rows stay dependent under the null). All
    ``2**n_clusters`` flips are enumerated when that is at most ``n_perm``; otherwise
    ``n_perm`` random flips, with the observed statistic counted once. None without rows.

    Example::

        cluster_signflip_pvalue([0.5, 0.7, 0.2, 0.4], ["a", "a", "b", "c"])  # 0.25 (2 of 8 flips)
    """
    x = np.asarray(diffs, dtype=float)
    if x.ndim != 1 or len(clusters) != x.size:
        raise ValueError(f"cluster_signflip_pvalue: {x.size} differences but {len(clusters)} cluster labels")
    if x.size == 0:
        return None
    ids = {c: i for i, c in enumerate(dict.fromkeys(clusters))}
    sums = np.bincount([ids[c] for c in clusters], weights=x, minlength=len(ids))  # [clusters]
    observed = abs(sums.sum())
    tol = 1e-12 * max(1.0, float(np.abs(sums).sum()))
    if 2 ** len(ids) <= n_perm:
        signs = 1 - 2 * ((np.arange(2 ** len(ids))[:, None] >> np.arange(len(ids))) & 1)  # [2^C, C]
        return float(np.mean(np.abs(signs @ sums) >= observed - tol))
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n_perm, len(ids)))  # [perm, clusters]
    return float((1 + np.sum(np.abs(signs @ sums) >= observed - tol)) / (n_perm + 1))


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1), in the input
    order; None entries stay None and do not count as tests.

    Example::

        holm([0.01, 0.04, 0.03])  # [0.03, 0.06, 0.06]
    """
    live = [(p, i) for i, p in enumerate(pvalues) if p is not None]
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(live)):
        running = max(running, min(1.0, (len(live) - rank) * p))
        out[i] = running
    return out


def mean_ci_t(values: Sequence[float], null: float | None = None, level: float = 0.95
              ) -> dict[str, float | int | None]:
    """Mean of ``values`` (one per independent unit, e.g. per fact) with its t-based interval,
    and the two-sided one-sample t-test p-value against ``null`` (None when ``null`` is None).

    Returns ``n``, ``mean``, ``ci95_low``/``ci95_high`` (None when n < 2; the mean itself
    when the values have no spread) and ``p``.

    Example::

        mean_ci_t([0.6, 0.7, 0.5, 0.8], null=0.5)   # mean 0.65, CI [0.44, 0.86], p 0.1
    """
    x = np.asarray(values, dtype=float)
    n = int(x.size)
    out: dict[str, float | int | None] = {"n": n, "mean": float(x.mean()) if n else None,
                                          "ci95_low": None, "ci95_high": None, "p": None}
    if n < 2:
        return out
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n))
    out.update(ci95_low=float(x.mean()) - half, ci95_high=float(x.mean()) + half)
    if null is not None and sd > 0:
        out["p"] = float(stats.ttest_1samp(x, null).pvalue)
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}
