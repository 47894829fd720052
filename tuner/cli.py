"""`tuner`: the command line. ``main(argv) -> exit status``; every error maps to a code here."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence

from .errors import ExitStatus, UsageError
from .interrupts import MESSAGE, StopOnInterrupt

DEFAULT_DB = "sqlite:///tuner.db"


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 through our own mapping."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def positive_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above zero."""
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text!r}")
    return value


def error_bound(text: str) -> float:
    """An argparse type: a finite relative error of 0 or more."""
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a relative error of 0 or more, not {text!r}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text!r}")
    return value


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=os.environ.get("TUNER_DB", DEFAULT_DB),
                        help="SQLAlchemy URL of the results database (env TUNER_DB; default %(default)s; "
                             "e.g. postgresql+psycopg://user@host/db when several machines tune together)")


def _add_target(parser: argparse.ArgumentParser) -> None:
    from .arch import KNOWN_ARCHS

    parser.add_argument("--kernel", default="attention",
                        help="a built-in kernel template (see `tuner kernels`); reading commands also "
                             "take the name of a template of your own that a study stored")
    parser.add_argument("--template", metavar="PATH", help="a template file of your own (a KernelSpec subclass: "
                        "see examples/ and kernel_templates/spec.py; `tuner check` tries one without a GPU)")
    parser.add_argument("--arch", default="auto", help=f"auto, or one of: {', '.join(KNOWN_ARCHS)}")
    parser.add_argument("--shape", action="append", default=[], metavar="NAME=VALUE[,NAME=VALUE]",
                        help="problem parameters, e.g. B=16,H=96,S=512,D=64,causal=true (repeatable)")
    parser.add_argument("--dtype", help="shorthand for --shape dtype=VALUE")


def _add_family(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--family", help=f"the kernel's template family to {what}; `tuner kernels` "
                        "lists them")


