"""Shared dependencies of the routes: the service, the settings, the token check, the best cache.

They are ``async`` because none of them blocks: FastAPI runs a plain ``def`` dependency in its
thread pool, a hop per request that costs the cached best-config endpoint most of its speed.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import HTTPException, Path, Request, status
from pydantic import StringConstraints

from tuner.names import STUDY_NAME_MAX, STUDY_NAME_PATTERN
from tuner.service import Service, name_values

from .settings import Settings

TOKEN_COOKIE = "tuner_token"


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_service(request: Request) -> Service:
    return request.app.state.service


def authorized(request: Request, expected: str | None) -> bool:
    """Whether a request may pass: no token configured, or it carries the token."""
    if expected is None:
        return True
    header = request.headers.get("authorization", "")
    given = header[len("Bearer "):] if header.startswith("Bearer ") else request.cookies.get(TOKEN_COOKIE, "")
    return secrets.compare_digest(given.encode(), expected.encode())


async def require_token(request: Request) -> None:
    if not authorized(request, request.app.state.settings.token):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            "this server needs its token: send 'Authorization: Bearer <token>' "
                            "or open /login?token=<token> in the browser",
                            headers={"WWW-Authenticate": "Bearer"})


# Validated request values. Control characters never name anything stored, and PostgreSQL
# refuses NUL in text: they are rejected here with a 422 rather than reaching the database.
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
# Study names follow the one rule of tuner.names, as the CLI and the Store check it.
StudyName = Annotated[str, Path(min_length=1, max_length=STUDY_NAME_MAX, pattern=STUDY_NAME_PATTERN,
                                description="the study's name (letters, digits, _ . , : = + @ -)")]
# One NAME=VALUE text of a repeatable query parameter (``shape``, ``param``): a name without "="
# or spaces at its ends, "=", a value; printable throughout. In the OpenAPI schema as this pattern.
ASSIGNMENT = r"^[^\s=\x00-\x1f\x7f][^=\x00-\x1f\x7f]*=[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
Assignment = Annotated[str, StringConstraints(min_length=3, max_length=200, pattern=ASSIGNMENT)]
TrialNumber = Annotated[int, Path(ge=0, le=2**31 - 1, description="the trial's number in its study")]


def assignments(values: list[str], what: str) -> dict[str, str]:
    """``NAME=VALUE`` texts of the repeatable query parameter ``what`` as a mapping; a
    malformed one is a 422 (a :class:`tuner.errors.UsageError`) that shows the form."""
    return name_values(values, what, f"{what}=block_m=64")
