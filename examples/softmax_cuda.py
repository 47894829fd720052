"""An example user template in CUDA: row-wise softmax of a float32 [rows, cols] matrix.

What a CUDA template does, beyond the C example (softmax_spec.py):

* ``backend = "cuda"`` and the ``archs`` it compiles for; the source's entry point is an
  ``extern "C" __global__`` function, called as ``entry(*inputs, output, *scalars)`` with
  ``grid``, ``block`` and ``shared_bytes`` (dynamic shared memory) from :class:`Source`.
* Inputs from ``make_inputs`` and the reference are torch CUDA tensors (drawn from the given
  ``rng``'s seed, never zeros); the output is allocated from ``output_spec`` (a torch dtype name).
* Scalars are ``(type, value)`` pairs: ``int32`` is ``int``, ``int64`` is ``long long``,
  ``float32`` is ``float``, ``float64`` is ``double`` in the kernel's signature.
* ``check`` sees ``device.limits``: ``max_shared_bytes`` (per block, opted in),
  ``max_shared_bytes_per_sm``, ``max_threads_per_block`` and, on a GPU, ``sm_count``. Above
  48 KB of dynamic shared memory the launcher opts the kernel in; ``check`` keeps it in bounds.

``tuner check --arch sm_90a --template examples/softmax_cuda.py`` compiles every config on a
machine with no GPU; ``tuner run`` then tunes it on one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tuner.kernel_templates import Config, Device, KernelSpec, OutputSpec, Param, Problem, ProblemParam, Source

_CUDA_SOURCE = Path(__file__).with_name("softmax.cu").read_text()


class RowSoftmaxCuda(KernelSpec):
    name = "softmax"
    description = "row-wise softmax of a float32 [rows, cols] matrix, one CUDA thread block per row"
    backend = "cuda"
    archs = ("sm_80", "sm_86", "sm_89", "sm_90", "sm_90a")
    params = (
        Param("threads", (128, 256, 512, 1024), "threads per block (one block per row)"),
        Param("vector", (1, 4), "floats per load and store (float or float4)"),
        Param("cache_row", (False, True), "keep the row in shared memory: one read of global memory, not three"),
        Param("fast_exp", (False, True), "__expf, one instruction and less exact, instead of expf"),
    )
    problem_params = (
        ProblemParam("rows", int, 4096, minimum=1),
        ProblemParam("cols", int, 4096, minimum=1),
    )

    def check(self, config: Config, problem: Problem, device: Device) -> str | None:
        if problem["cols"] % config["vector"]:
            return f"cols={problem['cols']} is not a multiple of vector={config['vector']}"
        if config["threads"] > device.limits.get("max_threads_per_block", 1024):
            return f"threads={config['threads']} exceeds the device's threads per block"
        limit = device.limits.get("max_shared_bytes", 48 * 1024)
        if _shared_bytes(config, problem) > limit:
            return f"a row of {problem['cols']} floats is over the {limit} bytes of shared memory a block may have"
        return None

    def render(self, config: Config, problem: Problem) -> Source:
        defines = {"THREADS": config["threads"], "VECTOR": config["vector"],
                   "CACHE_ROW": int(config["cache_row"]), "FAST_EXP": int(config["fast_exp"])}
        header = "".join(f"#define {key} {value}\n" for key, value in defines.items())
        return Source(language="cuda", code=header + _CUDA_SOURCE, entry="softmax_rows", options=("-O3",),
                      scalars=(("int64", problem["cols"]),), grid=(problem["rows"], 1, 1),
                      block=(config["threads"], 1, 1), shared_bytes=_shared_bytes(config, problem))

    def make_inputs(self, problem: Problem, rng: np.random.Generator) -> dict[str, Any]:
        import torch

        generator = torch.Generator(device="cuda").manual_seed(int(rng.integers(2**62)))
        return {"x": torch.randn((problem["rows"], problem["cols"]), generator=generator, device="cuda")}

    def output_spec(self, problem: Problem) -> OutputSpec:
        return OutputSpec(shape=(problem["rows"], problem["cols"]), dtype="float32")

    def reference(self, inputs: Mapping[str, Any], problem: Problem) -> Any:
        return inputs["x"].double().softmax(dim=1)

    def flops(self, problem: Problem) -> float:
        return 4.0 * problem["rows"] * problem["cols"]  # max, subtract+exp, sum, scale

    def bytes_moved(self, problem: Problem) -> float:
        return 2 * 4.0 * problem["rows"] * problem["cols"]

    def max_error(self, config: Config, problem: Problem) -> float:
        return 1e-4 if config["fast_exp"] else 1e-5


def _shared_bytes(config: Config, problem: Problem) -> int:
    """Dynamic shared memory of a block: the row when it is cached, else none."""
    return 4 * problem["cols"] if config["cache_row"] else 0
