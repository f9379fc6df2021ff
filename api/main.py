"""The FastAPI application: `create_app()`, the module-level `app` and the `plena-serve` entry point.

Run it with `plena-serve` (uvicorn, one server process; the emulations run in the worker pool) or
`uvicorn api.main:app`.  Configuration comes from `PLENA_API_*` environment variables (see
api/config.py) or from a `ServiceSettings` passed to `create_app`.
"""

from __future__ import annotations

import argparse
import logging
import uuid
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.concurrency import run_in_threadpool

from .config import ServiceSettings, get_service_settings
from .dashboard import data as dashboard_data
from .dashboard import pages as dashboard_pages
from .dashboard.batch_pages import batch_pages
from .jobs import QueueFull
from .batches import BatchManager
from .routers import batches, meta, runs, tools
from .service import RequestInvalid, RunService

log = logging.getLogger("plena.api")

DESCRIPTION = """
Runs PLENA ISA programs on the cycle-level emulator and returns outputs and timing identical to
the reference transactional emulator.

* `POST /v1/runs` takes a program (ASM text or machine code), hardware settings, inputs (raw
  memory images or named float tensors placed into HBM as MXFP8) and the outputs wanted, and
  returns the output tensors, cycles, dynamic instructions, HBM bytes and a per-section profile.
  `?async=true` queues it and returns 202; follow `GET /v1/runs/{id}` or its server-sent events.
* `POST /v1/runs/files` does the same with the reference's files as multipart uploads.
* Run history: `GET /v1/runs`; results, traces, profiles and dumps stay available by run id.
* `POST /v1/batches` runs a `plena-batch` manifest (programs × a grid of settings); follow
  `GET /v1/batches/{id}` for progress and the result table.

Errors: 422 names the offending field (`loc`); a program that stops with a typed emulation error
is 400 with `{kind, pc, opcode, line, source, message}`; 429 with Retry-After when the queue is full.
"""

TAGS = [
    {"name": "runs", "description": "Emulation runs and their history"},
    {"name": "batches", "description": "Batches of runs: programs x a grid of settings (plena-batch manifests)"},
    {"name": "tools", "description": "Assembler, disassembler and static estimate"},
    {"name": "meta", "description": "ISA spec, health and metrics"},
    {"name": "dashboard", "description": "Data of the profiling dashboard served at / (runs list, timeline "
                                         "windows, A/B comparison, examples, estimate with the full profile)"},
]


