"""The FastAPI application: REST under /api/v1, the dashboard, OpenAPI docs at /docs and /redoc.

Nothing here compiles or runs code sent over HTTP: every route reads the database through
:class:`tuner.service.Service`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from tuner.db import StoreError
from tuner.errors import UsageError
from tuner.service import NotFound, Service

from . import routes_best, routes_dashboard, routes_health, routes_kernels, routes_studies, routes_trials
from .best_cache import BestCache
from .best_fast_path import BestFastPath
from .deps import require_token
from .guards import Guards
from .render import STATIC_DIR
from .schemas import ErrorOut
from .settings import Settings

API_PREFIX = "/api/v1"
log = logging.getLogger(__name__)


def create_app(service_factory: Callable[[], Service], settings: Settings | None = None) -> FastAPI:
    """The app over the service ``service_factory`` builds once, at startup."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = service_factory()
        app.state.service = service
        app.state.best_cache = BestCache(marker=service.write_marker,
                                         recheck_s=settings.best_recheck_s)
        yield

    # FastAPIOffline: /docs and /redoc with their assets served locally (no CDN: no internet).
    app = FastAPIOffline(title="tuner", version="1", lifespan=lifespan,
                  description="Autotuning results: kernels, studies, trials, Pareto fronts and best configs.")
    app.state.settings = settings
    guarded = [Depends(require_token)]
    # Every 422 is one line (:func:`add_error_handlers`), documented as such in place of
    # FastAPI's list of validation errors.
    invalid: dict[int | str, dict[str, Any]] = {
        422: {"model": ErrorOut, "description": "a malformed request: says what to fix"}}
    # Trials before studies: their routes are longer matches of /studies/{name:path}.
    for module in (routes_kernels, routes_trials, routes_studies, routes_best):
        app.include_router(module.router, prefix=API_PREFIX, dependencies=guarded, responses=invalid)
    app.include_router(routes_health.router)
    app.include_router(routes_dashboard.router)
    app.include_router(routes_dashboard.pages)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(BestFastPath)
    app.add_middleware(Guards)  # outermost: the token on /docs, no encoded '/' in study names
    add_error_handlers(app)
    return app


def add_error_handlers(app: FastAPI) -> None:
    """Service errors as JSON with their one-line message: what is missing, or what to fix."""

    def handler(code: int) -> Callable[[Request, Exception], JSONResponse]:
        def respond(request: Request, exc: Exception) -> JSONResponse:
            if code >= 500:
                log.warning("%s %s failed: %s", request.method, request.url.path, exc)
            return JSONResponse({"detail": str(exc)}, status_code=code)
        return respond

    def invalid_request(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": validation_message(exc)},
                            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(NotFound, handler(status.HTTP_404_NOT_FOUND))
    app.add_exception_handler(UsageError, handler(status.HTTP_422_UNPROCESSABLE_CONTENT))
    # StoreError messages never hold a password (the Store masks it).
    app.add_exception_handler(StoreError, handler(status.HTTP_503_SERVICE_UNAVAILABLE))


def validation_message(exc: Exception) -> str:
    """FastAPI's validation errors as one line: where, what was wrong (the first of them)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    if not errors:
        return str(exc)
    first = errors[0]
    where = " ".join(str(part) for part in first.get("loc", ()))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"
