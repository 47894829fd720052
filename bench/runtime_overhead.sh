#!/usr/bin/env bash
# tuner.runtime on the GPU machine, from the repository root:
#   bench/runtime_overhead.sh [OUT_DIR]      (the device tool sets $OUT; default bench/results)
# Unpacks the committed tuning databases (attention and GEMM studies, arch sm_90a, which an H100
# and an H200 share), runs the overhead benchmark (bench/runtime_overhead.py), then the runtime's
# GPU tests (tests/gpu/test_runtime*.py). ONLY=bench or ONLY=tests runs one of the two.
set -uo pipefail
out="$(realpath -m "${1:-${OUT:-bench/results}}")"
mkdir -p "$out"
source bench/device_env.sh
dbs="$(mktemp -d)"
gunzip -c bench/results/attention_tuned.db.gz >"$dbs/attention_tuned.db"
gunzip -c bench/results/gemm_tuned.db.gz >"$dbs/gemm_tuned.db"

status=0
device_header 2>&1 | tee "$out/runtime_env.txt"
python3 -c "import cuda.bindings; print('cuda-bindings', cuda.bindings.__version__)" 2>&1 | tee -a "$out/runtime_env.txt"
if [[ "${ONLY:-bench}" == bench ]]; then
  python3 -P bench/runtime_overhead.py --db "sqlite:///$dbs/attention_tuned.db" \
    --gemm-db "sqlite:///$dbs/gemm_tuned.db" --out "$out" 2>&1 | tee "$out/runtime_overhead.log" || status=1
fi
if [[ "${ONLY:-tests}" == tests ]]; then
  python3 -P -m pytest --import-mode=append -m gpu tests/gpu/test_runtime_gemm_gpu.py tests/gpu/test_runtime_gpu.py \
    -v -p no:cacheprovider 2>&1 | tee "$out/runtime_gpu_tests.log" || status=1
fi
exit $status
