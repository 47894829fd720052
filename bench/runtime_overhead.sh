#!/usr/bin/env bash
# tuner.runtime on the GPU machine, from the repository root:
#   bench/runtime_overhead.sh [OUT_DIR]      (the device tool sets $OUT; default bench/results)
# Unpacks the committed tuning database (H100 attention studies, arch sm_90a), runs the runtime's
# GPU tests (tests/gpu/test_runtime_gpu.py) and the overhead benchmark (bench/runtime_overhead.py).
# ONLY=tests or ONLY=bench runs one of the two (each fits one call of the device tool).
set -uo pipefail
out="$(realpath -m "${1:-${OUT:-bench/results}}")"
mkdir -p "$out"
source bench/device_env.sh
db="$(mktemp -d)/attention_tuned.db"
gunzip -c bench/results/attention_tuned.db.gz >"$db"

status=0
device_header 2>&1 | tee "$out/runtime_env.txt"
python3 -c "import cuda.bindings; print('cuda-bindings', cuda.bindings.__version__)" 2>&1 | tee -a "$out/runtime_env.txt"
if [[ "${ONLY:-tests}" == tests ]]; then
  python3 -P -m pytest --import-mode=append -m gpu tests/gpu/test_runtime_gpu.py -v -p no:cacheprovider 2>&1 \
    | tee "$out/runtime_gpu_tests.log" || status=1
fi
if [[ "${ONLY:-bench}" == bench ]]; then
  python3 -P bench/runtime_overhead.py --db "sqlite:///$db" --out "$out" 2>&1 | tee "$out/runtime_overhead.log" || status=1
fi
exit $status
