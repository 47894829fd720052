#!/usr/bin/env bash
# The README's CUDA example on the GPU machine, as a user runs it: its `tuner check`, `tuner run`
# and `tuner best` lines exactly as printed (read from README.md), then the GPU test of the
# example (tests/gpu/test_example_cuda.py: those lines again, and every admitted config verified).
#   bench/cuda_example.sh [OUT_DIR]      (the device tool sets $OUT; default bench/results)
# Writes OUT_DIR/cuda_example.log (committed as bench/results/cuda_example.log).
set -uo pipefail
out="$(realpath -m "${1:-${OUT:-bench/results}}")"
mkdir -p "$out"
source bench/device_env.sh
# The lines as printed call `tuner`: the console script where the install made one, else the module.
command -v tuner >/dev/null || tuner() { python3 -P -m tuner "$@"; }
export TUNER_DB="sqlite:///$out/cuda_example.db"  # the lines name no --db: this is their database
rm -f "$out/cuda_example.db"

exec > >(tee "$out/cuda_example.log") 2>&1  # everything below goes to the log as well
status=0
device_header
mapfile -t lines < <(grep -E '^tuner (check|run|best) .*--template examples/softmax_cuda\.py' README.md)
[[ ${#lines[@]} -eq 3 ]] || { echo "README.md: expected 3 CUDA example lines, found ${#lines[@]}"; status=1; }
for line in "${lines[@]}"; do
  echo "+ $line"
  start=$(date +%s)
  eval "$line"
  rc=$?
  ((rc)) && status=1
  echo "(exit $rc, $(( $(date +%s) - start )) s)"
done
echo "+ pytest -m gpu tests/gpu/test_example_cuda.py"
python3 -P -m pytest --import-mode=append -m gpu tests/gpu/test_example_cuda.py -v -p no:cacheprovider || status=1
echo "cuda_example.sh exit status: $status"
exit $status
