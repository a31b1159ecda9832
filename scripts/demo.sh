#!/usr/bin/env bash
# The README's main-job command: set everything up, then `lerobot-pirl demo` on the shipped SFT
# checkpoint (learner + 2 actors on localhost, ~14 min on 2 CPU cores). Extra arguments go to the
# demo, e.g. `bash scripts/demo.sh --noise-method=flow_sde --env-steps=5000`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export OMP_NUM_THREADS=1 MUJOCO_GL=osmesa PYOPENGL_PLATFORM=osmesa HF_HUB_OFFLINE=1
exec .venv/bin/lerobot-pirl demo "$@"
