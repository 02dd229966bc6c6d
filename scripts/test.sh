#!/usr/bin/env bash
# Install (first time) what the tests need, including Debian's chromium for the browser test, then run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
if [[ ! -x /usr/bin/chromium ]]; then
  SUDO=""
  [[ "$(id -u)" != 0 ]] && command -v sudo >/dev/null && SUDO="sudo"
  echo "Installing Debian chromium for the browser test..."
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
exec .venv/bin/python -m pytest "$@"
