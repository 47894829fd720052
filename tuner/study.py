"""One tuning run: propose, gate, compile and measure (through an executor), store, update the front.

Data flows one way through here: spec -> proposal -> executor -> store. The loop keeps up to
``executor.capacity`` trials in flight, so compilation overlaps measurement.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import optuna

from tuner.db import Store, StudyRecord, env_key
from tuner.kernel_templates import KernelSpec, Source, template_digest
from tuner.kernel_templates.families import member
from tuner.workers import Job, Measurement, SpecRef, Status
from tuner.workers.executor import Executor, MeasuringDevice

from .progress import RunProgress
from .proposer import Proposer, heartbeat_options, open_study
from .search_space import TemplateError, rejection, render
from .warm_start import admissible, enqueue, nearest_configs

MAX_INVALID_IN_A_ROW = 200


@dataclass(frozen=True)
class RunSettings:
    study_name: str
    problem: dict[str, Any]
    sampler: str = "nsga2"
    seed: int | None = None
    trials: int | None = 30
    timeout_s: float | None = None
    remeasure: bool = False
    heartbeat_s: float = 10.0
    warm_start: bool = True  # a new study begins with the fronts of the nearest tuned shapes


@dataclass
class RunSummary:
    study: StudyRecord
    proposed: int = 0
    ok: int = 0  # trials that ran correctly, measured now or answered from storage
    measured: int = 0
    reused: int = 0
    invalid: int = 0
    failed: int = 0
    wall_s: float = 0.0
    measure_s: float = 0.0  # device time spent inside timed measurement, as reported by workers
    reasons: Counter[str] = field(default_factory=Counter)  # "status: reason" of failed trials
    warm: int = 0  # configs of the nearest tuned shapes queued as the first trials

    def commonest_failures(self, n: int = 3) -> list[tuple[str, int]]:
        return self.reasons.most_common(n)


class StudyRunner:
    def __init__(self, spec: KernelSpec, spec_ref: SpecRef, settings: RunSettings, store: Store,
                 executor: Executor, target: MeasuringDevice, progress: RunProgress,
                 sampler: optuna.samplers.BaseSampler, stop: Callable[[], bool] = lambda: False):
        """``stop()`` is read at every turn of the loop (about once a second): when it says so,
        the run fails its trials in flight and raises KeyboardInterrupt (see tuner.interrupts)."""
        self._stop = stop
        self._spec, self._ref, self._settings = spec, spec_ref, settings
        self._store, self._executor, self._target, self._progress = store, executor, target, progress
        self._env_key = env_key(target.environment)
        self._arch = target.device.arch
        self._study = store.ensure_study(
            name=settings.study_name, kernel=spec.name, backend=spec.backend,
            template_path=spec_ref.path, problem=settings.problem, arch=self._arch,
            device_name=target.device.name, sampler=settings.sampler, directions=["minimize", "minimize"],
            space=spec.space(), flops=spec.flops(settings.problem),
            bytes_moved=spec.bytes_moved(settings.problem),
            template_digest=template_digest(spec_ref.path) if spec_ref.path else None)
        storage = store.optuna_storage(**heartbeat_options(settings.heartbeat_s))
        optuna_study = open_study(storage, settings.study_name, sampler, spec)
        self._proposer = Proposer(optuna_study, storage, spec, settings.heartbeat_s,
                                  unbeaten=lambda before: store.unbeaten_running_trials(settings.study_name, before))
        self._owed = self._proposer.waiting()  # retries of a killed tuner's trials: run on top of --trials
        self.summary = RunSummary(study=self._study)
        # The seed of every trial's measurement inputs: one for the run, not one per trial, so all its
        # configs are verified on the same inputs (their errors compare) and a measuring process draws
        # them and computes their references once (workers/cuda_measure.py).
        self.inputs_seed = settings.seed or 0
        if settings.warm_start:
            configs = nearest_configs(store, kernel=spec.name, arch=self._arch, problem=settings.problem,
                                      study=settings.study_name)
            self.summary.warm = enqueue(optuna_study, spec, admissible(configs, spec, settings.problem, target.device))
        self._in_flight: dict[int, tuple[dict[str, Any], Source]] = {}
        self._measuring: dict[str, int] = {}  # source hash -> the trial in flight measuring it
        # proposals of a source already being measured: answered by that measurement when it lands
        self._twins: dict[int, list[tuple[int, dict[str, Any], Source]]] = defaultdict(list)

    def run(self) -> RunSummary:
        self._started = time.monotonic()
        try:
            while self._may_propose() or self._in_flight:
                self._stop_if_asked()
                self._fill()
                self._proposer.keep_alive()
                if self._in_flight:
                    result = self._executor.next_result(timeout=1.0)
                    if result is not None:
                        self._finish(result)
        except BaseException:
            self._proposer.abandon_all("the run was interrupted before this trial finished")
            raise
        finally:
            self.summary.wall_s = time.monotonic() - self._started
        return self.summary

    def _stop_if_asked(self) -> None:
        if self._stop():
            raise KeyboardInterrupt

    # ---- proposing ----

    def _may_propose(self) -> bool:
        """Within budget: --trials counts proposals that passed the constraints; a grid search
        also ends when its grid has been walked."""
        s = self._settings
        if s.trials is not None and self.summary.proposed - self.summary.invalid >= s.trials + self._owed:
            return False
        if s.timeout_s is not None and time.monotonic() - self._started >= s.timeout_s:
            return False
        return not self._proposer.exhausted()  # a query of the study's trials: the last check

    def _fill(self) -> None:
        invalid_run = 0
        while self._may_propose() and len(self._in_flight) < self._executor.capacity:
            self._stop_if_asked()
            if self._propose_one():
                invalid_run = 0
            else:
                invalid_run += 1
                if invalid_run >= MAX_INVALID_IN_A_ROW:
                    raise TemplateError(f"{MAX_INVALID_IN_A_ROW} proposals in a row broke the template's "
                                        "constraints: no valid config for this problem and device?")

    def _propose_one(self) -> bool:
        """Asks for a config and sends it on; False when the constraints rejected it."""
        proposal = self._proposer.ask()
        self.summary.proposed += 1
        config, problem = proposal.config, self._settings.problem
        reason = rejection(self._spec, config, problem, self._target.device)
        if reason is not None:
            self._record_invalid(proposal.number, config, reason)
            return False
        source = render(self._spec, config, self._settings.problem)
        family, own = member(self._spec, config)  # the family that runs it, and its own knobs
        digest = source.digest()
        if not self._settings.remeasure:
            prior = self._store.find_measured(kernel=self._spec.name, problem=problem, arch=self._arch,
                                              source_hash=digest, env_key=self._env_key)
            if prior is not None:
                answer = replace(prior.measurement, trial_id=proposal.number,
                                 reason=f"answered from trial {prior.number} of study {prior.study}")
                self._complete(proposal.number, config, source, answer, reused_from=prior.id)
                return True
            if digest in self._measuring:
                self._twins[self._measuring[digest]].append((proposal.number, config, source))
                return True
        ref = replace(self._ref, family=family.family) if family is not self._spec else self._ref
        self._executor.submit(Job(trial_id=proposal.number, spec=ref, config=own, problem=problem,
                                  target=self._target.device, source=source, seed=self.inputs_seed))
        self._in_flight[proposal.number] = (config, source)
        self._measuring[digest] = proposal.number
        return True


    def _record_invalid(self, number: int, config: dict[str, Any], reason: str) -> None:
        measurement = Measurement(trial_id=number, status=Status.INVALID, source_hash=None, reason=reason,
                                  environment=self._target.environment)
        self._store.record_trial(self._study, number, config, measurement, None)
        self._proposer.tell_failed(number, reason)
        self.summary.invalid += 1
        self._progress.invalid()

    # ---- finishing ----

    def _finish(self, measurement: Measurement) -> None:
        number = measurement.trial_id
        config, source = self._in_flight.pop(number)
        if self._measuring.get(source.digest()) == number:  # with --remeasure, twins measure too
            del self._measuring[source.digest()]
        if not measurement.environment:
            measurement.environment = self._target.environment
        if measurement.timing is not None:
            self.summary.measure_s += measurement.timing.mean_s * measurement.timing.repeats
        record = self._complete(number, config, source, measurement, reused_from=None)
        self.summary.measured += 1
        for twin, twin_config, twin_source in self._twins.pop(number, []):
            answer = replace(measurement, trial_id=twin, reason=f"same source as trial {number}"
                             + (f", which failed: {measurement.reason}" if measurement.reason else ""))
            self._complete(twin, twin_config, twin_source, answer, reused_from=record.id)

    def _complete(self, number: int, config: dict[str, Any], source: Source, measurement: Measurement,
                  reused_from: int | None):
        # Our row first: if the process dies before Optuna hears of it, the trial is still stored,
        # and Optuna's stale RUNNING trial is failed by its heartbeat.
        record = self._store.record_trial(self._study, number, config, measurement, source.code,
                                          reused_from=reused_from)
        self.summary.reused += reused_from is not None
        ok = measurement.status is Status.OK
        self.summary.ok += ok
        latency_s = None
        if ok:
            assert measurement.timing is not None and measurement.rel_l2 is not None  # an OK trial is timed, verified
            latency_s = measurement.timing.median_s
            self._proposer.tell(number, latency_s, measurement.rel_l2)
            self._store.offer_to_front(self._study.id, record)
        else:
            self.summary.failed += 1
            self.summary.reasons[f"{measurement.status.value}: {measurement.reason or 'no reason given'}"] += 1
            self._proposer.tell_failed(number, measurement.reason or measurement.status.value)
        self._progress.done(ok, latency_s)
        return record
