"""The CLI's subcommands. Each validates everything before it writes anything."""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tuner.db import Store, StoreError
from tuner.kernel_templates import (
    KernelSpec,
    SpecError,
    Target,
    builtin_specs,
    find_spec,
    kernel_spec,
    load_spec_file,
    problem_spec,
)
from tuner.kernel_templates.families import Families
from tuner.kernel_templates.spec import ProblemSpace
from tuner.workers import SpecRef, TimingPolicy
from tuner.workers.executor import ExecutorError
from tuner.workers.processes import kill_all_below

from .arch import resolve_target
from .errors import ExitStatus, UsageError
from .names import check_study_name
from .progress import RunProgress, check_report_table, front_table
from .samplers import SamplerContext, make_sampler
from .search_space import TemplateError, preflight
from .service import NotFound, Service, name_values, parse_problem, to_json

DEFAULT_TRIALS = 30


def exit_status_for(exc: BaseException) -> ExitStatus:
    if isinstance(exc, (UsageError, SpecError, StoreError, TemplateError, NotFound, ExecutorError)):
        return ExitStatus.USAGE
    if _is_optuna_storage_error(exc):
        return ExitStatus.USAGE
    return ExitStatus.ERROR


def describe_error(exc: BaseException) -> str:
    """The one line a user reads; Optuna's storage errors hide their cause, so name it."""
    if _is_optuna_storage_error(exc):
        cause = str(exc.__cause__ or exc).strip().splitlines()[0]
        return (f"the database could not be written ({cause}): free disk space or check --db, "
                "then run the same command to continue")
    return str(exc)


def _is_optuna_storage_error(exc: BaseException) -> bool:
    optuna = sys.modules.get("optuna")
    return optuna is not None and isinstance(exc, optuna.exceptions.StorageInternalError)


def dispatch(args: argparse.Namespace) -> ExitStatus:
    return _COMMANDS[args.command](args)


class _Console(Console):
    def on_broken_pipe(self) -> None:
        raise BrokenPipeError  # rich would exit 1 itself; `cli.main` ends every command alike


def _console(min_width: int = 0) -> Console:
    """A console for user text (names and configs are not markup), at least ``min_width`` wide."""
    console = _Console(highlight=False, markup=False)
    if console.width < min_width:
        console = _Console(highlight=False, markup=False, width=min_width)
    return console


def _spec_and_ref(args: argparse.Namespace, target: Target) -> tuple[KernelSpec, SpecRef]:
    """The template to tune on ``target``: a user's file, or the built-in (kernel, arch) family."""
    if getattr(args, "template", None):
        spec = load_spec_file(args.template)
        if not spec.supports(target):
            raise UsageError(f"template {spec.name!r} runs on {', '.join(spec.archs)}, not {target.arch}: pass --arch")
        return spec, SpecRef(spec.name, spec.backend, path=args.template)
    family = getattr(args, "family", None)
    spec = find_spec(args.kernel, target.arch, family) if family else kernel_spec(args.kernel, target.arch)
    return spec, SpecRef(spec.name, spec.backend, family=spec.family)


def _problem_spec(args: argparse.Namespace, target: Target) -> KernelSpec:
    """A spec that knows the kernel's problem on ``target``: every family of a kernel shares it."""
    if getattr(args, "template", None):
        return _spec_and_ref(args, target)[0]
    return problem_spec(args.kernel, target.arch)


