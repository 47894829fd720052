"""Synthetic trials for scale tests ONLY (API load, a dashboard of 10,000 trials): not measurements.

Every trial goes through the real ``Store.record_trial`` with a real ``Measurement`` and the real
rendered source of its config, so the database looks like one a long ``tuner run`` wrote; but
latencies and errors come from a made-up model of the CPU attention kernel's knobs plus noise.
Never mix such a database with real results.

    python bench/gen_trials.py --db sqlite:///bench.db --trials 10000
"""

from __future__ import annotations

import argparse
import math
import random
from typing import Any

import numpy as np

from tuner.db import Store, StudyRecord
from tuner.enums import Status
from tuner.kernel_templates import find_spec
from tuner.pareto import non_dominated
from tuner.workers.measurement import Measurement, Timing

SPEC = find_spec("attention", "cpu")
ENVIRONMENT = {"host": "synthetic", "device": "synthetic cpu", "cc": "synthetic", "note": "gen_trials.py"}
# Failure statuses and how often the model produces them.
FAILURES = [(Status.INVALID, 0.04), (Status.COMPILE_ERROR, 0.02), (Status.WRONG_RESULT, 0.04)]


def model(config: dict[str, Any], rng: random.Random) -> tuple[float, float]:
    """(median latency s, relative error) of a config: bigger tiles and fast exp are faster."""
    latency = 2e-3 / math.sqrt(config["block_m"] * config["block_n"] / 256)
    latency *= {"libm": 1.0, "poly3": 0.7, "poly2": 0.6}[config["exp"]]
    latency *= (0.6 if config["threads"] == 2 else 1.0) * (0.85 if config["fast_math"] else 1.0)
    latency *= (1.1 if config["accum"] == "double" else 1.0) * rng.lognormvariate(0, 0.15)
    error = {"libm": 1e-7, "poly3": 1e-4, "poly2": 2e-3}[config["exp"]]
    error *= (0.01 if config["accum"] == "double" else 1.0) * rng.lognormvariate(0, 0.5)
    return latency, error


def synthetic_measurement(config: dict[str, Any], source_hash: str, rng: random.Random) -> Measurement:
    latency, error = model(config, rng)
    draw = rng.random()
    status = Status.OK
    for failure, share in FAILURES:
        if draw < share:
            status = failure
            break
        draw -= share
    if status in (Status.INVALID, Status.COMPILE_ERROR):
        return Measurement(trial_id=0, status=status, source_hash=source_hash,
                           reason=f"synthetic {status.value}", environment=ENVIRONMENT)
    timing = Timing(median_s=latency, q1_s=latency * 0.97, q3_s=latency * 1.04, min_s=latency * 0.95,
                    max_s=latency * 1.3, mean_s=latency * 1.01, repeats=100)
    error = 0.3 if status is Status.WRONG_RESULT else error
    return Measurement(trial_id=0, status=status, source_hash=source_hash, timing=timing,
                       rel_l2=error, max_abs=error * 4, compile_time_s=0.2, environment=ENVIRONMENT,
                       reason="synthetic wrong result" if status is Status.WRONG_RESULT else None)


def generate(store: Store, name: str, trials: int, seed: int = 0,
             problem: dict[str, Any] | None = None) -> StudyRecord:
    """A study of ``trials`` synthetic trials and its Pareto front."""
    problem = problem or SPEC.default_problem()
    rng = random.Random(seed)
    study = store.ensure_study(name=name, kernel=SPEC.name, backend=SPEC.backend, template_path=None,
                               problem=problem, arch="cpu", device_name="synthetic cpu",
                               sampler="synthetic", directions=["minimize", "minimize"])
    for number in range(trials):
        config = {p.name: rng.choice(p.choices) for p in SPEC.params}
        source = SPEC.render(config, problem)
        store.record_trial(study, number, config,
                           synthetic_measurement(config, source.digest(), rng), source.code)
    measured = store.study_trials_for_front(study.id)
    points = np.array([[t.median_s, t.rel_l2] for t in measured]).reshape(-1, 2)
    store.set_front(study.id, [t.id for t, on in zip(measured, non_dominated(points), strict=True) if on])
    return study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite:///bench.db", help="database URL")
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--study", default="synthetic-10k")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with Store.open(args.db) as store:
        generate(store, args.study, args.trials, args.seed)
    print(f"wrote {args.trials} synthetic trials to study {args.study!r}")


if __name__ == "__main__":
    main()
