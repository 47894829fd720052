"""A study's trials: paged, filtered and sorted listings, and one trial in full."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from tuner.enums import Status, TrialSort
from tuner.service import Service

from .deps import Assignment, StudyName, TrialNumber, assignments, get_service
from .schemas import ErrorOut, TrialOut, TrialPageOut

router = APIRouter(tags=["trials"])
MAX_PAGE = 5000


@router.get("/studies/{name:path}/trials", response_model=TrialPageOut,
            responses={404: {"model": ErrorOut, "description": "no such study"}})
def trials(
    name: StudyName,
    service: Annotated[Service, Depends(get_service)],
    status: Status | None = None,
    max_error: Annotated[float | None, Query(ge=0, allow_inf_nan=False,
                                             description="keep trials with rel_l2 <= this")] = None,
    param: Annotated[list[Assignment], Query(description="config filter NAME=VALUE, repeatable",
                                             max_length=64)] = [],
    sort: TrialSort = TrialSort.NUMBER,
    descending: bool = False,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> Response:
    page = service.trials(name, status=status.value if status else None, max_error=max_error,
                          params=assignments(param, "param"), sort=sort.value,
                          descending=descending, offset=offset, limit=limit)
    # Sent as JSON text at once: returning the model would validate its thousands of rows twice.
    return Response(TrialPageOut.model_validate(page).model_dump_json(), media_type="application/json")


@router.get("/studies/{name:path}/trials/{number}", response_model=TrialOut,
            responses={404: {"model": ErrorOut, "description": "no such study or trial"}})
def trial(name: StudyName, number: TrialNumber,
          service: Annotated[Service, Depends(get_service)]) -> TrialOut:
    """One trial in full: config, every metric, the log, resource use and the generated source."""
    detail = service.trial(name, number)
    return TrialOut.model_validate({**detail.trial.flat(), "source": detail.source})
