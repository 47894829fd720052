"""``tuner.runtime.kernel(path)``: a user's template as a callable on torch tensors.

``kernel("my_template.py")(*inputs, **problem)`` launches the stored best config of that
template for ``problem`` (its problem parameters; defaults fill the rest) on the inputs in the
order of the template's ``make_inputs``, and returns the output of its ``output_spec``. The first
call of a shape checks the inputs against what ``make_inputs`` draws for the problem (count,
shapes, dtypes, device; ValueError says what differs). Where nothing stored fits it raises
:class:`NotTuned`: a user template has no fallback.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tuner.kernel_templates import KernelSpec, load_spec_file
from tuner.kernel_templates.spec import canonical_json

from . import ops
from .devices import backend_of
from .runtime import NotTuned, Request, Tuned, current


class TemplateKernel:
    """The tuned kernels of one template file, one plan per call shape."""

    def __init__(self, template: str | Path, *, max_error: float | None = None):
        self.template = str(Path(template).resolve())
        self.spec: KernelSpec = load_spec_file(self.template)  # SpecError says what is wrong
        self.max_error = max_error

    def __call__(self, *inputs: torch.Tensor, **problem: Any) -> torch.Tensor:
        if not inputs:
            raise TypeError(f"{self.spec.name}: pass the input tensors, then the problem "
                            f"parameters as keywords")
        text = _problem_text(self.template, tuple(sorted(problem.items())))
        if ops.needs_grad(*inputs):
            raise NotTuned(f"{self.spec.name}: the tuned kernel computes no gradients; call it "
                           f"under torch.no_grad() or on tensors that do not require grad")
        if ops.eager(inputs[0]):
            return _kernel(self.template, text, list(inputs), self.max_error)
        return torch.ops.tuner.kernel(self.template, text, list(inputs), self.max_error)


def kernel(template: str | Path, *, max_error: float | None = None) -> TemplateKernel:
    """The callable of a user's template file (see the module's docstring)."""
    return TemplateKernel(template, max_error=max_error)


@lru_cache(maxsize=1024)
def _problem_text(template: str, given: tuple[tuple[str, Any], ...]) -> str:
    """The full problem as canonical JSON (the op's argument); ValueError says what is wrong."""
    return canonical_json(load_spec_file(template).validate_problem(dict(given)))


def _kernel(template: str, problem: str, inputs: list[torch.Tensor],
            max_error: float | None = None) -> torch.Tensor:
    runtime = current()
    key = ("kernel", template, problem, inputs[0].device, max_error,
           tuple([(t.shape, t.dtype) for t in inputs]))
    plan = runtime.plans.get(key)
    if plan is None:
        plan = runtime.plan(key, lambda: _request(template, problem, inputs, max_error),
                            kernel=load_spec_file(template).name)
    if isinstance(plan, Tuned):
        return plan(tuple(inputs))
    runtime.missing(key, plan)
    raise NotTuned(f"{plan.decision.kernel}: {plan.decision.reason}")


def _fake(template: str, problem: str, inputs: list[torch.Tensor],
          max_error: float | None = None) -> torch.Tensor:
    out = load_spec_file(template).output_spec(json.loads(problem))
    return inputs[0].new_empty(out.shape, dtype=getattr(torch, out.dtype))


def _request(template: str, problem_text: str, inputs: Sequence[torch.Tensor],
             max_error: float | None) -> Request:
    spec = load_spec_file(template)
    problem = json.loads(problem_text)
    device = inputs[0].device
    if backend_of(device) != spec.backend:
        raise ValueError(f"template {spec.name} runs on the {spec.backend} backend; the inputs "
                         f"are on {device}")
    drawn = spec.make_inputs(problem, np.random.default_rng(0))
    expected = [(tuple(a.shape), _dtype_name(a.dtype)) for a in drawn.values()]
    given = [(tuple(t.shape), _dtype_name(t.dtype)) for t in inputs]
    if given != expected or any(t.device != device for t in inputs):
        raise ValueError(f"for {problem} the template takes inputs (shape, dtype) {expected} on "
                         f"one device; got {given}")
    out = spec.output_spec(problem)
    return Request(spec=spec, problem=problem, device=device, max_error=max_error, inputs=tuple(drawn),
                   template=template, like_first=(tuple(out.shape), out.dtype) == expected[0])


def _dtype_name(dtype: Any) -> str:
    """``torch.float32`` and numpy's ``float32`` alike as ``float32``."""
    return str(dtype).removeprefix("torch.")


ops.define("kernel(str template, str problem, Tensor[] inputs, float? max_error=None) -> Tensor",
           _kernel, _fake)