class HttpMetricsMiddleware:
    """Counts requests by method, route template and status (pure ASGI: streaming is untouched)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or _route_template(scope)
            service = getattr(scope["app"].state, "service", None)
            if service is not None:
                service.metrics.http.labels(scope["method"], route, str(status)).inc()


def _route_template(scope: dict) -> str:
    """The route a request matched when the router did not record it (FastAPI's own /docs,
    /openapi.json, /docs/oauth2-redirect, /redoc are plain Starlette routes), else "unmatched"."""
    for route in scope["app"].router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return getattr(route, "path", "unmatched")
    return "unmatched"


class BodyLimitMiddleware:
    """413 with a JSON body for a request body over the limit, whether its Content-Length says so
    up front or a chunked body grows past it (Starlette answers the former in plain text).  JSON
    bodies have a lower limit than multipart ones: a JSON body is held several times over while it
    is parsed and its base64 images decoded, a multipart upload is spooled to disk."""

    def __init__(self, app: Any, max_body_bytes: int, max_json_body_bytes: int):
        self.app = app
        self.limit = max_body_bytes
        self.json_limit = min(max_json_body_bytes, max_body_bytes)

    def _too_large(self, is_json: bool) -> StarletteHTTPException:
        if is_json and self.json_limit < self.limit:
            return StarletteHTTPException(
                413, f"the JSON request body is larger than this service accepts ({self.json_limit:,} bytes); "
                     f"send large images as multipart/form-data (up to {self.limit:,} bytes)")
        return StarletteHTTPException(413, f"the request body is larger than this service accepts "
                                           f"({self.limit:,} bytes)")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        is_json = "multipart/" not in headers.get("content-type", "")   # what FastAPI parses as JSON
        limit = self.json_limit if is_json else self.limit
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            exc = self._too_large(is_json)
            await JSONResponse({"detail": exc.detail}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def limited() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise self._too_large(is_json)   # answered by the exception handlers (JSON)
            return message

        await self.app(scope, limited, send)


def _issue(error: dict) -> dict:
    """A validation error without its `input` (which can be a whole request body) and with a
    JSON-safe `ctx` (left out when there is none)."""
    out = {"loc": list(error.get("loc", ())), "msg": str(error.get("msg", "")), "type": str(error.get("type", ""))}
    ctx = error.get("ctx")
    if isinstance(ctx, dict):
        out["ctx"] = {k: v if isinstance(v, (int, float, str, bool)) or v is None else str(v) for k, v in ctx.items()}
    return out


async def _request_invalid(_: Request, exc: RequestInvalid) -> JSONResponse:
    return JSONResponse({"detail": [_issue(i) for i in exc.issues]}, status_code=422)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    issues = [_issue(e) for e in exc.errors()]
    content_type = request.headers.get("content-type", "")
    if request.method == "POST" and "json" not in content_type and "multipart" not in content_type \
            and any(i["loc"] == ["body"] for i in issues):
        issues = [{"loc": ["body"], "type": "content_type",
                   "msg": f"the body must be a JSON object sent with Content-Type: application/json "
                          f"(got {content_type or 'no Content-Type'})"}]
    return JSONResponse({"detail": issues}, status_code=422)


async def _internal_error(_: Request, exc: Exception) -> JSONResponse:
    incident = uuid.uuid4().hex[:12]
    log.error("incident %s: unhandled %s", incident, type(exc).__name__, exc_info=exc)
    return JSONResponse({"detail": f"internal error (incident {incident}); the service log has the details"},
                        status_code=500)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    # FastAPI answers a body it cannot decode (not UTF-8, broken multipart) with 400; for this API
    # every unusable request is a 422 naming the field (here: the whole body).
    if exc.status_code == 400:
        return JSONResponse({"detail": [{"loc": ["body"], "msg": f"the request body cannot be read: {exc.detail}",
                                         "type": "body_error"}]}, status_code=422)
    return await http_exception_handler(request, exc)


async def _queue_full(_: Request, exc: QueueFull) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=429, headers={"Retry-After": str(exc.retry_after)})


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """The application.  Its lifespan creates the database schema, starts the worker pool and
    warms the numba JIT in every worker before the first request is served."""
    cfg = settings or get_service_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from emulator._jit_cache import announce_if_cold
        from emulator.warmup import entry_points

        announce_if_cold(*entry_points())   # the workers compile; they stay quiet (api/worker.py)
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        service = RunService(cfg)
        await run_in_threadpool(service.start)
        app.state.service = service
        app.state.batches = BatchManager(service)
        await run_in_threadpool(app.state.batches.start)
        log.info("PLENA service ready: %d workers, database %s", cfg.workers, service.store.engine.url)
        try:
            yield
        finally:
            await run_in_threadpool(app.state.batches.stop)
            await run_in_threadpool(service.stop)

    from importlib.metadata import PackageNotFoundError, version

    try:
        app_version = version("plena-emulator")
    except PackageNotFoundError:
        app_version = "0+unknown"
    app = FastAPI(title="PLENA emulator service", version=app_version, description=DESCRIPTION,
                  openapi_tags=TAGS, lifespan=lifespan)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=cfg.max_body_bytes,
                       max_json_body_bytes=cfg.max_json_body_bytes)
    app.add_middleware(HttpMetricsMiddleware)
    app.include_router(runs.router)
    app.include_router(batches.router)
    app.include_router(tools.router)
    app.include_router(meta.router)
    app.include_router(dashboard_data)
    app.include_router(dashboard_pages)
    app.include_router(batch_pages)
    app.add_exception_handler(RequestInvalid, _request_invalid)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(QueueFull, _queue_full)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    return app


app = create_app()


def serve(argv: list[str] | None = None) -> None:
    """`plena-serve`: run the service with uvicorn (one server process; `--workers` emulation processes)."""
    import uvicorn

    defaults = get_service_settings()
    parser = argparse.ArgumentParser(prog="plena-serve", description="PLENA emulator HTTP service")
    parser.add_argument("--host", default=defaults.host, help=f"bind address (default {defaults.host})")
    parser.add_argument("--port", type=int, default=defaults.port, help=f"port (default {defaults.port})")
    parser.add_argument("--workers", type=int, default=defaults.workers,
                        help=f"emulation worker processes (default {defaults.workers})")
    parser.add_argument("--database-url", default=defaults.database_url, help="SQLAlchemy URL of the run history")
    parser.add_argument("--data-dir", default=str(defaults.data_dir), help="where dumps and traces are kept")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    args = parser.parse_args(argv)
    cfg = defaults.model_copy(update={"host": args.host, "port": args.port, "workers": args.workers,
                                      "database_url": args.database_url, "data_dir": args.data_dir})
    cfg = ServiceSettings.model_validate(cfg.model_dump())
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(cfg), host=cfg.host, port=cfg.port, log_level=args.log_level)


if __name__ == "__main__":
    serve()
