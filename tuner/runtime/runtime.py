"""The runtime: for each call shape, a plan made once and kept, then only launched.

The first call of a shape (its key: the kernel, tensor shapes, dtypes, device, flags and error
bound) asks the answers for a stored config, checks that the template admits it for this
problem on this device, renders it, takes its binary (compile cache or bundle) and loads it: a
:class:`Tuned` plan. Where any step finds nothing, the plan is :class:`Missing`, holding the
reason: built-in kernels then run their PyTorch fallback (a :class:`FallbackWarning` says so
once per shape) and user templates raise :class:`NotTuned`. Later calls of the shape look the
plan up in a dict and launch: no database, no file, no host synchronization.

Thread-safe: plans are made under one lock and, once stored, never change; a Missing plan whose
background tuning has ended is dropped so that the next call looks again.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tuner.kernel_templates import KernelSpec, Target
from tuner.kernel_templates.families import FAMILY, member

from .answers import Answers, Choice, DatabaseAnswers, NoAnswer
from .devices import arch_of, stream_of, target_of
from .launch import Launch, LaunchError, load
from .ops import WrongOut, wrong_out

if TYPE_CHECKING:
    from .tuning import Tuning

DEFAULT_DB = "sqlite:///tuner.db"  # the CLI's default
_contiguous = torch.Tensor.is_contiguous  # mapped over a call's inputs with no Python frame


class FallbackWarning(RuntimeWarning):
    """A built-in kernel ran its PyTorch fallback for a shape; the message says why."""


class NotTuned(RuntimeError):
    """A user template has no stored config that fits the call; the message says what to run."""


@dataclass(frozen=True)
class Request:
    """What the first call of a shape asks for. ``fallback`` names the PyTorch op a built-in
    falls back to (None for a user template, which raises instead); ``template`` is a user
    template's path, for a background `tuner run`."""

    spec: KernelSpec
    problem: dict[str, Any]
    device: torch.device
    max_error: float | None
    inputs: tuple[str, ...]  # the input buffers' names (make_inputs'); the output ("out") follows them
    fallback: str | None = None
    template: str | None = None
    dense: bool = True  # the kernel reads dense inputs (strided ones are copied first)
    like_first: bool = False  # the output has the first input's shape and dtype


@dataclass(frozen=True)
class Decision:
    """What the runtime chose for one call shape: a stored config (``choice``) or why none fits
    (``reason``), and the log of a background tuning started for it."""

    kernel: str
    arch: str
    problem: dict[str, Any]
    max_error: float | None
    choice: Choice | None = None
    reason: str | None = None
    tuning_log: Path | None = None


class Tuned:
    """A loaded kernel for one call shape: allocates the output (or takes the caller's) and
    launches. Everything but the output, the addresses and the stream was settled when the plan
    was made."""

    __slots__ = ("decision", "_launch", "_shape", "_dtype", "_device", "_index", "_stream", "_dense", "_like")

    def __init__(self, decision: Decision, launch: Launch, shape: tuple[int, ...], dtype: torch.dtype,
                 device: torch.device, *, dense: bool = True, like_first: bool = False):
        self.decision, self._launch = decision, launch
        self._shape, self._dtype, self._device = shape, dtype, device
        self._index = device.index if device.type == "cuda" else -1  # as Tensor.get_device() says it
        self._stream = stream_of(device)
        self._dense, self._like = dense, dense and like_first

    def __call__(self, inputs: tuple[torch.Tensor, ...], out: torch.Tensor | None = None) -> torch.Tensor:
        """Launches on ``inputs`` into ``out`` (a fresh tensor when None; WrongOut, a ValueError, for one of
        another shape, dtype or device, or strided) and returns it."""
        # Copies of strided inputs stay referenced until the launch is enqueued; freed after it,
        # their memory goes back to the allocator on this stream, behind the kernel.
        if self._dense and not all(map(_contiguous, inputs)):
            inputs = tuple([t.contiguous() for t in inputs])
        if out is None:
            if self._like:  # dense like the input: empty_like is the cheaper allocation
                out = torch.empty_like(inputs[0])
            else:
                out = torch.empty(self._shape, dtype=self._dtype, device=self._device)
        elif not (out.dtype == self._dtype and out.shape == self._shape and out.get_device() == self._index
                  and out.is_contiguous()):
            raise WrongOut(wrong_out(out, self._shape, self._dtype))
        self._launch((*inputs, out), self._stream())
        return out


