"""Look inside causal LMs: loading, tokenising, scoring, generation, recording, attribution."""

from interp.generate import Generation, greedy_generate
from interp.models import LoadedModel, ModelLoadError, ModelOptions, TinyConfig, load_model
from interp.scoring import CompletionScore, score_completions

__all__ = [
    "CompletionScore", "Generation", "LoadedModel", "ModelLoadError", "ModelOptions",
    "TinyConfig", "greedy_generate", "load_model", "score_completions",
]
