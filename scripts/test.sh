#!/usr/bin/env bash
# Set up (reusing .venv when present) and run the whole test suite, slow tests included
# (plain `pytest` skips the ones marked slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -m "slow or not slow" "$@"
