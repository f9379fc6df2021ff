"""The run service: request validation, the worker pool, the run history and the metrics, tied
together.  Routers call it; it never runs an emulation in the service process."""

from __future__ import annotations

import base64
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .config import ServiceSettings
from .db import RunRecord, RunStore, utcnow
from .jobs import Job, QueueFull, WorkerPool
from .schemas import (
    DumpOut,
    EmulationErrorOut,
    EstimateRequest,
    FieldIssue,
    ProgressOut,
    RunLinks,
    RunOut,
    RunRequest,
    RunSummaryOut,
    TensorOut,
    json_floats,
    npy_bytes,
)
from .worker import InvalidInput, build_program, build_settings, input_issue

log = logging.getLogger("plena.api")

DUMP_DESCRIPTIONS = {
    "vram": "vram_dump.bin: bf16 LE rows of VLEN, up to the last non-zero row (every later row is zero)",
    "mram": "mram_dump.bin: every MRAM tile, MLEN×MLEN bf16 LE values row-major",
    "fpsram": "fpsram_dump.bin: 1024 bf16 LE (the preload is f16, the dump bf16)",
    "intsram": "intsram_dump.bin: 1024 uint32 LE",
}
__all__ = ["RequestInvalid", "QueueFull", "RunService", "Prepared"]


MX_BLOCK = 8   # elements per MXFP8 scale (the only HBM precision the settings accept)


def region_issues(outputs: Any, settings: Any) -> list[dict[str, Any]]:
    """FieldIssues for output regions that do not lie inside the memories these settings give."""
    from emulator.tensors import mx_layout

    issues = []

    def bad(loc: list, msg: str) -> None:
        issues.append({"loc": ["body", "outputs", *loc], "msg": msg, "type": "value_error", "ctx": None})

    lanes = settings.VECTOR_SRAM_SIZE * settings.VLEN
    for i, r in enumerate(outputs.vram_regions):
        if r.row_dim > settings.VLEN:
            bad(["vram_regions", i, "row_dim"], f"row_dim {r.row_dim} is wider than a VRAM row (VLEN {settings.VLEN})")
        elif (r.start_row + r.num_rows) * r.row_dim > lanes:
            bad(["vram_regions", i, "start_row"],
                f"rows {r.start_row}..{r.start_row + r.num_rows - 1} of {r.row_dim} values lie past the end of VRAM "
                f"({settings.VECTOR_SRAM_SIZE} rows of {settings.VLEN})")
    for i, r in enumerate(outputs.hbm_regions):
        if r.shape[-1] % MX_BLOCK:
            bad(["hbm_regions", i, "shape"],
                f"the last dimension ({r.shape[-1]}) must be a multiple of the MXFP8 block ({MX_BLOCK})")
            continue
        end = mx_layout(r.shape, r.addr)["end"]
        if end > settings.HBM_SIZE:
            bad(["hbm_regions", i, "addr"], f"the tensor at {r.addr} needs HBM bytes [{r.addr}, {end}) but HBM_SIZE is "
                                            f"{settings.HBM_SIZE}")
    return issues


MAX_WARNINGS = 100   # warnings kept with a run (a program can have one per line)


def kept_warnings(warnings: list[str]) -> list[str]:
    """The first MAX_WARNINGS warnings, and a count of the rest."""
    if len(warnings) <= MAX_WARNINGS:
        return list(warnings)
    return list(warnings[:MAX_WARNINGS]) + [f"... and {len(warnings) - MAX_WARNINGS} more warnings"]


class RequestInvalid(Exception):
    """The request cannot be run; `issues` are FieldIssue dicts (422)."""

    def __init__(self, issues: list[dict[str, Any]]):
        super().__init__("; ".join(i["msg"] for i in issues))
        self.issues = issues


@dataclass
class Prepared:
    """A validated request, ready to queue."""

    payload: dict[str, Any]
    program_sha256: str
    program_words: int
    program_name: str | None
    wall_limit: float


