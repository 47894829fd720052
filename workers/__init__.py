"""Workers: compile, run, time and verify kernels; executors that schedule them (local or Ray)."""

from __future__ import annotations

import importlib

from tuner.kernel_templates.target import Target

from .backend import Backend, TimingPolicy
from .measurement import Artifact, Job, Measurement, SpecRef, Status, Timing

_BACKEND_MODULES = {"cpu": "cpu", "cuda": "cuda"}


def get_backend(name: str) -> Backend:
    """The backend called ``name`` ("cpu" or "cuda"), imported only when asked for."""
    module = importlib.import_module(f"{__package__}.{_BACKEND_MODULES[name]}")
    return module.BACKEND


def backend_for(target: Target) -> Backend:
    """The backend that builds for ``target``; ValueError for one no backend supports."""
    backend = get_backend(target.backend) if target.backend in _BACKEND_MODULES else None
    if backend is None or not backend.supports(target):
        raise ValueError(f"no backend builds for {target.backend} arch {target.arch!r}")
    return backend


def load_spec(ref: SpecRef):
    from tuner.kernel_templates import find_builtin, load_spec_file

    return load_spec_file(ref.path) if ref.path else find_builtin(ref.name, ref.backend, ref.family)


__all__ = ["Artifact", "Backend", "Job", "Measurement", "SpecRef", "Status", "Timing",
           "TimingPolicy", "backend_for", "get_backend", "load_spec"]
