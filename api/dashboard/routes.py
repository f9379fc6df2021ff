"""The profiling dashboard: HTML pages over the run history and the JSON they read.

Pages (not in the OpenAPI document): `/` and `/dashboard` (runs list), `/runs/{id}` (run page),
`/runs/{id}/source` (source heat view), `/runs/{id}/timeline`, `/compare?a=…&b=…`, `/new` (upload
a program or start a shipped example), `/estimate` (static estimate of an uploaded program).
Every asset is served from here (`/dashboard/static/…`): Plotly's bundle from the `plotly` wheel,
the shared view script of profiler/html_assets and the dashboard script; no page loads anything
from another host.

Data (`/dashboard/api/…`, tag "dashboard"): the sortable runs list, timeline windows, A/B
comparisons, the examples, and a static estimate returning the full plena-profile document.
Runs themselves are started through the public API (`POST /v1/runs/files`), so a bad upload gets
exactly the service's error.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
from collections import OrderedDict
from functools import cache
from importlib.resources import files
from threading import Lock
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, HTTPException, Path, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from profiler.compare import compare_profiles
from profiler.html import asset_text, plotly_js

from ..deps import RunDep, RunId, ServiceDep
from ..schemas import (
    SECTIONS_DESCRIPTION,
    TAG_PATTERN,
    EmulationErrorResponse,
    EstimateRequest,
    InputErrorResponse,
    MessageResponse,
    RunRequest,
    RunStatus,
    SectionMode,
)
from ..service import RunService
from .examples import ExampleOut, example_request, list_examples
from .queries import RunPage, SortKey, list_runs
from .timeline import TraceIndex

pages = APIRouter(include_in_schema=False)
data = APIRouter(prefix="/dashboard/api", tags=["dashboard"])

templates = Jinja2Templates(directory=str(files("api").joinpath("dashboard", "templates")))

TIMELINE_CACHE_RUNS = 4
TIMELINE_MAX_SLICES = 3000
TIMELINE_BINS = 1200


# ------------------------------------------------------------------------------------------ assets

@cache
def _asset(name: str) -> tuple[bytes, bytes, str, str]:
    """(raw, gzip, media type, version) of a served asset."""
    if name == "plotly.min.js":
        raw = plotly_js().encode()
    elif name in ("profile_view.js", "profile_view.css"):
        raw = asset_text(name).encode()
    else:
        raw = files("api").joinpath("dashboard", "static", name).read_bytes()
    media = "text/css; charset=utf-8" if name.endswith(".css") else "text/javascript; charset=utf-8"
    return raw, gzip.compress(raw, 6), media, hashlib.sha256(raw).hexdigest()[:16]


ASSETS = ("plotly.min.js", "profile_view.js", "profile_view.css", "dashboard.js")


def asset_url(name: str) -> str:
    return f"/dashboard/static/{name}?v={_asset(name)[3]}"


@pages.get("/dashboard/static/{name}")
def static_asset(name: Literal["plotly.min.js", "profile_view.js", "profile_view.css", "dashboard.js"],
                 request: Request) -> Response:
    raw, packed, media, version = _asset(name)
    headers = {"Cache-Control": "public, max-age=31536000, immutable", "ETag": f'"{version}"',
               "Vary": "Accept-Encoding"}
    if request.headers.get("if-none-match") == f'"{version}"':
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(packed, media_type=media, headers={**headers, "Content-Encoding": "gzip"})
    return Response(raw, media_type=media, headers=headers)


# ------------------------------------------------------------------------------------------- pages

def _page(request: Request, template: str, page: str, title: str, charts: bool = True, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, template, {
        "page": page, "title": title, "charts": charts, "asset_url": asset_url, **context})


@pages.get("/", response_class=HTMLResponse)
@pages.get("/dashboard", response_class=HTMLResponse)
def runs_page(request: Request) -> HTMLResponse:
    return _page(request, "runs.html", "runs", "Runs", charts=False)


@pages.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, record: RunDep) -> HTMLResponse:
    return _page(request, "run.html", "run", f"Run {record.program_name or record.id[:8]}", run=record)


@pages.get("/runs/{run_id}/source", response_class=HTMLResponse)
def source_page(request: Request, record: RunDep) -> HTMLResponse:
    return _page(request, "source.html", "source", f"Source · {record.program_name or record.id[:8]}",
                 charts=False, run=record)


@pages.get("/runs/{run_id}/timeline", response_class=HTMLResponse)
def timeline_page(request: Request, record: RunDep) -> HTMLResponse:
    return _page(request, "timeline.html", "timeline", f"Timeline · {record.program_name or record.id[:8]}",
                 run=record)


@pages.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request, a: str | None = None, b: str | None = None) -> HTMLResponse:
    return _page(request, "compare.html", "compare", "Compare runs", a=a or "", b=b or "")


@pages.get("/new", response_class=HTMLResponse)
def new_run_page(request: Request) -> HTMLResponse:
    return _page(request, "new.html", "new", "New run", charts=False)


@pages.get("/estimate", response_class=HTMLResponse)
def estimate_page(request: Request) -> HTMLResponse:
    return _page(request, "estimate.html", "estimate", "Static estimate")


# -------------------------------------------------------------------------------------------- data

@data.get("/runs", response_model=RunPage, summary="Runs list (filter, sort, paginate)")
def dashboard_runs(
    service: ServiceDep,
    tag: Annotated[str | None, Query(max_length=64, description="substring of the tag")] = None,
    program: Annotated[str | None, Query(max_length=64, description="substring of the name or sha256 prefix")] = None,
    status: Annotated[RunStatus | None, Query()] = None,
    sort: Annotated[SortKey, Query()] = "created_at",
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1 << 31)] = 0,
) -> RunPage:
    """One page of the run history with each run's settings summary, sorted by any column."""
    return list_runs(service.store, tag=tag, program=program, status=status, sort=sort, order=order,
                     limit=limit, offset=offset)


