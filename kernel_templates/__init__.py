"""Kernel templates: the specs the tuner can tune, and the interface a user's template implements."""

from .registry import SpecError, backend_of, builtin_specs, find_builtin, find_spec, load_spec_file
from .spec import (Config, Device, KernelSpec, OutputSpec, Param, Problem, ProblemParam, Source,
                   canonical_json)

__all__ = ["Config", "Device", "KernelSpec", "OutputSpec", "Param", "Problem", "ProblemParam",
           "Source", "SpecError", "backend_of", "builtin_specs", "canonical_json", "find_builtin", "find_spec",
           "load_spec_file"]
