"""Figure functions build ``matplotlib.figure.Figure`` objects and leave the backend alone.

A notebook's inline backend cannot be selected here, so the tests select another non-Agg
backend ("svg") and check that it is still selected after each figure function ran.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib
import pytest

from experiments.exp1.evaluate import CELLS
from experiments.exp1.report import figure4
from experiments.exp2 import figure5
from experiments.exp3 import figure8
from experiments.sweeps.report import METRICS, sweep_figure

PNG_MAGIC = b"\x89PNG"


@pytest.fixture()
def svg_backend():
    before = matplotlib.get_backend()
    matplotlib.use("svg")
    yield
    matplotlib.use(before)


def _written(paths: list[Path], stem: str) -> None:
    png, svg = sorted(paths)
    assert (png.name, svg.name) == (f"{stem}.png", f"{stem}.svg")
    assert png.read_bytes()[:4] == PNG_MAGIC and b"<svg" in svg.read_bytes()[:2000]


def _point(values: dict, mean: float) -> dict:
    em = {"mean": mean, "sd": 0.1, "min": mean - 0.1, "max": mean + 0.1, "n": 2}
    return {"values": values, "seeds": [0, 1], "exact_match": {stem: em for stem, _ in METRICS[:2]}}


def test_exp1_figure4_keeps_backend(tmp_path, svg_backend) -> None:
    per_fact = {"correct": [-3.0, -2.5, -4.0], "random": [-6.0, -5.5, -6.5]}
    stem = next(iter(CELLS))
    metrics = {lbl: {"cells": {stem: {"per_fact": per_fact}}} for lbl in ("base", "finetuned")}
    _written(figure4(metrics, tmp_path / "figure4"), "figure4")
    assert matplotlib.get_backend() == "svg"


@pytest.mark.parametrize("keys,name", [(["finetune.lr"], "lines"),
                                       (["finetune.lr", "finetune.batch_size"], "heatmap")])
def test_sweep_figure_keeps_backend(tmp_path, svg_backend, keys, name) -> None:
    values = {"finetune.lr": (1e-4, 1e-3), "finetune.batch_size": (8, 16)}
    grid = [dict(zip(keys, combo)) for combo in itertools.product(*(values[k] for k in keys))]
    points = [_point(v, 0.2 + 0.1 * i) for i, v in enumerate(grid)]
    _written(sweep_figure({"grid_keys": keys, "points": points}, tmp_path), name)
    assert matplotlib.get_backend() == "svg"


def test_exp2_figure5_keeps_backend(tmp_path, svg_backend) -> None:
    queries = {q: {"mean_prob": p, "sem_prob": 0.01} for q, p in (("parent", 0.2), ("child", 0.05))}
    _written(figure5({"tiny": {"queries": queries}}, tmp_path / "figure5"), "figure5")
    assert matplotlib.get_backend() == "svg"


def test_exp3_figure8_keeps_backend(tmp_path, svg_backend) -> None:
    results = {o: {"finetuned": {"unrealized": {"exact_match": em}}} for o, em in (("q2a", 0.6), ("a2q", 0.1))}
    _written(figure8(results, tmp_path / "figure8"), "figure8")
    assert matplotlib.get_backend() == "svg"
