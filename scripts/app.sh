#!/usr/bin/env bash
# Install (first time) and start the explorer on http://localhost:8501 (bound to localhost only).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh app
exec .venv/bin/python -m streamlit run app.py --server.address 127.0.0.1 "$@"
