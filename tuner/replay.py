"""``tuner run --replay FILE``: a recorded space as the template, the replay executor as the workers."""

from __future__ import annotations

import argparse

from tuner.kernel_templates import Target
from tuner.kernel_templates.replay import ReplaySpec
from tuner.workers import SpecRef
from tuner.workers.replay_executor import ReplayExecutor, replay_target
from tuner.workers.replay_space import RecordingError, open_recording

from .errors import UsageError


def replay_setup(args: argparse.Namespace) -> tuple[ReplaySpec, SpecRef, ReplayExecutor, Target]:
    """The spec, executor and target of ``--replay``; UsageError for options that measure for real."""
    clashing = [flag for flag, given in (("--template", args.template), ("--shape", args.shape or args.dtype),
                                         ("--ray-address", args.ray_address),
                                         ("--executor local", args.executor == "local")) if given]
    if clashing:
        raise UsageError(f"--replay answers from the recording: drop {', '.join(clashing)}")
    try:
        space = open_recording(args.replay, args.replay_study)
    except RecordingError as exc:
        raise UsageError(str(exc)) from None
    spec = ReplaySpec(space)
    if args.arch not in ("auto", space.arch):
        raise UsageError(f"the recording {args.replay} was measured on {space.arch}: drop --arch")
    executor = ReplayExecutor(space, devices=args.devices or 1)
    return spec, SpecRef(spec.name, spec.backend, path=args.replay), executor, replay_target(space)
