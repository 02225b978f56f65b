"""Formatting of numbers in reports: percentages, p-values, confidence intervals.

Each returns a string for a Markdown table cell; a missing value (None) reads ``n/a``
(an empty string for a missing interval, which follows another number).

Example::

    pct(0.1234)            # '12.3%'
    pct(0.1234, suffix="") # '12.3'
    pvalue(0.00042)        # '4.2e-04'
    ci(-0.5, 1.25)         # '[-0.50, +1.25]'
"""

from __future__ import annotations


def pct(x: float | None, suffix: str = "%") -> str:
    """A fraction as a percentage with one decimal (``suffix`` after the number)."""
    return "n/a" if x is None else f"{100 * x:.1f}{suffix}"


def pvalue(p: float | None) -> str:
    """Two significant digits, scientific notation below 0.001."""
    return "n/a" if p is None else (f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}")


def ci(low: float | None, high: float | None) -> str:
    """An interval with signs and two decimals; empty when either end is missing."""
    return "" if low is None or high is None else f"[{low:+.2f}, {high:+.2f}]"
