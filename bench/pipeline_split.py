"""Where a `tuner run` spends its study loop: the real loop, timed phase by phase.

    python bench/pipeline_split.py --arch cpu --executor ray --trials 40 --out bench/results/pipeline_split_cpu.json

Runs ``tuner run`` in this process (the real CLI, proposer, sampler, store, executor and backend)
with a timer around each phase of a trial: on the driver, proposing (Optuna's ask with the
sampler), the constraint check, rendering, the storage lookup of an earlier measurement, storing
(our row, Optuna's tell, the front) and heartbeats; on the measuring device, each measurement from
its start to its end on the measuring actor (Ray) or the compile and measure calls themselves
(local), inside which the backend's own phases are timed where they run in this process (the CPU
backend's load, inputs and reference, warm-up plus timed runs, verification). The device's *timed
runs* are the workers' own sum of timed repeats (the run summary's share); *busy* is the union of
the measuring intervals; *idle* is the loop less busy. The same script runs on a GPU (``--arch
sm_90a``): the driver phases and the device's busy and idle time are measured alike on every
backend.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuner import study as study_module  # noqa: E402
from tuner.cli import main as tuner_main  # noqa: E402
from tuner.db import Store  # noqa: E402
from tuner.proposer import Proposer  # noqa: E402
from tuner.workers import executor as executor_module  # noqa: E402

DEFAULT_SHAPES = {"cpu": "B=1,H=2,S=256,D=64", "sm_90a": "B=16,H=96,S=512,D=64,causal=false,dtype=fp16"}


class Clock:
    """Seconds per phase and calls per phase, from wrappers put around the loop's functions."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.intervals: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: Any, name: str, phase: str, keep_intervals: bool = False) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                end = time.perf_counter()
                self.seconds[phase] += end - start
                self.calls[phase] += 1
                if keep_intervals:
                    self.intervals[phase].append((start, end))

        setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, original))

    def undo(self) -> None:
        while self._undo:
            self._undo.pop()()


