"""A CUDA template where a quarter of the variants fault: one writes to an illegal address, one hangs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tuner.kernel_templates.spec import KernelSpec, OutputSpec, Param, Problem, ProblemParam, Source

_SOURCE = Path(__file__).with_name("faulty.cu").read_text()  # loaded by path, like a user's template

# variant -> (FAULT, threads per block) of faulty.cu
VARIANTS = {"block32": (0, 32), "block64": (0, 64), "block128": (0, 128), "block256": (0, 256),
            "block512": (0, 512), "block1024": (0, 1024), "oob_write": (1, 256), "endless_loop": (2, 256)}
FAULTY = {"oob_write": "launch_error", "endless_loop": "timeout"}


class FaultyCuda(KernelSpec):
    name = "faulty"
    description = "y = 2x + 1 with planted faults (testing only)"
    backend = "cuda"
    archs = ("sm_80", "sm_86", "sm_89", "sm_90", "sm_90a")
    params = (Param("variant", tuple(VARIANTS), "block size, or a planted fault"),)
    problem_params = (ProblemParam("n", int, 1 << 22, minimum=1),)

    def render(self, config: Mapping[str, Any], problem: Problem) -> Source:
        fault, threads = VARIANTS[config["variant"]]
        blocks = -(-problem["n"] // threads)
        return Source(language="cuda", code=f"#define FAULT {fault}\n{_SOURCE}", entry="faulty",
                      scalars=(("int64", problem["n"]),), grid=(blocks, 1, 1), block=(threads, 1, 1))

    def make_inputs(self, problem: Problem, rng: np.random.Generator) -> dict[str, Any]:
        import torch

        generator = torch.Generator(device="cuda").manual_seed(int(rng.integers(2**62)))
        return {"x": torch.randn(problem["n"], generator=generator, device="cuda")}

    def output_spec(self, problem: Problem) -> OutputSpec:
        return OutputSpec(shape=(problem["n"],), dtype="float32")

    def reference(self, inputs: Mapping[str, Any], problem: Problem) -> Any:
        return 2.0 * inputs["x"].double() + 1.0

    def flops(self, problem: Problem) -> float:
        return 2.0 * problem["n"]

    def bytes_moved(self, problem: Problem) -> float:
        return 8.0 * problem["n"]
