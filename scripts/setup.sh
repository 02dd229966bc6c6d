#!/usr/bin/env bash
# Create .venv (if needed) and install the project's Python packages. torch is installed first and pinned:
# an unpinned torch (e.g. pulled in by captum) would fetch gigabytes of CUDA wheels.
# Usage: scripts/setup.sh [app|dev]
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:-app}"
PY="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
stamp=".venv/.installed-$kind-$(cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)"
if [[ ! -f "$stamp" ]]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
  if [[ "$kind" == "dev" ]]; then
    .venv/bin/python -m pip install --quiet -r requirements-dev.txt
  else
    .venv/bin/python -m pip install --quiet -r requirements.txt
  fi
  # the optional C kernel for KAN layers (a second or two with gcc; without a compiler the PyTorch path is used)
  .venv/bin/python -m kamoe_viz native || true
  touch "$stamp"
fi
