"""Batches in the service: a manifest (the `plena-batch` format, as JSON or TOML) run through the
service's own pool (local worker processes, or the Dask cluster of PLENA_API_DASK_SCHEDULER).

Each job of a batch is a run of the run history, tagged `batch:<id>` (so `GET /v1/runs?tag=...`,
its profile and the dashboard work as for any run), and one row of the batch's result table,
written as it finishes with batch.results (the same rows and columns as `plena-batch run`):

    data_dir/batches/<id>/batch.json     id, name, jobs, state, times
    data_dir/batches/<id>/results.csv    one row per finished job (batch.results)
    data_dir/batches/<id>/inputs/        uploaded files (POST /v1/batches/files)

At most `2 x workers` jobs of a batch are queued at a time, so a large batch never fills the
service's queue for other clients.  Batches that were running when the service stopped are
marked "interrupted" at the next start (their finished rows stay).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, wait
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .db import RunRecord, utcnow
from .jobs import Job, QueueFull

log = logging.getLogger("plena.api.batches")

BATCH_STATES = ("running", "finished", "cancelled", "interrupted")
META_FILE = "batch.json"


def batch_tag(batch_id: str) -> str:
    return f"batch:{batch_id}"


# ----------------------------------------------------------------------------- in the worker

def execute_batch_job(payload: dict[str, Any], progress: Any = None) -> dict[str, Any]:
    """Worker side (api.worker.execute, kind "batch_job"): run one batch job, return the run
    outcome the run history stores plus the batch row (`row`)."""
    from batch.job import execute_job

    from .worker import RunCancelled, build_profile, error_dict

    cancelled = []

    def report(instructions: int, cycles: int) -> None:
        try:
            if progress is not None:
                progress(instructions, cycles)
        except RunCancelled:
            cancelled.append(True)
            raise

    row, result = execute_job(payload["task"], progress=report)
    status = {"ok": "succeeded", "failed": "failed", "invalid": "invalid"}[row["status"]]
    outcome: dict[str, Any] = {"status": status, "row": row, "totals": None, "error": None, "issues": None,
                               "outputs": [], "dumps": {}, "trace": None, "profile": None, "profile_json": None,
                               "warnings": [], "program_sha256": row["program_sha256"]}
    if cancelled:   # run() stopped at the progress report that raised RunCancelled
        row.update(status="failed", error_kind="cancelled", error_message="the run was cancelled", error_pc=None,
                   error_opcode=None, error_line=None)
        outcome.update(status="cancelled", error=error_dict("cancelled", "the run was cancelled"))
        return outcome
    if status == "invalid":
        outcome["issues"] = [{"loc": ["body", "manifest", "jobs"], "msg": row["error_message"],
                              "type": "input_error", "ctx": {"line": row["error_line"]} if row["error_line"] else None}]
    elif status == "failed":
        outcome["error"] = error_dict(row["error_kind"], row["error_message"], row["error_pc"], row["error_opcode"],
                                      row["error_line"])
    if result is not None:
        outcome["warnings"] = list(result.warnings)
        outcome["totals"] = {k: row[k] for k in ("cycles", "instructions", "hbm_bytes_read", "hbm_bytes_written",
                                                 "hbm_model", "wall_seconds")}
        try:
            outcome["profile"], outcome["profile_json"] = build_profile(result)
        except Exception as exc:  # a profile problem never fails the run
            outcome["warnings"].append(f"no profile: {exc}")
    return outcome


# ----------------------------------------------------------------------------- in the service

class BatchState:
    """One batch the service runs (its meta is mirrored in batch.json)."""

    def __init__(self, batch_id: str, directory: Path, plan: Any, created_at: str):
        self.id = batch_id
        self.dir = directory
        self.plan = plan
        self.name = plan.name
        self.jobs = len(plan.jobs)
        self.state = "running"
        self.created_at = created_at
        self.finished_at: str | None = None
        self.cancel_requested = False
        self.cancel_state = "cancelled"       # the state a cancelled batch ends in
        self.in_flight: dict[str, Job] = {}
        self.lock = threading.Lock()

    def meta(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "jobs": self.jobs, "state": self.state,
                "created_at": self.created_at, "finished_at": self.finished_at,
                "grid": self.plan.grid_keys if self.plan is not None else []}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class BatchManager:
    def __init__(self, service: Any):
        self.service = service
        self.root = Path(service.cfg.data_dir) / "batches"
        self.batches: dict[str, BatchState] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Mark batches a previous service process left running as interrupted."""
        self.root.mkdir(parents=True, exist_ok=True)
        for meta_path in self.root.glob(f"*/{META_FILE}"):
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                continue
            if meta.get("state") == "running":
                meta.update(state="interrupted", finished_at=_now())
                self._write_meta(meta_path.parent, meta)

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            batches = list(self.batches.values())
        for b in batches:
            self.cancel(b.id, reason="interrupted")
        for t in self._threads:
            t.join(30)

    def new_id(self) -> str:
        return uuid.uuid4().hex

    def directory(self, batch_id: str) -> Path:
        return self.root / batch_id

    @staticmethod
    def _write_meta(directory: Path, meta: dict[str, Any]) -> None:
        tmp = directory / f".{META_FILE}.tmp"
        tmp.write_text(json.dumps(meta, indent=2))
        os.replace(tmp, directory / META_FILE)

    # ------------------------------------------------------------------ start / cancel
    def start_batch(self, batch_id: str, plan: Any) -> BatchState:
        from batch.results import ResultWriter

        d = self.directory(batch_id)
        d.mkdir(parents=True, exist_ok=True)
        batch = BatchState(batch_id, d, plan, _now())
        writer = ResultWriter(d, "csv", resume=True)
        self._write_meta(d, batch.meta())
        with self._lock:
            self.batches[batch_id] = batch
        t = threading.Thread(target=self._run, args=(batch, writer), name=f"plena-batch-{batch_id[:8]}", daemon=True)
        self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()
        return batch

    def cancel(self, batch_id: str, reason: str = "cancelled") -> bool:
        batch = self.batches.get(batch_id)
        if batch is None or batch.state != "running":
            return False
        batch.cancel_requested = True
        batch.cancel_state = reason
        with batch.lock:
            jobs = list(batch.in_flight)
        for job_id in jobs:
            self.service.pool.cancel(job_id)
        return True

    # ------------------------------------------------------------------ the batch thread
    def _task(self, job: Any, options: Any) -> tuple[dict[str, Any], float]:
        from batch.job import task_for

        cfg = self.service.cfg
        task = task_for(job, options.model_copy(update={"inputs": "travel", "dumps": False}))
        task["max_instructions"] = min(task["max_instructions"] or cfg.max_instructions, cfg.max_instructions)
        task["max_seconds"] = min(task["max_seconds"] or cfg.max_wall_seconds, cfg.max_wall_seconds)
        task["max_run_bytes"] = cfg.max_run_bytes
        return task, task["max_seconds"]

    def _submit(self, batch: BatchState, job: Any) -> Job | None:
        from emulator.asm import assemble, parse_mem

        task, wall = self._task(job, batch.plan.options)
        text = task["program"]["data"].decode("utf-8", errors="replace")
        try:   # the history indexes runs by machine-code hash; the worker reports a bad program
            program = parse_mem(text) if job.program.path.suffix.lower() in (".mem", ".hex") else assemble(text)
            sha, words = program.sha256, len(program)
        except Exception:
            sha, words = job.program.sha256, 0
        run_id = uuid.uuid4().hex
        store = self.service.store
        store.add(RunRecord(
            id=run_id, status="queued", tag=batch_tag(batch.id), program_sha256=sha, program_name=job.name[:64],
            program_words=words, settings_toml=task["settings"]["data"].decode("utf-8", errors="replace")
            if task["settings"] else None, settings_overrides=dict(job.overrides),
            settings_missing=job.settings_missing,
            options={"batch": batch.id, "job_id": job.job_id, "max_instructions": task["max_instructions"],
                     "max_wall_seconds": task["max_seconds"], "images": sorted(task["images"])},
            created_at=utcnow(), warnings=[]))
        pool_job = Job(id=run_id, payload={"kind": "batch_job", "task": task}, wall_limit=wall)
        while not self._stopping.is_set() and not batch.cancel_requested:
            try:
                self.service.pool.submit(pool_job)
                return pool_job
            except QueueFull as exc:   # other clients fill the queue: wait for room
                time.sleep(min(exc.retry_after, 1.0))
        store.delete(run_id)
        return None

    def _record(self, batch: BatchState, writer: Any, job: Any, pool_job: Job) -> None:
        from batch.job import base_row, empty_result_columns

        outcome = pool_job.future.result()
        row = outcome.get("row")
        if row is None:       # the pool resolved it without running it (cancelled, worker lost, stopped)
            err = outcome.get("error") or {}
            row = empty_result_columns() | {"status": "failed", "error_kind": err.get("kind"),
                                            "error_message": err.get("message")}
        row = {**base_row(job), **row, "run_id": pool_job.id, "finished_at": _now(),
               "profile_path": f"/v1/runs/{pool_job.id}/profile" if outcome.get("profile_json") else None}
        writer.add(row)

    def _run(self, batch: BatchState, writer: Any) -> None:
        window = max(2, 2 * self.service.pool.size)
        pending: dict[Any, tuple[Any, Job]] = {}
        try:
            for job in batch.plan.jobs:
                if batch.cancel_requested or self._stopping.is_set():
                    break
                while len(pending) >= window:
                    done, _ = wait(list(pending), timeout=1.0, return_when=FIRST_COMPLETED)
                    for fut in done:
                        j, pj = pending.pop(fut)
                        self._finish_one(batch, writer, j, pj)
                pool_job = self._submit(batch, job)
                if pool_job is None:
                    break
                with batch.lock:
                    batch.in_flight[pool_job.id] = pool_job
                pending[pool_job.future] = (job, pool_job)
            for fut in list(pending):
                fut.result()
                j, pj = pending.pop(fut)
                self._finish_one(batch, writer, j, pj)
            batch.state = batch.cancel_state if batch.cancel_requested else "finished"
        except Exception:
            log.exception("batch %s stopped", batch.id)
            batch.state = "interrupted"
        finally:
            writer.finish()
            batch.finished_at = _now()
            self._write_meta(batch.dir, batch.meta())

    def _finish_one(self, batch: BatchState, writer: Any, job: Any, pool_job: Job) -> None:
        with batch.lock:
            batch.in_flight.pop(pool_job.id, None)
        self._record(batch, writer, job, pool_job)

    # ------------------------------------------------------------------ reading
    def get(self, batch_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """(meta, rows) of a batch, live or from its directory; None when unknown."""
        from batch.results import ResultsError, read_rows

        batch = self.batches.get(batch_id)
        d = self.directory(batch_id)
        if batch is not None:
            meta = batch.meta()
        elif (d / META_FILE).is_file():
            meta = json.loads((d / META_FILE).read_text())
        else:
            return None
        try:
            rows = read_rows(d).to_pylist()
        except ResultsError:
            rows = []
        return meta, rows

    def list(self) -> list[dict[str, Any]]:
        out = []
        for meta_path in self.root.glob(f"*/{META_FILE}"):
            batch = self.batches.get(meta_path.parent.name)
            if batch is not None:
                out.append(batch.meta())
                continue
            try:
                out.append(json.loads(meta_path.read_text()))
            except (OSError, ValueError):
                continue
        return sorted(out, key=lambda m: m.get("created_at") or "", reverse=True)
