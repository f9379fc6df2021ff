"""/v1/batches: run a batch manifest (the `plena-batch` format) through the service, follow it,
read its result table, cancel it.  Each job is also a run of the history, tagged `batch:<id>`."""

from __future__ import annotations

import io
import json
import re
import shutil
import tomllib
from datetime import datetime
from pathlib import PurePath
from typing import Annotated, Any, Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from fastapi import APIRouter, Depends, File, HTTPException, Path, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field, create_model
from starlette.concurrency import run_in_threadpool

from batch.job import ROW_STATUSES
from batch.results import SCHEMA

from ..batches import BatchManager, batch_tag
from ..deps import ServiceDep
from ..schemas import MessageResponse

router = APIRouter(prefix="/v1/batches", tags=["batches"])

BatchId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="batch id (32 lower-case hex digits)")]
UPLOAD_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")


def get_batches(request: Request) -> BatchManager:
    return request.app.state.batches


BatchesDep = Annotated[BatchManager, Depends(get_batches)]


# ----------------------------------------------------------------------------- schemas

class BatchRequest(BaseModel):
    manifest: dict[str, Any] = Field(
        description="the manifest as JSON: the structure of a `plena-batch` TOML manifest ([batch], [[jobs]], "
                    "[grid]); file paths are relative to the service's batch root (PLENA_API_BATCH_ROOT)",
        examples=[{"batch": {"name": "sweep"},
                   "jobs": [{"program": "linear/program.asm", "hbm": "linear/hbm.bin", "fpsram": "linear/fp_sram.bin"}],
                   "grid": {"hbm_model": ["hbm2", "analytic"], "LATENCY.VECTOR_MUL_CYCLES": [1, 4]}}])


class BatchLinks(BaseModel):
    self: str
    runs: str = Field(description="the batch's runs in the run history")
    results: str = Field(description="the result table as a file (?format=csv|parquet)")


class BatchAccepted(BaseModel):
    id: str
    state: Literal["running", "finished", "cancelled", "interrupted"]
    jobs: int
    links: BatchLinks


def _row_model() -> type[BaseModel]:
    """The result row's columns (batch.results.SCHEMA) as a response model."""
    def py(t: Any) -> type:
        return int if pa.types.is_integer(t) else float if pa.types.is_floating(t) else str

    return create_model("BatchRowOut", **{f.name: (py(f.type) | None, None) for f in SCHEMA})


BatchRowOut = _row_model()


class BatchSummaryOut(BaseModel):
    id: str
    name: str
    state: Literal["running", "finished", "cancelled", "interrupted"]
    jobs: int
    created_at: datetime | None = None
    finished_at: datetime | None = None
    grid: list[str] = []


class BatchOut(BatchSummaryOut):
    done: int
    ok: int
    failed: int
    invalid: int
    rows: list[BatchRowOut]
    links: BatchLinks


class BatchListOut(BaseModel):
    items: list[BatchSummaryOut]


def _links(batch_id: str) -> BatchLinks:
    base = f"/v1/batches/{batch_id}"
    return BatchLinks(self=base, runs=f"/v1/runs?tag={batch_tag(batch_id)}", results=f"{base}/results")


# ----------------------------------------------------------------------------- validation

def _manifest_invalid(exc: Any, where: tuple) -> RequestValidationError:
    loc = ["body", *where, *exc.loc] if exc.loc else ["body", *where]
    ctx = {"line": exc.line, "key": exc.key} if exc.line or exc.key else None
    return RequestValidationError([{"loc": tuple(loc), "msg": exc.reason, "type": "manifest_error",
                                    **({"ctx": ctx} if ctx else {})}])


def _plan(data: Any, base_dir: Any, root: Any, text: str | None, where: tuple, max_jobs: int):
    from batch.manifest import ManifestError, build_plan

    try:
        plan = build_plan(data, base_dir=base_dir, root=root, source="manifest", text=text)
    except ManifestError as exc:
        raise _manifest_invalid(exc, where) from None
    if len(plan.jobs) > max_jobs:
        raise RequestValidationError([{"loc": ("body", *where), "type": "value_error",
                                       "msg": f"the manifest makes {len(plan.jobs)} jobs; this service runs at most "
                                              f"{max_jobs} per batch"}])
    return plan


def _accepted(batches: BatchManager, batch_id: str, plan: Any) -> Response:
    batch = batches.start_batch(batch_id, plan)
    body = BatchAccepted(id=batch_id, state=batch.state, jobs=batch.jobs, links=_links(batch_id))
    return Response(body.model_dump_json(), status_code=202, media_type="application/json",
                    headers={"Location": body.links.self})


BATCH_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": BatchAccepted, "description": "the batch runs; follow `links.self`"},
    422: {"description": "invalid manifest: `loc` names the key (`ctx.line` its line in a TOML manifest)"},
}


@router.post("", status_code=202, response_model=BatchAccepted, responses=BATCH_RESPONSES,
             summary="Run a batch (server-side inputs)")
