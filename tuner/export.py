"""`tuner export`: the best config of every tuned (kernel, arch, problem), as JSON and as a C header.

A runtime that cannot ask the service picks its config from the header: a table of tuned
problems and their configs per (kernel, arch), and a lookup function that applies the service's
nearest-problem rule (:func:`tuner.problems.problem_distance`):

* a tuned problem is a candidate when every non-size parameter (flags, dtype names) equals the
  asked one; a parameter is a size when both values are positive integers;
* its distance is the sum over sizes of ``|log2(asked / tuned)|`` (doubling one dimension costs 1);
* the nearest candidate wins, ties going to the faster config; no candidate gives ``NULL``.

For a kernel ``attention`` on arch ``cpu`` the header defines ``tuner_attention_cpu_problem``
(one field per problem parameter), ``tuner_attention_cpu_config`` (one field per config
parameter, plus ``latency_s`` and ``rel_l2``) and::

    const tuner_attention_cpu_config *tuner_attention_cpu_lookup(
        const tuner_attention_cpu_problem *problem, double *distance /* may be NULL */);

Booleans are ``int`` (0/1), integers ``long long``, other numbers ``double``, texts ``const char *``.
The header needs ``<math.h>`` (link with ``-lm``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tuner.errors import UsageError
from tuner.kernel_templates.spec import canonical_json
from tuner.service import NotFound, Service, to_json

FORMAT = "tuner-best-configs/1"
# One best-config answer (``BestAnswer.document()``: the shape `tuner best` and the API give).
Entry = dict[str, Any]


@dataclass(frozen=True)
class ErrorBounds:
    """The largest relative L2 error an exported config may have: one for every kernel
    (``default``, ``None`` for no bound) and any kernel's own (``per_kernel``)."""

    default: float | None = None
    per_kernel: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, texts: Iterable[str]) -> ErrorBounds:
        """From ``--max-error`` texts: ``1e-3`` (every kernel) or ``KERNEL=1e-2`` (one kernel)."""
        default, per_kernel = None, {}
        for text in texts:
            kernel, sep, number = text.rpartition("=")
            try:
                bound = float(number)
            except ValueError:
                bound = math.nan
            if not math.isfinite(bound) or bound < 0 or (sep and not kernel.strip()):
                raise UsageError(f"--max-error {text!r}: write a bound such as 1e-3, or "
                                 f"KERNEL=BOUND such as attention=1e-3")
            if sep:
                per_kernel[kernel.strip()] = bound
            else:
                default = bound
        return cls(default, per_kernel)

    def of(self, kernel: str) -> float | None:
        return self.per_kernel.get(kernel, self.default)


def collect(service: Service, bounds: ErrorBounds = ErrorBounds()) -> list[Entry]:
    """One entry per distinct (kernel, arch, problem) that some study tuned with an ok trial
    within the kernel's error bound."""
    entries: dict[tuple[str, str, str], Entry] = {}
    for study in service.studies():
        key = (study.kernel, study.arch, canonical_json(study.problem))
        if key in entries:
            continue
        try:
            answer = service.best(kernel=study.kernel, arch=study.arch, problem=study.problem,
                                  max_error=bounds.of(study.kernel))
        except NotFound:
            continue  # no ok trial (within the bound) yet: nothing to export for this problem
        if answer.exact:
            entries[key] = answer.document()
    return [entries[key] for key in sorted(entries)]


def export_json(entries: Iterable[Entry]) -> str:
    document = {
        "format": FORMAT,
        "generated_at": datetime.now(timezone.utc).isoformat(),
        "nearest_rule": "non-size parameters equal; distance = sum over size parameters "
                        "(positive integers) of |log2(asked/tuned)|; ties to the faster config",
        "entries": list(entries),
    }
    return to_json(document, indent=2) + "\n"


def write_exports(service: Service, json_path: str | Path | None,
                  header_path: str | Path | None, bounds: ErrorBounds = ErrorBounds()) -> list[Entry]:
    """Writes the JSON file and the C header (either may be ``None``); returns the entries."""
    outputs = [(Path(p), render) for p, render in ((json_path, export_json), (header_path, to_header))
               if p is not None]
    for path, _ in outputs:  # both checked before either is written
        if not path.parent.is_dir():
            raise UsageError(f"cannot write {path}: folder {path.parent} does not exist; "
                             f"create it or choose another path")
        if path.is_dir():
            raise UsageError(f"cannot write {path}: it is a folder; name a file")
    entries = collect(service, bounds)
    for path, render in outputs:
        try:
            path.write_text(render(entries))
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}; choose another path "
                             f"or free disk space") from None
    return entries


# ---- the C header ----

def to_header(entries: list[Entry]) -> str:
    groups: dict[tuple[str, str], list[Entry]] = {}
    for entry in entries:
        groups.setdefault((entry["kernel"], entry["arch"]), []).append(entry)
    parts = [HEADER_PROLOGUE]
    parts.extend(c_group(identifier("tuner", kernel, arch), group)
                 for (kernel, arch), group in groups.items())
    parts.append("#endif /* TUNER_BEST_CONFIGS_H */\n")
    return "\n".join(parts)


