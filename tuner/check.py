"""`tuner check`: a template's space, what its constraints admit, and whether each admitted config
compiles for an arch, with the compiler's resource report, on any machine with the compiler (no
GPU: nvcc compiles for any arch).

Nothing is stored and nothing runs: this is the step before `tuner run`.
"""

from __future__ import annotations

import itertools
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tuner.kernel_templates import Device, KernelSpec, Problem, Target
from tuner.workers import Backend, get_backend

from .search_space import TemplateError, branches, config_of, rejection, render

# Enumerating the space to count what the constraints admit stops here: a template this large
# is checked by --sample alone.
MAX_ENUMERATED = 1_000_000


@dataclass(frozen=True)
class Compiled:
    """One admitted config and what compiling it gave: resources, or the one-line reason not."""

    config: dict[str, Any]
    resources: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    log: str = ""


@dataclass
class Report:
    """What `tuner check` found for one (template, arch, problem)."""

    space_size: int
    admitted: int
    rejections: Counter[str]  # reason -> how many configs check() rejected with it
    compiled: list[Compiled]

    @property
    def failures(self) -> list[Compiled]:
        return [c for c in self.compiled if c.error is not None]

    def commonest_failures(self, n: int = 3) -> list[tuple[str, int]]:
        return Counter(c.error for c in self.failures if c.error).most_common(n)


def configs(spec: KernelSpec) -> Iterator[dict[str, Any]]:
    """Every point of the template's grid (of each family's, over several), in the order of its
    parameters' choices."""
    for fixed, free in branches(spec):
        names = [p.name for p in free]
        for values in itertools.product(*(p.choices for p in free)):
            yield config_of(spec, fixed | dict(zip(names, values, strict=True)))


def admitted_configs(spec: KernelSpec, problem: Problem, device: Device) -> tuple[list[dict[str, Any]], Counter[str]]:
    """The configs ``check`` admits, and the reasons it gave for the others."""
    if spec.space_size() > MAX_ENUMERATED:
        raise TemplateError(f"template {spec.name!r} has {spec.space_size()} configs, more than "
                            f"{MAX_ENUMERATED} to enumerate: check a sample with --sample N")
    admitted: list[dict[str, Any]] = []
    rejections: Counter[str] = Counter()
    for config in configs(spec):
        reason = rejection(spec, config, problem, device)
        if reason is None:
            admitted.append(config)
        else:
            rejections[reason] += 1
    return admitted, rejections


def check(spec: KernelSpec, target: Target, problem: Problem, *, sample: int | None = None,
          seed: int | None = None, workers: int | None = None,
          progress: Callable[[], None] = lambda: None) -> Report:
    """Renders and compiles every admitted config (or ``sample`` of them, drawn with ``seed``)."""
    backend = get_backend(spec.backend)
    admitted, rejections = admitted_configs(spec, problem, backend.device(target))
    chosen = admitted
    if sample is not None and sample < len(admitted):
        picked = sorted(random.Random(seed).sample(range(len(admitted)), sample))
        chosen = [admitted[i] for i in picked]

    def build(config: dict[str, Any]) -> Compiled:
        try:
            return compile_one(spec, backend, config, problem, target)
        finally:
            progress()

    # Compilers are subprocesses: threads keep every core busy.
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
        compiled = list(pool.map(build, chosen))
    return Report(spec.space_size(), len(admitted), rejections, compiled)


def compile_one(spec: KernelSpec, backend: Backend, config: dict[str, Any], problem: Problem,
                target: Target) -> Compiled:
    try:
        source = render(spec, config, problem)
    except TemplateError as exc:
        return Compiled(config, error=str(exc))
    artifact = backend.compile(source, target)
    resources = dict(artifact.resources)
    if source.language == "cuda":
        resources["dynamic_shared_bytes"] = source.shared_bytes
    return Compiled(config, resources, artifact.error, artifact.log)
