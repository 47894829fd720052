#!/usr/bin/env bash
# The odd GEMM sizes' diagnosis in one device call: bench/gemm_odd_sizes.py (tiles beside cuBLAS on
# shapes that separate row alignment, ragged tiles and wave count), then ncu of the 128x256 tile at
# 3000^3 and 3008^3 (aligned rows, the same tile count) and of cuBLAS at 3000^3.
#   bench/gemm_odd_sizes.sh [OUT_DIR]      (the device tool sets $OUT; default bench/results)
set -uo pipefail
out="$(realpath -m "${1:-${OUT:-bench/results}}")"
mkdir -p "$out"
source bench/device_env.sh
status=0
{ device_header; python3 -P bench/gemm_odd_sizes.py --out "$out" || status=1; } 2>&1 | tee "$out/gemm_odd_sizes.log"
config='{"cluster": 1, "persistent": false, "epilogue": "tma_half"}'
for size in 3000 3008; do
  echo "=== ours and cuBLAS at ${size}^3 fp16"
  ncu --clock-control none -k 'regex:^(gemm|nvjet|sm90|cutlass)' -s 1 -c 2 --section SpeedOfLight \
    --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables --section WarpStateStats \
    --section ComputeWorkloadAnalysis --section LaunchStats \
    python3 -P bench/gemm_vs_cublas.py --profile "$config {\"M\": $size, \"N\": $size, \"K\": $size, \"dtype\": \"fp16\"}" || status=1
done 2>&1 | tee "$out/gemm_odd_sizes_ncu.txt"
exit $status
