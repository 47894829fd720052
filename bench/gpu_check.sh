#!/usr/bin/env bash
# The one GPU check of the CUDA backend, run on the GPU machine from the repository root:
#   bench/gpu_check.sh [OUT_DIR]      (the device tool sets $OUT; default bench/results)
# Records the machine, runs the GPU tests (tests/gpu) and the template sweep against SDPA.
set -uo pipefail
out="${1:-${OUT:-bench/results}}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TUNER_CACHE_DIR="${TUNER_CACHE_DIR:-/tmp/tuner-cache}"

# The suite's conftest loads the project's dependencies (SQLAlchemy, ...): the device image lacks
# them, so they travel as wheels (../shared/tools/device-wheels; carry .devwheels in the call).
if [[ -f .devwheels/activate ]]; then source .devwheels/activate; fi

# The tuner namespace maps top-level folders under `tuner.` (pyproject's package-dir); where the
# package is not installed, an equivalent tree of links serves without pip or network. Python (-P)
# and pytest (append) then keep the repository root off the front of sys.path, so that its plain
# tuner/ folder cannot shadow the tree.
pytest_import=()
if ! python3 -c "import tuner.workers.cuda" 2>/dev/null; then
  ns="$(mktemp -d)"; mkdir "$ns/tuner"
  ln -s "$PWD"/tuner/* "$ns/tuner/"
  for pkg in workers api db kernel_templates; do ln -s "$PWD/$pkg" "$ns/tuner/$pkg"; done
  export PYTHONPATH="$ns:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  pytest_import=(--import-mode=append)
fi

{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit,temperature.gpu --format=csv
  nvcc --version | tail -1
  python3 -c "import sys, torch, cupy, triton; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cupy', cupy.__version__, 'triton', triton.__version__)"
} 2>&1 | tee "$out/gpu_env.txt"

status=0
python3 -P -m pytest "${pytest_import[@]}" -m gpu tests/gpu -v -s -p no:cacheprovider 2>&1 | tee "$out/gpu_tests.log" || status=1
python3 bench/gpu_bench.py --out "$out" 2>&1 | tee "$out/gpu_bench.log" || status=1
exit $status
