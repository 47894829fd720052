"""`tuner export --bundle DIR`: the best configs of one arch and their compiled binaries.

Runs where the database and the compiler are; the bundle it writes (format in
:mod:`tuner.runtime.bundle`) runs where neither is.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

from tuner.errors import UsageError
from tuner.export import Entry, collect
from tuner.kernel_templates import KernelSpec, SpecError, Target, family_of_config, load_spec_file
from tuner.service import Service, to_json
from tuner.workers import backend_for
from tuner.workers.cache import store_atomically

from .bundle import BINARIES, FORMAT, MANIFEST, binary_name


def bundle_arch(entries: list[Entry], arch: str | None) -> str:
    """The arch to bundle: the one asked for, or the database's only one."""
    archs = sorted({entry["arch"] for entry in entries})
    if arch is not None:
        if arch not in archs:
            raise UsageError(f"nothing tuned for arch {arch!r} in this database (it has: "
                             f"{', '.join(archs) or 'nothing'}): pass --arch with one of those")
        return arch
    if len(archs) != 1:
        raise UsageError(f"a bundle is for one arch and this database has "
                         f"{', '.join(archs) or 'none'}: pass --arch")
    return archs[0]


def write_bundle(service: Service, directory: str | Path, arch: str | None = None) -> list[Entry]:
    """Compiles (or takes from the cache) the binary of every best config of ``arch`` and writes
    the bundle to ``directory``; returns the entries bundled."""
    collected = collect(service)
    arch = bundle_arch(collected, arch)
    entries = [entry for entry in collected if entry["arch"] == arch]
    templates = {(s.kernel, s.arch): s.template_path for s in service.studies() if s.template_path}
    target = Target.documented(arch)
    backend = backend_for(target)
    out = Path(directory)
    (out / BINARIES).mkdir(parents=True, exist_ok=True)
    documents = []
    for entry in entries:
        template = templates.get((entry["kernel"], entry["arch"]))
        spec = _spec(entry, template)
        source = spec.render(entry["config"], entry["problem"])
        artifact = backend.compile(source, target)
        if artifact.error is not None or artifact.path is None:
            raise UsageError(f"the best config of {entry['kernel']} for {entry['problem']} does not "
                             f"compile here ({artifact.error}): fix the toolchain and export again")
        name = binary_name(source, backend.name)
        if not (out / name).is_file():
            shutil.copyfile(artifact.path, out / name)
        documents.append({**entry, "template": template, "binary": name})
    manifest = {"format": FORMAT, "arch": arch, "backend": backend.name,
                "compiler": backend.compiler_version(),
                "generated_at": datetime.now(timezone.utc).isoformat(), "entries": documents}
    store_atomically((to_json(manifest, indent=2) + "\n").encode(), out / MANIFEST)
    return entries


def _spec(entry: Entry, template: str | None) -> KernelSpec:
    try:
        if template:
            return load_spec_file(template)
        return family_of_config(entry["kernel"], entry["arch"], entry["config"])
    except SpecError as exc:
        raise UsageError(f"cannot bundle {entry['kernel']}: {exc}") from None