def _readable(url: str) -> bool:
    """Whether a reader could open ``url``: a SQLite file that exists, or any server URL."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # a malformed URL: Store.open says what is wrong with it
        return True
    return not parsed.get_backend_name() == "sqlite" or Path(parsed.database or "").is_file()


def _problem(spec: ProblemSpace, args: argparse.Namespace) -> dict[str, Any]:
    """The problem of ``--shape B=16,H=96 --shape S=512`` (and ``--dtype``), typed by ``spec``."""
    parts = (part.strip() for item in args.shape for part in item.split(","))
    texts = name_values(filter(None, parts), "--shape", "--shape B=16,S=512")
    if args.dtype is not None:
        texts["dtype"] = args.dtype
    try:
        return parse_problem(spec, texts)
    except UsageError as exc:
        raise UsageError(f"bad --shape: {exc}") from None


def default_study_name(spec: KernelSpec, arch: str, problem: dict[str, Any], family: str | None = None) -> str:
    """kernel-arch-shape, with the family after the kernel when the run chose one, and every family
    (``mma_sync+wgmma``) when it searches several: a study of one family stored before its kernel had
    more keeps its name and its space (Optuna cannot widen a study's choices), and so does a study of
    several when a family is added. Problem parameters left out of the problem (optional ones at their
    default) are left out of the name."""
    shape = "-".join(f"{k}{int(v) if isinstance(v, bool) else v}" for k, v in problem.items())
    if isinstance(spec, Families):
        family = "+".join(spec.names())
    kernel = f"{spec.name}-{family}" if family else spec.name
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", f"{kernel}-{arch}-{shape}")


def _make_executor(args: argparse.Namespace):
    policy = TimingPolicy()
    if args.executor == "local":
        from tuner.workers.executor import LocalExecutor

        return LocalExecutor(policy)
    from tuner.workers.ray_executor import RayExecutor

    return RayExecutor(policy, trial_timeout_s=args.trial_timeout, address=args.ray_address,
                       devices=args.devices)


def cmd_run(args: argparse.Namespace) -> ExitStatus:
    from .study import RunSettings, StudyRunner

    if args.trials is not None and args.trials < 1:
        raise UsageError("--trials must be at least 1")
    if args.devices is not None and args.devices < 1:
        raise UsageError("--devices must be at least 1")
    stop = args.interrupts
    # Until the loop starts, Ctrl-C ends the run at once, and every process it started
    stop.abort_on_interrupt(functools.partial(kill_all_below, os.getpid()))
    spec: KernelSpec
    if args.replay:
        from .replay import replay_setup

        spec, ref, executor, target = replay_setup(args)
        problem = spec.default_problem()
    else:
        if args.template:
            load_spec_file(args.template)  # a broken template is named before a missing GPU is
        target = resolve_target(args.arch, remote_cluster=bool(args.ray_address))
        spec, ref = _spec_and_ref(args, target)
        problem = _problem(spec, args)
        executor = _make_executor(args)
    name = args.study or default_study_name(spec, target.arch, problem, getattr(args, "family", None))
    try:
        check_study_name(name)
    except ValueError as exc:
        raise UsageError(f"{exc}: pass another --study") from None
    # A grid search walks its whole grid unless told to stop sooner.
    trials = args.trials if args.trials is not None or args.timeout or args.sampler == "grid" else DEFAULT_TRIALS
    settings = RunSettings(study_name=name, problem=problem, sampler=args.sampler, seed=args.seed, trials=trials,
                           timeout_s=args.timeout, remeasure=args.remeasure, heartbeat_s=args.heartbeat,
                           warm_start=not args.no_warm_start)
    store = None
    try:
        measuring = executor.start(target)
        preflight(spec, problem, measuring.device)
        sampler = make_sampler(args.sampler, SamplerContext(spec, problem, measuring.device, args.seed))
        store = Store.open(args.db)
        console = _console()
        stop.defer()  # from here on Ctrl-C stops the loop at its next turn (tuner.interrupts)
        with RunProgress(trials, console, enabled=not args.no_progress) as progress:
            runner = StudyRunner(spec, ref, settings, store, executor, measuring, progress, sampler,
                                 stop=stop)
            summary = runner.run()
        _print_run_summary(console, Service(store), spec, settings, summary)
    except KeyboardInterrupt:
        if store is not None:
            store.close()
        stop.abort()  # all is stored: the run's processes are killed, not stopped one by one
        raise
    finally:
        executor.close()
        if store is not None:
            store.close()
    if summary.ok == 0 and summary.proposed > summary.invalid:
        console.print("no trial ran correctly: see `tuner show` and the trials' reasons (`tuner serve`)")
        return ExitStatus.ERROR
    return ExitStatus.OK


def _print_run_summary(console: Console, service: Service, spec: KernelSpec, settings, summary) -> None:
    front = service.front(settings.study_name)
    flops = spec.flops(settings.problem)
    console.print(front_table(f"Pareto front of {settings.study_name}", front, flops))
    gpu_share = summary.measure_s / summary.wall_s if summary.wall_s else 0.0
    if summary.warm:
        console.print(f"warm start: the first {summary.warm} trials were the best configs of the nearest tuned shapes")
    console.print(f"{summary.proposed} trials proposed: {summary.measured} measured, {summary.reused} "
                  f"answered from storage, {summary.invalid} invalid; {summary.ok} ok, {summary.failed} failed; "
                  f"wall {summary.wall_s:.1f} s, {100 * gpu_share:.1f}% of it in timed kernel runs")
    for reason, count in summary.commonest_failures():
        console.print(f"  {count} failed with {reason}")


def cmd_check(args: argparse.Namespace) -> ExitStatus:
    from .check import check

    if args.sample is not None and args.sample < 1:
        raise UsageError("--sample must be at least 1")
    target = resolve_target(args.arch, remote_cluster=True)  # compiling needs no GPU of that arch
    spec, _ = _spec_and_ref(args, target)
    problem = _problem(spec, args)
    console = _console()
    console.print(f"{spec.name} ({spec.backend}) for {target.arch}, problem "
                  + " ".join(f"{k}={v}" for k, v in problem.items()))
    console.print(space_table(spec))
    with Progress(TextColumn("[bold]compiling"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=args.no_progress) as bar:
        task = bar.add_task("compile", total=None)
        report = check(spec, target, problem, sample=args.sample, seed=args.seed,
                       progress=lambda: bar.advance(task))
    print_check_report(console, report, target.arch)
    return ExitStatus.ERROR if report.failures or not report.compiled else ExitStatus.OK


def print_check_report(console: Console, report, arch: str) -> None:
    rejected = report.space_size - report.admitted
    console.print(f"space: {report.space_size} configs; check() admits {report.admitted}, rejects {rejected}")
    for reason, count in report.rejections.most_common(3):
        console.print(f"  {count} rejected: {reason}")
    if report.compiled:
        console.print(check_report_table(f"compiled for {arch}", report.compiled))
    failed = len(report.failures)
    console.print(f"{len(report.compiled) - failed} of {len(report.compiled)} configs compiled for {arch}; "
                  f"{failed} failed")
    for reason, count in report.commonest_failures():
        console.print(f"  {count} failed: {reason}")
    if not report.compiled:
        console.print("no config to compile: check() admits none for this problem and device")


def cmd_best(args: argparse.Namespace) -> ExitStatus:
    target = resolve_target(args.arch, remote_cluster=True)
    try:
        spec = _problem_spec(args, target)
        space: ProblemSpace | None = spec
        problem = _problem(spec, args)
    except SpecError as exc:  # not built in: a user template's kernel is known by what is stored
        if args.template or not _readable(args.db):
            raise
        space, unknown = None, exc
    store = Store.open(args.db, create=False)
    try:
        service = Service(store)
        if space is None:
            space = service.problem_space(args.kernel, target.arch)
            if space is None:
                raise UsageError(f"{unknown}; no study in {args.db} tuned a template named "
                                 f"{args.kernel!r} for {target.arch} either")
            problem = _problem(space, args)
        answer = service.best(kernel=space.name, arch=target.arch, problem=problem, max_error=args.max_error,
                              family=args.family)
    finally:
        store.close()
    print(to_json(answer.document(), indent=2))
    return ExitStatus.OK


def cmd_studies(args: argparse.Namespace) -> ExitStatus:
    store = Store.open(args.db, create=False)
    try:
        studies = Service(store).studies()
    finally:
        store.close()
    table = Table(title="studies")
    for column in ("name", "kernel", "arch", "device", "trials", "ok", "best latency"):
        table.add_column(column, no_wrap=column == "name")  # the name `tuner show` needs, whole
    from .progress import format_seconds

    for s in studies:
        table.add_row(s.name, s.kernel, s.arch, s.device_name, str(s.n_trials),
                      str(s.counts.get("ok", 0)), format_seconds(s.best_latency_s))
    # Never narrower than the longest name and room for the rest: a terminal of 80 columns or a
    # pipe must not cut the name `tuner show` needs.
    longest = max((len(s.name) for s in studies), default=0)
    _console(min_width=longest + 60).print(table)
    return ExitStatus.OK


def cmd_show(args: argparse.Namespace) -> ExitStatus:
    store = Store.open(args.db, create=False)
    try:
        service = Service(store)
        study = service.study(args.study)
        front = service.front(args.study)
        flops = service.flops(study)
    finally:
        store.close()
    _console().print(front_table(f"Pareto front of {study.name}", front, flops))
    return ExitStatus.OK


def cmd_kernels(args: argparse.Namespace) -> ExitStatus:
    console = _console()
    for spec in builtin_specs():
        console.print(space_table(spec))
    if not _readable(args.db):
        return ExitStatus.OK  # nothing stored yet: the built-ins are all there is
    store = Store.open(args.db, create=False)
    try:
        stored = Service(store).stored_kernels()
    finally:
        store.close()
    for info in stored:
        console.print(space_table(info, origin=f"a template file, as tuned in {args.db}"))
    return ExitStatus.OK


def space_table(spec, origin: str | None = None) -> Table:
    """A kernel's parameters and problem parameters: of a template, or as a study stored them."""
    family = f", family {spec.family}" if getattr(spec, "family", "") else ""
    where = f" [from {origin}]" if origin else ""
    table = Table(title=f"{spec.name} ({spec.backend}{family}: {', '.join(spec.archs)}) — {spec.description}{where}")
    table.add_column("parameter")
    table.add_column("choices")
    table.add_column("meaning")
    for p in spec.params:
        table.add_row(p.name, ", ".join(map(str, p.choices)), p.doc)
    for p in spec.problem_params:
        choices = ", ".join(map(str, p.choices)) if p.choices else f"{p.kind.__name__} (default {p.default})"
        table.add_row(f"[problem] {p.name}", choices, p.doc)
    return table


def cmd_serve(args: argparse.Namespace) -> ExitStatus:
    from tuner.api import serve

    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be between 1 and 65535, not {args.port}")
    serve(args.db, host=args.host, port=args.port, token=args.token)
    return ExitStatus.OK


def cmd_export(args: argparse.Namespace) -> ExitStatus:
    from .export import ErrorBounds, write_exports

    bounds = ErrorBounds.parse(args.max_error)
    if args.arch is not None and args.bundle is None:
        raise UsageError("--arch chooses a bundle's arch: pass it with --bundle DIR")
    if args.bundle is None and args.json is None and args.header is None:
        args.json, args.header = "tuner_best.json", "tuner_best.h"
    store = Store.open(args.db, create=False)
    try:
        service = Service(store)
        if args.bundle is not None:
            from .runtime.bundle_export import write_bundle

            entries = write_bundle(service, args.bundle, args.arch)
            print(f"wrote a bundle of {len(entries)} best configs and their binaries to {args.bundle}")
        if args.json is not None or args.header is not None:
            entries = write_exports(service, args.json, args.header, bounds)
            written = " and ".join(p for p in (args.json, args.header) if p is not None)
            print(f"wrote {len(entries)} best configs to {written}")
    finally:
        store.close()
    return ExitStatus.OK


_COMMANDS = {"run": cmd_run, "check": cmd_check, "best": cmd_best, "studies": cmd_studies, "show": cmd_show,
             "kernels": cmd_kernels, "serve": cmd_serve, "export": cmd_export}
