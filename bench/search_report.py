"""The search-efficiency results as markdown and a plot (bench/search_efficiency.py writes them)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from statistics import mean

import numpy as np

TARGETS = {100: 1.05, 200: 1.01}  # the bars for our default, besides beating Kernel Tuner's best


def summary(result: dict) -> dict[tuple[str, str], dict[int, float]]:
    """(tool, strategy) -> budget -> mean over spaces of the median ratio (None where a space found nothing)."""
    by: dict[tuple[str, str], dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for r in result["rows"]:
        by[(r["tool"], r["strategy"])][r["budget"]].append(r["median_ratio"])
    return {k: {b: (mean(v) if None not in v else float("inf")) for b, v in per.items()} for k, per in by.items()}


def kt_best(table: dict[tuple[str, str], dict[int, float]], budget: int) -> tuple[str, float]:
    options = [(v[budget], s) for (tool, s), v in table.items() if tool == "kernel_tuner"]
    value, strategy = min(options) if options else (float("inf"), "-")
    return strategy, value


def markdown(result: dict, budgets: list[int], seeds: str, cpus_per_device: int) -> str:
    table = summary(result)
    lines = [f"# Search efficiency on recorded spaces ({result['date']})", "",
             f"{result['device']}. {seeds}; budget = distinct configs measured; ratio = best found / "
             "the space's optimum (median over seeds, then the mean over spaces).", "",
             "| space | valid configs | optimum (ms) |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {s['valid']} | {s['optimum'] * 1e3:.4f} |" for name, s in result["spaces"].items()]
    lines += ["", "## Mean over spaces of the median ratio", "",
              "| tool | strategy | " + " | ".join(f"{b}" for b in budgets) + " |",
              "| --- | --- | " + " | ".join("---:" for _ in budgets) + " |"]
    for (tool, strategy), per in sorted(table.items(), key=lambda kv: (kv[0][0] != "tuner", kv[1][budgets[-1]])):
        lines.append(f"| {tool} | {strategy} | " + " | ".join(_fmt(per.get(b)) for b in budgets) + " |")
    lines += ["", "## The default against Kernel Tuner's best strategy at each budget", "",
              "| budget | ours (default) | Kernel Tuner's best | its strategy | target | met |",
              "| ---: | ---: | ---: | --- | --- | --- |"]
    ours = table.get(("tuner", "default"), {})
    for b in budgets:
        strategy, theirs = kt_best(table, b)
        bar = min(theirs, TARGETS.get(b, float("inf")))
        target = f"≤ {theirs:.3f}" + (f" and ≤ {TARGETS[b]}" if b in TARGETS else "")
        lines.append(f"| {b} | {_fmt(ours.get(b))} | {_fmt(theirs)} | {strategy} | {target} | "
                     f"{'yes' if ours.get(b, float('inf')) <= bar else 'no'} |")
    lines += ["", "## Per space (median / worst ratio, share of seeds within 2%)", ""]
    lines += _per_space(result, budgets)
    lines += ["", "## Simulated wall-clock time to the 2% band (median over seeds, seconds)", "",
              f"From the recorded compile, benchmark and framework costs. Ours: compiles pipelined on "
              f"{cpus_per_device} CPUs per measuring device and as many trials in flight, the sampler's own "
              "time included. Kernel Tuner: its serial loop, strategy time included, the same for any number "
              "of devices; its fastest strategy per space. `-`: fewer than half the seeds got there "
              "within the largest budget.", ""]
    lines += _walls(result)
    return "\n".join(lines) + "\n"


def _per_space(result: dict, budgets: list[int]) -> list[str]:
    table = summary(result)
    best = {b: kt_best(table, b)[0] for b in budgets}
    lines = ["| space | budget | ours (default) | Kernel Tuner's best |", "| --- | ---: | --- | --- |"]
    index = {(r["space"], r["tool"], r["strategy"], r["budget"]): r for r in result["rows"]}
    for space in result["spaces"]:
        for b in budgets:
            a, k = index.get((space, "tuner", "default", b)), index.get((space, "kernel_tuner", best[b], b))
            lines.append(f"| {space} | {b} | {_cell(a)} | {_cell(k)} ({best[b]}) |")
    return lines


def _walls(result: dict) -> list[str]:
    devices = sorted({w["devices"] for w in result["wall_to_band"]})
    lines = ["| space | " + " | ".join(f"ours, {d} device{'s' if d > 1 else ''}" for d in devices)
             + " | Kernel Tuner (fastest strategy) |", "| --- | " + " | ".join("---:" for _ in devices) + " | --- |"]
    for space in result["spaces"]:
        ours = {w["devices"]: w for w in result["wall_to_band"] if w["space"] == space and w["tool"] == "tuner"}
        theirs = [w for w in result["wall_to_band"] if w["space"] == space and w["tool"] == "kernel_tuner"
                  and w["devices"] == devices[0]]
        fastest = min(theirs, key=lambda w: w["median_s"] if w["median_s"] is not None else float("inf"), default=None)
        kt = f"{_secs(fastest['median_s'])} ({fastest['strategy']})" if fastest else "-"
        lines.append(f"| {space} | " + " | ".join(_secs(ours[d]["median_s"]) if d in ours else "-" for d in devices)
                     + f" | {kt} |")
    return lines


def _cell(r: dict | None) -> str:
    if r is None:
        return "-"
    return f"{_fmt(r['median_ratio'])} / {_fmt(r['worst_ratio'])}, {100 * r['within2pct']:.0f}%"


def _fmt(value: float | None) -> str:
    return "-" if value is None or value == float("inf") else f"{value:.3f}"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def plot(result: dict, traces: dict, spaces: list, path: Path, budget: int) -> None:
    """Best-so-far (median over seeds) against evaluations: our default and Kernel Tuner's best."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strategy, _ = kt_best(summary(result), budget)
    columns = min(3, len(spaces))
    rows = -(-len(spaces) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for ax, space in zip(axes.flat, spaces, strict=False):
        curves = (("tuner", "forest", "tuner (default)"), ("kernel_tuner", strategy, f"Kernel Tuner {strategy}"))
        for tool, name, label in curves:
            runs = [t for t in traces.values() if t.tool == tool and t.strategy == name and t.space == space.name
                    and t.budget == budget and t.devices == 1]
            if runs:
                ax.plot(np.arange(1, budget + 1), _median_curve(runs, space.optimum_s, budget), label=label)
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--", label="optimum")
        ax.axhline(1.02, color="grey", linewidth=0.6, linestyle=":", label="2% band")
        ax.set_yscale("log")
        ax.set_title(space.name.split("@")[-1], fontsize=10)
        ax.set_xlabel("distinct configs measured")
        ax.set_ylabel("best / optimum")
    for ax in list(axes.flat)[len(spaces):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _median_curve(runs: list, optimum: float, budget: int) -> np.ndarray:
    curves = []
    for t in runs:
        values = np.array([v if v is not None else np.inf for v in t.times_s[:budget]], dtype=np.float64)
        values = np.concatenate([values, np.full(budget - len(values), np.inf)])
        curves.append(np.minimum.accumulate(values) / optimum)
    return np.median(np.stack(curves), axis=0)
