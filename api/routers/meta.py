"""/v1/isa, /healthz, /metrics."""

from __future__ import annotations

from functools import lru_cache

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from ..deps import ServiceDep
from ..schemas import FieldOut, HealthOut, IsaOut, OperandOut, OpOut
from .runs import json_response

router = APIRouter(tags=["meta"])


@lru_cache(maxsize=1)
def isa_document() -> IsaOut:
    from isa_specs import load_isa

    spec = load_isa()
    return IsaOut(
        fields={name: FieldOut(lsb=f.lsb, width=f.width) for name, f in spec.fields.items()},
        groups={name: list(fields) for name, fields in spec.groups.items()},
        ops=[OpOut(mnemonic=op.mnemonic, opcode=op.opcode, unit=op.unit, group=op.group,
                   operands=[OperandOut(name=o.name, kind=o.kind, field=o.field, optional=o.optional)
                             for o in op.operands],
                   latency=op.latency, semantics=op.semantics, decodable=op.decodable)
             for op in spec.ops])


@router.get("/v1/isa", response_model=IsaOut, summary="The ISA spec")
def get_isa() -> IsaOut:
    """isa_specs/opcodes.toml as JSON: the field table, the encoding groups and every op with its
    operands, unit, latency expression and semantics."""
    return isa_document()


@router.get("/healthz", response_model=HealthOut, summary="Health",
            responses={503: {"model": HealthOut, "description": "no worker ready or the database does not answer"}})
async def health(service: ServiceDep) -> Response:
    """`ok`: every worker is warmed up and the database answers.  `degraded` (still 200): some
    worker is being replaced or its warm-up run reported a problem.  `unavailable` (503): no
    worker is ready or the database does not answer."""
    db_ok = await run_in_threadpool(service.store.ping)
    ready = service.pool.workers_ready
    if not db_ok or ready == 0:
        status = "unavailable"
    elif ready == service.pool.size and not service.pool.warmup_problems:
        status = "ok"
    else:
        status = "degraded"
    body = HealthOut(status=status, workers=service.pool.size, workers_ready=ready,
                     in_flight=service.pool.in_flight, queue_limit=service.pool.queue_limit,
                     database="ok" if db_ok else "error", warmup_problems=service.pool.warmup_problems)
    return json_response(body, 503 if status == "unavailable" else 200)


@router.get("/metrics", summary="Prometheus metrics",
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}})
def metrics(service: ServiceDep) -> Response:
    """Runs by status, rejections, emulated cycles/instructions, run wall times, queue and
    worker gauges and HTTP requests by route, in the Prometheus text format."""
    return Response(generate_latest(service.registry), media_type=CONTENT_TYPE_LATEST)
