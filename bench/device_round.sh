#!/usr/bin/env bash
# One call of the device tool running several GPU checks in turn, from the repository root:
#   PARTS="gpu_tests runtime_bench compile" bash bench/device_round.sh
# Each part writes under $OUT/round/<part>/ and has its own time limit (LIMIT_<part>, seconds), so
# one slow part cannot take the others' time; everything is packed into $OUT/round.tar.gz at the
# end (the device tool brings back at most 8 files). Parts:
#   gpu_tests      every GPU-marked test (attention, gemm, runtime, the CUDA example)
#   runtime_bench  bench/runtime_overhead.py (tuner.runtime's launch overhead, transformer block)
#   compile        bench/compile_throughput.py, NVRTC against nvcc on this machine's cores
#   cuda_example   bench/cuda_example.sh (the README's CUDA example, as printed)
#   search         bench/search_gpu_pipeline.sh (ours against Kernel Tuner on the GPU)
#   measure_tests  the measurement's GPU tests (their numbers printed) and the Hopper primitives' ones
#   new_tests      the GPU tests of this session's changes: measurement, Hopper primitives, two jobs per
#                  measuring actor (tests/gpu/test_ray_executor_cuda.py), the GEMM's (block_n 192 among them)
#   gemm_odd       bench/gemm_odd_sizes.sh (the odd GEMM sizes beside cuBLAS, with ncu)
#   fp8_probe      bench/attention_hopper_probe.py time --fp8 (the e4m3 tiles, each poly_exp2 share)
set -uo pipefail
root="${OUT:-bench/results}/round"
mkdir -p "$root"
source bench/device_env.sh
device_header >"$root/env.txt" 2>&1

run_part() {  # name, default limit, command...
  local name=$1 limit=$2; shift 2
  local var="LIMIT_$name" dir="$root/$name"
  mkdir -p "$dir"
  local started=$SECONDS
  timeout "${!var:-$limit}" "$@" >"$dir/log" 2>&1
  local rc=$?
  echo "$name: exit $rc in $((SECONDS - started)) s" | tee -a "$root/summary.txt"
}

for part in ${PARTS:-gpu_tests runtime_bench compile}; do
  case $part in
    gpu_tests) run_part gpu_tests 300 python3 -P -m pytest --import-mode=append -m gpu tests/gpu -v -p no:cacheprovider ;;
    runtime_bench) ONLY=bench run_part runtime_bench 200 bash bench/runtime_overhead.sh "$root/runtime_bench" ;;
    compile) run_part compile 200 python3 bench/compile_throughput.py --backend cuda --workers 1 4 16 \
               --kernels "${KERNELS:-24}" --out "$root/compile" \
               --note "$(nproc) CPU cores; ${KERNELS:-24} distinct configs per (compiler, worker count), fresh cache each" ;;
    cuda_example) run_part cuda_example 150 bash bench/cuda_example.sh "$root/cuda_example" ;;
    search) run_part search 240 bash bench/search_gpu_pipeline.sh "$root/search" ;;
    measure_tests) run_part measure_tests 120 python3 -P -m pytest --import-mode=append -m gpu -v -s \
                     -p no:cacheprovider tests/gpu/test_measure_cuda.py tests/gpu/test_hopper_primitives.py ;;
    new_tests) run_part new_tests 200 python3 -P -m pytest --import-mode=append -m gpu -v -s -p no:cacheprovider \
                 tests/gpu/test_measure_cuda.py tests/gpu/test_hopper_primitives.py tests/gpu/test_ray_executor_cuda.py \
                 tests/gpu/test_gemm_cuda.py ;;
    gemm_odd) run_part gemm_odd 240 bash bench/gemm_odd_sizes.sh "$root/gemm_odd" ;;
    fp8_probe) run_part fp8_probe 200 python3 -P bench/attention_hopper_probe.py time --fp8 --out "$root/fp8_probe" ;;
    *) echo "unknown part $part" | tee -a "$root/summary.txt" ;;
  esac
done
tar -czf "${OUT:-bench/results}/round.tar.gz" -C "$(dirname "$root")" round && rm -rf "$root"
