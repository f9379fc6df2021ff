"""/v1/runs: start runs (JSON or multipart), follow them, cancel them, read their history and results."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterable
from pathlib import PurePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from ..deps import RunDep, ServiceDep
from ..schemas import (
    NAME_PATTERN,
    SECTIONS_DESCRIPTION,
    TAG_PATTERN,
    DumpName,
    EmulationErrorResponse,
    InputErrorResponse,
    MessageResponse,
    RunAccepted,
    RunLinks,
    RunListOut,
    RunOut,
    RunRequest,
    RunStatus,
    SectionMode,
)
from ..service import RunService

router = APIRouter(prefix="/v1/runs", tags=["runs"])

MACHINE_CODE_SUFFIXES = (".mem", ".hex")
SSE_POLL_SECONDS = 0.1

RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
START_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": RunAccepted, "description": "queued (`?async=true`); follow `links`"},
    400: {"model": EmulationErrorResponse, "description": "the program stopped with a typed error or hit a budget"},
    409: {"model": EmulationErrorResponse, "description": "the run was cancelled (DELETE) before it finished"},
    413: {"description": "request body larger than the service accepts",
          "content": {"text/plain": {"schema": {"type": "string"}},
                      "application/json": {"schema": {"$ref": "#/components/schemas/MessageResponse"}}}},
    422: {"model": InputErrorResponse, "description": "invalid request, program, settings or memory image"},
    429: {"model": MessageResponse, "description": "too many runs queued", "headers": RETRY_AFTER},
}

ASYNC_QUERY = Query(alias="async", description="return 202 with the run id at once instead of waiting")


def json_response(model: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json",
                    headers=headers)


def finished_response(service: RunService, run_id: str) -> Response:
    """The HTTP answer for a finished run, by its status."""
    record = service.store.get(run_id)
    if record is None:   # only if the retention limit is smaller than the runs finishing at once
        return json_response(MessageResponse(detail=f"run {run_id} finished but the retention limit already "
                                                    "removed it"), 410)
    run = service.run_out(record)
    if run.status == "succeeded":
        return json_response(run)
    if run.status == "invalid":
        return json_response(InputErrorResponse(detail=run.issues or [], run_id=run.id), 422)
    code = 409 if run.status == "cancelled" else 500 if run.error and run.error.kind == "internal" else 400
    return json_response(EmulationErrorResponse(detail=run.error, run_id=run.id, run=run), code)


async def start_run(service: RunService, body: RunRequest, run_async: bool) -> Response:
    prep = await run_in_threadpool(service.prepare, body)
    job = await run_in_threadpool(service.submit, prep, body)
    if run_async:
        base = f"/v1/runs/{job.id}"
        accepted = RunAccepted(id=job.id, status="queued", links=RunLinks(self=base, events=f"{base}/events"))
        return json_response(accepted, 202, {"Location": base})
    await asyncio.wrap_future(job.future)
    return await run_in_threadpool(finished_response, service, job.id)


@router.post("", response_model=RunOut, responses=START_RESPONSES, summary="Run a program")
async def create_run(body: RunRequest, service: ServiceDep,
                     run_async: Annotated[bool, ASYNC_QUERY] = False) -> Response:
    """Run an ISA program (ASM text or machine code) with settings and inputs and return its
    outputs, cycles, dynamic instruction count, HBM bytes and per-section profile.

    Inputs are raw images (`images`, base64, in the reference's file formats) and/or named float
    tensors (`tensors`) placed into HBM as MXFP8.  `outputs` says which VRAM/HBM regions to read
    back as tensors and which full memories to keep as dumps.  Without `?async=true` the call
    waits for the run; with it, it returns 202 and the run's links at once."""
    return await start_run(service, body, run_async)


def _validation_error(exc: ValidationError) -> RequestValidationError:
    errors = [{"loc": ("body", *e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return RequestValidationError(errors)


async def _text(upload: UploadFile, loc: str) -> str:
    data = await upload.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestValidationError([{"loc": ("body", loc), "type": "unicode_error",
                                       "msg": f"{loc} is not UTF-8 text ({exc.reason} at byte {exc.start})"}]) from None


def _json_field(text: str | None, loc: str) -> Any:
    if text is None or text == "":
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestValidationError([{"loc": ("body", loc), "type": "json_invalid",
                                       "msg": f"{loc} is not valid JSON: {exc.msg}"}]) from None


def _program_name(filename: str | None) -> str | None:
    stem = PurePath(filename or "").stem   # used as a label only, never as a path
    return stem if stem and re.fullmatch(NAME_PATTERN, stem) else None


@router.post("/files", response_model=RunOut, responses=START_RESPONSES, summary="Run the reference's files")
async def create_run_from_files(
    service: ServiceDep,
    program: Annotated[UploadFile, File(description="program.asm (ASM) or program.mem / .hex (machine code)")],
    settings: Annotated[UploadFile | None, File(description="plena_settings.toml")] = None,
    hbm: Annotated[UploadFile | None, File(description="HBM preload, raw bytes (the reference's --hbm)")] = None,
    fpsram: Annotated[UploadFile | None, File(description="FP SRAM preload, f16 LE (--fpsram)")] = None,
    intsram: Annotated[UploadFile | None, File(description="INT SRAM preload, u32 LE (--intsram)")] = None,
    vram: Annotated[UploadFile | None, File(description="VRAM preload, bf16 LE rows (--vram)")] = None,
    overrides: Annotated[str | None, Form(description='settings overrides as a JSON object, e.g. {"MLEN": 64}')] = None,
    outputs: Annotated[str | None, Form(description="outputs wanted as JSON (same shape as `outputs` of POST /v1/runs)")] = None,
    tag: Annotated[str | None, Form(pattern=TAG_PATTERN)] = None,
    max_instructions: Annotated[int | None, Form(ge=1)] = None,
    max_wall_seconds: Annotated[float | None, Form(gt=0)] = None,
    trace: Annotated[bool, Form()] = False,
    sections: Annotated[SectionMode | None, Form(description=SECTIONS_DESCRIPTION)] = None,
    run_async: Annotated[bool, ASYNC_QUERY] = False,
) -> Response:
    """The same run as POST /v1/runs, with the reference's files as multipart uploads."""
    text = await _text(program, "program")
    kind = "mem" if PurePath(program.filename or "").suffix.lower() in MACHINE_CODE_SUFFIXES else "asm"
    body: dict[str, Any] = {"program": {kind: text, "name": _program_name(program.filename)}}
    overrides_obj = _json_field(overrides, "overrides")
    if settings is not None or overrides_obj is not None:
        body["settings"] = {"toml": await _text(settings, "settings") if settings is not None else None,
                            "overrides": overrides_obj if overrides_obj is not None else {}}
    images = {key: await f.read() for key, f in (("hbm", hbm), ("fp_sram", fpsram), ("int_sram", intsram),
                                                 ("vram", vram)) if f is not None}
    if images:
        body["images"] = images
    outputs_obj = _json_field(outputs, "outputs")
    if outputs_obj is not None:
        body["outputs"] = outputs_obj
    body.update(tag=tag, max_instructions=max_instructions, max_wall_seconds=max_wall_seconds, trace=trace,
                sections=sections)
    try:
        req = RunRequest.model_validate(body)
    except ValidationError as exc:
        raise _validation_error(exc) from None
    return await start_run(service, req, run_async)


@router.get("", response_model=RunListOut, summary="Run history")
def list_runs(
    service: ServiceDep,
    program_sha256: Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$", description="machine-code hash")] = None,
    tag: Annotated[str | None, Query(pattern=TAG_PATTERN)] = None,
    status: Annotated[RunStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1 << 31)] = 0,
) -> RunListOut:
    """Runs, newest first, filtered by program hash, tag and/or status."""
    rows, total = service.store.list(program_sha256=program_sha256, tag=tag, status=status,
                                     limit=limit, offset=offset)
    return RunListOut(items=[service.summary_out(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/{run_id}", response_model=RunOut, responses={404: {"model": MessageResponse}}, summary="A run")
def get_run(record: RunDep, service: ServiceDep,
            format: Annotated[Literal["json", "npy"] | None, Query(description="tensor format (default: as asked when started)")] = None,
            ) -> Response:
    """Status while queued/running (with progress), then totals, outputs, profile and links."""
    return json_response(service.run_out(record, fmt=format))


@router.delete("/{run_id}", response_model=RunOut, status_code=202,
               responses={404: {"model": MessageResponse}, 409: {"model": MessageResponse,
                                                                  "description": "the run has already finished"}},
               summary="Cancel a run")
def cancel_run(record: RunDep, service: ServiceDep) -> Response:
    """Cancel a queued or running run.  A queued run is cancelled at once; a running one stops at
    its next progress report (its worker is replaced if it does not)."""
    if not service.cancel(record.id):
        raise HTTPException(409, f"run {record.id} has already finished ({record.status})")
    return json_response(service.run_out(service.store.get(record.id)), 202)


@router.get("/{run_id}/events", response_class=EventSourceResponse, summary="Progress as server-sent events",
            responses={404: {"description": "no such run", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/MessageResponse"}}}}})
async def run_events(record: RunDep, service: ServiceDep, request: Request) -> AsyncIterable[ServerSentEvent]:
    """`status` events ({id, status}) when the state changes, `progress` events ({instructions,
    cycles}, about every 0.1 s while running) and a final `done` event with the run's summary."""
    job = service.pool.get(record.id)
    last_version, last_status = -1, None
    while job is not None and job.state != "done":
        if job.version != last_version:
            last_version = job.version
            if job.state != last_status:
                last_status = job.state
                yield ServerSentEvent(event="status", data={"id": record.id, "status": job.state})
            if job.progress is not None:
                yield ServerSentEvent(event="progress", data={"instructions": job.progress[0],
                                                              "cycles": job.progress[1]})
        if await request.is_disconnected():
            return
        await asyncio.sleep(SSE_POLL_SECONDS)
    if job is not None:
        await asyncio.wrap_future(job.future)
    final = await run_in_threadpool(service.store.get, record.id)
    yield ServerSentEvent(event="done", id=record.id, data=service.summary_out(final).model_dump(mode="json"))


def _blob_response(service: RunService, run_id: str, name: str, missing: str,
                   headers: dict[str, str] | None = None) -> Response:
    got = service.store.blob(run_id, name)
    if got is None:
        raise HTTPException(404, missing)
    data, media_type = got
    return Response(data, media_type=media_type, headers=headers)


@router.get("/{run_id}/trace", responses={200: {"content": {"application/json": {}},
                                                  "description": "Chrome/Perfetto trace-event JSON"},
                                            404: {"model": MessageResponse}}, summary="Perfetto trace")
def get_trace(record: RunDep, service: ServiceDep) -> Response:
    """Trace-event JSON (open in ui.perfetto.dev): one event per recorded instruction on one track
    per unit, 1 cycle = 1 ns.  Recorded when the run was started with `trace: true`."""
    return _blob_response(service, record.id, "trace", f"run {record.id} has no trace (start it with trace: true)")


@router.get("/{run_id}/profile", responses={200: {"content": {"application/json": {}},
                                                    "description": "plena-profile JSON (profiler/SCHEMA.md)"},
                                              404: {"model": MessageResponse}}, summary="Full profile")
def get_profile(record: RunDep, service: ServiceDep) -> Response:
    """The full plena-profile document of the run (sections, opcodes, units, hot pcs)."""
    return _blob_response(service, record.id, "profile", f"run {record.id} has no profile")


@router.get("/{run_id}/dumps/{name}", responses={200: {"content": {"application/octet-stream": {}},
                                                         "description": "the dump file"},
                                                   404: {"model": MessageResponse}}, summary="A memory dump")
def get_dump(record: RunDep, service: ServiceDep, name: DumpName) -> Response:
    """A dump asked for with `outputs.dumps`, in the reference's file format (see `dumps` of the run)."""
    return _blob_response(service, record.id, f"dump_{name}", f"run {record.id} has no {name} dump",
                          headers={"Content-Disposition": f'attachment; filename="{name}_dump.bin"'})

