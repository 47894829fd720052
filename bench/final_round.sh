#!/usr/bin/env bash
# The lead's last device call of a session: every GPU test, then as much of the side-by-side
# attention benchmark (both families, tuning for TUNE_FOR s) as fits a deadline of DEADLINE s.
#   bench/final_round.sh [OUT_DIR]
set -uo pipefail
out="$(realpath -m "${1:-${OUT:-bench/results}}")"
mkdir -p "$out/final"
source bench/device_env.sh
device_header >"$out/final/env.txt" 2>&1
timeout "${TESTS_FOR:-170}" python3 -P -m pytest --import-mode=append -m gpu tests/gpu -q -p no:cacheprovider \
  -o addopts="" >"$out/final/gpu_tests.log" 2>&1
echo "gpu_tests: exit $? at $SECONDS s" | tee -a "$out/final/summary.txt"
left=$(( ${DEADLINE:-300} - SECONDS ))
if (( left > 60 )); then
  TUNE_FOR="${TUNE_FOR:-40}" timeout "$left" bash bench/attention_vs_sdpa.sh "$out/final/attention" >/dev/null 2>&1
  echo "attention_vs_sdpa: exit $? at $SECONDS s" | tee -a "$out/final/summary.txt"
fi
tail -5 "$out/final/gpu_tests.log"
tar -czf "$out/final.tar.gz" -C "$out" final && rm -rf "$out/final"
