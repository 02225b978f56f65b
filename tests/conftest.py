"""Shared fixtures: tiny models built in-process, the embedded model loaded once, seeding."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

# Tests never reach a model hub; a hub id must fail fast with our message.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny():
    from interp import load_model

    return load_model("tiny:n_layers=3,d_model=64,n_heads=4,n_kv_heads=2,d_mlp=96")


@pytest.fixture(scope="session")
def smollm():
    from interp import load_model

    return load_model("smollm2-135m")
