"""Checks in front of routing: the token on the OpenAPI documents, no slash inside a study name.

* FastAPI serves ``/openapi.json``, ``/docs`` and ``/redoc`` outside the routers, where the
  routers' token dependency never runs: with ``--token`` they need it like every API route.
* Routing sees the decoded path, so ``/studies/x%2Ffront`` would be read as the front of study
  ``x``. Study names hold no ``/`` (:mod:`tuner.names`): an encoded slash in a path under
  ``/studies/`` can only be part of a name, and is refused.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from .deps import authorized

DOCUMENT_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
STUDY_PREFIXES = (b"/api/v1/studies/", b"/studies/")
TOKEN_NEEDED = ("this server needs its token: send 'Authorization: Bearer <token>' "
                "or open /login?token=<token> in the browser")
SLASH_IN_NAME = ("study names hold no '/': the %2F in this path cannot name a study "
                 "(list the studies at /api/v1/studies)")


class Guards:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                await _send_json(send, *refusal)
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _refusal(scope: Scope) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        if scope["path"] in DOCUMENT_PATHS:
            token = scope["app"].state.settings.token
            if not authorized(Request(scope), token):
                return 401, TOKEN_NEEDED, [(b"www-authenticate", b"Bearer")]
        raw = scope.get("raw_path") or scope["path"].encode()
        if raw.startswith(STUDY_PREFIXES) and b"%2f" in raw.lower():
            return 422, SLASH_IN_NAME, []
        return None


async def _send_json(send: Send, status: int, detail: str,
                     headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})