class _TraceCache:
    """The last few runs' trace indexes (a trace is parsed once, then windows are cheap)."""

    def __init__(self, size: int):
        self.size = size
        self.items: OrderedDict[str, TraceIndex] = OrderedDict()
        self.lock = Lock()

    def get(self, service: RunService, run_id: str) -> TraceIndex | None:
        with self.lock:
            if run_id in self.items:
                self.items.move_to_end(run_id)
                return self.items[run_id]
        got = service.store.blob(run_id, "trace")
        if got is None:
            return None
        index = TraceIndex.from_trace(json.loads(got[0]))
        with self.lock:
            self.items[run_id] = index
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return index


TRACES = _TraceCache(TIMELINE_CACHE_RUNS)


@data.get("/runs/{run_id}/timeline", summary="A window of a run's timeline",
          responses={404: {"model": MessageResponse}})
def dashboard_timeline(
    record: RunDep, service: ServiceDep,
    start: Annotated[int | None, Query(ge=0)] = None,
    end: Annotated[int | None, Query(ge=0)] = None,
    bins: Annotated[int, Query(ge=10, le=5000)] = TIMELINE_BINS,
    max_slices: Annotated[int, Query(ge=1, le=20000)] = TIMELINE_MAX_SLICES,
) -> JSONResponse:
    """Cycles [start, end) of the run's trace: the slices per lane when at most `max_slices`
    overlap the window, else each unit's busy fraction per bin and the top-level section per bin."""
    index = TRACES.get(service, record.id)
    if index is None:
        raise HTTPException(404, f"run {record.id} has no trace (start it with trace: true)")
    return JSONResponse(index.window(start, end, max_slices, bins))


def _profile_doc(service: RunService, run_id: str) -> dict[str, Any]:
    got = service.store.blob(run_id, "profile")
    if got is None:
        raise HTTPException(404, f"run {run_id} has no profile")
    return json.loads(got[0])


