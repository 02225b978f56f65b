"""Statistics for correct-vs-control comparisons, at the level of facts.

A fact's held-out prompts are not independent samples, so each fact's prompts are averaged
first (as the paper does) and the tests run over facts: a paired t-test on the per-fact means,
and a two-sample Kolmogorov-Smirnov test on the two sets of per-fact means.

Example::

    paired_tests([-7.4, -6.9, -8.0], [-7.5, -7.1, -7.7])["t_pvalue"]
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Hashable, Iterable, Sequence

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
