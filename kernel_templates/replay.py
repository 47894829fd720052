"""The template of a recorded space: its parameters and constraints, for replay.

A recorded space (``tuner.workers.replay_space``) becomes a :class:`KernelSpec` of the ``replay``
backend: its parameters are the recording's (Kernel Tuner's ``tune_params``, or the template's),
and a config is valid when the recording's restrictions allow it (where it came with them) and
the recording holds it. Its source is the config itself, so the tuner's digest, reuse and twin
logic see one source per config; the replay executor answers it and nothing is compiled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .spec import Config, Device, KernelSpec, OutputSpec, Param, Problem, ProblemParam, Source, canonical_json


class ReplaySpec(KernelSpec):
    backend = "replay"

    def __init__(self, space):
        self.recording = space
        self.name = space.kernel
        self.description = f"replay of {space.name} ({space.device_name}) from {space.source}"
        self.archs = (space.arch,)
        self.params = tuple(Param(n, tuple(choices)) for n, choices in space.params.items())
        self.problem_params = tuple(ProblemParam(n, type(v), v, choices=(v,)) for n, v in space.problem.items())
        self._restrictions = tuple((text, compile(text, "<restriction>", "eval")) for text in space.restrictions)

    def check(self, config: Config, problem: Problem, device: Device) -> str | None:
        names = dict(config)
        for text, code in self._restrictions:
            if not eval(code, {"__builtins__": {}}, names):  # the recording's own expressions
                return f"breaks the restriction {text}"
        key = self.recording.key(config)
        if key in self.recording.rejected:
            return self.recording.rejected[key]
        if key not in self.recording.records:
            return "not in the recorded space"
        return None

    def render(self, config: Config, problem: Problem) -> Source:
        return Source(language="replay", code=canonical_json(config), entry=self.recording.name)

    # Nothing runs: the recording holds the answers. These describe an empty run.
    def make_inputs(self, problem: Problem, rng: np.random.Generator) -> dict[str, Any]:
        return {}

    def output_spec(self, problem: Problem) -> OutputSpec:
        return OutputSpec(shape=(0,), dtype="float32")

    def reference(self, inputs: Mapping[str, Any], problem: Problem) -> Any:
        return np.zeros(0, dtype=np.float32)

    def flops(self, problem: Problem) -> float:
        return 0.0  # not recorded: the table shows no FLOP/s

    def bytes_moved(self, problem: Problem) -> float:
        return 0.0
