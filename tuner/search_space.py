"""From a kernel spec's parameters to Optuna distributions, and the gate before compilation."""

from __future__ import annotations

from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution

from tuner.kernel_templates import Device, KernelSpec, Problem, Source


def distributions(spec: KernelSpec) -> dict[str, BaseDistribution]:
    """One categorical distribution per parameter: tile sizes and variants are discrete choices."""
    return {p.name: CategoricalDistribution(list(p.choices)) for p in spec.params}


def grid(spec: KernelSpec) -> dict[str, list[Any]]:
    return {p.name: list(p.choices) for p in spec.params}


def rejection(spec: KernelSpec, config: dict[str, Any], problem: Problem, device: Device) -> str | None:
    """Why a config must not be compiled, or None. A constraint that raises is a broken template."""
    try:
        return spec.check(config, problem, device)
    except Exception as exc:  # user templates may raise anything
        raise TemplateError(f"template {spec.name!r}: check() raised {type(exc).__name__}: {exc} "
                            f"(config {config}); fix the template's constraint function") from None


class TemplateError(Exception):
    """A template whose own code fails (check or render raised): the message names the fix."""


def preflight(spec: KernelSpec, problem: Problem, device: Device) -> None:
    """Runs the template's own code once on its first config, before anything is written, so a
    check() or render() that raises is refused up front rather than in the middle of a study."""
    config = {p.name: p.choices[0] for p in spec.params}
    if rejection(spec, config, problem, device) is None:
        render(spec, config, problem)


def render(spec: KernelSpec, config: dict[str, Any], problem: Problem) -> Source:
    try:
        return spec.render(config, problem)
    except Exception as exc:  # user templates may raise anything
        raise TemplateError(f"template {spec.name!r}: render() raised {type(exc).__name__}: {exc} "
                            f"(config {config}); fix the template") from None
