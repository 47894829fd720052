"""What a person watches during `tuner run`: a progress bar, then the front as a table."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def format_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns"


class RunProgress:
    """A live bar: trials done of the budget, the best latency so far, and failures."""

    def __init__(self, total: int | None, console: Console, enabled: bool = True):
        self._progress = Progress(
            TextColumn("[bold]tuning"), BarColumn(), MofNCompleteColumn(),
            TextColumn("best {task.fields[best]}"), TextColumn("failed {task.fields[failed]}"),
            TextColumn("invalid {task.fields[invalid]}"), TimeElapsedColumn(),
            console=console, disable=not enabled, transient=False)
        self._task = self._progress.add_task("run", total=total, best="-", failed=0, invalid=0)
        self._best: float | None = None
        self._failed = 0
        self._invalid = 0

    def __enter__(self) -> RunProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def invalid(self) -> None:
        self._invalid += 1
        self._progress.update(self._task, invalid=self._invalid)

    def done(self, ok: bool, latency_s: float | None) -> None:
        if ok and latency_s is not None and (self._best is None or latency_s < self._best):
            self._best = latency_s
        self._failed += 0 if ok else 1
        self._progress.update(self._task, advance=1, best=format_seconds(self._best), failed=self._failed)


def format_rate(flops: float | None, seconds: float | None) -> str:
    if not flops or not seconds:
        return "-"
    rate = flops / seconds
    for unit, scale in (("TFLOP/s", 1e12), ("GFLOP/s", 1e9)):
        if rate >= scale:
            return f"{rate / scale:.1f} {unit}"
    return f"{rate / 1e6:.1f} MFLOP/s"  # a small problem's rate still reads as a number


def front_table(title: str, rows: Iterable, flops: float | None) -> Table:
    """The Pareto front, fastest first, with throughput when the spec counts its FLOPs."""
    table = Table(title=title)
    for column in ("trial", "latency", "IQR", "throughput", "rel. L2 error"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("config", overflow="fold")
    for row in rows:
        iqr = (row.q3_s - row.q1_s) if row.q3_s is not None and row.q1_s is not None else None
        config = " ".join(f"{k}={v}" for k, v in row.config.items())
        table.add_row(str(row.number), format_seconds(row.median_s), format_seconds(iqr),
                      format_rate(flops, row.median_s), f"{row.rel_l2:.2e}", config)
    return table


def check_report_table(title: str, compiled: list) -> Table:
    """`tuner check`'s compiled configs with the compiler's resource report (ptxas's registers,
    spills and shared memory for CUDA; the shared object's size for C), or why they failed."""
    table = Table(title=title)
    table.add_column("config", overflow="fold")
    gpu = any("registers" in item.resources for item in compiled)
    for column in ("registers", "spill bytes", "shared bytes") if gpu else ("binary bytes",):
        table.add_column(column, justify="right")
    table.add_column("result", overflow="fold")
    for item in compiled:
        r = item.resources
        if gpu:
            spills = f"{r['spill_store_bytes']}/{r['spill_load_bytes']}" if "spill_store_bytes" in r else "-"
            shared = r.get("static_shared_bytes", 0) + r.get("dynamic_shared_bytes", 0)
            numbers = [str(r.get("registers", "-")), spills, str(shared) if "registers" in r else "-"]
        else:
            numbers = [str(r.get("so_bytes", "-"))]
        table.add_row(" ".join(f"{k}={v}" for k, v in item.config.items()), *numbers,
                      "ok" if item.error is None else item.error)
    return table
