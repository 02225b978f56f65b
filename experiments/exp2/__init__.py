"""Experiment 2: real parents and children, asked in both directions (``run.py``: config,
prompts, evaluation and the run; ``candidates.py``: controls, candidate names, ranks and
family clusters; ``shared_prefix.py``: many completions per prompt over one cached header,
scored or sampled; ``summary.py``: family-clustered statistics; ``report.py``: the page and
the Figure 5 analog; ``data.py``: the pairs list and its CSV loader)."""

from experiments.exp2.candidates import candidate_names, control_names, families, rank_stats
from experiments.exp2.report import exp2_markdown, figure5
from experiments.exp2.run import (
    Exp2Config, any_sample_matches, build_prompt, child_question, evaluate_exp2, in_few_shot, parent_question,
    run_exp2, shares_name,
)
from experiments.exp2.shared_prefix import sample_completions, score_candidates
from experiments.exp2.summary import summarise_exp2

__all__ = [
    "Exp2Config", "any_sample_matches", "build_prompt", "candidate_names", "child_question", "control_names",
    "evaluate_exp2", "exp2_markdown", "families", "figure5", "in_few_shot", "parent_question", "rank_stats",
    "run_exp2", "sample_completions", "score_candidates", "shares_name", "summarise_exp2",
]
