"""How soon each search reaches the optimum of a recorded space: our samplers against Kernel Tuner's.

    python bench/search_efficiency.py [--spaces DIR] [--seeds 10] [--budgets 20,50,100,200]

On every recorded space of ``--spaces`` (Kernel Tuner cache files: the six exhaustively measured
convolution spaces of ../shared/data/benchmark_hub by default), each of our registered samplers
and each Kernel Tuner strategy (1.5, simulation mode, the same files) runs ``--seeds`` times up
to the largest budget; budgets count distinct configs measured (repeats are free, as Kernel Tuner
serves them from its cache and we from storage). A run's best at a smaller budget is read off
its trace, except for strategies whose schedule depends on the budget (simulated annealing),
which run once per budget.

Reported per space, tool, strategy and budget: the median and worst (over seeds) ratio of the
best found to the space's optimum and the share of seeds within 2%; and the simulated wall-clock
time to the 2% band from the recorded costs, for 1, 8 and 64 measuring devices: ours with
compiles pipelined on CPUS_PER_DEVICE CPUs per device and as many trials in flight, the
sampler's real time included; Kernel Tuner's serial loop (its time does not change with devices).

Writes ``--out``.json (the shape bench/results/search_efficiency.json has), .md and .png, and
keeps finished runs in ``--out``.runs.jsonl, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.search_report import markdown, plot  # noqa: E402
from bench.search_runs import (  # noqa: E402
    CPUS_PER_DEVICE,
    Trace,
    TraceFile,
    run_kernel_tuner,
    run_key,
    run_ours,
    scratch_folder,
    unpacked_cache,
)
from tuner.samplers import DEFAULT, REGISTRY  # noqa: E402
from tuner.workers.replay_space import RecordedSpace, open_recording  # noqa: E402

KT_STRATEGIES = ("random_sample", "genetic_algorithm", "bayes_opt", "pso", "diff_evo", "dual_annealing",
                 "simulated_annealing")
BUDGET_SCALED = {"simulated_annealing"}  # scales its annealing schedule to max_fevals
BAND = 1.02
PIPELINED = f"{DEFAULT}-pipelined"  # the default with as many trials in flight as compile slots


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    spaces = load_spaces(args.spaces)
    budgets = sorted(args.budgets)
    top = budgets[-1]
    runs = TraceFile(Path(args.runs or f"{args.out}.runs.jsonl"))
    scratch = scratch_folder()
    ours = [n for n in args.samplers if n != "none" and _usable(n)]
    rows, walls = [], []
    for space in spaces:
        print(f"{space.name}: {len(space.records)} valid configs, optimum {space.optimum_s * 1e3:.4f} ms", flush=True)
        per_budget: dict[tuple[str, str], dict[int, list[Trace]]] = {}
        for name in ours:
            traces = [runs.get_or_run(run_key("tuner", name, space.name, s, top, 1),
                                      lambda s=s, space=space, name=name: run_ours(space, name, s, top))
                      for s in _seeds(args, name)]
            per_budget[("tuner", name)] = {b: traces for b in budgets}
        for strategy in args.kt if args.kt != ["none"] else []:
            cache = unpacked_cache(space, scratch)
            own = budgets if strategy in BUDGET_SCALED else [top]
            traced = {b: [runs.get_or_run(run_key("kernel_tuner", strategy, space.name, s, b, 1),
                                          lambda s=s, b=b, space=space, cache=cache, strategy=strategy:
                                          run_kernel_tuner(space, cache, strategy, s, b))
                          for s in _seeds(args, strategy)] for b in own}
            per_budget[("kernel_tuner", strategy)] = {b: traced[b if b in traced else top] for b in budgets}
        for (tool, strategy), by_budget in per_budget.items():
            for b in budgets:
                rows.append(row(space, tool, "default" if strategy == DEFAULT and tool == "tuner" else strategy,
                                b, by_budget[b]))
            walls.extend(wall_rows(space, tool, strategy, by_budget[top], args.devices)
                         if tool == "kernel_tuner" else [])
        if DEFAULT in ours:
            for devices in args.devices:
                traces = [runs.get_or_run(run_key("tuner", PIPELINED, space.name, s, top, devices),
                                          lambda s=s, space=space, devices=devices: run_ours(
                                              space, DEFAULT, s, top, devices, in_flight=CPUS_PER_DEVICE * devices,
                                              until_s=BAND * space.optimum_s, label=PIPELINED))
                          for s in _seeds(args, PIPELINED)]
                walls.append(wall_row(space, "tuner", "default", devices, traces))
    if args.kt_from:
        kt_rows, kt_walls = kernel_tuner_rows(args.kt_from, spaces, budgets, skip=set(args.kt))
        rows, walls = rows + kt_rows, walls + kt_walls
    result = {"device": f"replayed on {platform.processor() or platform.machine()} ({platform.node()}), "
                        f"Python {platform.python_version()}",
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "spaces": {s.name: {"optimum": s.optimum_s, "valid": len(s.records)} for s in spaces},
              "rows": rows, "wall_to_band": walls}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    seeds = f"{args.seeds} seeds ({args.first_seed}-{args.first_seed + args.seeds - 1})"
    out.with_suffix(".md").write_text(markdown(result, budgets, seeds, CPUS_PER_DEVICE))
    if not args.no_plot:
        plot(result, runs.traces, spaces, out.with_suffix(".png"), top)
    print(out.with_suffix(".md").read_text())
    return result


def parse(argv: list[str] | None) -> argparse.Namespace:
    here = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spaces", type=Path, nargs="+",
                        default=[here.parent / "shared/data/benchmark_hub/convolution_milo"],
                        help="folders of Kernel Tuner cache files, or recordings (default %(default)s)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds run from here (another range: a check held out from the one tuned on)")
    parser.add_argument("--seeds-for", type=lambda t: {k: int(v) for k, v in (p.split("=") for p in t.split(","))},
                        default={}, metavar="NAME=N,...",
                        help=f"fewer seeds for a slow strategy, ours or Kernel Tuner's "
                             f"(e.g. bayes_opt=5; {PIPELINED}: the wall-clock runs)")
    parser.add_argument("--budgets", type=lambda t: [int(v) for v in t.split(",")], default=[20, 50, 100, 200])
    parser.add_argument("--samplers", type=lambda t: t.split(","), default=list(REGISTRY),
                        help="our samplers, or none (default: every registered one)")
    parser.add_argument("--kt", type=lambda t: t.split(","), default=list(KT_STRATEGIES),
                        help="Kernel Tuner strategies, or none")
    parser.add_argument("--kt-from", type=Path, metavar="JSON",
                        help="Kernel Tuner's rows of the strategies not in --kt from an earlier result of this "
                             "script (its runs do not depend on ours: the same files, seeds and budgets)")
    parser.add_argument("--devices", type=lambda t: [int(v) for v in t.split(",")], default=[1, 8, 64])
    parser.add_argument("--out", default=str(here / "bench/results/search_efficiency"))
    parser.add_argument("--runs", help="where finished runs are kept (default: --out + .runs.jsonl)")
    parser.add_argument("--no-plot", action="store_true")
    return parser.parse_args(argv)


def load_spaces(paths: list[Path]) -> list[RecordedSpace]:
    files = []
    for path in paths:
        files += [path] if path.is_file() else sorted(
            p for p in path.iterdir() if p.name.endswith((".json", ".json.gz")) and "T1" not in p.name)
    if not files:
        raise SystemExit(f"no Kernel Tuner cache files in {' '.join(map(str, paths))}: pass --spaces")
    return [open_recording(f) for f in files]


def kernel_tuner_rows(path: Path, spaces: list[RecordedSpace], budgets: list[int],
                      skip: set[str]) -> tuple[list[dict], list[dict]]:
    """Kernel Tuner's rows and wall-clock rows of an earlier result, for these spaces and budgets,
    but for the strategies in ``skip`` (run now)."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"--kt-from {path}: {exc}; pass a search_efficiency.json this script wrote") from None
    names = {s.name for s in spaces}
    def kept(r: dict) -> bool:
        return r["tool"] == "kernel_tuner" and r["space"] in names and r["strategy"] not in skip

    rows = [r for r in earlier["rows"] if kept(r) and r["budget"] in budgets]
    if not rows:
        raise SystemExit(f"--kt-from {path} has no Kernel Tuner rows for these spaces: drop --kt-from")
    return rows, [w for w in earlier["wall_to_band"] if kept(w)]