@data.get("/compare", summary="A/B comparison of two runs' profiles",
          responses={404: {"model": MessageResponse}})
def dashboard_compare(service: ServiceDep, a: Annotated[RunId, Query()], b: Annotated[RunId, Query()]) -> JSONResponse:
    """Per-section (matched by path) and per-opcode cycle deltas B - A, sorted by |change|, and the
    sections found on one side only."""
    runs = {}
    for key, run_id in (("a", a), ("b", b)):
        record = service.store.get(run_id)
        if record is None:
            raise HTTPException(404, f"no run {run_id}")
        runs[key] = service.summary_out(record).model_dump(mode="json")
    result = compare_profiles(_profile_doc(service, a), _profile_doc(service, b))
    return JSONResponse({"a": runs["a"], "b": runs["b"], **result})


@data.get("/examples", response_model=list[ExampleOut], summary="Shipped example programs")
def dashboard_examples() -> list[ExampleOut]:
    return list_examples()


@data.post("/examples/{name}/runs", status_code=202, summary="Start a shipped example",
           responses={404: {"model": MessageResponse}, 422: {"model": InputErrorResponse}})
async def run_example(
    service: ServiceDep,
    name: Annotated[str, Path(max_length=64)],
    tag: Annotated[str | None, Form(pattern=TAG_PATTERN)] = None,
    trace: Annotated[bool, Form()] = True,
    sections: Annotated[SectionMode | None, Form(description=SECTIONS_DESCRIPTION)] = None,
) -> Response:
    """Queue a run of example `name` (as `POST /v1/runs?async=true`); follow its `links.events`."""
    from ..routers.runs import start_run

    body = await run_in_threadpool(example_request, name)
    if body is None:
        raise HTTPException(404, f"no example {name!r}")
    body.update(tag=tag, trace=trace, sections=sections)
    try:
        req = RunRequest.model_validate(body)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    return await start_run(service, req, run_async=True)


@data.post("/estimate", summary="Static estimate with its full profile",
           responses={400: {"model": EmulationErrorResponse}, 422: {"model": InputErrorResponse}})
async def dashboard_estimate(
    service: ServiceDep,
    program: Annotated[UploadFile, File(description="program.asm or program.mem")],
    settings: Annotated[UploadFile | None, File(description="plena_settings.toml")] = None,
    intsram: Annotated[UploadFile | None, File(description="INT SRAM preload (u32 LE)")] = None,
    sections: Annotated[SectionMode | None, Form(description=SECTIONS_DESCRIPTION)] = None,
) -> Response:
    """`POST /v1/estimate` for uploaded files, answered with the full plena-profile document
    (kind "static") so that the dashboard draws it with the run page's charts."""
    from ..routers.runs import MACHINE_CODE_SUFFIXES, _program_name, _text

    text = await _text(program, "program")
    kind = "mem" if (program.filename or "").lower().endswith(MACHINE_CODE_SUFFIXES) else "asm"
    body: dict[str, Any] = {"program": {kind: text, "name": _program_name(program.filename)}, "sections": sections}
    if settings is not None:
        body["settings"] = {"toml": await _text(settings, "settings")}
    if intsram is not None:
        body["int_sram"] = await intsram.read()
    try:
        req = EstimateRequest.model_validate(body)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
    payload = await run_in_threadpool(service.prepare_estimate, req)
    job = await run_in_threadpool(service.submit_estimate, payload)
    outcome = await asyncio.wrap_future(job.future)
    if outcome["status"] == "succeeded":
        return JSONResponse(outcome["profile_doc"])
    if outcome["status"] == "invalid":
        return JSONResponse(InputErrorResponse(detail=outcome["issues"]).model_dump(mode="json"), 422)
    error = outcome["error"]
    return JSONResponse(EmulationErrorResponse(detail=error, run_id=job.id).model_dump(mode="json"),
                        500 if error["kind"] == "internal" else 400)
