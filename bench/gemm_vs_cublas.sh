#!/usr/bin/env bash
# The GEMM benchmark in one device call: every variant built (no spills, HGMMA in the SASS); the
# GEMM's GPU tests (every schedule on ragged shapes, both layouts, both dtypes); a probe of a few
# tiles beside cuBLAS; the 100-trial GEMM run as a user runs it (Ray, SQLite) with its study-loop
# report and `tuner best`, into the benchmark's database, so that the other bf16 rows warm-start
# from it; each row tuned through `tuner run` (default sampler, TRIALS trials) where the database
# has none; the winners re-measured beside torch.matmul (bench/gemm_vs_cublas.py).
#   bench/gemm_vs_cublas.sh [OUT_DIR]      (the device tool sets $OUT; default bench/results)
# Environment: TRIALS (default 16), RETUNE=1 to give tuned rows TRIALS more too, TUNE_FOR seconds
# after which no new row is tuned, TESTS=0 skips the GPU tests, PROBE=0 the probe, E2E=0 the
# 100-trial run, CHECK=1 adds the check (each row's shape verified with three configs),
# PROFILE=1 adds ncu on two rows (our kernel and cuBLAS's), ROWS=fp8 (or 16-bit) builds, tests and
# measures those rows alone (results as gemm_vs_cublas_fp8.*). The tuning database travels gzipped
# (bench/results/gemm_tuned.db.gz, committed): a call starts from it where present and leaves the
# new one in OUT_DIR.
set -uo pipefail
out="$(realpath -m "${1:-${OUT:-bench/results}}")"
mkdir -p "$out"
source bench/device_env.sh
repo="$PWD"
db="$(mktemp -d)/gemm_tuned.db"
if [[ -f bench/results/gemm_tuned.db.gz ]]; then gunzip -c bench/results/gemm_tuned.db.gz >"$db"; fi
trap 'gzip -c "$db" >"$out/gemm_tuned.db.gz"' EXIT
rows="${ROWS:-all}"
bench() { python3 -P bench/gemm_vs_cublas.py --rows "$rows" --db "sqlite:///$db" --out "$out" "$@"; }
case "$rows" in  # the GPU tests of the rows' precisions
  fp8) gpu_tests=(tests/gpu/test_gemm_fp8.py) ;;
  16-bit) gpu_tests=(tests/gpu/test_gemm_cuda.py) ;;
  *) gpu_tests=(tests/gpu/test_gemm_cuda.py tests/gpu/test_gemm_fp8.py) ;;
esac
started=$(date +%s)
stamp() { echo "--- $1 at $(( $(date +%s) - started )) s"; }

status=0
{
  device_header
  python3 -P bench/gemm_vs_cublas.py --rows "$rows" --build || status=1
  stamp "build done"
  if [[ "${CHECK:-0}" != 0 ]]; then python3 -P bench/gemm_vs_cublas.py --check || status=1; stamp "check done"; fi
} 2>&1 | tee "$out/gemm_vs_cublas${ROWS:+_$rows}.log"
if [[ "${TESTS:-1}" != 0 ]]; then
  timeout "${TESTS_FOR:-120}" python3 -P -m pytest --import-mode=append -q -m gpu -p no:cacheprovider \
    "${gpu_tests[@]}" 2>&1 | tee "$out/gemm_gpu_tests${ROWS:+_$rows}.log" || status=1
  stamp "GPU tests done" | tee -a "$out/gemm_vs_cublas${ROWS:+_$rows}.log"
fi
if [[ "${PROBE:-1}" != 0 ]]; then
  timeout "${PROBE_FOR:-90}" python3 -P bench/gemm_vs_cublas.py --probe 2>&1 | tee "$out/gemm_probe.log" || status=1
  stamp "probe done" | tee -a "$out/gemm_vs_cublas${ROWS:+_$rows}.log"
fi

if [[ "${E2E:-1}" != 0 ]]; then
  shape=(--arch sm_90a --kernel gemm --shape M=4096,N=4096,K=4096 --dtype bf16 --db "sqlite:///$db")
  (
    cd "$(mktemp -d)"  # as a user runs it, outside the repository
    tuner() { python3 -P -m tuner "$@"; }
    device_header
    echo "+ tuner run ${shape[*]} --trials 100"
    start=$(date +%s)
    tuner run "${shape[@]}" --trials 100 --seed 2 --no-progress || exit 1
    echo "wall time of the run, Ray start and shutdown included: $(( $(date +%s) - start )) s"
    echo "+ tuner best ${shape[*]}"
    tuner best "${shape[@]}" || exit 1
    echo "+ tuner studies"
    tuner studies --db "sqlite:///$db" || exit 1
  ) 2>&1 | tee "$out/gemm_e2e_run.log" || status=1
  stamp "100-trial run done" | tee -a "$out/gemm_vs_cublas${ROWS:+_$rows}.log"
fi

{
  bench --trials "${TRIALS:-16}" --tune-for "${TUNE_FOR:-1e9}" ${RETUNE:+--retune} || status=1
  stamp "benchmark done"
} 2>&1 | tee -a "$out/gemm_vs_cublas${ROWS:+_$rows}.log"

# ncu at the clocks the benchmark ran at (no clock locking): our kernel's second launch, then cuBLAS's.
if [[ -n "${PROFILE:-}" ]]; then
  for row in 12 18; do  # 4096^3 bf16, 16384 x 14336 x 4096 nt bf16
    echo "=== row $row"
    ncu --clock-control none -k regex:gemm -s 1 -c 2 --section SpeedOfLight --section Occupancy \
      --section WarpStateStats --section MemoryWorkloadAnalysis --section LaunchStats \
      python3 -P "$repo/bench/gemm_vs_cublas.py" --db "sqlite:///$db" --profile "$row" || status=1
  done 2>&1 | tee "$out/gemm_profile.txt"
fi
exit $status
