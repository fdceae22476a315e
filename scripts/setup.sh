#!/usr/bin/env bash
# Set up a fresh machine: CPU PyTorch first (so nothing pulls CUDA builds), then the project.
# Usage: bash scripts/setup.sh        (runtime)
#        bash scripts/setup.sh dev    (+ test tools, the Open3D reference renderer, headless Chromium, Open3D's system library)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet "torch==2.13.0"
if [ "${1:-}" = "dev" ]; then
  python3 -m pip install --quiet -e ".[dev,bench]"
  if ! command -v chromium >/dev/null 2>&1 || ! ldconfig -p | grep -q libusb-1.0; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        chromium fonts-liberation libusb-1.0-0 >/dev/null
    else
      echo "setup: install Debian packages chromium fonts-liberation libusb-1.0-0 (needs root)" >&2
    fi
  fi
else
  python3 -m pip install --quiet -e .
fi
