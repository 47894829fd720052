"""Where the runtime's answers come from: a tuning database (read-only) or an exported bundle.

An :class:`Answers` picks the stored config for a problem (:meth:`choose`) and hands over the
compiled binary of a rendered source (:meth:`binary`). Both raise :class:`NoAnswer` with a
sentence saying what is missing; the runtime turns that into its stated fallback. The database
side needs SQLAlchemy and a compiler (the compile cache is filled once per source); the bundle
side (:mod:`tuner.runtime.bundle`) needs neither.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner.kernel_templates import KernelSpec, Source, Target


class NoAnswer(Exception):
    """Nothing stored fits this call; the message says what is missing and how to get it."""


@dataclass(frozen=True)
class Choice:
    """The stored config picked for a problem, and where it came from.

    ``exact`` is False when the problem itself was never tuned and the config is the one tuned
    for ``tuned_problem``, ``distance`` away by the nearest-problem rule (:mod:`tuner.problems`).
    """

    config: dict[str, Any]
    tuned_problem: dict[str, Any]
    exact: bool
    distance: float
    latency_s: float | None
    rel_l2: float | None
    origin: str


class Answers(ABC):
    """A source of stored configs and their binaries. Called only on the first call of a shape,
    under the runtime's lock."""

    #: The database URL a background `tuner run` writes to, or None where tuning cannot help.
    tuning_db: str | None = None

    @abstractmethod
    def choose(self, kernel: str, arch: str, problem: dict[str, Any],
               max_error: float | None) -> Choice:
        """The config for ``problem``, or NoAnswer."""

    @abstractmethod
    def binary(self, spec: KernelSpec, source: Source, target: Target) -> Path:
        """The compiled file of ``source`` for ``target`` (cubin or shared object), or NoAnswer."""


class DatabaseAnswers(Answers):
    """Answers from a tuning database through the service's best-config lookup; binaries from
    the on-disk compile cache (compiled on a miss). Opens the database on first use, read-only:
    no migration, no write, and no Optuna or Ray."""

    def __init__(self, url: str):
        self.tuning_db = url
        self._url = url
        self._service: Any = None
        self._lock = threading.Lock()

    def choose(self, kernel: str, arch: str, problem: dict[str, Any],
               max_error: float | None) -> Choice:
        from tuner.db import StoreError
        from tuner.errors import UsageError
        from tuner.service import NotFound

        try:
            answer = self._open().best(kernel=kernel, arch=arch, problem=problem,
                                       max_error=max_error)
        except (NotFound, StoreError, UsageError) as exc:
            raise NoAnswer(str(exc)) from None
        trial = answer.trial
        return Choice(config=answer.config, tuned_problem=answer.tuned_problem, exact=answer.exact,
                      distance=answer.distance, latency_s=trial.median_s, rel_l2=trial.rel_l2,
                      origin=f"study {answer.study!r} trial {trial.number} on {answer.device}")

    def binary(self, spec: KernelSpec, source: Source, target: Target) -> Path:
        from tuner.workers import backend_for

        artifact = backend_for(target).compile(source, target)
        if artifact.error is not None or artifact.path is None:
            last = (artifact.error or "no binary").strip().splitlines()[-1:] or ["no binary"]
            raise NoAnswer(f"the stored config of {spec.name} did not compile for {target.arch}: "
                           f"{last[0]}")
        return Path(artifact.path)

    def _open(self) -> Any:
        with self._lock:
            if self._service is None:
                from tuner.db import Store
                from tuner.service import Service

                self._service = Service(Store.open(self._url, read_only=True))
            return self._service
