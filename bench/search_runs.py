"""One search run on a recorded space, ours or Kernel Tuner's, as a trace of distinct configs.

A trace lists, in the order they were first measured, each distinct config's recorded time
(None for a failure) and the simulated moment its measurement finished. Ours: an Optuna study
in memory, the sampler under test, the template's constraint gate and the replay executor's
simulated clock (compiles pipelined on CPUs, ``devices`` measuring devices); a config asked for
again is answered from what was measured, as the tuner answers it from storage. Kernel Tuner's:
its own ``tune_kernel`` in simulation mode on the same cache file; its loop is serial, so the
clock is the running sum of the recorded compile, benchmark and framework times plus its own
strategy time.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from tuner.kernel_templates.replay import ReplaySpec
from tuner.samplers import SamplerContext, make_sampler
from tuner.search_space import distributions, rejection
from tuner.warm_start import enqueue
from tuner.workers import Job, SpecRef, Status
from tuner.workers.replay_executor import ReplayExecutor, replay_target
from tuner.workers.replay_space import RecordedSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)

CPUS_PER_DEVICE = 4  # compile slots the simulated study has per measuring device
PROPOSALS_PER_CONFIG = 30  # a sampler that keeps proposing invalid configs or repeats gives up here


@dataclass
class Trace:
    tool: str
    strategy: str
    space: str
    seed: int
    budget: int
    devices: int
    times_s: list[float | None]  # per distinct config, in order; None: a failure
    finish_s: list[float]  # simulated wall clock when that config's measurement finished
    proposals: int = 0  # asks, counting invalid ones and repeats

    def key(self) -> str:
        return run_key(self.tool, self.strategy, self.space, self.seed, self.budget, self.devices)


def run_key(tool: str, strategy: str, space: str, seed: int, budget: int, devices: int) -> str:
    return f"{tool}/{strategy}/{space}/{seed}/{budget}/{devices}"


def run_ours(space: RecordedSpace, sampler_name: str, seed: int, budget: int, devices: int = 1,
             in_flight: int | None = None, until_s: float | None = None,
             warm: list[dict[str, Any]] = (), label: str | None = None) -> Trace:
    """``in_flight`` trials at once (default: one, the sampler's own sample efficiency); the
    clock counts the sampler's real time too. ``until_s``: stop once a config this fast is found.
    ``warm``: configs enqueued as the first trials (a warm start); ``label``: the trace's strategy
    name, when it is not the sampler's."""
    spec = ReplaySpec(space)
    ref = SpecRef(spec.name, spec.backend)
    executor = ReplayExecutor(space, devices=devices, compile_slots=CPUS_PER_DEVICE * devices, charge_driver=True)
    target = executor.start(replay_target(space))
    sampler = make_sampler(sampler_name, SamplerContext(spec, space.problem, target.device, seed))
    study = optuna.create_study(sampler=sampler, directions=["minimize", "minimize"])
    enqueue(study, spec, list(warm))
    dists = distributions(spec)
    capacity = in_flight or 1
    seen: dict[tuple, Any] = {}  # config key -> its measurement (None while in flight)
    pending: dict[int, tuple[optuna.Trial, tuple]] = {}
    trace = Trace("tuner", label or sampler_name, space.name, seed, budget, devices, [], [])
    exhausted = getattr(sampler, "exhausted", lambda s: False)
    while len(seen) < budget or pending:
        while (len(seen) < budget and len(pending) < capacity
               and trace.proposals < PROPOSALS_PER_CONFIG * budget and not exhausted(study)):
            trial = study.ask(dists)
            trace.proposals += 1
            config = dict(trial.params)
            key = space.key(config)
            if rejection(spec, config, space.problem, target.device) is not None:
                study.tell(trial, state=TrialState.FAIL)
            elif key in seen and seen[key] is not None:
                _tell(study, trial, seen[key])  # a repeat, answered from what was measured
            elif key not in seen:
                seen[key] = None
                executor.submit(Job(trial.number, ref, config, space.problem, target.device,
                                    spec.render(config, space.problem), seed))
                pending[trial.number] = (trial, key)
            else:
                study.tell(trial, state=TrialState.FAIL)  # twin of one in flight: no sampler here does it
        if not pending:
            break
        measurement = executor.next_result()
        trial, key = pending.pop(measurement.trial_id)
        seen[key] = measurement
        _tell(study, trial, measurement)
        ok = measurement.status is Status.OK
        trace.times_s.append(measurement.timing.median_s if ok else None)
        trace.finish_s.append(executor.now_s)
        if ok and until_s is not None and measurement.timing.median_s <= until_s:
            break
    return trace


def _tell(study: optuna.Study, trial: optuna.Trial, measurement) -> None:
    if measurement.status is Status.OK:
        study.tell(trial, [measurement.timing.median_s, measurement.rel_l2])
    else:
        study.tell(trial, state=TrialState.FAIL)


def run_kernel_tuner(space: RecordedSpace, cache_json: Path, strategy: str, seed: int, budget: int) -> Trace:
    """Kernel Tuner's ``strategy`` in simulation mode on ``cache_json`` (an unpacked cache file),
    seeded through the global generators it draws from."""
    import kernel_tuner

    data = json.loads(cache_json.read_text())
    random.seed(seed)
    np.random.seed(seed)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        results, _env = kernel_tuner.tune_kernel(
            data["kernel_name"], f"__global__ void {data['kernel_name']}() {{}}", tuple(data["problem_size"]), [],
            data["tune_params"], restrictions=list(space.restrictions), cache=str(cache_json),
            simulation_mode=True, strategy=strategy, strategy_options={"max_fevals": budget},
            quiet=True, verbose=False)
    trace = Trace("kernel_tuner", strategy, space.name, seed, budget, 1, [], [], proposals=len(results))
    clock = 0.0
    keys = list(space.params)
    done: set[tuple] = set()
    for result in results:
        clock += float(result.get("strategy_time", 0) or 0) / 1e3
        key = tuple(result[k] for k in keys)
        recorded = space.records.get(key)
        if key in done or recorded is None:
            continue  # a repeat, served from Kernel Tuner's cache, or a config its restrictions would reject
        done.add(key)
        clock += recorded.cost_s
        trace.times_s.append(recorded.time_s if recorded.status is Status.OK else None)
        trace.finish_s.append(clock)
        if len(done) >= budget:
            break
    return trace


def unpacked_cache(space: RecordedSpace, folder: Path) -> Path:
    """Kernel Tuner reads plain JSON and opens its cache for appending: it gets a private copy."""
    import gzip
    import shutil

    target = folder / f"{space.arch}.json"
    if not target.exists():
        opener = gzip.open if space.source.endswith(".gz") else open
        with opener(space.source, "rb") as packed, open(target, "wb") as out:
            shutil.copyfileobj(packed, out)
    return target


class TraceFile:
    """Finished runs, one JSON line each, so that an interrupted benchmark resumes where it was."""

    def __init__(self, path: Path):
        self.path = path
        self.traces: dict[str, Trace] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    trace = Trace(**json.loads(line))
                    self.traces[trace.key()] = trace

    def get_or_run(self, key: str, run) -> Trace:
        if key not in self.traces:
            started = time.perf_counter()
            trace = run()
            self.traces[key] = trace
            with open(self.path, "a") as handle:
                handle.write(json.dumps(asdict(trace)) + "\n")
            print(f"  {key}: {len(trace.times_s)} configs in {time.perf_counter() - started:.1f} s", flush=True)
        return self.traces[key]


def scratch_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="search-efficiency-"))
