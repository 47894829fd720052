#!/usr/bin/env bash
# First look at the Hopper attention family on the GPU machine (one device call): correctness of
# every sampled tile on ragged, causal, GQA, D 64/128/256 problems (restarted past a hung config),
# compute-sanitizer on one small config, the GPU tests, then a few configs per headline shape timed
# beside SDPA cuDNN and flash. Everything under $OUT (or the folder given).
# bench/attention_hopper_next.sh runs it with: CHECK_ARGS / TIME_ARGS (extra arguments of
# attention_hopper_probe.py check / time), SANITIZE_CONFIG / SANITIZE_PROBLEM (the sanitized
# launch), NAME (of the log).
set -uo pipefail
out="$(realpath -m "${1:-${OUT:-/tmp/attention-hopper-probe}}")"
mkdir -p "$out"
source bench/device_env.sh
read -ra check_args <<< "${CHECK_ARGS:-}"
read -ra time_args <<< "${TIME_ARGS:-}"

status=0
{
  device_header
  for attempt in 1 2 3 4; do
    timeout "${CHECK_S:-150}" python3 -P bench/attention_hopper_probe.py check "${check_args[@]}" --out "$out" && break
    status=1
    echo "check exited with $? (attempt $attempt): restarting past the hung row"
  done
  if [[ -n "${SANITIZE:-1}" ]]; then
    timeout 90 compute-sanitizer --tool memcheck --print-limit 20 python3 -P bench/attention_hopper_probe.py one \
      "${SANITIZE_CONFIG:-{\"block_m\": 128, \"block_n\": 80, \"stages\": 2, \"overlap\": \"intra\", \"pingpong\": true\}}" \
      "${SANITIZE_PROBLEM:-{\"B\": 1, \"H\": 2, \"H_kv\": 1, \"S\": 200, \"D\": 64, \"causal\": true\}}" 2>&1 | tail -30 \
      || status=1
  fi
  if [[ -n "${TIME:-1}" ]]; then
    timeout "${TIME_S:-200}" python3 -P bench/attention_hopper_probe.py time "${time_args[@]}" --out "$out" || status=1
  fi
  if [[ -n "${TESTS:-}" ]]; then
    timeout 150 python3 -P -m pytest --import-mode=append -q -x -m gpu -p no:cacheprovider \
      tests/gpu/test_attention_hopper.py 2>&1 | tail -15 || status=1
  fi
  [[ -f "$out/attention_hopper_next.md" ]] && cat "$out/attention_hopper_next.md"
} 2>&1 | tee "$out/${NAME:-attention_hopper_probe}.log"
exit $status
