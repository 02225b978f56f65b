"""Look inside causal LMs: loading, tokenising, scoring, generation, recording, attribution."""

from interp.attribution import direct_logit_attribution, grad_x_act, logit_lens
from interp.generate import Generation, greedy_generate
from interp.models import LoadedModel, ModelLoadError, ModelOptions, TinyConfig, load_model
from interp.recording import Query, Recording, record
from interp.scoring import CompletionScore, score_completions

__all__ = [
    "CompletionScore", "Generation", "LoadedModel", "ModelLoadError", "ModelOptions", "Query",
    "Recording", "TinyConfig", "direct_logit_attribution", "grad_x_act", "greedy_generate",
    "load_model", "logit_lens", "record", "score_completions",
]
