"""Device and precision choice: each probe outcome faked, the explicit settings, the manifest."""

from __future__ import annotations

import json

import pytest
import torch

from interp.precision import (
    FAST_BF16_RATIO,
    choose_device,
    choose_eval_dtype,
    choose_precision,
    probe_cpu_matmul,
)


def fake_probe(ratio: float, fp32: float = 100.0):
    calls = []

    def probe():
        calls.append(1)
        return {"fp32_gflops": fp32, "bf16_gflops": fp32 * ratio, "bf16_over_fp32": ratio}

    probe.calls = calls
    return probe


def test_cpu_auto_follows_the_measurement():
    native = choose_precision("auto", "cpu", probe=fake_probe(2.0))
    assert native.value == "bf16" and "2.00x" in native.reason and native.probe["bf16_over_fp32"] == 2.0
    avx2 = choose_precision("auto", "cpu", probe=fake_probe(1 / 60))
    assert avx2.value == "fp32" and "no fast bf16" in avx2.reason
    # bf16 barely faster than fp32 is not worth its rounding
    assert choose_precision("auto", "cpu", probe=fake_probe(FAST_BF16_RATIO - 0.05)).value == "fp32"


def test_explicit_precision_wins_and_slow_bf16_warns():
    said = []
    slow = fake_probe(1 / 60)
    c = choose_precision("bf16", "cpu", probe=slow, warn=said.append)
    assert c.value == "bf16" and c.requested == "bf16"
    assert len(said) == 1 and "60x slower" in said[0] and "\n" not in said[0]
    said.clear()
    assert choose_precision("bf16", "cpu", probe=fake_probe(0.5), warn=said.append).value == "bf16"
    assert said == []  # 2x slower: under the warning threshold
    fp32 = fake_probe(2.0)
    assert choose_precision("fp32", "cpu", probe=fp32).value == "fp32" and fp32.calls == []


def test_cuda_choices_without_a_gpu():
    assert choose_precision("auto", "cuda", cuda_bf16=lambda: True).value == "bf16"
    fp16 = choose_precision("auto", "cuda:1", cuda_bf16=lambda: False)
    assert fp16.value == "fp16" and "scaler" in fp16.reason
    assert choose_precision("fp32", "cuda", cuda_bf16=lambda: True).value == "fp32"
    assert choose_precision("auto", "mps").value == "fp32"


def test_bad_precisions_name_the_setting():
    with pytest.raises(ValueError, match="precision: expected one of"):
        choose_precision("fp8", "cpu")
    with pytest.raises(ValueError, match="fp16 needs a CUDA or MPS device"):
        choose_precision("fp16", "cpu")


def test_eval_dtype_follows_the_same_rule():
    assert choose_eval_dtype("auto", "cpu", probe=fake_probe(2.0)).value == "bfloat16"
    assert choose_eval_dtype("auto", "cpu", probe=fake_probe(0.02)).value == "float32"
    assert choose_eval_dtype("auto", "cuda", cuda_bf16=lambda: False).value == "float16"
    said = []
    kept = choose_eval_dtype("bfloat16", "cpu", probe=fake_probe(0.02), warn=said.append)
    assert kept.value == "bfloat16" and len(said) == 1
    assert choose_eval_dtype("float32", "cpu", probe=fake_probe(2.0)).reason == "asked for"
    with pytest.raises(ValueError, match="dtype"):
        choose_eval_dtype("fp8", "cpu")


