"""The CUDA fault template's healthy variants only: the fault-free run that reliability is compared with."""

from __future__ import annotations

from tuner.kernel_templates.testing.healthy import healthy_variants, sibling

_faulty = sibling(__file__, "faulty_cuda.py")


class HealthyCuda(_faulty.FaultyCuda):  # type: ignore[name-defined]  # a base loaded by path
    name = "healthy"
    description = "y = 2x + 1, the healthy variants of the CUDA fault template (testing only)"
    params = healthy_variants(_faulty)
