"""Workers: compile, run, time and verify kernels; executors that schedule them (local or Ray)."""

from __future__ import annotations

import importlib

from .backend import Backend, TimingPolicy
from .measurement import Artifact, Job, Measurement, SpecRef, Status, Timing

_BACKEND_MODULES = {"cpu": "cpu", "cuda": "cuda"}


def get_backend(name: str) -> Backend:
    """The backend called ``name`` ("cpu" or "cuda"), imported only when asked for."""
    module = importlib.import_module(f"{__package__}.{_BACKEND_MODULES[name]}")
    return module.BACKEND


def load_spec(ref: SpecRef):
    from tuner.kernel_templates import find_builtin, load_spec_file

    return load_spec_file(ref.path) if ref.path else find_builtin(ref.name, ref.backend)


__all__ = ["Artifact", "Backend", "Job", "Measurement", "SpecRef", "Status", "Timing",
           "TimingPolicy", "get_backend", "load_spec"]
