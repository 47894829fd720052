#!/usr/bin/env bash
# The GPU pipeline on the H200, ours against Kernel Tuner on the same CUDA attention source and
# budget: evaluations per minute, the GPU's share of the study loop in timed runs, and the time
# from `tuner run` to its first stored measurement (bench/search_gpu_pipeline.py).
#   bench/search_gpu_pipeline.sh [OUT_DIR]   (the device tool sets $OUT; default bench/results)
# Kernel Tuner 1.5.0, python-constraint2 and xmltodict come from the carried wheels (.devwheels/wheels,
# installed by bench/device_env.sh; installed here again if that did not take); scikit-learn and
# scipy (the default sampler's) are in the device image. One budget (40, the issue's 40-trial study)
# so that the whole run fits one device call; KT_TIME_LIMIT (seconds, default 200) ends Kernel Tuner's
# run short of the budget where it is slower than that. After both tools, search_gpu_pipeline.py runs our
# loop once more under bench/pipeline_split.py: DIR/pipeline_split.{json,md}, the loop phase by
# phase (proposal, storage, the GPU's busy, idle and timed-run time).
# The acceptance's device call (one H200; carry .devwheels; about 4-6 minutes):
#   PARTS=search LIMIT_search=540 bash bench/device_round.sh      (run's timeout_s 600)
set -uo pipefail
out="$(realpath -m "${1:-${OUT:-bench/results}}")"
mkdir -p "$out"
source bench/device_env.sh
status=0
{
  device_header
  python3 -P -c "import kernel_tuner" 2>/dev/null || python3 -m pip install -q --no-index --no-deps \
    --target /tmp/site .devwheels/wheels/{kernel_tuner,python_constraint2,xmltodict}-*.whl
  python3 -P -c "import kernel_tuner, sklearn; print('kernel_tuner', kernel_tuner.__version__, 'sklearn', sklearn.__version__)" \
    || { echo "kernel-tuner or scikit-learn is missing: add them to the carried wheels (see the header)"; exit 2; }
  for budget in ${BUDGETS:-40}; do
    echo "+ bench/search_gpu_pipeline.py --budget $budget"
    python3 -P bench/search_gpu_pipeline.py --out "$out/search_gpu_pipeline_$budget" --budget "$budget" \
      --kt-time-limit "${KT_TIME_LIMIT:-200}" || status=1
  done
  exit $status
} 2>&1 | tee "$out/search_gpu_pipeline.log"
