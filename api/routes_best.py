"""Best config: the fastest stored config for a kernel, arch and problem shape, cached.

The cache holds the rendered JSON of each answer (404s included), so a hit is a dictionary
lookup on the event loop; a miss asks the service in a worker thread. Each answer is also kept
under its URL's exact query string for :mod:`tuner.api.best_fast_path`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from tuner.errors import UsageError
from tuner.kernel_templates import SpecError, problem_spec
from tuner.kernel_templates.spec import canonical_json
from tuner.service import NotFound, Service, to_json

from .best_cache import BestCache, CachedAnswer
from .best_fast_path import raw_key
from .deps import PRINTABLE, Assignment, assignments
from .schemas import BestOut, ErrorOut

router = APIRouter(tags=["best"])
Name = Annotated[str, Query(min_length=1, max_length=200, pattern=PRINTABLE)]


@router.get("/best", response_model=BestOut,
            responses={404: {"model": ErrorOut, "description": "nothing tuned fits: says what is missing"}})
async def best(
    request: Request,
    kernel: Name,
    arch: Name,
    shape: Annotated[list[Assignment], Query(description="problem parameter NAME=VALUE, repeatable; "
                                             "the kernel's defaults fill the rest", max_length=64)] = [],
    max_error: Annotated[float | None, Query(ge=0, allow_inf_nan=False,
                                             description="largest relative L2 error accepted")] = None,
    family: Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$",
                                        description="only this template family's configs, empty for "
                                                    "an unnamed default family (default: the fastest "
                                                    "of every family)")] = None,
) -> Response:
    # The service and cache come from app.state directly, not as dependencies: resolving a
    # dependency costs as much as a cache hit itself on this, the hottest route.
    service: Service = request.app.state.service
    cache: BestCache = request.app.state.best_cache
    texts = assignments(shape, "shape")
    try:  # a built-in's problem is parsed here; a user template's from its stored space, off the loop
        problem_spec(kernel, arch)
        problem = service.problem(kernel, arch, texts)
    except SpecError:
        problem = await run_in_threadpool(service.problem, kernel, arch, texts)
    key = (kernel, arch, canonical_json(problem), max_error, family)
    if cache.claim_refresh():
        await run_in_threadpool(cache.refresh)
    generation = cache.generation
    answer = cache.get(key)
    if answer is None:
        answer = await run_in_threadpool(compute, service, kernel, arch, problem, max_error, family)
        cache.put(key, answer, generation)
    cache.put(raw_key(request.scope["query_string"]), answer, generation)
    return Response(answer.body, status_code=answer.status_code, media_type="application/json")


def compute(service: Service, kernel: str, arch: str, problem: dict[str, Any],
            max_error: float | None, family: str | None) -> CachedAnswer:
    try:
        found = service.best(kernel=kernel, arch=arch, problem=problem, max_error=max_error, family=family)
    except NotFound as exc:
        return CachedAnswer(404, ErrorOut(detail=str(exc)).model_dump_json().encode())
    except UsageError as exc:
        return CachedAnswer(422, ErrorOut(detail=str(exc)).model_dump_json().encode())
    return CachedAnswer(200, to_json(found.document()).encode())
