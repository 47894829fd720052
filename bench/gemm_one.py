"""One launch of the gemm template (after a warm-up launch), then torch.matmul's: for ncu.
    python3 -P bench/gemm_one.py '{"cluster": 1}' '{"M": 4096, "N": 4096, "K": 4096}'
(the config's keys over gemm_vs_cublas.REFERENCE_CONFIG, the problem's over the defaults)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.append(str(Path(__file__).resolve().parents[1]))  # bench.*; appended, so the installed tuner stays first
from bench.gemm_vs_cublas import REFERENCE_CONFIG, SPEC, cublas_launch, tuned_launch  # noqa: E402

config = REFERENCE_CONFIG | json.loads(sys.argv[1])
problem = SPEC.validate_problem(json.loads(sys.argv[2]))
inputs = SPEC.make_inputs(problem, np.random.default_rng(0))
out = torch.empty((problem["M"], problem["N"]), dtype=inputs["a"].dtype, device="cuda")
launch = tuned_launch(config, problem, inputs, out)
launch(), launch()
cublas_launch(problem, inputs, out)()
torch.cuda.synchronize()
print(config, problem)
