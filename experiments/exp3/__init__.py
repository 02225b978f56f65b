"""Experiment 3: instructions in one order, questions in the other (``run.py``: config,
presets, finetuning per order, evaluation, report and Figure 8 analog; ``data.py``: our
question-answer generator and the loader of the paper's folder layout)."""

from experiments.exp3.run import (
    Exp3Config, evaluate_exp3, exp3_markdown, figure8, preset, run_exp3, summarise_exp3,
)

__all__ = ["Exp3Config", "evaluate_exp3", "exp3_markdown", "figure8", "preset", "run_exp3",
           "summarise_exp3"]