class Missing:
    """No stored config fits this call shape; ``decision.reason`` says why."""

    __slots__ = ("decision", "tuning")

    def __init__(self, decision: Decision, tuning: Tuning | None = None):
        self.decision, self.tuning = decision, tuning


Plan = Tuned | Missing


class Runtime:
    """Plans per call shape over one source of answers.

    ``tune_missing`` starts one background `tuner run` (with ``tune_args`` added, e.g.
    ``("--trials", "50")``) for a problem the database has no answer for; the calls go on with
    the fallback until it has ended, then look again.
    """

    def __init__(self, answers: Answers, *, tune_missing: bool = False,
                 tune_args: Sequence[str] = ()):
        self.answers = answers
        self.plans: dict[Hashable, Plan] = {}
        self._lock = threading.Lock()
        self._decisions: dict[Hashable, Decision] = {}
        self._tune_missing = tune_missing
        self._tune_args = tuple(tune_args)
        self._tunings: dict[tuple[str, str, str], Tuning] = {}

    def plan(self, key: Hashable, request: Callable[[], Request], *, kernel: str,
             fallback: str | None = None) -> Plan:
        """The plan of ``key``, made from ``request()`` on its first call. ``request`` raises
        NoAnswer for a call no template covers; ``fallback`` names what a built-in runs then."""
        with self._lock:
            plan = self.plans.get(key)
            if plan is None:
                plan = self.plans[key] = self._make(request, kernel, fallback)
                self._decisions[key] = plan.decision
        return plan

    def missing(self, key: Hashable, plan: Missing) -> None:
        """Called on every call that finds ``plan``: drops it once its background tuning has
        ended, so that the next call looks again."""
        if plan.tuning is not None and plan.tuning.done():
            with self._lock:
                if self.plans.get(key) is plan:
                    del self.plans[key]

    def decisions(self) -> list[Decision]:
        """What was chosen for every call shape so far, in first-call order."""
        with self._lock:
            return list(self._decisions.values())

    def tunings(self) -> list[Tuning]:
        """The background tunings started so far."""
        with self._lock:
            return list(self._tunings.values())

    def _make(self, request: Callable[[], Request], kernel: str, fallback: str | None) -> Plan:
        try:
            asked = request()
        except NoAnswer as exc:  # the call itself is outside what any template computes
            decision = Decision(kernel=kernel, arch="-", problem={}, max_error=None, reason=str(exc))
            _say(decision, fallback)
            return Missing(decision)
        spec, problem = asked.spec, asked.problem
        arch = arch_of(asked.device)
        decision = Decision(kernel=spec.name, arch=arch, problem=problem, max_error=asked.max_error)
        try:
            choice = self.answers.choose(spec.name, arch, problem, asked.max_error)
            decision = replace(decision, choice=choice)
            return self._tuned(asked, decision, choice)
        except (NoAnswer, LaunchError) as exc:
            return self._missing(asked, replace(decision, choice=None, reason=str(exc)),
                                 untuned=decision.choice is None)

    def _tuned(self, asked: Request, decision: Decision, choice: Choice) -> Tuned:
        spec, problem = asked.spec, asked.problem
        target = target_of(asked.device)
        reason = misfit(spec, choice, problem, target)
        if reason is not None:
            raise NoAnswer(reason)
        family, config = member(spec, choice.config)
        source = family.render(config, problem)
        path = self.answers.binary(family, source, target)
        launch = load(spec.backend, path, source, (*asked.inputs, "out"), asked.device.index or 0)
        out = spec.output_spec(problem)
        return Tuned(decision, launch, tuple(out.shape), getattr(torch, out.dtype), asked.device,
                     dense=asked.dense, like_first=asked.like_first)

    def _missing(self, asked: Request, decision: Decision, *, untuned: bool) -> Missing:
        tuning = None
        if untuned and self._tune_missing:
            tuning = self._start_tuning(asked, decision)
            if tuning is not None:
                decision = replace(decision, tuning_log=tuning.log)
        started = f"; a background `tuner run` is tuning it (log {tuning.log})" if tuning else ""
        _say(decision, asked.fallback, started)
        return Missing(decision, tuning)

    def _start_tuning(self, asked: Request, decision: Decision) -> Tuning | None:
        from tuner.kernel_templates.spec import canonical_json
        from tuner.workers.cache import cache_dir

        from .tuning import Tuning

        db = self.answers.tuning_db
        key = (decision.kernel, decision.arch, canonical_json(decision.problem))
        if db is None or key in self._tunings:
            return None  # a bundle cannot be tuned into; each problem is tuned once at most
        self._tunings[key] = Tuning(db=db, kernel=decision.kernel, template=asked.template,
                                    arch=decision.arch, problem=decision.problem,
                                    args=self._tune_args, log_dir=cache_dir() / "runtime-tuning")
        return self._tunings[key]


