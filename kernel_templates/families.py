"""Several families of one kernel searched as one template: the family is a parameter, and each
family's own knobs are conditional on it.

A config of a :class:`Families` spec is the chosen family's own config with the family's name under
``"family"`` (:data:`FAMILY`), as trials store it; :meth:`Families.member` gives the family's spec
and the config as that family reads it, so a config of one family never reaches another's
``check`` or ``render``. A config with no ``"family"`` (stored before a kernel had several) is the
default family's: the first registered. In Optuna, where one parameter name has one set of
choices per study, each family's knobs are named ``<family>.<knob>`` (:func:`param_name`); the
search space functions of ``tuner.search_space`` map between the two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .spec import Config, Device, KernelSpec, OutputSpec, Param, Problem, Source

FAMILY = "family"


def param_name(family: str, name: str) -> str:
    """The Optuna name of knob ``name`` of ``family`` in a search over several families (an
    unnamed family's knobs keep their names)."""
    return f"{family}.{name}" if family else name


def tagged(spec: KernelSpec, config: Config) -> dict[str, Any]:
    """``config`` of family ``spec`` as a trial stores it: with its family where it has a name."""
    return {FAMILY: spec.family, **config} if spec.family else dict(config)


def own_config(config: Config) -> dict[str, Any]:
    """``config`` without its family: what the family's own check and render read."""
    return {k: v for k, v in config.items() if k != FAMILY}


class Families(KernelSpec):
    """The families of one kernel on one arch (``members``, the default first), as one template."""

    def __init__(self, members: Sequence[KernelSpec]):
        if len({m.family for m in members}) != len(members) or len(members) < 2:
            raise ValueError("Families needs two or more families of distinct names")
        first = members[0]
        self.members: dict[str, KernelSpec] = {m.family: m for m in members}
        self.name, self.backend, self.family = first.name, first.backend, ""
        self.archs = tuple(a for a in first.archs if all(a in m.archs for m in members))
        self.problem_params = first.problem_params
        self.description = "families " + ", ".join(self.names()) + " of " + first.name
        self.params = (Param(FAMILY, tuple(self.members), "the template family; the knobs below are "
                             "each family's own, named <family>.<knob>"),) + tuple(
            Param(param_name(f, p.name), p.choices, p.doc) for f, m in self.members.items() for p in m.params)

    def names(self) -> list[str]:
        """The families' names, an unnamed one as ``default``."""
        return [f or "default" for f in self.members]

    def member(self, config: Config) -> tuple[KernelSpec, dict[str, Any]]:
        """The family that runs ``config`` and ``config`` as that family reads it."""
        family = config.get(FAMILY, next(iter(self.members)))
        if family not in self.members:
            raise ValueError(f"kernel {self.name!r} has no family {family!r} here (it has: {', '.join(self.names())})")
        return self.members[family], own_config(config)

    def space_size(self) -> int:
        return sum(m.space_size() for m in self.members.values())

    def space(self) -> dict[str, Any]:
        """The template's stored description: the ``family`` parameter, and under ``families`` each
        family's own description, archs and parameters (:class:`StoredSpace` reads it back)."""
        space = super().space()
        space["params"] = space["params"][:1]
        space["families"] = {f: {k: v for k, v in m.space().items() if k != "problem_params"}
                             for f, m in self.members.items()}
        return space

    def check(self, config: Config, problem: Problem, device: Device) -> str | None:
        try:
            spec, own = self.member(config)
        except ValueError as exc:
            return str(exc)
        return spec.check(own, problem, device)

    def render(self, config: Config, problem: Problem) -> Source:
        spec, own = self.member(config)
        return spec.render(own, problem)

    def max_error(self, config: Config, problem: Problem) -> float:
        spec, own = self.member(config)
        return spec.max_error(own, problem)

    def kernel_inputs(self, inputs: Mapping[str, Any], config: Config) -> dict[str, Any]:
        spec, own = self.member(config)
        return spec.kernel_inputs(inputs, own)

    # The problem is every family's (the registry checks that they agree): the default family's.

    def _default(self) -> KernelSpec:
        return next(iter(self.members.values()))

    def canonical_problem(self, problem: Problem) -> dict[str, Any]:
        return self._default().canonical_problem(problem)

    def make_inputs(self, problem: Problem, rng: np.random.Generator) -> dict[str, Any]:
        return self._default().make_inputs(problem, rng)

    def output_spec(self, problem: Problem) -> OutputSpec:
        return self._default().output_spec(problem)

    def reference(self, inputs: Mapping[str, Any], problem: Problem) -> Any:
        return self._default().reference(inputs, problem)

    def flops(self, problem: Problem) -> float:
        return self._default().flops(problem)

    def bytes_moved(self, problem: Problem) -> float:
        return self._default().bytes_moved(problem)


def member(spec: KernelSpec, config: Config) -> tuple[KernelSpec, dict[str, Any]]:
    """The family spec that runs ``config`` of ``spec`` (one family or :class:`Families`), and the
    config as it reads it."""
    if isinstance(spec, Families):
        return spec.member(config)
    return spec, own_config(config)
