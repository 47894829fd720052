#!/usr/bin/env bash
# ncu on the Hopper attention family's fastest probed tile of five headline rows (fp16; from
# results/attention_hopper_next.md) and on SDPA's cuDNN kernel for the same problem, one captured
# launch each after warm-up launches, at the clocks the benchmarks ran at: what limits ours, beside
# what cuDNN does (its grid, block, registers, shared memory, tensor-pipe activity, stalls).
#   bench/attention_hopper_profile.sh [OUT_DIR]   (the device tool sets $OUT)
# Writes OUT/attention_hopper_profile.txt (ncu's report per launch) and one .ncu-rep per launch.
# ROWS: which rows (1-based indices, default all five); WHO: ours and/or cudnn (default both);
# SOURCE=1 adds the per-instruction stall samples (SourceCounters) and writes each launch's SASS
# with them as OUT/attention_profile_<n>_<who>_sass.csv (bench/sass_stalls.py reads it).
set -uo pipefail
out="$(realpath -m "${1:-${OUT:-bench/results}}")"
mkdir -p "$out"
source bench/device_env.sh
rows=(
  '{"B": 16, "H": 96, "S": 512, "D": 64, "causal": false}|{"block_m": 192, "block_n": 128, "stages": 2, "overlap": "serial", "pingpong": true, "epilogue": "tma"}'
  '{"B": 16, "H": 96, "S": 512, "D": 64, "causal": true}|{"block_m": 128, "block_n": 128, "stages": 2, "overlap": "intra", "pingpong": true}'
  '{"B": 16, "H": 96, "S": 512, "D": 128, "causal": false}|{"block_m": 128, "block_n": 128, "stages": 2, "overlap": "intra", "pingpong": true, "epilogue": "tma"}'
  '{"B": 2, "H": 32, "S": 4096, "D": 128, "causal": false}|{"block_m": 128, "block_n": 128, "stages": 2, "overlap": "intra", "pingpong": true}'
  '{"B": 2, "H": 96, "S": 4096, "D": 64, "causal": false}|{"block_m": 192, "block_n": 144, "stages": 2, "overlap": "serial", "pingpong": true, "epilogue": "tma"}'
)
metrics="sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active"
metrics+=",sm__inst_executed_pipe_tensor_op_gmma.sum,smsp__inst_executed.sum,sm__cycles_elapsed.max"
metrics+=",regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio"
status=0
{
  device_header
  n=0
  for index in ${ROWS:-1 2 3 4 5}; do
    row="${rows[$((index - 1))]}"
    problem="${row%%|*}" config="${row#*|}"
    for who in ${WHO:-ours cudnn}; do
      n=$((n + 1))
      echo "=== $who $problem $config"
      launched="$config"
      [[ $who == cudnn ]] && launched=cudnn
      timeout 120 ncu --profile-from-start off --clock-control none -c 1 \
        --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats \
        --section SchedulerStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
        --section InstructionStats ${SOURCE:+--section SourceCounters} --metrics "$metrics" -o "$out/attention_profile_${n}_$who" -f \
        python3 -P bench/attention_hopper_probe.py profile "$launched" "$problem" >/dev/null 2>&1 || status=1
      ncu -i "$out/attention_profile_${n}_$who.ncu-rep" --print-units base 2>&1 || status=1
      if [[ -n "${SOURCE:-}" ]]; then
        ncu -i "$out/attention_profile_${n}_$who.ncu-rep" --page source --print-source sass --csv \
          >"$out/attention_profile_${n}_${who}_sass.csv" 2>&1 || status=1
        python3 bench/sass_stalls.py "$out/attention_profile_${n}_${who}_sass.csv" || status=1
      fi
    done
  done
} 2>&1 | tee "$out/attention_hopper_profile.txt"
exit $status