def _seeds(args: argparse.Namespace, name: str) -> range:
    return range(args.first_seed, args.first_seed + args.seeds_for.get(name, args.seeds))


def _usable(name: str) -> bool:
    import importlib.util

    needs = REGISTRY[name].needs
    if needs and importlib.util.find_spec(needs) is None:
        print(f"skipping sampler {name}: it needs {needs}", flush=True)
        return False
    return True


def ratios(space: RecordedSpace, traces: list[Trace], budget: int) -> list[float]:
    """Best found within ``budget`` distinct configs over the optimum, per seed (inf: none ran)."""
    found = []
    for t in traces:
        times = [v for v in t.times_s[:budget] if v is not None]
        found.append(min(times) / space.optimum_s if times else float("inf"))
    return found


def row(space: RecordedSpace, tool: str, strategy: str, budget: int, traces: list[Trace]) -> dict:
    found = ratios(space, traces, budget)
    return {"space": space.name, "tool": tool, "strategy": strategy, "budget": budget,
            "median_ratio": _finite(median(found)), "worst_ratio": _finite(max(found)),
            "within2pct": sum(r <= BAND for r in found) / len(found), "seeds": len(found)}


def time_to_band(space: RecordedSpace, trace: Trace) -> float:
    band = BAND * space.optimum_s
    for value, at in zip(trace.times_s, trace.finish_s, strict=True):
        if value is not None and value <= band:
            return at
    return float("inf")


def wall_row(space: RecordedSpace, tool: str, strategy: str, devices: int, traces: list[Trace]) -> dict:
    times = [time_to_band(space, t) for t in traces]
    return {"space": space.name, "tool": tool, "strategy": strategy, "devices": devices,
            "median_s": _finite(median(times)), "reached": sum(t != float("inf") for t in times) / len(times)}


def wall_rows(space: RecordedSpace, tool: str, strategy: str, traces: list[Trace], devices: list[int]) -> list[dict]:
    """Kernel Tuner's loop is serial: the same time for any number of devices."""
    return [wall_row(space, tool, strategy, d, traces) for d in devices]


def _finite(value: float) -> float | None:
    return None if value == float("inf") else value


if __name__ == "__main__":
    main()
