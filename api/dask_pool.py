"""The service's runs on a Dask cluster (`PLENA_API_DASK_SCHEDULER=tcp://HOST:8786`).

`DaskPool` has the interface of `api.jobs.WorkerPool` (submit / cancel / get / start / shutdown and
the gauges the metrics read), so `RunService` uses either.  Each job is one Dask task running
`api.worker.execute(payload)` on a cluster worker; the workers need only the installed package and
warm the numba JIT once when they start (batch.executor.WarmUpPlugin).  A worker that dies is
replaced by the cluster and its task re-run by the scheduler (up to its allowed failures).

Differences from the local pool, by design of Dask: no live progress of a running job, and a
cancelled running job finishes on its worker in the background (its result is dropped; the run is
recorded as cancelled at once).  Budgets still hold: `run()` enforces them itself.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .jobs import Job, JobPool, _pool_outcome
from .worker import execute

log = logging.getLogger("plena.api.dask")


class DaskPool(JobPool):
    def __init__(self, address: str, queue_limit: int, *, retry_after: int = 5, warmup: bool = True,
                 on_start: Any = None, on_finish: Any = None, connect_timeout: float = 30.0):
        super().__init__(queue_limit, retry_after, warmup, on_start, on_finish)
        self.address = address
        self.connect_timeout = connect_timeout
        self.client: Any = None
        self._futures: dict[str, Any] = {}
        # Storing results touches the database: never on the Dask client's event loop.
        self._callbacks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="plena-dask-done")
        self._stopping = False

    @property
    def size(self) -> int:
        return max(1, self.workers_ready)

    # ------------------------------------------------------------------ life cycle
    def start(self, wait: bool = True, timeout: float | None = None) -> None:
        from distributed import Client

        self.client = Client(self.address, timeout=f"{self.connect_timeout}s")
        if self.warmup:
            from batch.executor import WarmUpPlugin

            self.client.register_plugin(WarmUpPlugin())
        self.started_workers = self.workers_ready
        log.info("runs go to the Dask scheduler %s (%d workers)", self.address, self.workers_ready)

    def shutdown(self) -> None:
        self._stopping = True
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            fut = self._futures.get(job.id)
            if fut is not None:
                fut.cancel()
            self._resolve(job, _pool_outcome("failed", "interrupted", "the service stopped before this run finished"))
        self._callbacks.shutdown(wait=True)
        if self.client is not None:
            self.client.close()

    # ------------------------------------------------------------------ state
    @property
    def workers_ready(self) -> int:
        if self.client is None or self.client.status != "running":
            return 0
        try:
            return len(self.client.scheduler_info().get("workers", {}))
        except Exception:  # the scheduler is unreachable right now
            return 0

    @property
    def worker_pids(self) -> list[int]:
        return []      # the workers are processes of the cluster, not of this service

    @property
    def warmup_problems(self) -> list[str]:
        return []

    # ------------------------------------------------------------------ submit / cancel
    def submit(self, job: Job) -> Job:
        self._admit(job, self._stopping)
        fut = self.client.submit(execute, job.payload, key=f"plena-run-{job.id}", pure=False)
        self._futures[job.id] = fut
        job.state = "running"      # handed to the cluster: Dask does not say when a worker starts it
        job.touch()
        self._started(job)
        fut.add_done_callback(lambda f, job=job: self._callbacks.submit(self._finished, job, f))
        return job

    def cancel(self, job_id: str) -> bool:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            return False
        job.cancel_requested = True
        fut = self._futures.get(job_id)
        if fut is not None:
            fut.cancel()
        self._resolve(job, _pool_outcome("cancelled", "cancelled", "the run was cancelled"))
        return True

    def _finished(self, job: Job, fut: Any) -> None:
        if fut.status == "finished":
            try:
                outcome = fut.result()
            except Exception as exc:  # the result could not be fetched (scheduler gone)
                outcome = _pool_outcome("failed", "worker_lost", f"the result was lost: {exc}")
        elif fut.status == "cancelled":
            return          # resolved by cancel() or shutdown()
        else:
            exc = fut.exception()
            kind = "worker_lost" if type(exc).__name__ == "KilledWorker" else "internal"
            outcome = _pool_outcome("failed", kind, f"the cluster could not run this job: {type(exc).__name__}: {exc}")
        self._resolve(job, outcome)

    def _resolve(self, job: Job, outcome: dict[str, Any]) -> None:
        """Finish a job exactly once: store (on_finish), release its slot, resolve the future."""
        with self._lock:
            if self._jobs.pop(job.id, None) is None:
                return
            self._futures.pop(job.id, None)
        self._settle(job, self._stored(job, outcome))
