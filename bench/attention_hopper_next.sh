#!/usr/bin/env bash
# The TMA-store epilogue and 2-block K/V-multicast clusters of the Hopper attention family on the
# GPU machine, in one device call: correctness of every sampled config (tests/gpu/test_attention_hopper.py's
# configs_for: 1952 (config, problem) pairs on ragged, causal, GQA, D 64/128/256 problems, the
# direct/cluster-1 ones too, whose code changed around them; NEW_ONLY=1 checks only the 1216 new
# ones), restarted past a hung config; compute-sanitizer on one small causal GQA problem of 3
# m-blocks (a full pair and one whose second tile lies past S); then every probed tile of the headline rows timed
# with each epilogue and cluster size beside SDPA cuDNN and flash. Everything under $OUT (or the
# folder given): attention_hopper_next.log, attention_hopper_check.jsonl, attention_hopper_next.md
# (the best tile per row and knob pair), attention_hopper_next_times.json.
set -uo pipefail
out="$(realpath -m "${1:-${OUT:-/tmp/attention-hopper-next}}")"
mkdir -p "$out"
source bench/device_env.sh

status=0
only=()
[[ -n "${NEW_ONLY:-}" ]] && only=(--new)
{
  device_header
  for attempt in 1 2 3 4; do
    timeout "${CHECK_S:-240}" python3 -P bench/attention_hopper_probe.py check "${only[@]}" --out "$out" && break
    status=1
    echo "check exited with $? (attempt $attempt): restarting past the hung row"
  done
  if [[ -n "${SANITIZE:-1}" ]]; then
    timeout 90 compute-sanitizer --tool memcheck --print-limit 20 python3 -P bench/attention_hopper_probe.py one \
      '{"block_m": 128, "block_n": 80, "stages": 2, "overlap": "intra", "pingpong": true, "epilogue": "tma", "cluster": 2}' \
      '{"B": 1, "H": 2, "H_kv": 1, "S": 300, "D": 64, "causal": true}' 2>&1 | tail -30 || status=1
  fi
  [[ -n "${TIME:-1}" ]] && { timeout "${TIME_S:-240}" python3 -P bench/attention_hopper_probe.py time --new --out "$out" || status=1; }
  [[ -f "$out/attention_hopper_next.md" ]] && cat "$out/attention_hopper_next.md"
} 2>&1 | tee "$out/attention_hopper_next.log"
exit $status
