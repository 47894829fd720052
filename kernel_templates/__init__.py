"""Kernel templates: the specs the tuner can tune, and the interface a user's template implements."""

from .registry import (
    SpecError,
    builtin_specs,
    family_of_config,
    find_builtin,
    find_spec,
    load_spec_file,
    problem_spec,
    specs_for,
    template_digest,
)
from .spec import (
    Config,
    Device,
    KernelSpec,
    OutputSpec,
    Param,
    Problem,
    ProblemParam,
    Source,
    StoredSpace,
    TensorMap,
    canonical_json,
)
from .target import ARCHS, Target

__all__ = ["ARCHS", "Config", "Device", "KernelSpec", "OutputSpec", "Param", "Problem", "ProblemParam",
           "Source", "SpecError", "StoredSpace", "Target", "TensorMap", "builtin_specs", "canonical_json",
           "family_of_config", "find_builtin", "find_spec", "load_spec_file", "problem_spec", "specs_for",
           "template_digest"]