def _say(decision: Decision, fallback: str | None, more: str = "") -> None:
    """Warns that a built-in runs its fallback (a user template raises NotTuned instead)."""
    if fallback is not None:
        problem = f" {decision.problem} on {decision.arch}" if decision.problem else ""
        warnings.warn(FallbackWarning(f"tuner.runtime: {decision.kernel}{problem} runs {fallback}: "
                                      f"{decision.reason}{more}"), stacklevel=6)


def misfit(spec: KernelSpec, choice: Choice, problem: dict[str, Any], target: Target) -> str | None:
    """Why a stored config cannot run ``problem`` on ``target``, or None when it can. ``spec`` may
    be several families (:class:`Families`): the config is checked as the family it names reads it."""
    try:
        family, config = member(spec, choice.config)
    except ValueError as exc:  # a family this arch has not
        return f"the stored config {choice.config} cannot run here: {exc}"
    named = choice.config.get(FAMILY)
    if named is not None and named != family.family:
        return (f"the stored config {choice.config} is of family {named!r}; kernel {spec.name} runs "
                f"family {family.family or '(unnamed)'!r} here")
    choices = {p.name: p.choices for p in family.params}
    # a knob added since the config was stored takes the value such configs have
    config = {p.name: p.stored_default for p in family.params if p.stored_default is not None} | config
    if set(config) != set(choices) or any(config[n] not in c for n, c in choices.items()):
        return (f"the stored config {choice.config} is not one of the template's current space (the "
                f"template changed since it was tuned): tune {spec.name} again")
    reason = family.check(config, problem, target)
    if reason is None:
        return None
    if choice.exact:
        return f"the stored config does not fit this device: {reason}"
    return f"the config tuned for {choice.tuned_problem} does not fit this problem: {reason}"


# ---- the process's runtime ----

_current: Runtime | None = None
_configuring = threading.Lock()


def configure(*, db: str | None = None, bundle: str | Path | None = None,
              tune_missing: bool = False, tune_args: Sequence[str] = ()) -> Runtime:
    """Sets where this process's runtime answers from and returns it; plans made before are
    dropped. With neither ``db`` nor ``bundle``: ``TUNER_BUNDLE``, else ``TUNER_DB``, else
    ``sqlite:///tuner.db``. A bundle is read at once (BundleError if it is not one)."""
    global _current
    if db is not None and bundle is not None:
        raise ValueError("pass db or bundle, not both: a runtime answers from one source")
    if db is None and bundle is None:
        bundle = os.environ.get("TUNER_BUNDLE") or None
    if bundle is not None:
        from .bundle import BundleAnswers

        answers: Answers = BundleAnswers(bundle)
    else:
        answers = DatabaseAnswers(db or os.environ.get("TUNER_DB", DEFAULT_DB))
    runtime = Runtime(answers, tune_missing=tune_missing, tune_args=tune_args)
    with _configuring:
        _current = runtime
    return runtime


def current() -> Runtime:
    """This process's runtime (configured from the environment on first use)."""
    runtime = _current
    if runtime is None:
        with _configuring:
            runtime = _current
        if runtime is None:
            runtime = configure()
    return runtime

