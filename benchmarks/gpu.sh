#!/usr/bin/env bash
# The GPU measurements in one command, for a machine with a CUDA device:
#   1. the test suite's CUDA variants (every test taking the `device` fixture; skipped on CPU),
#   2. benchmarks/scale.py on CUDA (tiny / intermediate / real XVLA, float32 and bf16),
#   3. one short learner + actors run with the policies on the GPU (actor_learner_throughput.py),
#   4. on a machine with several GPUs: update seconds vs data-parallel ranks (scale.py --ranks, NCCL
#      under torchrun, 1 rank per GPU); skipped with one GPU.
#
#   bash benchmarks/gpu.sh [OUT_DIR]          # default: benchmarks/results/gpu
#
# Python: $PYTHON when set (an environment that already holds this package's dependencies, e.g.
# on a machine without a package registry), else the repo's .venv, built by scripts/setup.sh.
# MuJoCo renders with $MUJOCO_GL (default egl: the GPU's own OpenGL, no display needed).
set -euo pipefail
cd "$(dirname "$0")/.."
out_dir=$(realpath -m "${1:-benchmarks/results/gpu}")
mkdir -p "$out_dir"
if [ -z "${PYTHON:-}" ]; then
  bash scripts/setup.sh >/dev/null
  PYTHON=.venv/bin/python
fi
"$PYTHON" - <<'PY'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("benchmarks/gpu.sh: no CUDA device (torch.cuda.is_available() is False); nothing measured")
print("GPU:", torch.cuda.get_device_name(0), "| torch", torch.__version__)
PY
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export MUJOCO_GL=${MUJOCO_GL:-egl} PYOPENGL_PLATFORM=${PYOPENGL_PLATFORM:-${MUJOCO_GL:-egl}}
threads=$(( $(nproc) < 8 ? $(nproc) : 8 ))
status=0

echo "== 1/4 CUDA test variants"
"$PYTHON" -m pytest -q -p no:cacheprovider -rs -k "cuda" --junitxml="$out_dir/cuda_tests.xml" \
  tests/recipes/test_pi_rl_recipe.py tests/benchmarks/test_scale_memory.py tests/rl/test_actor_learner.py \
  || status=1

echo "== 2/4 scale on CUDA"
"$PYTHON" benchmarks/scale.py --device cuda --threads "$threads" --decisions 8 --child-timeout 900 \
  --out "$out_dir/scale_cuda.json" || status=1

echo "== 3/4 learner + actors, policies on CUDA"
"$PYTHON" benchmarks/actor_learner_throughput.py --policy-device cuda --seconds 60 \
  --actors "$(( $(nproc) / 2 > 1 ? $(nproc) / 2 : 1 ))" --envs 16 \
  --out "$out_dir/actor_learner_throughput_cuda.json" || status=1

gpus=$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())')
if [ "$gpus" -gt 1 ]; then
  echo "== 4/4 update seconds vs data-parallel ranks ($gpus GPUs)"
  ranks=$(for n in 1 2 4 8; do [ "$n" -le "$gpus" ] && printf '%s ' "$n"; done)
  # shellcheck disable=SC2086  # one argument per rank count
  "$PYTHON" benchmarks/scale.py --device cuda --ranks $ranks --rank-size intermediate --rank-decisions 64 \
    --threads 1 --child-timeout 900 --out "$out_dir/scale_ranks_cuda.json" || status=1
else
  echo "== 4/4 skipped: one GPU (update seconds vs ranks needs several)"
fi

echo "results in $out_dir"
exit $status
