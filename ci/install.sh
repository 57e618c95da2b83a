#!/usr/bin/env bash
# Installs what a fresh Debian machine needs to build and test pyisapie-rs:
# system packages (when missing), and a Python venv at .venv with the pinned
# test and peer-server requirements. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pkg in gcc pkg-config libpython3.11-dev python3-venv python3-pip curl; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi

PY=${PYO3_PYTHON:-/usr/bin/python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
for req in ci/python-requirements.txt ci/peers-requirements.txt; do
  if [ -f "$req" ]; then
    .venv/bin/python -m pip install -q -r "$req"
  fi
done
echo "install: ok"
