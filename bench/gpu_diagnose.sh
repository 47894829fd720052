#!/usr/bin/env bash
# Every GPU test's outcome and message in one device call, for finding why tests fail on the
# GPU machine (the last round on merged main lost every message to a -q run stopped by its limit):
#   bench/gpu_diagnose.sh [OUT_DIR]      (the device tool sets $OUT; default bench/results)
# The device call:  run(command='bash bench/gpu_diagnose.sh "$OUT"', carry=[".devwheels"], timeout_s=600)
# from a checkout with .devwheels made by ../shared/tools/device-wheels .devwheels kernel_tuner==1.5.0
# python-constraint2 xmltodict (the search pipeline test's Kernel Tuner; without it that test skips).
#
# 1. The tests that failed in bench/results/final_round (the README example's run and best lines,
#    the runtime's GPU tests, the search pipeline), each file in a fresh process: whether they fail
#    on their own, not only after the suite's other tests.
# 2. The whole GPU suite in its usual order, to the deadline (DEADLINE s from the start, 560).
# Each pytest runs with -rA -v, per-test timeouts where pytest-timeout is installed (TEST_TIMEOUT,
# 240 s) and bench/per_test_logs.py, which writes one log per test as it ends (outcome, traceback,
# captured output) under OUT/diagnose/<step>/, so a step cut off by its limit keeps what it finished.
# OUT/diagnose/summary.txt: each step's exit status and time, then every test that did not pass.
set -uo pipefail
out="$(realpath -m "${1:-${OUT:-bench/results}}")"
mkdir -p "$out/diagnose"
source bench/device_env.sh
device_header >"$out/diagnose/env.txt" 2>&1
python3 -c "import cuda.bindings; print('cuda-bindings', cuda.bindings.__version__)" >>"$out/diagnose/env.txt" 2>&1
deadline="${DEADLINE:-560}"
timeouts=()
python3 -c "import pytest_timeout" 2>/dev/null && timeouts=(--timeout "${TEST_TIMEOUT:-240}")
export PYTHONPATH="$PWD/bench${PYTHONPATH:+:$PYTHONPATH}"  # for -p per_test_logs (python -P adds no cwd)

step() {  # step NAME LIMIT_S PYTEST_ARGS...
  local name="$1" limit="$2"
  shift 2
  (( limit > 20 )) || { echo "$name: not run (no time left at $SECONDS s)" >>"$out/diagnose/summary.txt"; return; }
  PER_TEST_LOGS="$out/diagnose/$name" timeout -k 10 "$limit" python3 -P -m pytest --import-mode=append \
    -p per_test_logs -p no:cacheprovider -o addopts="" -m gpu -rA -v "${timeouts[@]}" "$@" \
    >"$out/diagnose/$name.log" 2>&1
  echo "$name: exit $? at $SECONDS s" >>"$out/diagnose/summary.txt"
}
left() { local rest=$(( deadline - SECONDS )); echo $(( rest < $1 ? rest : $1 )); }

step readme_example "$(left 120)" tests/gpu/test_example_cuda.py::test_the_readme_lines_run_as_printed
step runtime "$(left 200)" tests/gpu/test_runtime_gpu.py
step search_pipeline "$(left 150)" tests/gpu/test_search_pipeline.py
step suite "$(left 600)" tests/gpu
{
  echo "tests that did not pass (step/place outcome seconds test):"
  for table in "$out"/diagnose/*/outcomes.tsv; do
    [[ -f "$table" ]] && awk -F'\t' -v step="$(basename "$(dirname "$table")")" \
      '$2 != "passed" {print step "/" $1, $2, $3, $4}' "$table"
  done
} >>"$out/diagnose/summary.txt"
cat "$out/diagnose/summary.txt"
tar -czf "$out/diagnose.tar.gz" -C "$out" diagnose && rm -rf "$out/diagnose"
