import numpy as np
import pytest
from scipy import stats

from analysis.stats import paired_tests, per_group_means


def test_per_group_means_keep_order():
    assert per_group_means([3, 1, 3, 1], [1.0, 2.0, 3.0, 6.0]) == {3: 2.0, 1: 4.0}


def test_paired_tests_match_scipy_and_detect_a_shift():
    rng = np.random.default_rng(0)
    control = rng.normal(-8, 1, size=30)
    correct = control + 1.0 + rng.normal(0, 0.3, size=30)
    r = paired_tests(correct, control)
    assert r["n"] == 30
    assert r["t_pvalue"] == pytest.approx(stats.ttest_rel(correct, control).pvalue)
    assert r["t_pvalue"] < 1e-6 and r["mean_diff"] == pytest.approx(np.mean(correct - control))
    assert r["ks_pvalue"] == pytest.approx(stats.ks_2samp(correct, control).pvalue)
    # the 95% CI of the mean difference is the one scipy's t-test reports
    ci = stats.ttest_rel(correct, control).confidence_interval(0.95)
    assert (r["diff_ci95_low"], r["diff_ci95_high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert r["diff_ci95_low"] < 1.0 < r["diff_ci95_high"]


def test_paired_tests_degenerate_inputs():
    r = paired_tests([1.0, 2.0], [1.0, 2.0])
    assert r["t_pvalue"] is None and r["cohen_dz"] is None and r["diff_ci95_low"] is None
    assert paired_tests([1.0], [0.0])["ks_pvalue"] is None
    with pytest.raises(ValueError):
        paired_tests([1.0, 2.0], [1.0])
