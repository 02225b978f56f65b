#!/usr/bin/env bash
# Set up (reusing .venv when present) and run the experiment 1 reproduction on the embedded
# SmolLM2-135M with the CPU default preset; prints the Table 1 analog with the t-test and KS
# p-values. Extra arguments go to `rct exp1` (e.g. --preset paper --device cuda --out runs/paper).
set -euo pipefail
cd "$(dirname "$0")/.."
RCT_BROWSER=0 bash scripts/setup.sh
exec .venv/bin/rct exp1 --preset cpu --out runs/exp1-cpu --resume "$@"
