"""Finding kernel specs: the built-in templates by name and backend, or a user's template file."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from functools import lru_cache
from pathlib import Path

from .spec import KernelSpec

# module (inside tuner.kernel_templates) -> the spec classes it defines
BUILTIN_MODULES = ("attention_cpu", "attention_cuda")


class SpecError(Exception):
    """A template that cannot be found or loaded; the message says what to do."""


def backend_of(arch: str) -> str:
    return "cpu" if arch == "cpu" else "cuda"


def _specs_in(module) -> list[KernelSpec]:
    found = []
    for value in vars(module).values():
        if (isinstance(value, type) and issubclass(value, KernelSpec) and value is not KernelSpec
                and value.__module__ == module.__name__ and not getattr(value, "__abstractmethods__", None)):
            found.append(value())
    return found


@lru_cache(maxsize=None)
def builtin_specs() -> tuple[KernelSpec, ...]:
    specs: list[KernelSpec] = []
    for name in BUILTIN_MODULES:
        try:
            module = importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__package__}.{name}":
                continue  # a backend whose template is not in this build
            raise
        specs.extend(_specs_in(module))
    return tuple(specs)


@lru_cache(maxsize=None)
def load_spec_file(path: str) -> KernelSpec:
    """The one KernelSpec subclass defined in a template file."""
    file = Path(path)
    if not file.is_file():
        raise SpecError(f"template file {path} does not exist or is not a file: check the path")
    module_name = f"tuner_user_template_{abs(hash(str(file.resolve())))}"
    try:
        loader_spec = importlib.util.spec_from_file_location(module_name, file)
        if loader_spec is None or loader_spec.loader is None:
            raise SpecError(f"template file {path} is not a Python file (it must end in .py)")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module
        loader_spec.loader.exec_module(module)
    except SpecError:
        raise
    except SyntaxError as exc:
        raise SpecError(f"template file {path} has a syntax error at line {exc.lineno}: {exc.msg}") from None
    except Exception as exc:  # a user's module may raise anything at import
        raise SpecError(f"template file {path} failed to import: {type(exc).__name__}: {exc}") from None
    specs = _specs_in(module)
    if len(specs) != 1:
        raise SpecError(f"template file {path} must define exactly one KernelSpec subclass "
                        f"with every abstract method implemented (found {len(specs)})")
    spec = specs[0]
    if not getattr(spec, "name", None):
        raise SpecError(f"template file {path}: its KernelSpec subclass must set a `name`")
    return spec


def find_spec(name: str, arch: str) -> KernelSpec:
    """The built-in spec called ``name`` for the backend of ``arch``."""
    return find_builtin(name, backend_of(arch), arch)


def find_builtin(name: str, backend: str, arch: str | None = None) -> KernelSpec:
    """The built-in spec called ``name`` for ``backend``."""
    candidates = [s for s in builtin_specs() if s.name == name]
    for spec in candidates:
        if spec.backend == backend:
            return spec
    if candidates:
        archs = sorted({a for s in candidates for a in s.archs})
        raise SpecError(f"kernel {name!r} has no {backend} template for arch {arch or backend!r} "
                        f"(it runs on: {', '.join(archs)})")
    names = sorted({s.name for s in builtin_specs()})
    raise SpecError(f"unknown kernel {name!r}: choose one of {', '.join(names)} "
                    f"(`tuner kernels` lists them) or pass --template path/to/spec.py")
