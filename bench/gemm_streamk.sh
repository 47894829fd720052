#!/usr/bin/env bash
# Stream-K on the odd GEMM rows in one device call (under 480 s): the stream-K GPU tests (every
# dtype and layout, the odd rows, few tiles over every SM, repeated launches on two streams), one
# stream-K launch of 3000^3 under compute-sanitizer memcheck, then the odd rows (3000^3 and
# 1000x5000x3000, fp16 and bf16) tuned TRIALS more (stream-K in the space) and timed beside cuBLAS:
# each row's data-parallel winner (stored before), its winner after the tuning, the fastest stream-K
# candidate (bench/gemm_vs_cublas.py --stream-k). Every step runs under a timeout: a stream-K
# kernel whose waits never end shows as a timeout, not a hung call.
#   bench/gemm_streamk.sh OUT_DIR      (the device tool sets $OUT)
# Environment: TRIALS (default 12), TESTS_FOR (150 s), SANITIZE_FOR (80 s; 0 skips it), BENCH_FOR
# (220 s), RETUNE=0 to time the stored winners without tuning. Writes gemm_streamk.{log,md,json},
# gemm_streamk_tests.log, gemm_streamk_memcheck.log and the tuning database (gemm_tuned.db.gz,
# from bench/results/gemm_tuned.db.gz) into OUT_DIR.
set -uo pipefail
out="$(realpath -m "${1:-${OUT:-bench/results}}")"
mkdir -p "$out"
source bench/device_env.sh
db="$(mktemp -d)/gemm_tuned.db"
if [[ -f bench/results/gemm_tuned.db.gz ]]; then gunzip -c bench/results/gemm_tuned.db.gz >"$db"; fi
trap 'gzip -c "$db" >"$out/gemm_tuned.db.gz"' EXIT
started=$(date +%s)
stamp() { echo "--- $1 at $(( $(date +%s) - started )) s"; }
status=0

{ device_header; stamp "start"; } 2>&1 | tee "$out/gemm_streamk.log"
log() { tee -a "$out/gemm_streamk.log"; }

timeout -k 10 "${TESTS_FOR:-150}" python3 -P -m pytest --import-mode=append -q -m gpu -p no:cacheprovider \
  tests/gpu/test_gemm_cuda.py -k stream_k 2>&1 | tee "$out/gemm_streamk_tests.log"
rc=${PIPESTATUS[0]}
[[ $rc == 0 ]] || status=1
stamp "GPU tests done (exit $rc; 124: timed out)" | log

if [[ "${SANITIZE_FOR:-80}" != 0 ]] && command -v compute-sanitizer >/dev/null; then
  # a warm-up launch and one more of a stream-K 3000^3 (the profile path), then cuBLAS's
  config='{"cluster": 1, "stream_k": true, "epilogue": "tma_half"} {"M": 3000, "N": 3000, "K": 3000}'
  timeout -k 10 "${SANITIZE_FOR:-80}" compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 3 \
    python3 -P bench/gemm_vs_cublas.py --profile "$config" 2>&1 | tee "$out/gemm_streamk_memcheck.log"
  rc=${PIPESTATUS[0]}
  [[ $rc == 0 ]] || status=1
  stamp "memcheck done (exit $rc; 3: errors found, 124: timed out)" | log
elif [[ "${SANITIZE_FOR:-80}" != 0 ]]; then
  echo "compute-sanitizer is not installed: no memcheck" | log
fi

retune=()
if [[ "${RETUNE:-1}" != 0 ]]; then retune=(--retune); fi
timeout -k 10 "${BENCH_FOR:-220}" python3 -P bench/gemm_vs_cublas.py --rows odd --stream-k --db "sqlite:///$db" \
  --out "$out" --trials "${TRIALS:-12}" "${retune[@]}" 2>&1 | log
rc=${PIPESTATUS[0]}
[[ $rc == 0 ]] || status=1
stamp "benchmark done (exit $rc; 124: timed out)" | log
exit $status
