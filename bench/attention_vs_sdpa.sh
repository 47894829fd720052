#!/usr/bin/env bash
# The side-by-side benchmark on the GPU machine: tunes the seed shapes each template family's database
# lacks through `tuner run --family` (mma_sync: the whole grid; wgmma: the headline and D=256 shapes),
# then times both families' best configs next to SDPA's flash, efficient and cuDNN backends in one
# process (bench/attention_vs_sdpa.py); PROFILE=1 adds ncu on the headline shapes.
#   bench/attention_vs_sdpa.sh [OUT_DIR]      (the device tool sets $OUT; default bench/results)
# Environment: TUNE_FOR seconds before no new study starts, TUNE_ONLY=1 to stop after tuning (split
# a long tuning over several calls), PROFILE=1 (PROFILE_SHAPES: which), CANDIDATES=1 to time a few tiles beside SDPA flash
# first, FP8=1 for the FP8 rows alone (attention_vs_sdpa_fp8.{json,md}). The tuning databases travel gzipped (bench/results/attention{,_hopper}_tuned.db.gz, committed):
# a call starts from them and leaves the updated ones in OUT_DIR.
set -uo pipefail
out="$(realpath -m "${1:-${OUT:-bench/results}}")"
mkdir -p "$out"
source bench/device_env.sh
# Each template family keeps its own tuning database (gzipped in bench/results, committed).
dbs="$(mktemp -d)"
for name in attention_tuned attention_hopper_tuned; do
  if [[ -f bench/results/$name.db.gz ]]; then gunzip -c bench/results/$name.db.gz >"$dbs/$name.db"; fi
done
trap 'for f in "$dbs"/*.db; do gzip -c "$f" >"$out/$(basename "$f").gz"; done' EXIT
bench=(python3 -P bench/attention_vs_sdpa.py --db "sqlite:///$dbs/attention_tuned.db"
       --hopper-db "sqlite:///$dbs/attention_hopper_tuned.db" --out "$out")

status=0
{
  device_header
  if [[ -n "${CANDIDATES:-}" ]]; then "${bench[@]}" --candidates; fi
  "${bench[@]}" --tune-for "${TUNE_FOR:-1e9}" ${TUNE_ONLY:+--tune-only} ${FP8:+--fp8}
} 2>&1 | tee "$out/attention_vs_sdpa${FP8:+_fp8}.log" || status=1

# ncu at the clocks the benchmark ran at (no clock locking), one launch after a warm-up launch; the
# stall metrics are the per-reason breakdown of the WarpStateStats section.
metrics="sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active"
metrics+=",regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio"
if [[ -n "${PROFILE:-}" ]]; then
  for shape in ${PROFILE_SHAPES:-16,96,512,64,0,fp16 16,96,512,64,1,fp16 16,96,512,128,0,fp16 2,32,4096,128,0,fp16 2,96,4096,64,0,fp16}; do
    echo "=== $shape (B,H,S,D,causal,dtype)"
    ncu --clock-control none -k attention_fwd -s 1 -c 1 --section SpeedOfLight --section Occupancy \
      --section WarpStateStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
      --section LaunchStats --metrics "$metrics" \
      "${bench[@]}" --profile "$shape" || status=1
  done 2>&1 | tee "$out/profile_headline_shapes.txt"
fi
exit $status
