"""The dashboard: server-rendered pages (Jinja2, autoescaped) over the same service as the API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse

from tuner.enums import Status
from tuner.service import Service

from .deps import TOKEN_COOKIE, StudyName, TrialNumber, get_service, get_settings, require_token
from .render import STATIC_DIR, highlight_source, pygments_css, study_url, templates
from .settings import Settings

router = APIRouter(include_in_schema=False)
pages = APIRouter(include_in_schema=False, dependencies=[Depends(require_token)])
TEMPLATES = templates()
# plotly.js's gl2d bundle (scatter and WebGL scatter, MIT licensed), the npm package
# plotly.js-gl2d-dist-min as published, kept here: the machines have no internet, and the full
# bundle inside the plotly wheel is three times larger and takes a cold browser more than twice
# as long to run (bench/results/api_load.md). Its URL names its version: cached for good.
PLOTLY_JS = STATIC_DIR / "plotly-gl2d-3.7.0.min.js"
ASSET_CACHE = {"Cache-Control": "public, max-age=86400"}


@router.get(f"/assets/{PLOTLY_JS.name}", name="plotly_js")
def plotly_js() -> FileResponse:
    return FileResponse(PLOTLY_JS, media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=31536000, immutable"})


@router.get("/assets/pygments.css", name="pygments_css")
def pygments_stylesheet() -> PlainTextResponse:
    return PlainTextResponse(pygments_css(), media_type="text/css", headers=ASSET_CACHE)


@router.get("/login")
def login(token: Annotated[str, Query(max_length=500)],
          settings: Annotated[Settings, Depends(get_settings)]) -> RedirectResponse:
    """Keeps the token in a cookie so the dashboard's own API calls carry it."""
    response = RedirectResponse("/", status_code=303)
    if settings.token is not None:
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
    return response


@pages.get("/", response_class=HTMLResponse, name="studies_page")
def studies_page(request: Request, service: Annotated[Service, Depends(get_service)]) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, "studies.html", {"studies": service.studies()})


@pages.get("/studies/{name:path}/trials/{number}", response_class=HTMLResponse, name="trial_page")
def trial_page(request: Request, name: StudyName, number: TrialNumber,
               service: Annotated[Service, Depends(get_service)]) -> HTMLResponse:
    detail = service.trial(name, number)
    backend = service.study(name).backend
    source_html = highlight_source(detail.source, backend) if detail.source else None
    return TEMPLATES.TemplateResponse(request, "trial.html", {
        "trial": detail.trial, "source_html": source_html})


@pages.get("/studies/{name:path}", response_class=HTMLResponse, name="study_page")
def study_page(request: Request, name: StudyName,
               service: Annotated[Service, Depends(get_service)],
               settings: Annotated[Settings, Depends(get_settings)]) -> HTMLResponse:
    study = service.study(name)
    page_config = {"api": f"/api/v1{study_url(name)}", "trialBase": f"{study_url(name)}/trials",
                   "trials": study.n_trials, "pollSeconds": settings.poll_interval_s}
    return TEMPLATES.TemplateResponse(request, "study.html", {
        "study": study, "page_config": page_config, "statuses": [s.value for s in Status]})
