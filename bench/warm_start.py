"""Warm start against cold start: evaluations to the 2% band on recorded spaces.

    python bench/warm_start.py [--spaces DIR] [--seeds 10]

Two sets of pairs, the default sampler throughout, budget = the space's valid configs (at most
200), each run stopped once a config within 2% of the target's optimum latency is measured:

- the attention template's exhaustive H100 studies (bench/results/attention_tuned.db.gz, 28
  shapes): each of ``--targets`` shapes starts from the stored fronts of the nearest of the other
  shapes (same kernel and arch; non-size parameters equal; ``best``'s distance), exactly as
  ``tuner run`` picks them (``tuner.warm_start.nearest_first``);
- the convolution spaces of ``--spaces`` (same kernel, another GPU): each GPU starts from the
  best configs of its partner GPU's space.

Writes bench/results/warm_start.json and .md: per target, the median (over seeds) evaluations to
the band, cold and warm; the warm start counts its own enqueued trials.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from statistics import median

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.search_runs import TraceFile, run_key, run_ours  # noqa: E402
from tuner.pareto import non_dominated  # noqa: E402
from tuner.samplers import DEFAULT  # noqa: E402
from tuner.warm_start import LIMIT, nearest_first  # noqa: E402
from tuner.workers import Status  # noqa: E402
from tuner.workers.replay_space import RecordedSpace, load_tuner_studies, open_recording  # noqa: E402

HERE = Path(__file__).resolve().parents[1]
ATTENTION = HERE / "bench/results/attention_tuned.db.gz"
BAND = 1.02
# each convolution GPU and the partner it starts from: the nearest kind of GPU
PARTNERS = {"A100": "A6000", "A4000": "A6000", "A6000": "A4000", "MI250X": "W7800", "W6600": "W7800",
            "W7800": "W6600"}
ATTENTION_TARGETS = ("attention-sm_90a-B16-H32-S512-D64-causal0-dtypefp16",
                     "attention-sm_90a-B16-H32-S512-D128-causal1-dtypefp16",
                     "attention-sm_90a-B2-H32-S4096-D64-causal1-dtypefp16",
                     "attention-sm_90a-B2-H96-S4096-D128-causal0-dtypefp16",
                     "attention-sm_90a-B16-H96-S512-D64-causal1-dtypebf16",
                     "attention-sm_90a-B2-H96-S4096-D64-causal0-dtypebf16")


def configs_of(space: RecordedSpace) -> tuple[list[dict], list[dict]]:
    """A fully tuned space's stored front (latency against error) and its fastest configs."""
    ok = sorted(((k, r) for k, r in space.records.items() if r.status is Status.OK), key=lambda kr: kr[1].time_s)
    points = np.array([[r.time_s, r.rel_l2 or 0.0] for _, r in ok]).reshape(-1, 2)
    front = [space.config(k) for (k, _), on in zip(ok, non_dominated(points), strict=True) if on]
    return front, [space.config(k) for k, _ in ok[:LIMIT]]


def evaluations_to_band(space: RecordedSpace, seed: int, warm: list[dict], runs: TraceFile) -> float:
    """``runs``: finished runs, these and bench/search_efficiency.py's; a cold run there is the same
    run (the same sampler, seed and budget; stopping at the band changes nothing before it)."""
    budget = min(200, len(space.records))
    label = f"{DEFAULT}-warm" if warm else DEFAULT
    trace = runs.get_or_run(run_key("tuner", label, space.name, seed, budget, 1),
                            lambda: run_ours(space, DEFAULT, seed, budget, until_s=BAND * space.optimum_s,
                                             warm=warm, label=label))
    for n, value in enumerate(trace.times_s, start=1):
        if value is not None and value <= BAND * space.optimum_s:
            return n
    return float("inf")


def compare(target: RecordedSpace, sources: list[RecordedSpace], seeds: int, label: str, runs: TraceFile) -> dict:
    by_key = {id(s): s for s in sources}
    tuned = [(s.problem, s.optimum_s, id(s)) for s in sources]
    warm = nearest_first(target.problem, tuned, lambda key: configs_of(by_key[key]))
    valid = set(target.records)
    warm = [c for c in warm if target.key(c) in valid]
    cold_runs = [evaluations_to_band(target, s, [], runs) for s in range(seeds)]
    warm_runs = [evaluations_to_band(target, s, warm, runs) for s in range(seeds)]
    row = {"target": target.name, "from": label, "valid": len(target.records), "warm_configs": len(warm),
           "cold_median": _finite(median(cold_runs)), "warm_median": _finite(median(warm_runs)),
           "cold": [_finite(v) for v in cold_runs], "warm": [_finite(v) for v in warm_runs]}
    print(f"{target.name} <- {label}: cold {row['cold_median']}, warm {row['warm_median']}", flush=True)
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spaces", type=Path, default=HERE.parent / "shared/data/benchmark_hub/convolution_milo")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--targets", type=lambda t: t.split(","), default=list(ATTENTION_TARGETS))
    parser.add_argument("--runs", type=Path,
                        help="finished runs (default: --out + .runs.jsonl); bench/search_efficiency.py's "
                        "serve as the cold starts of the convolution spaces")
    parser.add_argument("--out", default=str(HERE / "bench/results/warm_start"))
    args = parser.parse_args(argv)
    runs = TraceFile(args.runs or Path(f"{args.out}.runs.jsonl"))
    rows = []
    studies = load_tuner_studies(ATTENTION)
    for target in (s for s in studies if s.name in args.targets):
        others = [s for s in studies if s.name != target.name]
        rows.append(compare(target, others, args.seeds, "nearest tuned shapes", runs))
    if args.spaces.is_dir():
        gpus = {p.name.split(".")[0]: p for p in args.spaces.glob("*.json.gz")}
        for gpu, partner in PARTNERS.items():
            if gpu in gpus and partner in gpus:
                rows.append(compare(open_recording(gpus[gpu]), [open_recording(gpus[partner])], args.seeds,
                                    f"{partner} (another GPU)", runs))
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "seeds": args.seeds, "band": BAND, "rows": rows}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(out.with_suffix(".md").read_text())
    return result


def markdown(result: dict) -> str:
    lines = [f"# Warm start against cold start ({result['date']})", "",
             f"Evaluations (distinct configs measured, the warm start's own enqueued configs included) until one "
             f"within {round(100 * (result['band'] - 1))}% of the target's optimum latency; median over "
             f"{result['seeds']} seeds; the default sampler; `-`: not reached within the budget.", "",
             "| target | starts from | valid | warm configs | cold | warm | warm / cold |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in result["rows"]:
        ratio = r["warm_median"] / r["cold_median"] if r["warm_median"] and r["cold_median"] else None
        lines.append(f"| {r['target']} | {r['from']} | {r['valid']} | {r['warm_configs']} | {_n(r['cold_median'])} | "
                     f"{_n(r['warm_median'])} | {'-' if ratio is None else f'{ratio:.2f}'} |")
    ratios = [r["warm_median"] / r["cold_median"] for r in result["rows"] if r["warm_median"] and r["cold_median"]]
    if ratios:
        lines += ["", f"Median over targets of warm / cold: {median(ratios):.2f}; targets where warm needs at most "
                      f"half the evaluations of cold: {sum(x <= 0.5 for x in ratios)} of {len(result['rows'])}."]
    return "\n".join(lines) + "\n"


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _finite(value: float) -> float | None:
    return None if value == float("inf") else value


if __name__ == "__main__":
    main()
