"""The kernel template seam: what a tunable kernel tells the tuner about itself.

A template is one Python file defining a :class:`KernelSpec` subclass (and, usually, the C or
CUDA source it renders). The tuner only ever talks to a kernel through this interface:

    params        -> the search space (named categorical choices)
    check()       -> is (config, problem, device) valid, or the reason it is not (device: a Target)
    render()      -> the source to compile, with its entry point and launch geometry
    make_inputs() -> fresh random inputs (never zeros)
    reference()   -> the exact answer the kernel is verified against
    flops()/bytes_moved() -> so latencies read as FLOP/s and against a roofline

Calling convention of a rendered kernel: ``entry(*tensor_maps, *inputs, output, *scalars)`` where
``tensor_maps`` are :attr:`Source.tensor_maps` (CUDA only, usually none), ``inputs`` are the
buffers of :meth:`KernelSpec.kernel_inputs` (make_inputs', usually all of them) in dict order,
``output`` is one buffer of :meth:`KernelSpec.output_spec`, and ``scalars`` are
:attr:`Source.scalars` in order (a CUDA source with :attr:`Source.workspace_bytes` takes its
workspace's address between ``output`` and the scalars).

C (``backend = "cpu"``): inputs and the reference are NumPy arrays; the entry is a plain C
function. CUDA (``backend = "cuda"``): the entry is an ``extern "C" __global__`` function launched
with :attr:`Source.grid`, :attr:`Source.block` and :attr:`Source.shared_bytes` of dynamic shared
memory (above 48 KB the launcher opts the kernel in; ``check`` keeps it within the device's
``max_shared_bytes``); inputs and the reference are torch CUDA tensors. Scalar types and their C
types: ``int32`` int, ``int64`` long long, ``float32`` float, ``float64`` double. ``check`` reads
:attr:`Device.limits`. ``examples/`` holds one complete template of each kind.
"""

from __future__ import annotations

import hashlib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .target import Device, Target

Config = Mapping[str, Any]
Problem = Mapping[str, Any]
INT64_MAX = 2**63 - 1  # integer problem parameters reach kernels as int64 scalars


