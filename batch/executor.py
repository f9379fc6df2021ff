"""Running a batch on Dask distributed: a LocalCluster by default, any cluster by its address.

Each job is one Dask task (`batch.job.run_task`) keyed by the batch token and the job id.  The
scheduler re-runs the task of a worker that dies (up to `distributed.scheduler.allowed-failures`
times, then the job is a failed row of kind "worker_lost"); the client records each job id at most
once, so a retried job is neither lost nor duplicated.  Rows are written as they arrive
(batch.results), so `resume=True` skips the jobs an earlier, interrupted run already recorded.

Every worker warms the numba JIT once when it starts (a WorkerPlugin): the compiled core comes
from the on-disk cache, so later jobs pay nothing for it.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from distributed import Client, LocalCluster, as_completed
from distributed.diagnostics.plugin import WorkerPlugin

from .job import ROW_STATUSES, base_row, empty_result_columns, run_task, task_for
from .manifest import Job, Plan
from .results import ResultWriter, results_format

log = logging.getLogger("plena.batch")

WARMUP_ASM = "S_ADDI_INT gp1, gp0, 256\nC_SET_SCALE_REG gp1\nH_PREFETCH_V gp0, gp0, a0, 0, 0\nV_ADD_VV gp0, gp0, gp0, 0\n"


def warm_up() -> None:
    """Load (or compile) the numba core with a tiny program under both HBM models."""
    from emulator.asm import assemble
    from emulator.runner import run
    from emulator.settings import default_settings

    program = assemble(WARMUP_ASM, name="warmup")
    for model in ("hbm2", "analytic"):
        run(program, settings=default_settings().with_overrides({"hbm_model": model}), max_instructions=100)


class WarmUpPlugin(WorkerPlugin):
    """Runs `warm_up` in every worker when it starts (restarted workers included)."""

    name = "plena-warmup"

    def setup(self, worker: Any) -> None:
        warm_up()


def default_workers() -> int:
    """One worker process per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def local_cluster(workers: int | None = None) -> LocalCluster:
    """A LocalCluster of single-threaded worker processes on loopback.  Its HTTP endpoint takes any
    free port (the default 8787 may belong to another cluster on this machine)."""
    return LocalCluster(n_workers=workers or default_workers(), threads_per_worker=1, processes=True,
                        host="127.0.0.1", dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)


def connect(client: Client | None = None, scheduler: str | None = None,
            workers: int | None = None) -> tuple[Client, Callable[[], None]]:
    """(client, close) for an existing client, a scheduler address, or a new LocalCluster."""
    if client is not None:
        client.register_plugin(WarmUpPlugin())
        return client, lambda: None
    if scheduler:
        c = Client(scheduler, timeout="30s")
        c.register_plugin(WarmUpPlugin())
        return c, c.close
    cluster = local_cluster(workers)
    c = Client(cluster)
    c.register_plugin(WarmUpPlugin())

    def close() -> None:
        c.close()
        cluster.close()
    return c, close


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _lost_row(kind: str, message: str) -> dict[str, Any]:
    row = empty_result_columns()
    row.update(status="failed", error_kind=kind, error_message=message)
    return row


class _Progress:
    """A rich progress bar on stderr: done/total, failed, elapsed and ETA."""

    def __init__(self, total: int, completed: int, enabled: bool, label: str):
        self.progress = None
        self.failed = 0
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("[red]{task.fields[failed]} failed"), TimeElapsedColumn(),
                                 TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True),
                                 transient=False)
        self.task = self.progress.add_task(label, total=total, completed=completed, failed=0)
        self.progress.start()

    def advance(self, failed: bool) -> None:
        self.failed += failed
        if self.progress is not None:
            self.progress.update(self.task, advance=1, failed=self.failed)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def run_batch(plan: Plan, out_dir: str | Path, *, client: Client | None = None, scheduler: str | None = None,
              workers: int | None = None, resume: bool = False, fmt: str | None = None,
              progress: bool = False, on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run every job of `plan` not yet recorded in `out_dir`; returns the batch summary (also
    written to out_dir/summary.json).  `on_row(row)` is called after each row is recorded."""
    out = Path(out_dir)
    fmt = fmt or (results_format(out) if resume and out.exists() else None) or plan.options.format
    writer = ResultWriter(out, fmt, resume=resume)
    todo = [j for j in plan.jobs if j.job_id not in writer.done]
    plan_ids = {j.job_id for j in plan.jobs}
    counts = dict.fromkeys(ROW_STATUSES, 0)
    for r in writer.previous:
        if r["job_id"] in plan_ids and r["status"] in counts:
            counts[r["status"]] += 1
    resumed = len(plan.jobs) - len(todo)
    started, t0 = _now(), time.perf_counter()
    summary: dict[str, Any] = {
        "batch": plan.name, "manifest": plan.source, "manifest_sha256": plan.manifest_sha256,
        "out_dir": str(out), "format": fmt, "results": str(writer.results_path), "jobs": len(plan.jobs),
        "grid": plan.grid_keys, "max_instructions": plan.options.max_instructions,
        "max_seconds": plan.options.max_seconds, "resumed": resumed, "ran": 0, "started_at": started,
        "state": "running", "scheduler": None, "workers": None, **counts,
    }

    def record(job: Job, outcome: dict[str, Any]) -> None:
        row = {**base_row(job), **outcome["row"], "profile_path": None, "dumps_dir": None, "finished_at": _now()}
        if outcome.get("profile_json"):
            row["profile_path"] = writer.write_profile(job.job_id, outcome["profile_json"])
        if outcome.get("dumps"):
            row["dumps_dir"] = writer.write_dumps(job.job_id, outcome["dumps"])
        if writer.add(row):
            counts[row["status"]] = counts.get(row["status"], 0) + 1
            summary["ran"] += 1
            bar.advance(row["status"] != "ok")
            if on_row is not None:
                on_row(row)

    bar = _Progress(len(plan.jobs), resumed, progress, plan.name)
    close: Callable[[], None] = lambda: None
    try:
        writer.write_summary(summary)
        if todo:
            c, close = connect(client, scheduler, workers)
            info = c.scheduler_info()
            summary["scheduler"] = info.get("address")
            summary["workers"] = len(info.get("workers", {}))
            token = uuid.uuid4().hex[:12]
            by_key: dict[str, Job] = {}
            futures = []
            for job in todo:
                fut = c.submit(run_task, task_for(job, plan.options), key=f"plena-batch-{token}-{job.job_id}",
                               pure=False)
                by_key[fut.key] = job
                futures.append(fut)
            for fut in as_completed(futures):
                job = by_key[fut.key]
                if fut.status == "finished":
                    outcome = fut.result()
                else:
                    exc = fut.exception()
                    kind = "worker_lost" if type(exc).__name__ == "KilledWorker" else "internal"
                    outcome = {"row": _lost_row(kind, f"{type(exc).__name__}: {exc}")}
                record(job, outcome)
                fut.release()
                if not writer.pending:   # the rows are on disk: let the summary say so
                    writer.write_summary({**summary, **counts})
        writer.finish()
        summary["state"] = "finished"
    except BaseException:
        writer.flush()
        summary["state"] = "interrupted"
        raise
    finally:
        bar.close()
        wall = time.perf_counter() - t0
        summary.update(counts, finished_at=_now(), wall_seconds=round(wall, 3),
                       jobs_per_second=round(summary["ran"] / wall, 3) if wall > 0 else None)
        try:
            writer.write_summary(summary)
        finally:
            close()
    return summary
