"""Where a kernel's warps wait, instruction by instruction, from ncu's source page of one launch
(``ncu -i REPORT --page source --print-source sass --csv`` of a report with SourceCounters):
the instructions with the most warp-stall samples, and the samples summed by opcode.

    python3 bench/sass_stalls.py LAUNCH_sass.csv [--top 40]
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tuner.workers.sass import opcode  # noqa: E402


def rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header and the instruction rows of the CSV (ncu may print lines before the header)."""
    lines = list(csv.reader(path.read_text(errors="replace").splitlines()))
    for index, line in enumerate(lines):
        if any("Source" == cell.strip() for cell in line):
            return line, [r for r in lines[index + 1:] if len(r) == len(line)]
    raise SystemExit(f"{path}: no header with a Source column; run ncu with --page source --csv")


def number(cell: str) -> float:
    try:
        return float(cell.replace(",", ""))
    except ValueError:
        return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", type=Path)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    header, table = rows(args.csv)
    source = header.index("Source")
    samples = next((i for i, name in enumerate(header) if "Sampling (All" in name), None)
    if samples is None:
        raise SystemExit(f"{args.csv}: no warp-stall sampling column in {header}: collect SourceCounters")
    total = sum(number(r[samples]) for r in table) or 1.0
    by_opcode: Counter[str] = Counter()
    for r in table:
        by_opcode[opcode(r[source]).split(".")[0] or "?"] += number(r[samples])
    print(f"{args.csv.name}: {len(table)} instructions, {total:.0f} stall samples")
    print("by opcode:", ", ".join(f"{op} {100 * n / total:.1f}%" for op, n in by_opcode.most_common(16)))
    extra = [i for i, name in enumerate(header) if (name.startswith("stall_") or "Stall" in name) and i != samples]
    for r in sorted(table, key=lambda r: -number(r[samples]))[: args.top]:
        detail = " ".join(f"{header[i]}={r[i]}" for i in extra if number(r[i]))
        print(f"{100 * number(r[samples]) / total:5.1f}%  {r[0]:>8}  {r[source][:70]:70}  {detail[:160]}")


if __name__ == "__main__":
    main()