class Metrics:
    def __init__(self, registry: CollectorRegistry, service: RunService):
        self.runs = Counter("plena_runs", "Runs finished, by status", ["status"], registry=registry)
        self.rejected = Counter("plena_runs_rejected", "Run requests rejected before queueing, by reason",
                                ["reason"], registry=registry)
        self.wall = Histogram("plena_run_wall_seconds", "Wall time of finished runs in the worker",
                              buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900), registry=registry)
        self.cycles = Counter("plena_emulated_cycles", "Emulated cycles of finished runs", registry=registry)
        self.instructions = Counter("plena_emulated_instructions", "Emulated dynamic instructions",
                                    registry=registry)
        self.http = Counter("plena_http_requests", "HTTP requests, by method, route and status",
                            ["method", "route", "status"], registry=registry)
        in_flight = Gauge("plena_runs_in_flight", "Runs queued or running", registry=registry)
        in_flight.set_function(lambda: service.pool.in_flight)
        ready = Gauge("plena_workers_ready", "Worker processes warmed up and alive", registry=registry)
        ready.set_function(lambda: service.pool.workers_ready)
        started = Gauge("plena_workers_started", "Worker processes started (replacements included)",
                        registry=registry)
        started.set_function(lambda: service.pool.started_workers)
        limit = Gauge("plena_queue_limit", "Most runs queued or running at once", registry=registry)
        limit.set(service.cfg.queue_limit)


