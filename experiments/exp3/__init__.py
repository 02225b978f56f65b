"""Experiment 3: instructions in one order, questions in the other (``schema.py``: the
orders, a pair and a dataset; ``data.py``: our question-answer generator and instruction
templates; ``load.py``: reading folders, ours or in the paper's layout; ``evaluate.py``:
asking the questions and reading the answers back; ``config.py``: settings and presets;
``run.py``: finetuning per order and seed with per-epoch evaluation; ``report.py``: the
orders compared question by question; ``figures.py``: Figure 8 and Figure 10 analogs)."""

from experiments.exp3.figures import figure8, figure10
from experiments.exp3.report import collect, contrast_orders, exp3_markdown, write_report
from experiments.exp3.run import Exp3Config, preset, run_exp3

__all__ = ["Exp3Config", "collect", "contrast_orders", "exp3_markdown", "figure10", "figure8", "preset",
           "run_exp3", "write_report"]
