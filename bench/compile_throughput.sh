#!/usr/bin/env bash
# NVRTC against nvcc compile throughput on the GPU machine (its CPU cores compile), from the
# repository root:   bench/compile_throughput.sh [OUT_DIR]   (the device tool sets $OUT)
# Writes compile_throughput_cuda.{json,md} and the machine's header into OUT_DIR; copy the two
# result files to bench/results/ to commit them.
set -euo pipefail
out="${1:-${OUT:-bench/results}}"
mkdir -p "$out"
source bench/device_env.sh
device_header 2>&1 | tee "$out/compile_throughput_env.txt"
python3 -c "from tuner.workers import nvrtc; print('nvrtc', nvrtc.version(), nvrtc.include_dirs())" 2>&1 | tee -a "$out/compile_throughput_env.txt"
python3 bench/compile_throughput.py --backend cuda --workers 1 4 16 --kernels 64 --out "$out" \
  --note "$(nproc) CPU cores; 64 distinct configs per (compiler, worker count), fresh cache each" 2>&1 | tee "$out/compile_throughput.log"