def canonical_json(value: Mapping[str, Any]) -> str:
    """A stable text form of a config or problem: the key for caches and database lookups."""
    return json.dumps(dict(value), sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class Param:
    """One tunable parameter: a named, ordered set of choices (Optuna categorical). A knob added
    after configs were stored names, as ``stored_default``, the value a stored config without it
    has (None: every config has it)."""

    name: str
    choices: tuple[Any, ...]
    doc: str = ""
    stored_default: Any = None


@dataclass(frozen=True)
class ProblemParam:
    """One problem parameter (a shape dimension, a flag, a dtype) and the values it may take.

    ``kind`` is ``int``, ``bool`` or ``str``; ``choices`` restricts a ``str`` (or any) parameter;
    ``minimum`` bounds an ``int`` one. An ``optional`` parameter (one added to a template after
    problems were stored, e.g. attention's ``H_kv``) is left out of a problem while it is at its
    default, so problems, study names and lookups stored before it existed stay what they were;
    templates read it with ``problem.get(name, default)``.
    """

    name: str
    kind: type
    default: Any
    choices: tuple[Any, ...] | None = None
    minimum: int | None = None
    doc: str = ""
    optional: bool = False

    def parse(self, text: str) -> Any:
        """Turns the text of ``--shape NAME=VALUE`` into a value, or raises ValueError."""
        if self.kind is bool:
            lowered = text.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                value: Any = True
            elif lowered in {"0", "false", "no", "off"}:
                value = False
            else:
                raise ValueError(f"{self.name} must be true or false, not {text!r}")
        elif self.kind is int:
            digits = text.strip().lstrip("+-")
            if digits.isdigit() and len(digits) > len(str(INT64_MAX)):  # before int(): 5000 digits
                raise ValueError(f"{self.name} must be at most {INT64_MAX} (a 64-bit integer), "
                                 f"not a {len(digits)}-digit number")
            try:
                value = int(text)
            except ValueError:
                raise ValueError(f"{self.name} must be an integer, not {text!r}") from None
        else:
            value = text.strip()
        self.validate(value)
        return value

    def validate(self, value: Any) -> None:
        if self.kind is int and (not isinstance(value, int) or isinstance(value, bool)):
            raise ValueError(f"{self.name} must be an integer, not {value!r}")
        if self.kind is int and not -INT64_MAX - 1 <= value <= INT64_MAX:
            raise ValueError(f"{self.name} must be at most {INT64_MAX} (a 64-bit integer): "
                             f"kernels receive sizes as int64")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{self.name} must be at least {self.minimum}, not {value}")
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            raise ValueError(f"{self.name} must be one of {allowed}, not {value!r}")


@dataclass(frozen=True)
class TensorMap:
    """A TMA tensor map the launcher builds over one launch buffer (``cuTensorMapEncodeTiled``).

    ``buffer`` names an input (a key of ``make_inputs``) or ``"out"``; the map's global shape,
    strides and element type are that buffer's (its last dimension contiguous; the others'
    strides multiples of 16 bytes, as TMA requires). ``box`` is the tile one load moves, innermost
    dimension first; ``swizzle`` and ``l2_promotion`` are bytes (0/32/64/128 and 0/64/128/256);
    ``oob_fill`` is what loads read past the edges: ``"zero"`` or ``"nan"``. The kernel receives
    the map by value as a ``const __grid_constant__`` 128-byte parameter.
    """

    buffer: str
    box: tuple[int, ...]
    swizzle: int = 128
    l2_promotion: int = 256
    oob_fill: str = "zero"

    def describe(self) -> dict[str, Any]:
        return {"buffer": self.buffer, "box": list(self.box), "swizzle": self.swizzle,
                "l2_promotion": self.l2_promotion, "oob_fill": self.oob_fill}


@dataclass(frozen=True)
class Source:
    """A rendered kernel: everything a compiler and a launcher need, as plain data.

    ``language`` is ``"c"`` or ``"cuda"``. ``scalars`` are ``(c_type, value)`` pairs passed after
    the buffers, with c_type one of ``int32``, ``int64``, ``float32``, ``float64``. ``grid``,
    ``block`` and ``shared_bytes`` describe a CUDA launch and are ignored for C, as are the
    Hopper parts: ``tensor_maps`` (passed before the buffers, in order), ``cluster`` (blocks per
    thread-block cluster; ``grid`` must be a multiple) and ``persistent`` (``grid`` is an upper
    bound: the launcher starts no more blocks, or clusters, than fit the device at once, and the
    kernel loops over its work with a stride of ``gridDim``). ``workspace_bytes`` (CUDA, nonzero):
    bytes of global memory per block of the launched grid that the launcher allocates once per
    stream, zeroed, and passes after the buffers, before the scalars; the kernel leaves it as it
    found it, for the next launch (stream-K's partial sums and flags).
    """

    language: str
    code: str
    entry: str
    options: tuple[str, ...] = ()
    scalars: tuple[tuple[str, Any], ...] = ()
    grid: tuple[int, int, int] = (1, 1, 1)
    block: tuple[int, int, int] = (1, 1, 1)
    shared_bytes: int = 0
    tensor_maps: tuple[TensorMap, ...] = ()
    cluster: tuple[int, int, int] = (1, 1, 1)
    persistent: bool = False
    workspace_bytes: int = 0

    def code_digest(self) -> str:
        """Hash of what decides the compiled binary (code, entry, options): the compile cache's key,
        shared by every problem size that renders the same code."""
        text = canonical_json({"language": self.language, "code": self.code, "entry": self.entry,
                               "options": list(self.options)})
        return hashlib.sha256(text.encode()).hexdigest()

    def digest(self) -> str:
        """Hash of everything that decides what runs: code, options, scalars and launch geometry.

        Two trials with equal digests (and equal problem, device and software) measure the same
        thing, so the tuner answers the second from storage.
        """
        text = canonical_json({"language": self.language, "code": self.code, "entry": self.entry,
                               "options": list(self.options), "scalars": [list(s) for s in self.scalars],
                               "grid": list(self.grid), "block": list(self.block),
                               "shared_bytes": self.shared_bytes, **self._hopper_launch()})
        return hashlib.sha256(text.encode()).hexdigest()

    def _hopper_launch(self) -> dict[str, Any]:
        """The tensor maps, cluster, persistence and workspace, where set: a source without them keeps
        the digest it had before they existed, so stored trials still answer for it."""
        launch: dict[str, Any] = {}
        if self.tensor_maps:
            launch["tensor_maps"] = [m.describe() for m in self.tensor_maps]
        if tuple(self.cluster) != (1, 1, 1):
            launch["cluster"] = list(self.cluster)
        if self.persistent:
            launch["persistent"] = True
        if self.workspace_bytes:
            launch["workspace_bytes"] = self.workspace_bytes
        return launch


@dataclass(frozen=True)
class OutputSpec:
    """Shape and dtype of the kernel's output buffer (the worker allocates and poisons it)."""

    shape: tuple[int, ...]
    dtype: str


class ProblemSpace:
    """The parameters of a kernel and the parsing of its problems: shared by a :class:`KernelSpec`
    and a :class:`StoredSpace` (the same, read back from the database)."""

    name: str
    params: tuple[Param, ...] = ()
    problem_params: tuple[ProblemParam, ...] = ()

    def default_problem(self) -> dict[str, Any]:
        return self.canonical_problem({p.name: p.default for p in self.problem_params})

    def canonical_problem(self, problem: Mapping[str, Any]) -> dict[str, Any]:
        """``problem`` as it is stored and keyed: optional parameters at their default left out (a
        problem stored before such a parameter existed is the same problem)."""
        absent = {p.name: p.default for p in self.problem_params if p.optional}
        return {k: v for k, v in problem.items() if not (k in absent and v == absent[k])}

    def parse_problem(self, assignments: Mapping[str, str]) -> dict[str, Any]:
        """Problem from ``NAME=VALUE`` texts over the defaults; raises ValueError with the reason."""
        known = {p.name: p for p in self.problem_params}
        problem = {p.name: p.default for p in self.problem_params}
        for key, text in assignments.items():
            if key not in known:
                names = ", ".join(known)
                raise ValueError(f"kernel {self.name!r} has no problem parameter {key!r} (it has: {names})")
            problem[key] = known[key].parse(text)
        return self.canonical_problem(problem)

    def validate_problem(self, problem: Mapping[str, Any]) -> dict[str, Any]:
        """A full problem from a partial mapping of values; raises ValueError with the reason."""
        known = {p.name: p for p in self.problem_params}
        unknown = set(problem) - set(known)
        if unknown:
            raise ValueError(f"kernel {self.name!r} has no problem parameter {sorted(unknown)[0]!r}")
        full = {p.name: p.default for p in self.problem_params} | dict(problem)
        for key, value in full.items():
            known[key].validate(value)
        return self.canonical_problem(full)

    def space_size(self) -> int:
        size = 1
        for p in self.params:
            size *= len(p.choices)
        return size


class KernelSpec(ProblemSpace, ABC):
    """A tunable kernel template.

    Subclasses set the class attributes and implement the abstract methods. Methods must be
    pure functions of their arguments: the tuner calls ``check`` and ``render`` in the driver, and
    the workers call ``make_inputs``/``reference``/``output_spec`` in other processes after
    loading the same spec by name or path.

    ``check`` is called before anything is compiled; a config it rejects never reaches a worker
    and is stored with the returned reason. ``max_error`` is the bound above which an output is
    ``wrong_result``: inexact variants stay valid within it and the tuner trades their error
    against latency on the Pareto front.
    """

    name: str
    description: str = ""
    backend: str = "cpu"  # "cpu" or "cuda"
    archs: tuple[str, ...] = ("cpu",)
    # Several families of one kernel (mma.sync, Hopper wgmma, ...) stand side by side under one
    # name, each with its own knobs and archs; "" for a kernel's only family.
    family: str = ""

    def supports(self, target: Target) -> bool:
        """Whether this template builds for ``target`` (its backend and one of its archs)."""
        return target.backend == self.backend and target.arch in self.archs

    def check(self, config: Config, problem: Problem, device: Device) -> str | None:
        """``None`` when the config can run this problem on this device (a :class:`Target`), else the reason."""
        return None

    @abstractmethod
    def render(self, config: Config, problem: Problem) -> Source: ...

    @abstractmethod
    def make_inputs(self, problem: Problem, rng: np.random.Generator) -> dict[str, Any]:
        """Fresh random inputs, never zeros, as arrays of the backend's kind. Drawn from a study's
        seed, not a trial's: the CUDA worker draws two sets and computes their references once per
        (problem, seed) and measures every config of the study on them, so this and ``reference``
        must depend on their arguments alone (specs that inherit both share the draw)."""

    def kernel_inputs(self, inputs: Mapping[str, Any], config: Config) -> dict[str, Any]:
        """The buffers of ``inputs`` (make_inputs') that ``config``'s kernel takes, in order: all of
        them unless a template draws more than one kernel reads (a quantized copy for some configs,
        the unquantized original that reference() alone reads)."""
        return dict(inputs)

    @abstractmethod
    def output_spec(self, problem: Problem) -> OutputSpec: ...

    @abstractmethod
    def reference(self, inputs: Mapping[str, Any], problem: Problem) -> Any:
        """The exact output, in higher precision than the kernel computes."""

    @abstractmethod
    def flops(self, problem: Problem) -> float: ...

    @abstractmethod
    def bytes_moved(self, problem: Problem) -> float:
        """The fewest bytes the kernel must move: each input read once, the output written once."""

    def max_error(self, config: Config, problem: Problem) -> float:
        """Relative L2 error above which a run counts as ``wrong_result``."""
        return 1e-2

    def space(self) -> dict[str, Any]:
        """What reading a study needs of this template, as JSON: its description and archs,
        parameter names, choices and docs, problem parameters. Stored with each study, so what
        is served of it (``tuner best --kernel``, ``/best``, ``tuner kernels``) needs only its name."""
        return {"description": self.description, "archs": list(self.archs),
                "params": [{"name": p.name, "choices": list(p.choices), "doc": p.doc} for p in self.params],
                "problem_params": [_problem_param_space(p) for p in self.problem_params]}


def _problem_param_space(p: ProblemParam) -> dict[str, Any]:
    described = {"name": p.name, "kind": p.kind.__name__, "default": p.default,
                 "choices": None if p.choices is None else list(p.choices), "minimum": p.minimum, "doc": p.doc}
    return described | ({"optional": True} if p.optional else {})


_KINDS = {"int": int, "bool": bool, "str": str}


def _params(space: Mapping[str, Any]) -> tuple[Param, ...]:
    return tuple(Param(p["name"], tuple(p["choices"]), p.get("doc", "")) for p in space.get("params", ()))


class StoredSpace(ProblemSpace):
    """A template as a study stored it (:meth:`KernelSpec.space`): enough to parse and complete
    its problems and list its parameters without the template file."""

    def __init__(self, name: str, backend: str, space: Mapping[str, Any]):
        self.name, self.backend = name, backend
        self.description: str = space.get("description", "")
        self.archs: tuple[str, ...] = tuple(space.get("archs", ()))
        self.params = _params(space)
        # a search over several families: each family's own parameters (Families.space())
        self.families = {name: _params(family) for name, family in space.get("families", {}).items()}
        self.problem_params = tuple(
            ProblemParam(p["name"], _KINDS[p["kind"]], p["default"],
                         None if p.get("choices") is None else tuple(p["choices"]),
                         p.get("minimum"), p.get("doc", ""), p.get("optional", False))
            for p in space.get("problem_params", ()))

    def space_size(self) -> int:
        if not self.families:
            return super().space_size()
        return sum(math.prod(len(p.choices) for p in params) for params in self.families.values())
