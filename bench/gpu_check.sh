#!/usr/bin/env bash
# The one GPU check of the CUDA backend, run on the GPU machine from the repository root:
#   bench/gpu_check.sh [OUT_DIR]      (the device tool sets $OUT; default bench/results)
# Records the machine, runs the GPU tests (tests/gpu) and the template sweep against SDPA.
set -uo pipefail
out="${1:-${OUT:-bench/results}}"
mkdir -p "$out"
source bench/device_env.sh
device_header 2>&1 | tee "$out/gpu_env.txt"

status=0
python3 -P -m pytest --import-mode=append -m gpu tests/gpu -v -s -p no:cacheprovider 2>&1 | tee "$out/gpu_tests.log" || status=1
python3 bench/gpu_bench.py --out "$out" 2>&1 | tee "$out/gpu_bench.log" || status=1
exit $status
