"""Experiment 2: real parents and children, asked in both directions (``run.py``: prompts,
evaluation, report and Figure 5 analog; ``data.py``: the pairs list and its CSV loader)."""

from experiments.exp2.run import (
    Exp2Config, build_prompt, child_question, control_names, evaluate_exp2, exp2_markdown, figure5,
    in_few_shot, parent_question, run_exp2, shares_name, summarise_exp2,
)

__all__ = [
    "Exp2Config", "build_prompt", "child_question", "control_names", "evaluate_exp2", "exp2_markdown",
    "figure5", "in_few_shot", "parent_question", "run_exp2", "shares_name", "summarise_exp2",
]
