"""The C fault template's healthy variants only: the fault-free run that reliability is compared with."""

from __future__ import annotations

from tuner.kernel_templates.testing.healthy import healthy_variants, sibling

_faulty = sibling(__file__, "faulty_cpu.py")


class HealthyCpu(_faulty.FaultyCpu):  # type: ignore[name-defined]  # a base loaded by path
    name = "healthy"
    description = "y = 2x + 1, the healthy variants of the C fault template (testing only)"
    params = healthy_variants(_faulty)
