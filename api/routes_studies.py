"""Studies: their problem, arch, device, trial counts, best point and Pareto front."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from tuner.service import Service

from .deps import StudyName, get_service
from .schemas import ErrorOut, PointsOut, StudyDetail, StudyOut, TrialSummary

router = APIRouter(tags=["studies"])
# Study names may hold "/" (sent percent-encoded), so they are {name:path} parameters and the
# longer routes come first: /studies/a/b/front is the front of study "a/b".
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "no such study"}}


@router.get("/studies", response_model=list[StudyOut])
def studies(service: Annotated[Service, Depends(get_service)]) -> list[StudyOut]:
    return [StudyOut.model_validate(study) for study in service.studies()]


@router.get("/studies/{name:path}/front", response_model=list[TrialSummary], responses=NOT_FOUND)
def front(name: StudyName, service: Annotated[Service, Depends(get_service)]) -> list[TrialSummary]:
    """The study's Pareto front of latency against error, fastest first."""
    return [TrialSummary.model_validate(trial) for trial in service.front(name)]


@router.get("/studies/{name:path}/points", response_model=PointsOut, responses=NOT_FOUND)
def points(name: StudyName, service: Annotated[Service, Depends(get_service)]) -> Response:
    """The study's measured trials as columns: what the dashboard's plots draw."""
    # Sent as JSON text at once: returning the model would validate its columns a second time.
    return Response(PointsOut.of(service.points(name)).model_dump_json(),
                    media_type="application/json")


@router.get("/studies/{name:path}", response_model=StudyDetail, responses=NOT_FOUND)
def study(name: StudyName, service: Annotated[Service, Depends(get_service)]) -> StudyDetail:
    record = service.study(name)
    front = service.front(name)
    best = TrialSummary.model_validate(front[0]) if front else None
    return StudyDetail.model_validate({**vars(record), "n_trials": record.n_trials, "best": best,
                                       "running": service.running_trials(name)})
