#!/usr/bin/env bash
# Set up (reusing .venv when present) and run the whole test suite, slow tests included
# (plain `pytest` skips the ones marked slow). Extra arguments go to pytest.
#
# On an x86-64 CPU with AVX2, the numerics-sensitive tests (influence, tracing, weight
# reverts, scoring, perplexity, attribution, generation, precision) then run a second time with torch
# held to its AVX2 kernels, the code paths of a CPU without AVX-512 or native bf16, so that
# a tolerance set on one CPU's rounding fails here rather than on a user's machine.
#   RCT_AVX2_PASS  1 (default) runs that second pass when no extra arguments are given; 0 skips it
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
NUMERICS=(tests/test_influence.py tests/test_tracin_checkpoints.py tests/test_trace.py tests/test_weights.py tests/test_scoring.py tests/test_perplexity.py
          tests/test_attribution.py tests/test_generate.py tests/test_precision.py tests/test_logit_lens.py tests/test_kv.py)
.venv/bin/python -m pytest -q -m "slow or not slow" "$@"
if [ "$#" -eq 0 ] && [ "${RCT_AVX2_PASS:-1}" = "1" ] && [ "$(uname -m)" = "x86_64" ] \
    && grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
  echo "== the numerics-sensitive tests again on AVX2 code paths =="
  ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
    .venv/bin/python -m pytest -q -m "slow or not slow" "${NUMERICS[@]}"
fi
