"""Inlining the templates' own headers (``#include "hopper.cuh"``) into a rendered source.

Inlined at render time rather than found through ``-I`` at compile time: the source then carries
every line that decides its binary, so its digest (the compile cache's and the trial store's key)
changes when a header does, and any compiler (nvcc, NVRTC) builds it from the text alone.
"""

from __future__ import annotations

import re
from importlib.resources import files

_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([A-Za-z0-9_.]+)"[ \t]*$', re.MULTILINE)
_PRAGMA_ONCE = re.compile(r"^[ \t]*#[ \t]*pragma[ \t]+once[ \t]*$", re.MULTILINE)


def inline_headers(code: str) -> str:
    """``code`` with each quoted include of a header beside the templates replaced by its text
    (recursively; a header included twice is inlined once)."""
    seen: set[str] = set()

    def expand(text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in seen:
                return ""
            seen.add(name)
            header = files(__package__).joinpath(name)
            if not header.is_file():
                raise FileNotFoundError(f"{name} is not a header of tuner.kernel_templates")
            return expand(_PRAGMA_ONCE.sub("", header.read_text()))

        return _INCLUDE.sub(replace, text)

    return expand(code)