def build_parser() -> argparse.ArgumentParser:
    # Imported here, not at the top: `tuner` owns SIGINT (main) before anything slow is imported.
    from .samplers import DEFAULT as DEFAULT_SAMPLER
    from .samplers import SAMPLERS

    parser = _Parser(prog="tuner", description="Autotune GPU and CPU kernels; keep and serve the Pareto "
                                               "front of latency against numerical error.")
    parser.add_argument("--traceback", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="tune a kernel for one problem on one arch")
    _add_target(run)
    _add_db(run)
    _add_family(run, "tune (default: every family on the arch, in one study)")
    run.add_argument("--study", help="study name; an existing study resumes "
                     "(default: derived from kernel, arch, shape)")
    run.add_argument("--sampler", choices=SAMPLERS, default=DEFAULT_SAMPLER,
                     help="sampler (default %(default)s: a surrogate over the valid configs; see README)")
    run.add_argument("--trials", type=int, default=None, help="trials to run now (default 30 unless --timeout; "
                     "--sampler grid: every point of the grid)")
    run.add_argument("--timeout", type=positive_seconds, help="stop proposing after this many seconds")
    run.add_argument("--seed", type=int,
                     help="seed for proposals and for the inputs every trial is measured on "
                          "(reproducible runs; default 0 for the inputs)")
    run.add_argument("--remeasure", action="store_true", help="measure configs even if stored already")
    run.add_argument("--ray-address", default=os.environ.get("RAY_ADDRESS"),
                     help="join a running Ray cluster (HOST:PORT; env RAY_ADDRESS) instead of starting one")
    run.add_argument("--devices", type=int,
                     help="measuring devices (actors, spread over the cluster's nodes); default: "
                          "every GPU of the Ray cluster for CUDA, one for the CPU backend")
    run.add_argument("--executor", choices=("ray", "local"), default="ray",
                     help="ray (default) or local: in-process, measuring one at a time (CUDA compiles "
                          "ahead on threads); for debugging a template or one GPU without Ray")
    run.add_argument("--trial-timeout", type=positive_seconds, default=30.0,
                     help="least seconds before a measurement counts as hung; the limit grows to 5x "
                          "the slowest healthy measurement (default %(default)s)")
    run.add_argument("--heartbeat", type=positive_seconds, default=10.0,
                     help="seconds between heartbeats of running trials; a trial silent for 3 beats "
                          "(its tuner was killed) is failed and retried once (default %(default)s)")
    run.add_argument("--replay", metavar="FILE",
                     help="tune a recorded space instead of measuring: a Kernel Tuner cache file (.json, .json.gz) "
                          "or a tuner database (.db, .db.gz); each config is answered with its recorded time")
    run.add_argument("--replay-study", metavar="NAME", help="with --replay of a database: the study to replay")
    run.add_argument("--no-warm-start", action="store_true",
                     help="a new study starts cold (by default its first trials are the stored best configs "
                          "of the nearest tuned shapes of the same kernel and arch)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    check = sub.add_parser("check", help="a template's space, what its constraints admit, and every admitted "
                                         "config compiled for an arch with its resources (no GPU needed)")
    _add_target(check)
    _add_family(check, "check (default: every family on the arch)")
    check.add_argument("--sample", type=int, metavar="N", help="compile N admitted configs drawn at random "
                       "(default: every admitted config)")
    check.add_argument("--seed", type=int, help="seed of the --sample draw")
    check.add_argument("--no-progress", action="store_true", help="no progress bar")

    best = sub.add_parser("best", help="print the fastest stored config within an error bound, as JSON")
    _add_target(best)
    _add_db(best)
    _add_family(best, "answer from (default: the fastest config of every family)")
    best.add_argument("--max-error", type=error_bound, help="largest relative L2 error allowed")

    studies = sub.add_parser("studies", help="list the stored studies")
    _add_db(studies)

    show = sub.add_parser("show", help="show a study's Pareto front as a table")
    show.add_argument("study")
    _add_db(show)

    kernels = sub.add_parser("kernels", help="list the built-in kernel templates and those of your own "
                                             "templates stored in the database, with their search spaces")
    _add_db(kernels)

    serve = sub.add_parser("serve", help="serve the REST API (/api/v1, /docs) and the dashboard")
    _add_db(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default %(default)s)")
    serve.add_argument("--token", default=os.environ.get("TUNER_API_TOKEN"),
                       help="bearer token required by every /api/v1 request and the dashboard "
                            "(env TUNER_API_TOKEN; default: none)")

    export = sub.add_parser("export", help="write the best config of every tuned (kernel, arch, shape) "
                                           "as JSON and as a C/C++ header, for runtimes with no service")
    _add_db(export)
    export.add_argument("--max-error", action="append", default=[], metavar="[KERNEL=]BOUND",
                        help="largest relative L2 error of an exported config: BOUND for every kernel, "
                             "KERNEL=BOUND for one (repeatable, e.g. --max-error 1e-3 --max-error "
                             "gemm=1e-2); a problem with no config within its bound is left out")
    export.add_argument("--json", help="JSON file to write (default tuner_best.json unless --bundle)")
    export.add_argument("--header", help="C/C++ header to write (default tuner_best.h unless --bundle)")
    export.add_argument("--bundle", metavar="DIR",
                        help="write a bundle for tuner.runtime: the configs of one arch and their "
                             "compiled binaries, loadable with no compiler and no database")
    export.add_argument("--arch", help="the bundle's arch (default: the database's only one)")
    return parser


def main(argv: Sequence[str] | None = None, *, owns_process: bool = False) -> int:
    """``owns_process``: this is the process's whole job (the console command), so a Ctrl-C
    may end it at once (tuner.interrupts)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    show_traceback = "--traceback" in argv
    # SIGINT is ours from the first moment: a Ctrl-C during the slow imports below, or one that
    # a library swallows while the run starts, is still seen (tuner.interrupts).
    with StopOnInterrupt(owns_process=owns_process) as interrupts:
        try:
            from . import commands  # heavy imports (optuna, ray, sqlalchemy)

            args = build_parser().parse_args(argv)
            args.interrupts = interrupts
            return int(commands.dispatch(args))
        except BrokenPipeError:
            _silence_stdout()  # the reader (`| head`) has what it wanted: no traceback at exit
            return ExitStatus.OK
        except KeyboardInterrupt:
            print(MESSAGE, file=sys.stderr)
            return ExitStatus.INTERRUPTED
        except Exception as exc:
            from . import commands

            status = commands.exit_status_for(exc)
            if show_traceback or status == ExitStatus.ERROR:
                raise
            print(f"tuner: error: {commands.describe_error(exc)}", file=sys.stderr)
            return status


def _silence_stdout() -> None:
    """Points stdout at /dev/null, so the interpreter's final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def run_main() -> None:
    status = main(owns_process=True)
    if status == ExitStatus.INTERRUPTED:
        # Everything is stored and closed (Ray included): leave now, without the seconds the
        # interpreter's teardown of Ray's threads takes, which a user waiting on Ctrl-C sees.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    sys.exit(status)
