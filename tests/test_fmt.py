"""The report number formats (one copy, shared by every report)."""

from analysis.fmt import ci, pct, pvalue


def test_pct() -> None:
    assert pct(0.1234) == "12.3%" and pct(1.0, suffix="") == "100.0" and pct(None) == "n/a"


def test_pvalue_switches_to_scientific_below_a_thousandth() -> None:
    assert [pvalue(x) for x in (0.5, 0.0123, 0.001, 0.00042, None)] == ["0.5", "0.012", "0.001", "4.2e-04", "n/a"]


def test_ci() -> None:
    assert ci(-0.5, 1.25) == "[-0.50, +1.25]" and ci(None, 1.0) == "" and ci(0.1, None) == ""
