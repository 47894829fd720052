#!/usr/bin/env bash
# First look on the GPU machine: the GEMM's GPU tests, a few tiles beside cuBLAS (gemm_vs_cublas.py
# --probe), and the attention tests that go through the same launcher. Logs under $OUT.
set -uo pipefail
out="$(realpath -m "${1:-${OUT:-/tmp/gemm-probe}}")"
mkdir -p "$out"
source bench/device_env.sh
python3 -c "import cuda.bindings; print('cuda-bindings', cuda.bindings.__version__)"
device_header
status=0
timeout 200 python3 -P -m pytest --import-mode=append -q -x -m gpu -p no:cacheprovider tests/gpu/test_gemm_cuda.py 2>&1 | tee "$out/gemm_gpu_tests.log" || status=1
timeout 150 python3 -P bench/gemm_vs_cublas.py --probe 2>&1 | tee "$out/gemm_probe.log" || status=1
[[ "${ATTENTION:-1}" == 0 ]] || timeout 100 python3 -P -m pytest --import-mode=append -q -m gpu -p no:cacheprovider tests/gpu/test_attention_cuda.py -k "S512-D64-fp16-full or default_problem or do_bench or another_arch or unwritten" 2>&1 | tail -5 | tee "$out/attention_gpu_tests.log" || status=1
ncu_problem=${NCU_PROBLEM:-'{"M": 4096, "N": 4096, "K": 4096}'}
if [[ -n "${NCU_CONFIG:-}" ]]; then  # e.g. NCU_CONFIG='{"cluster": 1}': its second launch, then cuBLAS's
  timeout 200 ncu --clock-control none -k regex:gemm -s 1 -c 2 --section SpeedOfLight --section WarpStateStats \
    --section MemoryWorkloadAnalysis --section LaunchStats --section Occupancy \
    python3 -P bench/gemm_vs_cublas.py --profile "$NCU_CONFIG $ncu_problem" 2>&1 | tee "$out/gemm_ncu.txt" || status=1
fi
exit $status