def union_s(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def wrap_driver(clock: Clock) -> None:
    clock.wrap(Proposer, "ask", "propose (Optuna ask + sampler)")
    clock.wrap(Proposer, "keep_alive", "heartbeats")
    clock.wrap(Proposer, "tell", "Optuna tell")
    clock.wrap(Proposer, "tell_failed", "Optuna tell")
    clock.wrap(study_module, "rejection", "constraint check")
    clock.wrap(study_module, "render", "render")
    clock.wrap(Store, "find_measured", "storage lookup")
    clock.wrap(Store, "record_trial", "store trial row")
    clock.wrap(Store, "offer_to_front", "front update")
    clock.wrap(study_module.StudyRunner, "_fill", "fill (propose..submit)")
    clock.wrap(study_module.StudyRunner, "_finish", "finish (store..progress)")


def wrap_local(clock: Clock, arch: str) -> None:
    """The local executor compiles and measures in this process: its calls and the backend's phases."""
    clock.wrap(executor_module, "compile_job", "compile")
    clock.wrap(executor_module, "measure_job", "device: measure call", keep_intervals=True)
    if arch == "cpu":
        from tuner.workers import cpu

        clock.wrap(cpu.CpuBackend, "_function", "measure: load the library")
        clock.wrap(cpu._Bench, "prepare", "measure: inputs + reference")
        clock.wrap(cpu._Bench, "time", "measure: warm-up + timed runs")
        clock.wrap(cpu, "error_metrics", "measure: verify")
    else:
        from tuner.workers import cuda_launch, cuda_measure

        clock.wrap(cuda_launch, "launcher", "measure: load the module")
        clock.wrap(cuda_measure, "measurement_inputs", "measure: inputs + references (drawn once a study)")
        clock.wrap(cuda_measure, "time_launches", "measure: warm-up + timed runs")
        clock.wrap(cuda_measure, "_verify", "measure: verify")


def wrap_ray(clock: Clock, depth: int | None = None, dispatch_on_submit: bool = True) -> None:
    """Ray measures in actors: each measurement's interval is its call on the actor, as the actor
    timed it (one host here: its monotonic clock is ours), so a job queued behind another counts
    from when it began, not from when it was sent; a call that left no result (its actor died)
    from when the driver saw it start to its collection."""
    from tuner.workers import ray_executor

    original = ray_executor.RayExecutor._collect

    def collect(self: Any, ref: Any) -> None:
        running = next((s.running for s in self._slots if s.running and s.running.ref == ref), None)
        compiling = ref in self._q.compiling
        original(self, ref)
        now = time.perf_counter()
        if running is not None and running.measured is not None:
            measured = running.measured
            clock.intervals["device: measure call"].append((measured.started - OFFSET, measured.ended - OFFSET))
        elif running is not None:
            clock.intervals["device: measure call"].append((running.started - OFFSET, now))
        elif compiling:
            clock.calls["compile"] += 1

    ray_executor.RayExecutor._collect = collect  # type: ignore[method-assign]
    clock._undo.append(lambda: setattr(ray_executor.RayExecutor, "_collect", original))
    clock.wrap(ray_executor.RayExecutor, "next_result", "wait for the executor")
    if depth is not None:  # jobs per measuring actor other than the executor's default
        original_init = ray_executor.RayExecutor.__init__

        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            original_init(self, *args, **{**kwargs, "depth": depth})

        ray_executor.RayExecutor.__init__ = init  # type: ignore[method-assign]
        clock._undo.append(lambda: setattr(ray_executor.RayExecutor, "__init__", original_init))
    if not dispatch_on_submit:  # only next_result hands the devices their jobs
        ray_executor.RayExecutor.DISPATCH_ON_SUBMIT = False
        clock._undo.append(lambda: setattr(ray_executor.RayExecutor, "DISPATCH_ON_SUBMIT", True))


# time.monotonic() (the executor's clock) to time.perf_counter() (ours)
OFFSET = time.monotonic() - time.perf_counter()


def run(args: argparse.Namespace) -> dict[str, Any]:
    clock = Clock()
    wrap_driver(clock)
    (wrap_local(clock, args.arch) if args.executor == "local" else wrap_ray(clock, args.depth, args.dispatch_on_submit))
    summaries: list[Any] = []
    original_run = study_module.StudyRunner.run

    def keep_summary(self: Any) -> Any:
        summaries.append(original_run(self))
        return summaries[-1]

    study_module.StudyRunner.run = keep_summary  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        command = ["run", "--arch", args.arch, "--shape", args.shape, "--trials", str(args.trials),
                   "--seed", str(args.seed), "--executor", args.executor, "--no-warm-start", "--no-progress",
                   "--db", f"sqlite:///{tmp}/split.db", "--study", "split"]
        started = time.perf_counter()
        code = tuner_main(command)
        command_s = time.perf_counter() - started
    study_module.StudyRunner.run = original_run  # type: ignore[method-assign]
    clock.undo()
    if code != 0 or not summaries:
        raise SystemExit(f"tuner run exited {code}")
    summary = summaries[0]
    loop_s, timed_s = summary.wall_s, summary.measure_s
    busy_s = union_s(clock.intervals["device: measure call"])
    phases = {name: {"s": round(seconds, 4), "share": round(seconds / loop_s, 4), "calls": clock.calls[name]}
              for name, seconds in sorted(clock.seconds.items(), key=lambda kv: -kv[1])}
    return {"arch": args.arch, "executor": args.executor, "shape": args.shape, "trials": args.trials,
            "seed": args.seed, "depth": args.depth if args.executor == "ray" else None,
            "dispatch_on_submit": args.dispatch_on_submit if args.executor == "ray" else None,
            "measured": summary.measured, "command_s": round(command_s, 3),
            "loop_s": round(loop_s, 3), "evaluations_per_minute": round(60 * summary.measured / loop_s, 1),
            "device_timed_runs_s": round(timed_s, 4), "device_timed_share": round(timed_s / loop_s, 4),
            "device_busy_s": round(busy_s, 4), "device_busy_share": round(busy_s / loop_s, 4),
            "device_idle_s": round(loop_s - busy_s, 4), "phases": phases}


def table(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        depth = f" (depth {row['depth']})" if row.get("depth") else ""
        depth += " (no dispatch on submit)" if row.get("dispatch_on_submit") is False else ""
        lines += [f"## {row['label']}: {row['arch']}, {row['executor']} executor{depth}, {row['measured']} measured, "
                  f"shape {row['shape']}", "",
                  f"loop {row['loop_s']} s ({row['evaluations_per_minute']} evaluations/min; command "
                  f"{row['command_s']} s); device in timed runs {100 * row['device_timed_share']:.1f}% "
                  f"of the loop, busy measuring {100 * row['device_busy_share']:.1f}%, idle "
                  f"{row['device_idle_s']} s", "", "| phase | s | share of loop | calls |", "|---|---|---|---|"]
        lines += [f"| {name} | {p['s']:.3f} | {100 * p['share']:.1f}% | {p['calls']} |"
                  for name, p in row["phases"].items()]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="cpu")
    parser.add_argument("--executor", choices=("local", "ray"), nargs="+", default=["local", "ray"])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shape", default=None)
    parser.add_argument("--depth", type=int, default=None,
                        help="jobs sent to each Ray measuring actor at once (default: the executor's, "
                             "2 on a GPU and 1 on the CPU); 1 on a GPU is the one-job-at-a-time baseline")
    parser.add_argument("--no-dispatch-on-submit", dest="dispatch_on_submit", action="store_false",
                        help="Ray: only next_result hands the devices their jobs, not submit too")
    parser.add_argument("--label", default="now", help="names the rows (e.g. before, after)")
    parser.add_argument("--out", type=Path, help="a JSON file; rows of other labels in it are kept")
    args = parser.parse_args(argv)
    args.shape = args.shape or DEFAULT_SHAPES.get(args.arch, DEFAULT_SHAPES["sm_90a"])
    rows = []
    for executor in args.executor:
        row = run(argparse.Namespace(**{**vars(args), "executor": executor}))
        rows.append({"label": args.label, **row})
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        kept = json.loads(args.out.read_text())["rows"] if args.out.exists() else []
        labels = {(r["label"], r["executor"]) for r in rows}
        rows = [r for r in kept if (r["label"], r["executor"]) not in labels] + rows
        args.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                        "rows": rows}, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(f"# The study loop, phase by phase ({Path(__file__).name})\n\n"
                                               + table(rows))


if __name__ == "__main__":
    main()
