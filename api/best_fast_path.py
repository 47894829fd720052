"""A fast path for repeated best-config requests: an ASGI middleware in front of FastAPI.

A URL answered before (same query string) and still fresh (the write marker was checked within
``best_recheck_s``) is answered from the best cache without routing, dependency resolution or
parameter validation; everything else (a new query, a due marker check) goes through the
validated route, which fills the cache for the next time. Token checks still apply.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from .best_cache import BestCache
from .deps import authorized

BEST_PATH = "/api/v1/best"


def raw_key(query_string: bytes) -> tuple[str, bytes]:
    """The cache key of a URL's exact query string (beside the route's canonical keys)."""
    return ("raw", query_string)


class BestFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == BEST_PATH and scope["method"] == "GET":
            answer = self._cached(scope)
            if answer is not None:
                await send({"type": "http.response.start", "status": answer.status_code,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(answer.body)).encode())]})
                await send({"type": "http.response.body", "body": answer.body})
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _cached(scope: Scope):
        state = scope["app"].state
        cache: BestCache | None = getattr(state, "best_cache", None)
        if cache is None or cache.due() or not authorized(Request(scope), state.settings.token):
            return None
        return cache.get(raw_key(scope["query_string"]))
