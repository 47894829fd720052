"""The "Security and staleness" section of bench/results/reliability.md, from the committed
outputs of bench/security.py, bench/sigint.py and bench/soak.py.

    python bench/security_section.py [--results bench/results]   (rewrites the section in place)

bench/reliability.py appends it too when it rewrites reliability.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HEADING = "## Security and staleness (issue #19)"


def _load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / name
    return json.loads(path.read_text()) if path.is_file() else None


def section(results: Path) -> str:
    security = _load(results, "security.json")
    sigint = _load(results, "sigint.json")
    soak = _load(results, "soak.json")
    lines = [HEADING, "",
             ("Each figure of the adversarial test of 2026-12-01, re-measured; the \"before\" column "
             "is what that test saw on the code before these changes."), ""]
    if security:
        code, stale, names = security["code_execution"], security["stale"], security["names_and_errors"]
        process, docs = security["measuring_process"], security["documents_under_token"]
        meta = security["meta"]
        lines += [
            (f"`{meta['command']}` ({meta['date']}, load average {meta['load_before']} before, "
            f"{meta['load_after']} after): security.json."), "",
            "| measure | before | now |", "| --- | --- | --- |",
            (f"| GET routes that ran a template the database names (of {code['get_routes_asked']} asked) "
            f"| 1 (`/studies/{{name}}/trials`) | {len(code['routes_that_ran_the_template'])} |"),
            (f"| stale /best answers: two PostgreSQL connections committing out of order | the slower "
            f"config for 30+ s | {stale['out_of_order_postgresql']['stale']} of "
            f"{len(stale['out_of_order_postgresql']['answers'])} answers |"),
            (f"| stale /best answers: best trial deleted by hand (SQLite, PostgreSQL) | served until an "
            f"unrelated write | {stale['deleted_best_sqlite']['stale']}, "
            f"{stale['deleted_best_postgresql']['stale']} |"),
            (f"| stale /best answers: SQLite file replaced | the old file's contents | "
            f"{stale['replaced_sqlite_file']['stale']} |"),
            (f"| `GET /api/v1/studies/small%2Ffront` | study `small`'s front (200) | "
            f"{names['api_status']['/api/v1/studies/small%2Ffront']} |"),
            (f"| `?param=unroll%22%29=1` | 503 | "
            f"{names['api_status']['/api/v1/studies/small/trials?param=unroll%22%29=1']} |"),
            (f"| /docs, /redoc, /openapi.json under `--token`, no token | 200, 200, 200 | "
            f"{', '.join(str(v) for v in docs.values())} |"),
            (f"| measuring process ({process['kernels_measured']} distinct kernels measured in one "
            f"process through the CPU backend, as its Ray actor does): kernel shared objects mapped "
            f"at the end | 219 (a 250-trial run) | {process['kernel_objects_mapped_last']} (max "
            f"{process['kernel_objects_mapped_max']}) |"),
            (f"| measuring process: resident memory (MB) | swinging 105-616 each measurement | "
            f"{process['rss_mb_min']:.0f}-{process['rss_mb_max']:.0f} over the run, "
            f"{process['rss_mb_last']:.0f} at the end |"),
            (f"| measuring process: flush buffers ({process['flush_buffer_mb']} MB, the reported LLC) "
            f"allocated | one per measurement | {process['flush_buffers_allocated']} |"),
            "", ("Command lines the test found ending in a traceback, a silent exit or a wrong message "
            "(each must now exit 2 with one line):"), "",
            "| command | exit | stderr lines | message |", "| --- | --- | --- | --- |",
        ]
        for row in names["cli"]:
            args = row["args"].replace("\x01", "\\x01").replace("|", "\\|")
            lines.append(f"| `tuner {args}` | {row['exit']} | {row['stderr_lines']} | "
                         f"{row['message'].replace('|', '/')} |")
        lines.append("")
    if sigint:
        s, meta = sigint["summary"], sigint["meta"]
        lines += [
            (f"Ctrl-C: `{meta['command']}` ({meta['date']}, load average {meta['load_before']} before, "
            f"{meta['load_after']} after): sigint.md has every run."), "",
            "| measure | before | now |", "| --- | --- | --- |",
            (f"| runs ended within 5 s of SIGINT to the process group | 11 of 12 (one hung 30 s) | "
             f"{s['within_5s']} of {s['signalled']} (while starting {s['within_5s_by_phase']['starting']}"
             f" of {s['by_phase']['starting']}, while tuning {s['within_5s_by_phase']['tuning']} of "
             f"{s['by_phase']['tuning']}; median {s['exit_s_median']} s, max {s['exit_s_max']} s) |"),
            (f"| exit status 130 | 11 of 12 (one exited 2, \"free disk space\") | {s['exit_130']} of "
            f"{s['signalled']} |"),
            (f"| tracebacks (a second Ctrl-C in {s['double_sigint']} runs) | Ray's exit handler's | "
            f"{s['tracebacks']} |"),
            f"| Optuna trials left RUNNING by the interrupted runs | 4 | {s['optuna_running_left']} |",
            (f"| databases failing SQLite's integrity check, stored fronts not the true front | - | "
            f"{s['trials'] - s['integrity_ok']}, {s['trials'] - s['front_ok']} |"),
            f"| processes of a run (Ray's) left running 30 s after it exited | - | {s['processes_left']} |",
            "", _slow_runs(sigint["runs"]) + _gil_window(_load(results, "ray_init_gil.json")), "",
        ]
    if soak:
        s, meta = soak["summary"], soak["meta"]
        rss = s["server_rss_mb"]
        lines += [
            (f"Soak: `{meta['command']}` ({meta['date']}, load average {s['load_before']} before, "
            f"{s['load_after']} after): soak.md."), "",
            "| measure | now |", "| --- | --- |",
            (f"| wrk requests at {s['connections']} connections over {s['minutes']:g} minutes | "
            f"{s['requests']} ({s['requests_per_s']}/s) |"),
            f"| errors: non-2xx, socket errors | {s['non_2xx']}, {s['socket_errors']} |",
            f"| stale answers during the soak, of {s['checker_answers']} checked | {s['stale_during']} |",
            (f"| answers equal to `tuner best` at the end | {s['final_same_as_tuner_best']} of "
            f"{s['final_queries']} |"),
            f"| trials the two tuners stored meanwhile | {s['trials_stored']} |",
            (f"| server resident memory, first / max / last sample (MB) | {rss['first']:.0f} / "
            f"{rss['max']:.0f} / {rss['last']:.0f} |"),
            "",
        ]
    return "\n".join(lines)


def _slow_runs(runs: list[dict[str, Any]]) -> str:
    """What the runs over 5 s were, or that there were none."""
    slow = [run for run in runs if run["exit_s"] > 5]
    if not slow:
        return "No run took over 5 s. sigint.md lists every run."
    listed = ", ".join(f"run {run['trial']} ({run['phase']}, {run['exit_s']} s)" for run in slow)
    return f"Runs over 5 s: {listed}. sigint.md lists every run."


CORE_WORKER = "ray/_private/worker.py:2729"  # the driver's CoreWorker(...), in the Ray this was measured with


def _gil_window(gil: dict[str, Any] | None) -> str:
    """The stretch of a start where a Ctrl-C still waits: while ray.init holds the GIL."""
    if gil is None:
        return ""
    longest = sorted(s[0] for run in gil["runs"] for s in run["stalls"] if CORE_WORKER in s[1])
    if not longest:
        return ""
    meta = gil["meta"]
    return (f" One stretch of a start is left where a Ctrl-C waits: the thread of the tuner's that ends "
            f"the run needs the GIL, and ray.init holds it while the driver's CoreWorker starts, "
            f"{longest[0]}-{longest[-1]} s in {len(gil['runs'])} starts at load average "
            f"{meta['load_before']}-{meta['load_after']} (ray_init_gil.md).")


def rewrite(report: Path, results: Path) -> None:
    """Replaces the section at the end of ``report`` (or appends it)."""
    text = report.read_text() if report.is_file() else ""
    head = text.split(HEADING)[0].rstrip("\n")
    report.write_text(head + "\n\n" + section(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    rewrite(args.results / "reliability.md", args.results)


if __name__ == "__main__":
    main()
