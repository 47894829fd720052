"""The samplers ``tuner run --sampler`` offers: name -> factory, and what each supports.

A factory takes a :class:`SamplerContext` (the template, the problem and the measuring device,
so a sampler can enumerate the valid configs, and the seed) and returns an Optuna sampler. What
a sampler supports is declared here and checked for every sampler by one contract test
(``tests/test_samplers.py``), as Optuna's own sampler tests do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import optuna

from tuner.kernel_templates import Device, KernelSpec, Problem
from tuner.kernel_templates.families import Families

from ..errors import UsageError
from ..search_space import distributions, grid

DEFAULT = "forest"


@dataclass(frozen=True)
class SamplerContext:
    spec: KernelSpec
    problem: Problem
    device: Device
    seed: int | None = None


@dataclass(frozen=True)
class SamplerInfo:
    """``constraints``: proposes only configs that pass the template's check; ``ordered``: sees
    numeric choices as ordered, not as unrelated categories; ``no_repeats``: never proposes a
    config already measured or in flight while an untried valid one is left; ``families``: searches
    several families of a kernel at once (a space conditional on ``family``)."""

    name: str
    factory: Callable[[SamplerContext], optuna.samplers.BaseSampler]
    description: str
    multi_objective: bool = True
    constraints: bool = False
    ordered: bool = False
    no_repeats: bool = False
    families: bool = True
    needs: str | None = None  # a module it imports that the base install lacks


def _forest(ctx: SamplerContext) -> optuna.samplers.BaseSampler:
    from .candidates import valid_configs
    from .forest import ForestSampler

    return ForestSampler(valid_configs(ctx.spec, ctx.problem, ctx.device, ctx.seed), distributions(ctx.spec),
                         seed=ctx.seed)


def _grid(ctx: SamplerContext) -> optuna.samplers.BaseSampler:
    from .grid_walk import AskTellGridSampler

    return AskTellGridSampler(grid(ctx.spec), seed=ctx.seed)


def _gp(ctx: SamplerContext) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GPSampler(seed=ctx.seed)


REGISTRY: dict[str, SamplerInfo] = {info.name: info for info in (
    SamplerInfo("forest", _forest, "extra-trees surrogate, expected improvement over the enumerated valid "
                "configs, local steps around the best (the default)",
                constraints=True, ordered=True, no_repeats=True, needs="sklearn"),
    SamplerInfo("nsga2", lambda ctx: optuna.samplers.NSGAIISampler(seed=ctx.seed, population_size=16),
                "Optuna's NSGA-II, a genetic algorithm for Pareto fronts"),
    SamplerInfo("tpe", lambda ctx: optuna.samplers.TPESampler(seed=ctx.seed, multivariate=True, n_startup_trials=10),
                "Optuna's multivariate TPE"),
    SamplerInfo("gp", _gp, "Optuna's Gaussian-process sampler", needs="torch"),
    SamplerInfo("random", lambda ctx: optuna.samplers.RandomSampler(seed=ctx.seed), "uniform over the grid"),
    SamplerInfo("grid", _grid, "every point of the grid once, then the run stops", no_repeats=True,
                families=False),
)}

SAMPLERS = tuple(REGISTRY)


def make_sampler(name: str, ctx: SamplerContext) -> optuna.samplers.BaseSampler:
    """The sampler called ``name``; UsageError for an unknown one or a missing dependency."""
    info = REGISTRY.get(name)
    if info is None:
        raise UsageError(f"unknown sampler {name!r}: choose one of {', '.join(SAMPLERS)}")
    if not info.families and isinstance(ctx.spec, Families):
        raise UsageError(f"--sampler {name} walks one family's grid, and kernel {ctx.spec.name!r} has "
                         f"{len(ctx.spec.members)} here ({', '.join(ctx.spec.names())}): pass --family, "
                         "or choose another sampler")
    if info.needs and not _importable(info.needs):
        raise UsageError(f"--sampler {name} needs {info.needs}: pip install {_PIP.get(info.needs, info.needs)}, "
                         f"or choose another of {', '.join(n for n in SAMPLERS if n != name)}")
    return info.factory(ctx)


_PIP = {"sklearn": "scikit-learn", "torch": "torch (or tuner[cuda])"}


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
