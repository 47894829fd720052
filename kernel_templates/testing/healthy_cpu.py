"""The fault template's healthy variants only: the fault-free run that reliability is compared with."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tuner.kernel_templates.spec import Param

# Loaded by path (as a user's template is), so its sibling is loaded by path too.
_spec = importlib.util.spec_from_file_location("tuner_faulty_cpu", Path(__file__).with_name("faulty_cpu.py"))
_faulty = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_faulty)


class HealthyCpu(_faulty.FaultyCpu):
    name = "healthy"
    description = "y = 2x + 1, the healthy variants of the fault template (testing only)"
    params = (Param("variant", tuple(v for v in _faulty.VARIANTS if v not in _faulty.FAULTY),
                    "loop shape"),)