def test_device_auto_and_absent_devices():
    auto = choose_device("auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        expected = "mps"
    assert auto.value == expected and auto.reason.startswith("auto")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            choose_device("cuda")


def test_probe_is_measured_once_then_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("RCT_CACHE_DIR", str(tmp_path))
    first = probe_cpu_matmul()
    assert first["cached"] is False and first["fp32_gflops"] > 0 and first["bf16_gflops"] > 0
    second = probe_cpu_matmul()
    assert second["cached"] is True and second["fp32_gflops"] == first["fp32_gflops"]
    assert len(json.loads((tmp_path / "precision-probe.json").read_text())) == 1


def test_manifest_records_device_and_precision_with_reasons(tmp_path):
    from experiments.cli import main

    run = tmp_path / "run"
    assert main(["init", "--preset", "smoke", "--out", str(run), "--set", 'finetune.precision="auto"']) == 0
    man = json.loads((run / "manifest.json").read_text())
    assert man["device"]["value"] == "cpu" and man["device"]["reason"]
    assert man["precision"]["value"] in ("bf16", "fp32") and "GFLOP/s" in man["precision"]["reason"]
    assert man["precision"]["probe"]["fp32_gflops"] > 0
    assert man["eval_dtype"]["value"] == "float32"


@pytest.mark.cpu_only
def test_code_path_flag_takes_effect():
    """scripts/test.sh reruns the numerics tests with ATEN_CPU_CAPABILITY=avx2: that pass
    means something only if torch then runs its AVX2 kernels."""
    import os

    wanted = os.environ.get("ATEN_CPU_CAPABILITY")
    if not wanted:
        pytest.skip("ATEN_CPU_CAPABILITY not set (the default pass)")
    assert torch.backends.cpu.get_cpu_capability().lower() == wanted.lower()


def test_one_noisy_round_does_not_decide_the_precision(monkeypatch):
    """The probe takes the median of interleaved rounds: one slow bf16 window (another process
    waking up) leaves the ratio where the other rounds put it."""
    import interp.precision as P

    speeds = iter([10.0, 20.0, 10.0, 1.0, 10.0, 20.0, 10.0, 20.0, 10.0, 20.0])  # fp32, bf16, ... one bad bf16
    monkeypatch.setattr(P, "_gflops", lambda dtype, n, seconds: next(speeds))
    m = P.measure_cpu_matmul(rounds=5)
    assert m["bf16_over_fp32"] == 2.0 and m["ratios"][1] == 0.1 and m["rounds"] == 5
    assert P.choose_precision("auto", "cpu", probe=lambda: m).value == "bf16"


def test_probe_refresh_and_a_key_that_knows_the_flags(tmp_path, monkeypatch):
    import interp.precision as P

    monkeypatch.setenv("RCT_CACHE_DIR", str(tmp_path))
    values = iter([{"bf16_over_fp32": 0.5, "fp32_gflops": 1.0, "bf16_gflops": 0.5},
                   {"bf16_over_fp32": 2.0, "fp32_gflops": 1.0, "bf16_gflops": 2.0}])
    monkeypatch.setattr(P, "measure_cpu_matmul", lambda: next(values))
    assert P.probe_cpu_matmul()["bf16_over_fp32"] == 0.5
    assert P.probe_cpu_matmul()["cached"] is True
    monkeypatch.setenv("RCT_PRECISION_PROBE", "refresh")
    fresh = P.probe_cpu_matmul()
    assert fresh["cached"] is False and fresh["bf16_over_fp32"] == 2.0
    monkeypatch.setattr(P, "_cpu_flags", lambda: "avx2 fma")
    key_a = P._probe_key()
    monkeypatch.setattr(P, "_cpu_flags", lambda: "avx2 avx512_bf16 fma")
    assert P._probe_key() != key_a


def test_cli_precision_probe_flag(tmp_path, capsys, monkeypatch):
    import os

    from experiments.cli import main

    monkeypatch.setenv("RCT_PRECISION_PROBE", "")  # so that teardown removes what main() sets
    assert main(["--precision-probe", "again", "init", "--preset", "smoke", "--out", str(tmp_path / "r")]) == 2
    assert "expected 'refresh'" in capsys.readouterr().err and not (tmp_path / "r").exists()
    monkeypatch.setenv("RCT_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["init", "--preset", "smoke", "--out", str(tmp_path / "r"), "--precision-probe", "refresh"]) == 0
    assert os.environ.get("RCT_PRECISION_PROBE") == "refresh"
