"""Ask-and-tell over one Optuna study, keyed by trial number, so many trials can be in flight.

The study (in the database) stays the one source of the search's state: the proposer only
remembers which trials it asked for and has not yet told. It also keeps their heartbeats, which
``study.optimize`` would do for us but ask-and-tell does not: a trial whose tuner was killed
stops beating, and the next tuner on the study fails it and retries it once.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from tuner.kernel_templates import KernelSpec

from .search_space import distributions, grid, suggest

REASON_ATTR = "tuner_reason"
METRIC_NAMES = ("latency_s", "rel_l2")  # the two objectives, in the order they are told
CONTINUED_AS = "tuner_continued_as"  # a study's user attribute: the study that continues it (open_study)

# We keep heartbeats ourselves (see the module docstring), which Optuna warns about, and use its
# heartbeat API, which it still labels experimental.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@dataclass(frozen=True)
class Proposal:
    number: int
    config: dict[str, Any]


def open_study(storage: optuna.storages.RDBStorage, name: str, sampler: optuna.samplers.BaseSampler,
               spec: KernelSpec | None = None) -> optuna.Study:
    """The Optuna study ``name``, or, where ``spec``'s choices of a parameter are no longer the
    ones the study stored (a template that grew a choice: Optuna refuses to ask such a parameter
    in that study), its continuation for this space (:func:`continued_study`)."""
    study = _create(storage, name, sampler)
    while CONTINUED_AS in study.user_attrs:
        study = _create(storage, study.user_attrs[CONTINUED_AS], sampler)
    if spec is None or _asks_alike(study, distributions(spec)):
        return study
    return continued_study(storage, study, distributions(spec), sampler)


def _create(storage: optuna.storages.RDBStorage, name: str, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, study_name=name, sampler=sampler,
                                directions=["minimize", "minimize"], load_if_exists=True)
    if study.metric_names != list(METRIC_NAMES):  # optuna-dashboard labels its axes with these
        study.set_metric_names(list(METRIC_NAMES))
    return study


def _asks_alike(study: optuna.Study, space: dict[str, BaseDistribution]) -> bool:
    stored: dict[str, BaseDistribution] = {}
    for trial in study.get_trials(deepcopy=False):
        stored.update(trial.distributions)
    return all(space.get(name, distribution) == distribution for name, distribution in stored.items())


def continued_study(storage: optuna.storages.RDBStorage, study: optuna.Study, space: dict[str, BaseDistribution],
                    sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """``<name>@<digest of the space>``: the study ``study`` continued over ``space`` (``study``
    names it in its CONTINUED_AS attribute, so later runs open it, and a later change of the
    space continues it in turn). Made once, holding every trial of ``study`` in order, so that its
    new trials' numbers follow the stored ones (the tuner's trials are numbered by them):
    finished trials whose values are still choices keep their parameters and values, under
    ``space``'s distributions; the others (a value no longer offered, a trial still running or
    waiting) come over as failed, without parameters, counting only for their number."""
    digest = hashlib.sha256(json.dumps({k: d.choices for k, d in sorted(space.items())},  # type: ignore[attr-defined]
                                       default=repr).encode()).hexdigest()[:12]
    successor = _create(storage, f"{study.study_name}@{digest}", sampler)
    if successor.get_trials(deepcopy=False):
        return successor
    carried = []
    for trial in study.get_trials(deepcopy=False):
        fits = all(name in space and value in space[name].choices  # type: ignore[attr-defined]
                   for name, value in trial.params.items())
        if fits and trial.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED):
            carried.append(optuna.trial.create_trial(
                state=trial.state, values=trial.values, params=trial.params,
                distributions={name: space[name] for name in trial.params},
                user_attrs=trial.user_attrs, system_attrs=trial.system_attrs))
        else:
            carried.append(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs=trial.user_attrs))
    successor.add_trials(carried)
    study.set_user_attr(CONTINUED_AS, successor.study_name)
    return successor


def heartbeat_options(interval_s: float) -> dict[str, Any]:
    """RDBStorage options: beat every ``interval_s``, stale after three missed beats, retry once."""
    interval = max(1, round(interval_s))
    return {"heartbeat_interval": interval, "grace_period": 3 * interval,
            "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)}


class Proposer:
    def __init__(self, study: optuna.Study, storage: optuna.storages.RDBStorage, spec: KernelSpec,
                 heartbeat_s: float, unbeaten: Callable[[datetime], list[int]]):
        """``unbeaten(started_before)`` lists the study's RUNNING trials that never beat."""
        self._study = study
        self._storage = storage
        self._study_id = storage.get_study_id_from_name(study.study_name)
        self._spec = spec
        self._grid = grid(spec)
        self._grid_points = spec.space_size()
        self._pending: dict[int, optuna.Trial] = {}
        self._ids: dict[int, int] = {}  # trial number -> the storage's trial id, for heartbeats
        self._heartbeat_s = heartbeat_s
        self._unbeaten = unbeaten
        self._last_beat = 0.0
        self._fail_dead_tuners_trials()

    def waiting(self) -> int:
        """Trials queued in the study (retries of failed ones) that the next asks will return."""
        return len(self._study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def exhausted(self) -> bool:
        """Nothing new is left to propose: a sampler that knows (``exhausted(study)``) says so; a
        grid search has asked for every point of the grid, by this tuner or another (Optuna's
        GridSampler starts over with repeats once none is left), and no retry of a dead tuner's
        trial waits in the queue."""
        knows = getattr(self._study.sampler, "exhausted", None)
        if knows is not None:
            return bool(knows(self._study))
        if not isinstance(self._study.sampler, optuna.samplers.GridSampler):
            return False
        trials = self._study.get_trials(deepcopy=False)
        if any(t.state == TrialState.WAITING for t in trials):
            return False
        asked = {t.system_attrs["grid_id"] for t in trials
                 if "grid_id" in t.system_attrs and t.system_attrs.get("search_space") == self._grid}
        return len(asked) >= self._grid_points

    def ask(self) -> Proposal:
        trial = self._study.ask()
        self._pending[trial.number] = trial  # at once: a Ctrl-C from here on fails it
        config = suggest(trial, self._spec)  # define-by-run: a family's knobs only where it is chosen
        self._ids[trial.number] = self._storage.get_trial_id_from_study_id_trial_number(
            self._study_id, trial.number)
        self._storage.record_heartbeat(self._ids[trial.number])  # as Optuna's heartbeat thread does
        return Proposal(trial.number, config)

    def keep_alive(self) -> None:
        """Beats for the trials in flight, and fails the stale trials of other (dead) tuners."""
        now = time.monotonic()
        if now - self._last_beat < self._heartbeat_s:
            return
        self._last_beat = now
        for number in self._pending:
            self._storage.record_heartbeat(self._ids[number])
        self._fail_dead_tuners_trials()

    def _fail_dead_tuners_trials(self) -> None:
        """Fails, and retries once, the trials of tuners that died: those whose heartbeat went
        stale (Optuna's check), and those asked by a tuner killed before it could record a first
        heartbeat, which Optuna's check skips (a live tuner beats within moments of asking)."""
        optuna.storages.fail_stale_trials(self._study)
        grace, retry = self._storage.grace_period, self._storage.get_heartbeat_stale_trial_callback()
        assert grace is not None and retry is not None  # the storage is made with heartbeat_options
        for trial_id in self._unbeaten(datetime.now() - timedelta(seconds=grace)):
            try:
                self._storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another tuner failed it first
            retry(self._study, self._storage.get_trial(trial_id))

    def tell(self, number: int, latency_s: float, error: float) -> None:
        self._ids.pop(number, None)
        self._study.tell(self._pending.pop(number), [latency_s, error])

    def tell_failed(self, number: int, reason: str) -> None:
        self._ids.pop(number, None)
        trial = self._pending.pop(number)
        trial.set_user_attr(REASON_ATTR, reason[:500])
        self._study.tell(trial, state=TrialState.FAIL)

    def abandon_all(self, reason: str) -> None:
        """Marks every trial still in flight as failed (Ctrl-C), so none stays RUNNING."""
        for number in list(self._pending):
            self.tell_failed(number, reason)
