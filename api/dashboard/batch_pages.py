"""Dashboard pages of batches (server-rendered, no script): `/batches` (list, and a form to
compare two), `/batches/{id}` (progress and the result table, each row linked to its run page) and
`/batches/compare?base=…&new=…` (per-job cycle deltas, changed outputs, added and removed jobs:
what `plena-batch compare` prints)."""

from __future__ import annotations

from typing import Annotated, Literal

import pyarrow as pa
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from batch.compare import compare_tables, parse_threshold
from batch.job import ROW_STATUSES
from batch.results import SCHEMA

from ..routers.batches import BatchesDep, BatchId
from .routes import _page

batch_pages = APIRouter(include_in_schema=False)

BATCH_ID = r"^[0-9a-f]{32}$"


def _rows(batches, batch_id: str) -> tuple[dict, list[dict]]:
    got = batches.get(batch_id)
    if got is None:
        raise HTTPException(404, f"no batch {batch_id}")
    return got


@batch_pages.get("/batches", response_class=HTMLResponse)
def batches_page(request: Request, batches: BatchesDep) -> HTMLResponse:
    items = []
    for meta in batches.list():
        _, rows = batches.get(meta["id"]) or (meta, [])
        items.append({**meta, "done": len(rows), **{s: sum(r["status"] == s for r in rows) for s in ROW_STATUSES}})
    return _page(request, "batches.html", "batches", "Batches", charts=False, batches=items)


@batch_pages.get("/batches/compare", response_class=HTMLResponse)
def batch_compare_page(request: Request, batches: BatchesDep,
                       base: Annotated[str, Query(pattern=BATCH_ID)],
                       new: Annotated[str, Query(pattern=BATCH_ID)],
                       threshold: str = "1%", match: Literal["sha", "name"] = "sha") -> HTMLResponse:
    try:
        limit = parse_threshold(threshold)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    base_meta, base_rows = _rows(batches, base)
    new_meta, new_rows = _rows(batches, new)
    cmp = compare_tables(pa.Table.from_pylist(base_rows, schema=SCHEMA), pa.Table.from_pylist(new_rows, schema=SCHEMA),
                         limit, match)
    return _page(request, "batch_compare.html", "batch-compare", "Compare batches", charts=False,
                 base=base_meta, new=new_meta, cmp=cmp, threshold=threshold, match=match)


@batch_pages.get("/batches/{batch_id}", response_class=HTMLResponse)
def batch_page(request: Request, batch_id: BatchId, batches: BatchesDep) -> HTMLResponse:
    meta, rows = _rows(batches, batch_id)
    counts = {s: sum(r["status"] == s for r in rows) for s in ROW_STATUSES}
    return _page(request, "batch.html", "batch", f"Batch {meta['name']}", charts=False, batch=meta,
                 rows=sorted(rows, key=lambda r: (r["program"] or "", r["overrides"] or "")), counts=counts)
