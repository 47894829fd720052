"""The CUDA backend: NVRTC- (or nvcc-) compiled cubins, launched through the CUDA driver
(cuda-bindings), timed and verified with torch.

Compiling (``cuda_compile``) needs only NVRTC or nvcc, so it runs on any CPU worker and in CI; measuring
(``cuda_measure``) needs the GPU, CuPy and torch and runs in the device's one measuring process.
"""

from __future__ import annotations

from typing import Any

from tuner.kernel_templates.spec import KernelSpec, Source
from tuner.kernel_templates.target import ARCHS, Target

from . import cuda_measure, cuda_runtime
from .backend import Backend, TimingPolicy
from .cuda_compile import compile_cubin, compiler
from .measurement import Artifact, Job, Measurement


class CudaBackend(Backend):
    name = "cuda"
    archs = tuple(arch for arch, info in ARCHS.items() if info.backend == "cuda")

    def compiler_version(self) -> str:
        return compiler().label

    def compile(self, source: Source, target: Target) -> Artifact:
        return compile_cubin(source, target.arch)

    def device(self, target: Target) -> Target:
        return cuda_runtime.device_for(target)

    def environment(self) -> dict[str, Any]:
        return cuda_runtime.environment()

    def measure(self, job: Job, artifact: Artifact, spec: KernelSpec, policy: TimingPolicy) -> Measurement:
        return cuda_measure.measure(job, artifact, spec, policy)


BACKEND = CudaBackend()
