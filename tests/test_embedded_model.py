"""The real embedded model: offline load from the wheel, a known greedy answer."""

import pytest

from interp.generate import greedy_generate
from interp.scoring import score_completions

pytestmark = pytest.mark.slow


def test_embedded_model_answers_paris(smollm):
    assert smollm.source == "embedded"
    assert smollm.hf.config.num_hidden_layers == 30
    gen = greedy_generate(smollm, ["The capital of France is"], max_new_tokens=3)[0]
    assert gen.text.startswith(" Paris")


def test_embedded_model_prefers_the_right_city(smollm):
    paris, rome = score_completions(smollm, [("The capital of France is", " Paris"),
                                             ("The capital of France is", " Rome")])
    assert paris.total > rome.total + 2.0
