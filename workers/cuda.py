"""The CUDA backend: nvcc-compiled cubins, launched through CuPy, timed and verified with torch.

Compiling (``cuda_compile``) needs only nvcc, so it runs on any CPU worker and in CI; measuring
(``cuda_measure``) needs the GPU, CuPy and torch and runs in the device's one measuring process.
"""

from __future__ import annotations

from typing import Any

from tuner.kernel_templates.spec import Device, KernelSpec, Source

from . import cuda_measure, cuda_runtime
from .backend import Backend, TimingPolicy
from .cuda_compile import compile_cubin, nvcc_version
from .measurement import Artifact, Job, Measurement


class CudaBackend(Backend):
    name = "cuda"

    def compiler_version(self) -> str:
        return nvcc_version()

    def compile(self, source: Source, arch: str) -> Artifact:
        return compile_cubin(source, arch)

    def device(self, arch: str) -> Device:
        return cuda_runtime.device_for(arch)

    def environment(self) -> dict[str, Any]:
        return cuda_runtime.environment()

    def measure(self, job: Job, artifact: Artifact, spec: KernelSpec, policy: TimingPolicy) -> Measurement:
        return cuda_measure.measure(job, artifact, spec, policy)


BACKEND = CudaBackend()
