#!/usr/bin/env bash
# `tuner run` end to end on the GPU machine, as a user runs it: 100 trials of the CUDA attention
# template at B=16,H=96,S=512,D=64 fp16 on SQLite and a local Ray, then `tuner best`; then a run
# of the planted-fault template (a quarter of its variants write to an illegal address or hang).
#   bench/gpu_e2e.sh [OUT_DIR]      (the device tool sets $OUT; default bench/results)
set -uo pipefail
out="$(realpath -m "${1:-${OUT:-bench/results}}")"
mkdir -p "$out"
source bench/device_env.sh
repo="$PWD"
db="sqlite:///$out/gpu_e2e.db"
cd "$(mktemp -d)"  # run as a user would, outside the repository
tuner() { python3 -P -m tuner "$@"; }

# Each group runs in the subshell of its pipeline: it exits with its own status, which pipefail
# passes to the pipeline, so a failed step fails the script.
status=0
{
  status=0
  device_header
  echo "+ tuner run --arch sm_90a --kernel attention --shape B=16,H=96,S=512,D=64 --dtype fp16 --trials 100"
  start=$(date +%s)
  tuner run --arch sm_90a --kernel attention --shape B=16,H=96,S=512,D=64 --dtype fp16 --trials 100 \
    --seed 1 --db "$db" --no-progress || status=1
  echo "wall time of the run, Ray start and shutdown included: $(( $(date +%s) - start )) s"
  echo "+ tuner best --arch sm_90a --shape B=16,H=96,S=512,D=64 --dtype fp16"
  tuner best --arch sm_90a --shape B=16,H=96,S=512,D=64 --dtype fp16 --db "$db" || status=1
  echo "+ tuner best ... --max-error 1e-4"
  tuner best --arch sm_90a --shape B=16,H=96,S=512,D=64 --dtype fp16 --max-error 1e-4 --db "$db" || status=1
  exit $status
} 2>&1 | tee "$out/gpu_e2e_run.log" || status=1

{
  status=0
  device_header
  echo "+ tuner run --arch sm_90a --template kernel_templates/testing/faulty_cuda.py --sampler random --trials 24"
  tuner run --arch sm_90a --template "$repo/kernel_templates/testing/faulty_cuda.py" --sampler random \
    --seed 3 --trials 24 --trial-timeout 15 --db "$db" --study faults --no-progress || status=1
  python3 -P "$repo/bench/fault_table.py" "$db" faults || status=1
  exit $status
} 2>&1 | tee "$out/gpu_faults.log" || status=1
exit $status