class RunService:
    def __init__(self, cfg: ServiceSettings):
        self.cfg = cfg
        self.store = RunStore(cfg.database_url, cfg.data_dir, cfg.blob_storage, cfg.retention_runs,
                              cfg.retention_grace_seconds)
        if cfg.dask_scheduler:   # runs go to a Dask cluster (api/dask_pool.py)
            from .dask_pool import DaskPool

            self.pool = DaskPool(cfg.dask_scheduler, cfg.queue_limit, retry_after=cfg.retry_after_seconds,
                                 warmup=cfg.warmup, on_start=self._on_start, on_finish=self._on_finish)
        else:
            self.pool = WorkerPool(cfg.workers, cfg.queue_limit, retry_after=cfg.retry_after_seconds,
                                   warmup=cfg.warmup, start_method=cfg.start_method,
                                   kill_grace_seconds=cfg.kill_grace_seconds,
                                   on_start=self._on_start, on_finish=self._on_finish)
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry, self)

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        self.store.create_schema()
        interrupted = self.store.mark_interrupted()
        if interrupted:
            log.warning("%d runs of a previous service process never finished; marked failed", interrupted)
        self.pool.start(wait=True)

    def stop(self) -> None:
        self.pool.shutdown()
        self.store.dispose()

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _program_and_settings(program_in: Any, settings_in: Any, timing: str | None = None
                              ) -> tuple[Any, Any, dict, dict | None]:
        """(settings, program, program spec, settings spec), or RequestInvalid naming the field.

        `timing` (the request's field) becomes the settings override "timing"."""
        settings_spec = settings_in.model_dump() if settings_in is not None else None
        if timing is not None:
            settings_spec = dict(settings_spec or {"toml": None, "overrides": {}, "missing": "error"})
            settings_spec["overrides"] = {**settings_spec.get("overrides", {}), "timing": timing}
        program_spec = program_in.model_dump(exclude_none=True)
        try:
            settings = build_settings(settings_spec)
            program = build_program(program_spec)
        except InvalidInput as exc:
            raise RequestInvalid([exc.issue]) from None
        return settings, program, program_spec, settings_spec

    def prepare_estimate(self, req: EstimateRequest) -> dict[str, Any]:
        """Validate an estimate request; the payload for the worker pool."""
        from emulator.errors import InputError
        from emulator.images import load_int_sram

        _, _, program_spec, settings_spec = self._program_and_settings(req.program, req.settings)
        if req.int_sram is not None:
            try:
                load_int_sram(req.int_sram)
            except InputError as exc:
                raise RequestInvalid([input_issue(exc, ["body", "int_sram"])]) from None
        max_instructions = req.max_instructions or self.cfg.max_instructions
        if max_instructions > self.cfg.max_instructions:
            raise RequestInvalid([{"loc": ["body", "max_instructions"], "type": "value_error", "ctx": None,
                                   "msg": f"at most {self.cfg.max_instructions} on this service"}])
        return {"kind": "estimate", "program": program_spec, "settings": settings_spec, "int_sram": req.int_sram,
                "max_instructions": max_instructions, "max_wall_seconds": self.cfg.max_wall_seconds,
                "sections": req.sections}

    def submit_estimate(self, payload: dict[str, Any]) -> Job:
        job = Job(id=uuid.uuid4().hex, payload=payload, wall_limit=self.cfg.max_wall_seconds, recorded=False)
        try:
            self.pool.submit(job)
        except QueueFull:
            self.metrics.rejected.labels("queue_full").inc()
            raise
        return job

    def prepare(self, req: RunRequest) -> Prepared:
        """Validate everything that can be checked before running; raises RequestInvalid."""
        from emulator.errors import InputError
        from emulator.images import load_fp_sram, load_int_sram
        from emulator.runner import largest_arrays, state_bytes
        from emulator.tensors import hbm_image_layouts, mx_layout, quantize_mxfp8

        cfg = self.cfg
        settings, program, program_spec, settings_spec = self._program_and_settings(req.program, req.settings,
                                                                                    req.timing)
        issues: list[dict[str, Any]] = []

        def bad(loc: list, msg: str, type_: str = "value_error") -> None:
            issues.append({"loc": loc, "msg": msg, "type": type_, "ctx": None})

        tensors = []
        for i, t in enumerate(req.tensors):
            field = "values" if t.values is not None else "npy_base64"
            try:
                arr = t.array()
            except ValueError as exc:
                bad(["body", "tensors", i, field], str(exc))
                continue
            if arr.shape[-1] % MX_BLOCK:
                bad(["body", "tensors", i, "shape"], f"the last dimension ({arr.shape[-1]}) must be a multiple of "
                                                     f"the MXFP8 block ({MX_BLOCK})", "image_error")
                continue
            try:
                end = mx_layout(arr.shape, t.hbm_addr)["end"]
            except InputError as exc:
                bad(["body", "tensors", i, "shape"], str(exc), "image_error")
                continue
            if end > settings.HBM_SIZE:
                bad(["body", "tensors", i, "hbm_addr"],
                    f"tensor {t.name!r} needs HBM bytes [{t.hbm_addr}, {end}) but HBM_SIZE is {settings.HBM_SIZE}",
                    "image_error")
                continue
            try:   # values the MXFP8 writer cannot encode (NaN) are the client's to fix
                quantize_mxfp8(arr.reshape(-1, arr.shape[-1]))
            except InputError as exc:
                bad(["body", "tensors", i, field], str(exc), "image_error")
                continue
            tensors.append((t.name, arr, t.hbm_addr))
        if not issues and tensors:
            try:
                hbm_image_layouts(tensors)
            except InputError as exc:
                bad(["body", "tensors"], str(exc), "image_error")
        images: dict[str, bytes] = {}
        if req.images is not None:
            img = req.images
            if img.hbm is not None:
                if len(img.hbm) > settings.HBM_SIZE:
                    bad(["body", "images", "hbm"], f"HBM image holds {len(img.hbm)} bytes; HBM_SIZE is "
                                                    f"{settings.HBM_SIZE}", "image_error")
                images["hbm"] = img.hbm
            for key, loader in (("fp_sram", load_fp_sram), ("int_sram", load_int_sram)):
                data = getattr(img, key)
                if data is not None:
                    try:
                        loader(data)
                    except InputError as exc:
                        bad(["body", "images", key], str(exc), "image_error")
                    images[key] = data
            if img.vram is not None:
                images["vram"] = img.vram
        max_instructions = req.max_instructions or cfg.max_instructions
        if max_instructions > cfg.max_instructions:
            bad(["body", "max_instructions"], f"at most {cfg.max_instructions} on this service")
        wall = req.max_wall_seconds or cfg.max_wall_seconds
        if wall > cfg.max_wall_seconds:
            bad(["body", "max_wall_seconds"], f"at most {cfg.max_wall_seconds:g} on this service")
        trace_limit = 0
        if req.trace:
            trace_limit = req.trace_limit or cfg.max_trace_events
            if trace_limit > cfg.max_trace_events:
                bad(["body", "trace_limit"], f"at most {cfg.max_trace_events} on this service")
        elif req.trace_limit is not None:
            bad(["body", "trace_limit"], "trace_limit needs trace: true")
        out_bytes = req.outputs.tensor_bytes()
        if out_bytes > cfg.max_output_bytes:
            bad(["body", "outputs"], f"the regions asked for take {out_bytes} bytes as float32; this service "
                                     f"returns at most {cfg.max_output_bytes}")
        issues += region_issues(req.outputs, settings)
        if not issues:
            preload = len(images.get("hbm", b"")) + sum(mx_layout(arr.shape, 0)["end"] for _, arr, _ in tensors)
            need = sum(state_bytes(settings, len(program), trace_limit).values()) + preload
            if need > cfg.max_run_bytes:
                bad(["body", "settings"], f"this run needs {need:,} bytes (settings-sized state: "
                                          f"{largest_arrays(settings, len(program), trace_limit)}; HBM preload "
                                          f"{preload:,}); this service allows {cfg.max_run_bytes:,} per run",
                    "resources")
        if issues:
            raise RequestInvalid(issues)

        payload = {
            "program": program_spec,
            "settings": settings_spec,
            "images": images,
            "tensors": [{"name": n, "hbm_addr": a, "shape": list(arr.shape), "data": arr.astype("<f4").tobytes()}
                        for n, arr, a in tensors],
            "outputs": req.outputs.model_dump(),
            "max_instructions": max_instructions,
            "max_wall_seconds": wall,
            "max_output_bytes": cfg.max_output_bytes,
            "max_run_bytes": cfg.max_run_bytes,
            "trace_limit": trace_limit,
            "sections": req.sections,
            "timing": settings.timing,
        }
        return Prepared(payload, program.sha256, len(program), req.program.name, wall)

    # ------------------------------------------------------------------ submit / cancel
    def submit(self, prep: Prepared, req: RunRequest) -> Job:
        """Record the run (queued) and queue it; raises QueueFull."""
        run_id = uuid.uuid4().hex
        settings = req.settings
        self.store.add(RunRecord(
            id=run_id, status="queued", tag=req.tag, program_sha256=prep.program_sha256,
            program_name=prep.program_name, program_words=prep.program_words,
            settings_toml=settings.toml if settings else None,
            settings_overrides=dict(settings.overrides) if settings else {},
            settings_missing=settings.missing if settings else "error",
            options={"outputs": req.outputs.model_dump(), "max_instructions": prep.payload["max_instructions"],
                     "max_wall_seconds": prep.payload["max_wall_seconds"],
                     "trace_limit": prep.payload["trace_limit"],
                     "tensors": [{"name": t["name"], "hbm_addr": t["hbm_addr"], "shape": t["shape"]}
                                 for t in prep.payload["tensors"]],
                     "images": sorted(prep.payload["images"]), "timing": prep.payload["timing"]},
            created_at=utcnow(), warnings=[]))
        job = Job(id=run_id, payload=prep.payload, wall_limit=prep.wall_limit)
        try:
            self.pool.submit(job)
        except QueueFull:
            self.store.delete(run_id)
            self.metrics.rejected.labels("queue_full").inc()
            raise
        return job

    def cancel(self, run_id: str) -> bool:
        return self.pool.cancel(run_id)

    # ------------------------------------------------------------------ pool callbacks (job threads)
    def _on_start(self, job: Job) -> None:
        if not job.recorded:
            return
        self.store.update(job.id, status="running", started_at=utcnow())

    def _on_finish(self, job: Job, outcome: dict[str, Any]) -> dict[str, Any]:
        if not job.recorded:
            return outcome
        status = outcome["status"]
        error = outcome.get("error")
        if status == "internal":
            status = "failed"
        totals = outcome.get("totals") or {}
        values: dict[str, Any] = {
            "status": status, "finished_at": utcnow(), "error": error, "issues": outcome.get("issues"),
            "profile": outcome.get("profile"), "warnings": kept_warnings(outcome.get("warnings") or []),
        }
        for key in ("cycles", "instructions", "hbm_bytes_read", "hbm_bytes_written", "hbm_model", "wall_seconds"):
            values[key] = totals.get(key)
        blobs: dict[str, tuple[bytes, str]] = {}
        outputs = outcome.get("outputs") or []
        if outputs:
            meta, offset, parts = [], 0, []
            for o in outputs:
                meta.append({"name": o["name"], "shape": o["shape"], "offset": offset, "bytes": len(o["data"])})
                parts.append(o["data"])
                offset += len(o["data"])
            values["outputs_meta"] = meta
            blobs["outputs"] = (b"".join(parts), "application/octet-stream")
        for name, data in (outcome.get("dumps") or {}).items():
            blobs[f"dump_{name}"] = (data, "application/octet-stream")
        if outcome.get("trace"):
            blobs["trace"] = (outcome["trace"], "application/json")
        if outcome.get("profile_json"):
            blobs["profile"] = (outcome["profile_json"], "application/json")
        self.store.finish(job.id, values, blobs)
        self.metrics.runs.labels(status).inc()
        if totals:
            self.metrics.cycles.inc(totals.get("cycles") or 0)
            self.metrics.instructions.inc(totals.get("instructions") or 0)
            if totals.get("wall_seconds") is not None:
                self.metrics.wall.observe(totals["wall_seconds"])
        if outcome["status"] == "internal":
            log.error("run %s failed inside the emulator: %s", job.id, (error or {}).get("message"))
        return outcome

    # ------------------------------------------------------------------ reading runs
    def run_out(self, record: RunRecord, fmt: str | None = None) -> RunOut:
        """The API view of a stored run (with live progress when it is running here)."""
        base = f"/v1/runs/{record.id}"
        blobs = self.store.blob_info(record.id)
        links = RunLinks(self=base, events=f"{base}/events", trace=f"{base}/trace" if "trace" in blobs else None,
                         profile=f"{base}/profile" if "profile" in blobs else None)
        outputs = None
        if record.outputs_meta:
            fmt = fmt or (record.options or {}).get("outputs", {}).get("format", "json")
            got = self.store.blob(record.id, "outputs")
            if got is not None:
                data = got[0]
                outputs = []
                for m in record.outputs_meta:
                    arr = np.frombuffer(data, dtype="<f4", count=m["bytes"] // 4, offset=m["offset"]).reshape(m["shape"])
                    if fmt == "npy":
                        outputs.append(TensorOut(name=m["name"], shape=m["shape"],
                                                 npy_base64=base64.b64encode(npy_bytes(arr.astype(np.float32))).decode()))
                    else:
                        outputs.append(TensorOut(name=m["name"], shape=m["shape"], values=json_floats(arr)))
        dumps = [DumpOut(name=n[5:], bytes=size, url=f"{base}/dumps/{n[5:]}", description=DUMP_DESCRIPTIONS[n[5:]])
                 for n, size in sorted(blobs.items()) if n.startswith("dump_")]
        progress = None
        job = self.pool.get(record.id)
        if job is not None and job.progress is not None:
            progress = ProgressOut(instructions=job.progress[0], cycles=job.progress[1])
        status = record.status
        if job is not None and job.state == "running" and status == "queued":
            status = "running"     # the job thread has not written the start yet
        return RunOut(
            id=record.id, status=status, tag=record.tag, program_sha256=record.program_sha256,
            program_name=record.program_name, program_words=record.program_words,
            created_at=record.created_at, started_at=record.started_at, finished_at=record.finished_at,
            cycles=record.cycles, instructions=record.instructions, hbm_bytes_read=record.hbm_bytes_read,
            hbm_bytes_written=record.hbm_bytes_written, hbm_model=record.hbm_model,
            timing=(record.options or {}).get("timing", "sequential"),
            wall_seconds=record.wall_seconds, progress=progress, outputs=outputs, profile=record.profile,
            error=EmulationErrorOut(**record.error) if record.error else None,
            issues=[FieldIssue(**i) for i in record.issues] if record.issues else None,
            dumps=dumps, warnings=list(record.warnings or []), links=links)

    @staticmethod
    def summary_out(record: RunRecord) -> RunSummaryOut:
        return RunSummaryOut(
            id=record.id, status=record.status, tag=record.tag, program_sha256=record.program_sha256,
            program_name=record.program_name, created_at=record.created_at, finished_at=record.finished_at,
            cycles=record.cycles, instructions=record.instructions,
            error_kind=(record.error or {}).get("kind"))
