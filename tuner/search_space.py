"""From a kernel spec's parameters to Optuna distributions, and the gate before compilation.

A spec of one family searches its parameters, all of them in every trial. A
:class:`~tuner.kernel_templates.families.Families` spec searches ``family`` first and then that
family's own knobs alone (Optuna's define-by-run: :func:`suggest`), each named
``<family>.<knob>`` in Optuna (:func:`optuna_params`); its configs, as trials store them and
``check``/``render`` read them, are the family's own knobs and ``family``.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution

from tuner.kernel_templates import Device, KernelSpec, Param, Problem, Source
from tuner.kernel_templates.families import FAMILY, Families, member, param_name, tagged


def distributions(spec: KernelSpec) -> dict[str, BaseDistribution]:
    """One categorical distribution per parameter: tile sizes and variants are discrete choices
    (of a :class:`Families` spec: ``family`` and every family's knobs, by their Optuna names)."""
    return {p.name: CategoricalDistribution(list(p.choices)) for p in spec.params}


def branches(spec: KernelSpec) -> list[tuple[dict[str, Any], tuple[Param, ...]]]:
    """The parts of the space a trial may search: (the fixed Optuna params, the free ones) each.
    One family: everything free; several: ``family`` fixed to each, with its own knobs free."""
    if not isinstance(spec, Families):
        return [({}, spec.params)]
    by_name = {p.name: p for p in spec.params}
    return [({FAMILY: f}, tuple(by_name[param_name(f, p.name)] for p in m.params)) for f, m in spec.members.items()]


def stored_config(spec: KernelSpec, family: KernelSpec, own: dict[str, Any]) -> dict[str, Any]:
    """A config of ``family``'s own knobs as a study of ``spec`` stores it: with ``family`` where
    ``spec`` searches several, or where the family has a name."""
    return {FAMILY: family.family, **own} if isinstance(spec, Families) else tagged(family, own)


def suggest(trial: optuna.Trial, spec: KernelSpec) -> dict[str, Any]:
    """The config of a new trial, its parameters asked of Optuna define-by-run."""
    if not isinstance(spec, Families):
        return tagged(spec, {p.name: trial.suggest_categorical(p.name, p.choices) for p in spec.params})
    family = spec.members[trial.suggest_categorical(FAMILY, list(spec.members))]
    return stored_config(spec, family, {p.name: trial.suggest_categorical(param_name(family.family, p.name), p.choices)
                                        for p in family.params})


def optuna_params(spec: KernelSpec, config: dict[str, Any]) -> dict[str, Any]:
    """The Optuna parameters of a config of ``spec`` (to enqueue it)."""
    family, own = member(spec, config)
    if not isinstance(spec, Families):
        return own
    return {FAMILY: family.family, **{param_name(family.family, k): v for k, v in own.items()}}


def config_of(spec: KernelSpec, params: dict[str, Any]) -> dict[str, Any]:
    """The config of a trial's Optuna parameters (:func:`optuna_params` undone)."""
    if not isinstance(spec, Families):
        return tagged(spec, params)
    family = spec.members[params[FAMILY]]
    return stored_config(spec, family, {p.name: params[param_name(family.family, p.name)] for p in family.params})


def grid(spec: KernelSpec) -> dict[str, list[Any]]:
    return {p.name: list(p.choices) for p in spec.params}


def rejection(spec: KernelSpec, config: dict[str, Any], problem: Problem, device: Device) -> str | None:
    """Why a config must not be compiled, or None. A constraint that raises is a broken template.
    Only the config's own family checks it."""
    spec, config = member(spec, config)
    try:
        return spec.check(config, problem, device)
    except Exception as exc:  # user templates may raise anything
        raise TemplateError(f"template {spec.name!r}: check() raised {type(exc).__name__}: {exc} "
                            f"(config {config}); fix the template's constraint function") from None


class TemplateError(Exception):
    """A template whose own code fails (check or render raised): the message names the fix."""


def preflight(spec: KernelSpec, problem: Problem, device: Device) -> None:
    """Runs the template's own code once on its first config (each family's), before anything is
    written, so a check() or render() that raises is refused up front rather than in the middle of a study."""
    for fixed, free in branches(spec):
        config = config_of(spec, fixed | {p.name: p.choices[0] for p in free})
        if rejection(spec, config, problem, device) is None:
            render(spec, config, problem)


def render(spec: KernelSpec, config: dict[str, Any], problem: Problem) -> Source:
    spec, config = member(spec, config)
    try:
        return spec.render(config, problem)
    except Exception as exc:  # user templates may raise anything
        raise TemplateError(f"template {spec.name!r}: render() raised {type(exc).__name__}: {exc} "
                            f"(config {config}); fix the template") from None
