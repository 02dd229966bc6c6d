#!/usr/bin/env bash
# Install (first time) what the tests need, including Debian's chromium for the browser test, then run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[[ "$(id -u)" != 0 ]] && command -v sudo >/dev/null && SUDO="sudo"
apt_packages=()
[[ -x /usr/bin/chromium ]] || apt_packages+=(chromium)  # the browser tests
command -v cc >/dev/null || apt_packages+=(gcc libc6-dev)  # the native KAN kernel's tests
if (( ${#apt_packages[@]} )); then
  echo "Installing Debian packages for the tests: ${apt_packages[*]}..."
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi
bash scripts/setup.sh dev
echo "ruff check"
.venv/bin/ruff check .
echo "ruff format --check"
.venv/bin/ruff format --check .
echo "mypy"
.venv/bin/python -m mypy
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
exec .venv/bin/python -m pytest "$@"
