"""Stable keys that decide when stored rows describe the same thing."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from tuner.kernel_templates.spec import canonical_json

# Keys of a worker's environment fingerprint that name the machine, not what it measured with:
# two hosts with the same device and software give comparable timings.
HOST_KEYS = frozenset({"host", "hostname", "ray_node"})


def env_key(environment: Mapping[str, Any]) -> str:
    """Hash of the device and software versions in ``environment`` (not the host name).

    A measurement is reused only when this key matches, so a new driver, compiler or device
    is measured afresh.
    """
    kept = {k: v for k, v in environment.items() if k not in HOST_KEYS}
    return hashlib.sha256(canonical_json(kept).encode()).hexdigest()[:32]


def problem_key(problem: Mapping[str, Any]) -> str:
    """The canonical text of a problem: equal problems get equal keys whatever their dict order."""
    return canonical_json(problem)
