#!/usr/bin/env bash
# The README's test command: set everything up, then run the whole suite (pytest exit 5 = failure).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export OMP_NUM_THREADS=1 MUJOCO_GL=osmesa PYOPENGL_PLATFORM=osmesa HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest tests -q -p no:cacheprovider "$@"
