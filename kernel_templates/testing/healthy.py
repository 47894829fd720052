"""What the healthy_* templates share: their fault template, loaded by path, and its healthy variants.

A healthy template subclasses its fault template and keeps only the variants that compute, so a
fault-free study renders (and compiles) exactly the sources the fault study measured.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from tuner.kernel_templates.spec import Param


def sibling(template_file: str, name: str) -> ModuleType:
    """The template ``name`` beside ``template_file``, loaded by path as the tuner loads a
    user's template (so the file beside it is used, not an installed copy)."""
    path = Path(template_file).with_name(name)
    loader_spec = importlib.util.spec_from_file_location(f"tuner_testing_{path.stem}", path)
    if loader_spec is None or loader_spec.loader is None:
        raise ImportError(f"cannot load the template {path}")
    module = importlib.util.module_from_spec(loader_spec)
    loader_spec.loader.exec_module(module)
    return module


def healthy_variants(faulty: ModuleType) -> tuple[Param, ...]:
    """The fault template's params with its planted faults left out of ``variant``."""
    kept = tuple(v for v in faulty.VARIANTS if v not in faulty.FAULTY)
    return (Param("variant", kept, "the fault template's variants that compute"),)