HEADER_PROLOGUE = """\
/* Best kernel configs exported by `tuner export`; generated, do not edit.
 * Lookup rule (the service's): non-size parameters must be equal; distance = sum over size
 * parameters (both values positive integers) of |log2(asked / tuned)|; the nearest tuned
 * problem wins, ties to the faster config; NULL when none is comparable. Link with -lm. */
#ifndef TUNER_BEST_CONFIGS_H
#define TUNER_BEST_CONFIGS_H

#include <math.h>
#include <stddef.h>
#include <string.h>

/* Adds the distance of one size to *d; for a non-size value, whether the two are equal. */
static inline int tuner_int_term(long long asked, long long tuned, double *d) {
    if (asked > 0 && tuned > 0) {
        *d += fabs(log2((double)asked / (double)tuned));
        return 1;
    }
    return asked == tuned;
}
"""


def c_group(prefix: str, group: list[Entry]) -> str:
    """The types, tables and lookup function of one (kernel, arch)."""
    problem_names = same_keys(group, "problem", prefix)
    config_names = same_keys(group, "config", prefix)
    problem_types = {n: c_type(n, [e["problem"][n] for e in group]) for n in problem_names}
    config_types = {n: c_type(n, [e["config"][n] for e in group]) for n in config_names}
    config_fields = [*config_names, "latency_s", "rel_l2"]
    config_types |= {"latency_s": "double", "rel_l2": "double"}
    rows_p = "\n".join(c_row([e["problem"][n] for n in problem_names]) for e in group)
    rows_c = "\n".join(c_row([e["config"][n] for n in config_names] + [e["latency_s"], e["rel_l2"]])
                       for e in group)
    return "\n".join([
        c_struct(f"{prefix}_problem", problem_names, problem_types),
        c_struct(f"{prefix}_config", config_fields, config_types),
        f"static const {prefix}_problem {prefix}_problems[{len(group)}] = {{\n{rows_p}\n}};",
        f"static const {prefix}_config {prefix}_configs[{len(group)}] = {{\n{rows_c}\n}};\n",
        c_lookup(prefix, len(group), problem_names, problem_types),
    ])


def same_keys(group: list[Entry], field: str, prefix: str) -> list[str]:
    names = [sorted(entry[field]) for entry in group]
    if any(n != names[0] for n in names):
        raise UsageError(f"{prefix}: stored {field}s have different parameters (the template "
                         f"changed between studies); export from a database of one version")
    return names[0]


def c_type(name: str, values: list[Any]) -> str:
    kinds = {"int" if isinstance(v, bool) else "long long" if isinstance(v, int)
             else "double" if isinstance(v, float) else "const char *" for v in values}
    if len(kinds) != 1:
        raise UsageError(f"parameter {name!r} has values of different types ({sorted(kinds)}): "
                         f"cannot give it one C type")
    return kinds.pop()


def c_struct(name: str, fields: list[str], types: dict[str, str]) -> str:
    body = "".join(f"    {types[f]} {identifier(f)};\n" for f in fields)
    return f"typedef struct {{\n{body}}} {name};\n"


def c_row(values: list[Any]) -> str:
    return "    {" + ", ".join(c_literal(v) for v in values) + "},"


def c_lookup(prefix: str, count: int, names: list[str], types: dict[str, str]) -> str:
    checks = []
    for name in names:
        field = identifier(name)
        if types[name] == "long long":
            checks.append(f"tuner_int_term(problem->{field}, t->{field}, &d)")
        elif types[name] == "const char *":
            checks.append(f"strcmp(problem->{field}, t->{field}) == 0")
        else:
            checks.append(f"problem->{field} == t->{field}")
    condition = "\n            && ".join(checks) or "1"
    return f"""\
static inline const {prefix}_config *
{prefix}_lookup(const {prefix}_problem *problem, double *distance) {{
    const {prefix}_config *best = NULL;
    double best_d = INFINITY, best_latency = INFINITY;
    for (size_t i = 0; i < {count}; ++i) {{
        const {prefix}_problem *t = &{prefix}_problems[i];
        double d = 0.0;
        if (!({condition}))
            continue;
        double latency = {prefix}_configs[i].latency_s;
        if (d < best_d || (d == best_d && latency < best_latency)) {{
            best = &{prefix}_configs[i];
            best_d = d;
            best_latency = latency;
        }}
    }}
    if (distance != NULL)
        *distance = best_d;
    return best;
}}
"""


def identifier(*parts: str) -> str:
    """A C identifier from names that may hold any character."""
    text = "_".join(re.sub(r"[^A-Za-z0-9_]", "_", part) for part in parts)
    return f"_{text}" if text[:1].isdigit() else text


def c_literal(value: Any) -> str:
    if value is None:
        return "NAN"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return f"{value}LL"
    if isinstance(value, float):
        if math.isnan(value):
            return "NAN"
        if math.isinf(value):
            return "INFINITY" if value > 0 else "-INFINITY"
        return repr(value)
    return c_string(str(value))


def c_string(text: str) -> str:
    """A C string literal: printable ASCII kept, every other byte of the UTF-8 as octal."""
    out = []
    for byte in text.encode():
        char = chr(byte)
        out.append(char if 32 <= byte < 127 and char not in '"\\?' else f"\\{byte:03o}")
    return '"' + "".join(out) + '"'
