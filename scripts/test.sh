#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: every notebook, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
echo "== notebooks (nbdev-test)"
nbdev-test --n-workers 2 nbs
echo "== pytest"
python3 -m pytest tests
