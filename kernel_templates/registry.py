"""Finding kernel specs: the built-in templates by (name, arch), or a user's template file.

One kernel name may have several built-in families (``KernelSpec.family``: mma.sync, Hopper
wgmma, ...), each declaring its backend and archs; a lookup by (name, arch) returns every family
that runs there, in the order of ``BUILTIN_MODULES`` (the first is the default). The families of
one kernel on one backend share its problem parameters, so a problem and a best answer mean the
same for each.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from functools import cache
from pathlib import Path

from tuner.names import check_param_name

from .families import Families
from .spec import KernelSpec

# module (inside tuner.kernel_templates) -> the spec classes it defines
BUILTIN_MODULES = ("attention_cpu", "attention_cuda", "attention_hopper", "gemm_cuda")


class SpecError(Exception):
    """A template that cannot be found or loaded; the message says what to do."""


def _specs_in(module) -> list[KernelSpec]:
    found = []
    for value in vars(module).values():
        if (isinstance(value, type) and issubclass(value, KernelSpec) and value is not KernelSpec
                and value.__module__ == module.__name__ and not getattr(value, "__abstractmethods__", None)):
            found.append(value())
    return found


@cache
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
    check_families(specs)
    return tuple(specs)


def check_families(specs: list[KernelSpec]) -> None:
    """Raises when two specs share (name, backend, family), or a kernel's families on one backend
    disagree on its problem parameters: both are bugs of the template that came second."""
    seen: dict[tuple[str, str, str], KernelSpec] = {}
    first_of: dict[tuple[str, str], KernelSpec] = {}  # (name, backend) -> its first family
    for spec in specs:
        key = (spec.name, spec.backend, spec.family)
        if key in seen:
            raise SpecError(f"two templates are kernel {spec.name!r}, backend {spec.backend}, family "
                            f"{spec.family!r}: give one another family")
        seen[key] = spec
        first = first_of.setdefault((spec.name, spec.backend), spec)
        if _problem_of(spec) != _problem_of(first):
            raise SpecError(f"families {first.family!r} and {spec.family!r} of kernel {spec.name!r} "
                            "have different problem parameters: one kernel has one problem")


def _problem_of(spec: KernelSpec) -> list[tuple[str, object]]:
    return [(p.name, p.default) for p in spec.problem_params]


@cache
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
    except SystemExit as exc:  # sys.exit() at import would end the tuner silently
        raise SpecError(f"template file {path} called sys.exit({exc.code!r}) at import: a "
                        f"template must only define its KernelSpec subclass") from None
    except Exception as exc:  # a user's module may raise anything at import
        raise SpecError(f"template file {path} failed to import: {type(exc).__name__}: {exc}") from None
    specs = _specs_in(module)
    if len(specs) != 1:
        raise SpecError(f"template file {path} must define exactly one KernelSpec subclass "
                        f"with every abstract method implemented (found {len(specs)})")
    spec = specs[0]
    if not getattr(spec, "name", None):
        raise SpecError(f"template file {path}: its KernelSpec subclass must set a `name`")
    for name in [p.name for p in spec.params] + [p.name for p in spec.problem_params]:
        try:
            check_param_name(name)
        except ValueError as exc:
            raise SpecError(f"template file {path}: {exc}") from None
    return spec


def template_digest(path: str) -> str:
    """SHA-256 of a template file's bytes: which version of it a study was tuned with."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def specs_for(name: str, arch: str) -> tuple[KernelSpec, ...]:
    """Every built-in family of kernel ``name`` that runs on ``arch``, the default first."""
    candidates = [s for s in builtin_specs() if s.name == name]
    found = tuple(s for s in candidates if arch in s.archs)
    if found:
        return found
    if candidates:
        archs = sorted({a for s in candidates for a in s.archs})
        raise SpecError(f"kernel {name!r} has no template for arch {arch!r} (it runs on: {', '.join(archs)})")
    names = sorted({s.name for s in builtin_specs()})
    raise SpecError(f"unknown kernel {name!r}: choose one of {', '.join(names)} "
                    f"(`tuner kernels` lists them) or pass --template path/to/spec.py")


def problem_spec(name: str, arch: str) -> KernelSpec:
    """A spec of kernel ``name`` on ``arch`` to read its problem with: every family shares it, so
    parsing a problem or answering `best` needs no family."""
    return specs_for(name, arch)[0]


def find_spec(name: str, arch: str, family: str | None = None) -> KernelSpec:
    """The built-in family ``family`` of kernel ``name`` on ``arch``; without ``family``, the
    kernel's only family there (several ask for a choice)."""
    specs = specs_for(name, arch)
    families = ", ".join(s.family or "(unnamed)" for s in specs)
    if family is None:
        if len(specs) > 1:
            raise SpecError(f"kernel {name!r} has {len(specs)} families on {arch} ({families}): "
                            "choose one with --family")
        return specs[0]
    for spec in specs:
        if spec.family == family:
            return spec
    raise SpecError(f"kernel {name!r} has no family {family!r} on {arch} (it has: {families})")


def kernel_spec(name: str, arch: str) -> KernelSpec:
    """Kernel ``name`` on ``arch`` as one template: its only family there, or every family as
    :class:`Families` (the default first), whose ``render`` runs any family's stored config."""
    specs = specs_for(name, arch)
    return specs[0] if len(specs) == 1 else Families(specs)


def default_family(spec: KernelSpec) -> str:
    """The family of a stored config of ``spec``'s kernel that names none: the kernel's first
    registered family on its backend (the only one before it had several), else the template's own."""
    for builtin in builtin_specs():
        if (builtin.name, builtin.backend) == (spec.name, spec.backend):
            return builtin.family
    return spec.family


def find_builtin(name: str, backend: str, family: str | None = None) -> KernelSpec:
    """The built-in spec of kernel ``name`` for ``backend`` in ``family`` (default: the first
    registered), as a worker finds it again from a :class:`SpecRef`."""
    for spec in builtin_specs():
        if spec.name == name and spec.backend == backend and family in (None, spec.family):
            return spec
    raise SpecError(f"no built-in template is kernel {name!r} for backend {backend}"
                    + (f", family {family!r}" if family is not None else "")
                    + ": `tuner kernels` lists them")
