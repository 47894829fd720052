"""One rule for the names users give things, checked wherever a name enters (CLI, API, Store).

A study name is a path segment of the API and the dashboard, a file-name-like token in logs
and exports: letters, digits and ``_ . , : = + @ -``, starting with a letter, digit or ``_``,
at most 200 characters. No ``/`` (``/studies/x%2Ffront`` would otherwise read as the front of
``x``), no spaces, no control characters. Parameter names (a template's knobs and problem
parameters, the ``param=`` and ``shape=`` filters) are identifiers: they become C struct
fields in exports and keys of JSON paths in queries.
"""

from __future__ import annotations

import re

STUDY_NAME_MAX = 200
STUDY_NAME = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_.,:=+@-]{{0,{STUDY_NAME_MAX - 1}}}")
PARAM_NAME_MAX = 64
PARAM_NAME = re.compile(rf"[A-Za-z_][A-Za-z0-9_]{{0,{PARAM_NAME_MAX - 1}}}")
# The same rules as patterns for request validation (FastAPI, JSON schema).
STUDY_NAME_PATTERN = f"^{STUDY_NAME.pattern}$"
PARAM_NAME_PATTERN = f"^{PARAM_NAME.pattern}$"


def _shown(name: str) -> str:
    return repr(name if len(name) <= 60 else name[:57] + "...")


def check_study_name(name: str) -> None:
    """Raises ValueError, saying what a name may hold, when ``name`` breaks the rule."""
    if not STUDY_NAME.fullmatch(name):
        raise ValueError(f"study name {_shown(name)} is not allowed: use 1-{STUDY_NAME_MAX} "
                         f"letters, digits and _ . , : = + @ - (no '/', spaces or control "
                         f"characters), starting with a letter, digit or _")


def check_param_name(name: str, what: str = "parameter") -> None:
    """Raises ValueError when ``name`` is not an identifier of at most 64 characters."""
    if not PARAM_NAME.fullmatch(name):
        raise ValueError(f"{what} name {_shown(name)} is not allowed: use an identifier "
                         f"(letters, digits and _, not starting with a digit, at most "
                         f"{PARAM_NAME_MAX} characters)")
