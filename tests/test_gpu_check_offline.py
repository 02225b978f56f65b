"""The GPU check's offline path: a Python with everything and no package index, the embedded
model from a GGUF copied in by path, and one line naming what is missing otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_help_documents_the_offline_path() -> None:
    out = subprocess.run(["bash", "scripts/gpu-check.sh", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "--no-install" in out.stdout and "RCT_SMOLLM2_GGUF" in out.stdout


def test_no_install_on_this_python_stops_at_the_gpu_check() -> None:
    """This environment has every module: the check passes the imports and stops, in one line,
    at the missing GPU (on a GPU machine it would go on to the tests)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: --no-install would run the whole check")
    out = subprocess.run(["bash", "scripts/gpu-check.sh", "--no-install", "--skip-tests"], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable})
    assert out.returncode == 1
    assert "sees no CUDA device" in out.stdout and "missing" not in out.stdout


def test_a_bare_python_gets_one_pip_install_line() -> None:
    bare = shutil.which("python3", path="/usr/bin:/bin")
    if bare is None or subprocess.run([bare, "-c", "import torch"], capture_output=True).returncode == 0:
        pytest.skip("no Python without torch on this machine")
    out = subprocess.run([bare, "scripts/check_imports.py", "--cuda"], cwd=ROOT, capture_output=True, text=True)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("missing: pip install")]
    assert out.returncode == 1 and len(lines) == 1 and "'torch'" in lines[0] and "transformer-lens" in lines[0]


def test_embedded_gguf_from_a_path(monkeypatch, tmp_path) -> None:
    from interp.errors import ModelLoadError
    from interp.models import EMBEDDED_MODELS, _embedded_gguf

    monkeypatch.setenv("RCT_SMOLLM2_GGUF", str(tmp_path / "nothing.gguf"))
    with pytest.raises(ModelLoadError, match="RCT_SMOLLM2_GGUF=.*no such GGUF file"):
        _embedded_gguf("smollm2-135m")
    name = EMBEDDED_MODELS["smollm2-135m"]["gguf_file"]
    f = tmp_path / "copied" / name
    f.parent.mkdir()
    f.write_bytes(b"GGUF")  # where it is looked for, not what is in it
    for given in (f, f.parent):
        monkeypatch.setenv("RCT_SMOLLM2_GGUF", str(given))
        assert _embedded_gguf("smollm2-135m") == (f.parent, name)
