"""An example user template: row-wise softmax of a float32 [rows, cols] matrix, in C.

A template is one Python file with one KernelSpec subclass; the tuner loads it by path
(``tuner.kernel_templates.load_spec_file("examples/softmax_spec.py")``, or ``--template`` on the
command line). It names the knobs (params), the problem (problem_params), and renders C source
whose entry is called as ``entry(*inputs, output, *scalars)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tuner.kernel_templates import Config, Device, KernelSpec, OutputSpec, Param, Problem, ProblemParam, Source

_C_SOURCE = Path(__file__).with_name("softmax.c").read_text()


class RowSoftmax(KernelSpec):
    name = "softmax"
    description = "row-wise softmax of a float32 [rows, cols] matrix"
    backend = "cpu"
    archs = ("cpu",)
    params = (
        Param("unroll", (1, 4, 8), "unroll factor of the loops over a row"),
        Param("threads", (1, 2), "OpenMP threads over rows"),
        Param("fast_math", (False, True), "compile with -ffast-math (lets the row sum vectorize)"),
    )
    problem_params = (
        ProblemParam("rows", int, 512, minimum=1),
        ProblemParam("cols", int, 1024, minimum=1),
    )

    def check(self, config: Config, problem: Problem, device: Device) -> str | None:
        if config["threads"] > device.limits.get("cores", 1):
            return f"threads={config['threads']} exceeds the cores of this machine"
        return None

    def render(self, config: Config, problem: Problem) -> Source:
        header = f"#define THREADS {config['threads']}\n#define UNROLL {config['unroll']}\n"
        options = ("-O3", "-fopenmp", "-lm") + (("-ffast-math",) if config["fast_math"] else ())
        return Source(language="c", code=header + _C_SOURCE, entry="softmax_rows", options=options,
                      scalars=(("int64", problem["rows"]), ("int64", problem["cols"])))

    def make_inputs(self, problem: Problem, rng: np.random.Generator) -> dict[str, Any]:
        return {"x": rng.standard_normal((problem["rows"], problem["cols"]), dtype=np.float32)}

    def output_spec(self, problem: Problem) -> OutputSpec:
        return OutputSpec(shape=(problem["rows"], problem["cols"]), dtype="float32")

    def reference(self, inputs: Mapping[str, Any], problem: Problem) -> np.ndarray:
        x = np.asarray(inputs["x"], dtype=np.float64)
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def flops(self, problem: Problem) -> float:
        return 4.0 * problem["rows"] * problem["cols"]  # max, subtract+exp, sum, scale

    def bytes_moved(self, problem: Problem) -> float:
        return 2 * 4.0 * problem["rows"] * problem["cols"]