async def create_batch(body: BatchRequest, service: ServiceDep, batches: BatchesDep) -> Response:
    """Run every job of a manifest (programs × grid of settings) on the service's workers (or its
    Dask cluster).  Inputs are files under the service's batch root (PLENA_API_BATCH_ROOT); the
    manifest is checked whole before anything runs.  Returns 202 with the batch id at once."""
    root = service.cfg.batch_root
    if root is None:
        raise RequestValidationError([{"loc": ("body", "manifest"), "type": "value_error",
                                       "msg": "this service has no batch root for server-side paths "
                                              "(PLENA_API_BATCH_ROOT); upload the files with POST /v1/batches/files"}])
    plan = await run_in_threadpool(_plan, body.manifest, root, root, None, ("manifest",), service.cfg.batch_max_jobs)
    return _accepted(batches, batches.new_id(), plan)


@router.post("/files", status_code=202, response_model=BatchAccepted, responses=BATCH_RESPONSES,
             summary="Run a batch (uploaded inputs)")
async def create_batch_from_files(
    service: ServiceDep, batches: BatchesDep,
    manifest: Annotated[UploadFile, File(description="the manifest: TOML (as for plena-batch) or JSON")],
    files: Annotated[list[UploadFile], File(description="the programs and inputs the manifest names, by file "
                                                        "name (no directories)")] = [],   # noqa: B006
) -> Response:
    """The same as POST /v1/batches with the files uploaded: the manifest names them by file name."""
    raw = await manifest.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestValidationError([{"loc": ("body", "manifest"), "type": "unicode_error",
                                       "msg": "the manifest is not UTF-8 text"}]) from None
    is_toml = PurePath(manifest.filename or "").suffix.lower() == ".toml" or not text.lstrip().startswith("{")
    try:
        data = tomllib.loads(text) if is_toml else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        line = getattr(exc, "lineno", None)
        raise RequestValidationError([{"loc": ("body", "manifest"), "type": "manifest_error",
                                       "msg": f"not valid {'TOML' if is_toml else 'JSON'}: {exc}",
                                       **({"ctx": {"line": line}} if line else {})}]) from None
    batch_id = batches.new_id()
    inputs = batches.directory(batch_id) / "inputs"
    seen: set[str] = set()
    for i, f in enumerate(files):
        name = f.filename or ""
        if not UPLOAD_NAME.fullmatch(name) or name in seen:
            raise RequestValidationError([{"loc": ("body", "files", i), "type": "value_error",
                                           "msg": f"file name {name!r}: give each file a distinct plain name "
                                                  "(letters, digits, _ . -; no directories)"}])
        seen.add(name)
    inputs.mkdir(parents=True, exist_ok=True)
    for f in files:
        (inputs / f.filename).write_bytes(await f.read())
    try:
        plan = await run_in_threadpool(_plan, data, inputs, inputs, text if is_toml else None, ("manifest",),
                                       service.cfg.batch_max_jobs)
    except RequestValidationError:
        shutil.rmtree(batches.directory(batch_id), ignore_errors=True)
        raise
    return _accepted(batches, batch_id, plan)


@router.get("", response_model=BatchListOut, summary="Batches")
def list_batches(batches: BatchesDep) -> BatchListOut:
    """Every batch this service knows, newest first."""
    return BatchListOut(items=[BatchSummaryOut(**m) for m in batches.list()])


def _existing(batches: BatchManager, batch_id: str) -> tuple[dict, list]:
    got = batches.get(batch_id)
    if got is None:
        raise HTTPException(404, f"no batch {batch_id}")
    return got


@router.get("/{batch_id}", response_model=BatchOut, responses={404: {"model": MessageResponse}},
            summary="A batch: progress and result table")
def get_batch(batch_id: BatchId, batches: BatchesDep) -> BatchOut:
    """The batch's state, counts (done/ok/failed/invalid of `jobs`) and its rows so far (the
    columns of `plena-batch run`; `run_id` links each row to the run history)."""
    meta, rows = _existing(batches, batch_id)
    count = {s: sum(1 for r in rows if r["status"] == s) for s in ROW_STATUSES}
    return BatchOut(**meta, done=len(rows), **count, rows=[BatchRowOut(**r) for r in rows], links=_links(batch_id))


@router.get("/{batch_id}/results", responses={200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}},
                                                     "description": "the result table"},
                                               404: {"model": MessageResponse}},
            summary="The result table as a file")
def get_batch_results(batch_id: BatchId, batches: BatchesDep,
                      format: Annotated[Literal["csv", "parquet"], Query()] = "csv") -> Response:
    """The rows so far as CSV or Parquet (what `plena-batch compare` reads)."""
    _, rows = _existing(batches, batch_id)
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    sink = io.BytesIO()
    if format == "parquet":
        pq.write_table(table, sink)
        media, fname = "application/vnd.apache.parquet", "results.parquet"
    else:
        pacsv.write_csv(table, sink)
        media, fname = "text/csv", "results.csv"
    return Response(sink.getvalue(), media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="{fname}"'})


@router.delete("/{batch_id}", status_code=202, response_model=BatchSummaryOut,
               responses={404: {"model": MessageResponse}, 409: {"model": MessageResponse}}, summary="Cancel a batch")
def cancel_batch(batch_id: BatchId, batches: BatchesDep) -> BatchSummaryOut:
    """Stop submitting the batch's jobs and cancel its queued and running ones; finished rows stay."""
    meta, _ = _existing(batches, batch_id)
    if not batches.cancel(batch_id):
        raise HTTPException(409, f"batch {batch_id} is not running ({meta['state']})")
    return BatchSummaryOut(**batches.get(batch_id)[0])
