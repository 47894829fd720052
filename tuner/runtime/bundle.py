"""The bundle format (`tuner export --bundle DIR`) and answers read from one.

A bundle is a folder for one arch, loadable with no compiler and no database::

    DIR/bundle.json                  format, arch, backend, compiler, and one entry per tuned
                                     (kernel, problem): its config, latency, error, provenance
                                     and the file of its binary
    DIR/binaries/<code digest>.cubin  (.so for the CPU backend) one per distinct rendered code

Binaries are named by :meth:`Source.code_digest`, which covers what decides the binary and no
problem size that only reaches the launch (grid, scalars). A call whose problem was not tuned
renders the nearest entry's config for its own problem; where that gives the same code the
bundled binary runs it, and where it does not the bundle has no answer for it.

Reading a bundle imports neither SQLAlchemy nor any compiler wrapper.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuner.kernel_templates import KernelSpec, Source, Target, canonical_json
from tuner.problems import nearest_problem

from .answers import Answers, Choice, NoAnswer

FORMAT = "tuner-runtime-bundle/1"
MANIFEST = "bundle.json"
BINARIES = "binaries"
SUFFIX = {"cuda": ".cubin", "cpu": ".so"}
_ENTRY_KEYS = ("kernel", "problem", "config", "latency_s", "rel_l2", "binary")


class BundleError(Exception):
    """A folder that is not a readable bundle; the message says what to do."""


def binary_name(source: Source, backend: str) -> str:
    """The bundle-relative path of the binary of ``source``."""
    return f"{BINARIES}/{source.code_digest()}{SUFFIX[backend]}"


def read_manifest(directory: Path) -> dict[str, Any]:
    """The bundle's manifest, checked; BundleError for anything else."""
    path = directory / MANIFEST
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(f"{directory} is not a bundle (no {MANIFEST}): write one with "
                          f"`tuner export --bundle {directory}`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} cannot be read as JSON ({exc}): export the bundle again") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, dict) else None
        raise BundleError(f"{path} has format {found!r}, not {FORMAT!r}: export it again with "
                          f"this tuner")
    for key in ("arch", "backend", "entries"):
        if key not in document:
            raise BundleError(f"{path} lacks {key!r}: export the bundle again")
    if document["backend"] not in SUFFIX or not isinstance(document["entries"], list):
        raise BundleError(f"{path} names an unknown backend or has no entry list: export it again")
    for entry in document["entries"]:
        if not isinstance(entry, dict) or any(key not in entry for key in _ENTRY_KEYS):
            raise BundleError(f"{path} has an entry without {', '.join(_ENTRY_KEYS)}: export it again")
    return document


class BundleAnswers(Answers):
    """Answers from an exported bundle: the same nearest-problem rule as the service, over the
    bundle's entries, and the bundled binaries. Never compiles."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        document = read_manifest(self.directory)
        self.arch: str = document["arch"]
        self.backend: str = document["backend"]
        self._entries: list[dict[str, Any]] = document["entries"]

    def choose(self, kernel: str, arch: str, problem: dict[str, Any],
               max_error: float | None) -> Choice:
        if arch != self.arch:
            raise NoAnswer(f"bundle {self.directory} is for {self.arch}, not {arch}: export one "
                           f"for {arch} with `tuner export --bundle DIR --arch {arch}`")
        fitting = [e for e in self._entries if e["kernel"] == kernel
                   and (max_error is None or (e["rel_l2"] is not None and e["rel_l2"] <= max_error))]
        key = canonical_json(problem)
        exact = next((e for e in fitting if canonical_json(e["problem"]) == key), None)
        found = ((exact, 0.0) if exact is not None else
                 nearest_problem(problem, ((e["problem"], _latency(e), e) for e in fitting)))
        if found is None:
            bound = "" if max_error is None else f" within max_error {max_error:g}"
            raise NoAnswer(f"bundle {self.directory} holds no config of {kernel}{bound} for this "
                           f"problem or one like it (same dtype and flags)")
        entry, distance = found
        return Choice(config=dict(entry["config"]), tuned_problem=dict(entry["problem"]),
                      exact=entry is exact, distance=distance, latency_s=entry["latency_s"],
                      rel_l2=entry["rel_l2"], origin=f"bundle {self.directory}")

    def binary(self, spec: KernelSpec, source: Source, target: Target) -> Path:
        path = self.directory / binary_name(source, self.backend)
        if not path.is_file():
            raise NoAnswer(f"bundle {self.directory} has no binary of this config rendered for "
                           f"this problem (it holds those of the tuned problems only): tune this "
                           f"problem and export the bundle again")
        return path


def _latency(entry: dict[str, Any]) -> float:
    latency = entry["latency_s"]
    return float("inf") if latency is None else latency
