#!/usr/bin/env bash
# The TMA-store epilogue and 2-block K/V-multicast clusters of the Hopper attention family on the
# GPU machine, in one device call (bench/attention_hopper_probe.sh with these settings): correctness
# of every sampled config (tests/gpu/test_attention_hopper.py's configs_for: 1952 (config, problem)
# pairs on ragged, causal, GQA, D 64/128/256 problems, the direct/cluster-1 ones too, whose code
# changed around them; NEW_ONLY=1 checks only the 1216 new ones), restarted past a hung config;
# compute-sanitizer on one small causal GQA problem of 3 m-blocks (a full pair and one whose second
# tile lies past S); then every probed tile of the headline rows timed with each epilogue and
# cluster size beside SDPA cuDNN and flash. Everything under $OUT (or the folder given):
# attention_hopper_next.log, attention_hopper_check.jsonl, attention_hopper_next.md (the best tile
# per row and knob pair), attention_hopper_next_times.json.
set -uo pipefail
CHECK_ARGS="${NEW_ONLY:+--new}" TIME_ARGS=--new NAME=attention_hopper_next CHECK_S="${CHECK_S:-240}" \
  TIME_S="${TIME_S:-240}" \
  SANITIZE_CONFIG='{"block_m": 128, "block_n": 80, "stages": 2, "overlap": "intra", "pingpong": true, "epilogue": "tma", "cluster": 2}' \
  SANITIZE_PROBLEM='{"B": 1, "H": 2, "H_kv": 1, "S": 300, "D": 64, "causal": true}' \
  exec bash bench/attention_hopper_probe.sh "$@"
