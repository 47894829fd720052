"""Ask-and-tell over one Optuna study, keyed by trial number, so many trials can be in flight.

The study (in the database) stays the one source of the search's state: the proposer only
remembers which trials it asked for and has not yet told.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from tuner.kernel_templates import KernelSpec

from .search_space import distributions

REASON_ATTR = "tuner_reason"


@dataclass(frozen=True)
class Proposal:
    number: int
    config: dict[str, Any]


class Proposer:
    def __init__(self, study: optuna.Study, spec: KernelSpec):
        self._study = study
        self._space = distributions(spec)
        self._pending: dict[int, optuna.Trial] = {}

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def ask(self) -> Proposal:
        trial = self._study.ask(self._space)
        self._pending[trial.number] = trial
        return Proposal(trial.number, dict(trial.params))

    def tell(self, number: int, latency_s: float, error: float) -> None:
        self._study.tell(self._pending.pop(number), [latency_s, error])

    def tell_failed(self, number: int, reason: str) -> None:
        trial = self._pending.pop(number)
        trial.set_user_attr(REASON_ATTR, reason[:500])
        self._study.tell(trial, state=TrialState.FAIL)

    def abandon_all(self, reason: str) -> None:
        """Marks every trial still in flight as failed (Ctrl-C), so none stays RUNNING."""
        for number in list(self._pending):
            self.tell_failed(number, reason)
