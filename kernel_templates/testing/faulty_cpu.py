"""A C template where a quarter of the variants fault: one writes out of bounds, one hangs (see faulty.c)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tuner.kernel_templates.spec import KernelSpec, OutputSpec, Param, Problem, ProblemParam, Source

_SOURCE = Path(__file__).with_name("faulty.c").read_text()  # loaded by path, like a user's template

# variant -> (FAULT, UNROLL) of faulty.c
VARIANTS = {"loop": (0, 1), "unroll2": (0, 2), "unroll4": (0, 4), "unroll8": (0, 8),
            "unroll16": (0, 16), "unroll32": (0, 32), "oob_write": (1, 1), "endless_loop": (2, 1)}
FAULTY = {"oob_write": "crashed", "endless_loop": "timeout"}


class FaultyCpu(KernelSpec):
    name = "faulty"
    description = "y = 2x + 1 with planted faults (testing only)"
    backend = "cpu"
    archs = ("cpu",)
    params = (Param("variant", tuple(VARIANTS), "unroll factor of the rounds loop, or a planted fault"),)
    problem_params = (ProblemParam("n", int, 1 << 11, minimum=1),
                      ProblemParam("rounds", int, 64, minimum=0,
                                   doc="rounds of arithmetic per element (0: bound by memory bandwidth)"))

    def render(self, config: Mapping[str, Any], problem: Problem) -> Source:
        fault, unroll = VARIANTS[config["variant"]]
        header = f"#define FAULT {fault}\n#define ROUNDS {problem['rounds']}\n#define UNROLL {unroll}\n"
        return Source(language="c", code=header + _SOURCE, entry="faulty", options=("-O2",),
                      scalars=(("int64", problem["n"]),))

    def make_inputs(self, problem: Problem, rng: np.random.Generator) -> dict[str, Any]:
        return {"x": rng.standard_normal(problem["n"], dtype=np.float32)}

    def output_spec(self, problem: Problem) -> OutputSpec:
        return OutputSpec(shape=(problem["n"],), dtype="float32")

    def reference(self, inputs: Mapping[str, Any], problem: Problem) -> np.ndarray:
        return 2.0 * np.asarray(inputs["x"], dtype=np.float64) + 1.0

    def flops(self, problem: Problem) -> float:
        return (2.0 * problem["rounds"] + 2.0) * problem["n"]

    def bytes_moved(self, problem: Problem) -> float:
        return 8.0 * problem["n"]
