"""A second family of the CPU attention kernel, for the registry's tests: one kernel name, two
families side by side. It is the C template with its threads fixed at 1 (testing only)."""

from __future__ import annotations

from tuner.kernel_templates.attention_cpu import AttentionCpu
from tuner.kernel_templates.spec import Param


class AttentionCpuSerial(AttentionCpu):
    family = "serial"
    description = "the CPU attention template on one thread (a second family, testing only)"
    params = tuple(Param(p.name, (1,), p.doc) if p.name == "threads" else p for p in AttentionCpu.params)
