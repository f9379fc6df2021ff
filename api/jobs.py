"""Execution off the event loop: a pool of worker processes, a bounded queue, cancellation.

Why not `concurrent.futures.ProcessPoolExecutor`: it cannot stop one running task, and when one
worker dies (killed, out of memory) the whole executor is broken and every queued future fails.
Here each worker is a `multiprocessing` process (spawn or forkserver context) with its own pipe
and one dispatcher thread in the service process:

* A running job is cancelled cooperatively (a "cancel" message, honoured at the run's next
  progress report, ~0.1 s) and, if the worker does not answer within `kill_grace_seconds`, by
  killing that worker and starting a fresh one.  The same happens when a job overruns its wall
  budget (which `run()` enforces itself) by the grace period plus OUTPUT_ALLOWANCE_SECONDS, or
  its worker dies: only that job fails, the pool keeps its size.
* Queued jobs are cancelled by resolving them before a worker picks them up.
* The number of jobs queued or running is bounded (`queue_limit`); `submit` raises `QueueFull`
  beyond it, which the API turns into 429 + Retry-After.
* Progress (instructions, cycles) is kept on the `Job` for the SSE endpoint.
* Each slot's dispatcher thread also supervises its worker: while no job arrives it checks every
  SUPERVISE_SECONDS that the worker is alive and starts a new one when it is not, so a killed
  idle worker is back (and /healthz healthy) within seconds, without waiting for traffic.

Every job's future is resolved exactly once with an outcome dict (see `api.worker.execute_run`),
never with an exception, so awaiting it cannot raise.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from .worker import error_dict, worker_main

log = logging.getLogger("plena.api.jobs")

POLL_SECONDS = 0.05
SUPERVISE_SECONDS = 0.5
# After its wall budget a run still reads its outputs, profile and trace in the worker: allow this
# much on top of budget + grace before the worker is considered stuck and replaced.
OUTPUT_ALLOWANCE_SECONDS = 30.0
_STOP = object()


class QueueFull(Exception):
    def __init__(self, limit: int, retry_after: int):
        super().__init__(f"{limit} runs are queued or running; retry in {retry_after} s")
        self.limit = limit
        self.retry_after = retry_after


@dataclass(eq=False)
class Job:
    id: str
    payload: dict[str, Any]
    wall_limit: float                       # the run's own wall budget (seconds)
    recorded: bool = True                   # runs are kept in the history; estimates are not
    future: Future = field(default_factory=Future)
    state: str = "queued"                   # queued | running | done
    cancel_requested: bool = False
    progress: tuple[int, int] | None = None  # (instructions, cycles) so far
    version: int = 0                        # bumped on every state or progress change
    submitted: float = field(default_factory=time.monotonic)

    def touch(self) -> None:
        self.version += 1


def exit_description(process: Any) -> str:
    """How a worker process ended, for messages ("killed by signal 9 (SIGKILL)", "exit code 1")."""
    process.join(1.0)   # reap it: a killed process has no exit code until it is waited for
    code = process.exitcode
    if code is None:
        return "it stopped answering"
    if code < 0:
        try:
            return f"killed by signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _pool_outcome(status: str, kind: str, message: str) -> dict[str, Any]:
    return {"status": status, "totals": None, "error": error_dict(kind, message), "issues": None,
            "outputs": [], "dumps": {}, "trace": None, "profile": None, "profile_json": None, "warnings": []}


class JobPool:
    """What the local worker pool and the Dask pool (api/dask_pool.py) share: the bounded set of jobs in flight, the
    `on_start`/`on_finish` hooks (the run history) and resolving a job's future once."""

    def __init__(self, queue_limit: int, retry_after: int, warmup: bool,
                 on_start: Callable[[Job], None] | None,
                 on_finish: Callable[[Job, dict[str, Any]], dict[str, Any]] | None):
        self.queue_limit = queue_limit
        self.retry_after = retry_after
        self.warmup = warmup
        self.on_start = on_start
        self.on_finish = on_finish
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self.started_workers = 0        # worker processes started over the pool's life (replacements count)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._jobs)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _admit(self, job: Job, stopping: bool) -> None:
        """Count `job` in flight, or raise QueueFull (the API's 429) when the pool is full or stopping."""
        with self._lock:
            if stopping or len(self._jobs) >= self.queue_limit:
                raise QueueFull(self.queue_limit, self.retry_after)
            self._jobs[job.id] = job

    def _started(self, job: Job) -> None:
        if self.on_start is not None:
            try:
                self.on_start(job)
            except Exception:
                log.exception("recording the start of run %s failed", job.id)

    def _stored(self, job: Job, outcome: dict[str, Any]) -> dict[str, Any]:
        """The outcome after `on_finish` recorded it (a failure to record is logged, never raised)."""
        if self.on_finish is not None:
            try:
                return self.on_finish(job, outcome) or outcome
            except Exception:
                log.exception("storing the result of run %s failed", job.id)
        return outcome

    @staticmethod
    def _settle(job: Job, outcome: dict[str, Any]) -> None:
        job.state = "done"
        job.touch()
        if not job.future.done():
            job.future.set_result(outcome)


class _Worker:
    """One worker process and the service end of its pipe."""

    def __init__(self, ctx: Any, slot: int, warmup: bool):
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=worker_main, args=(child, warmup), name=f"plena-worker-{slot}",
                                   daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.problem: str | None = None

    def wait_ready(self, stop: threading.Event) -> bool:
        """Block until the worker has warmed up (True) or died / the pool stops (False)."""
        while not stop.is_set():
            try:
                if self.conn.poll(0.2):
                    msg = self.conn.recv()
                    if msg[0] == "ready":
                        self.ready, self.problem = True, msg[1]
                        if self.problem:
                            log.error("worker %s warm-up problem: %s", self.process.name, self.problem)
                        return True
            except (EOFError, OSError):
                return False
            if not self.process.is_alive():
                return False
        return False

    def stop(self, timeout: float = 2.0) -> None:
        try:
            self.conn.send(("stop",))
        except (BrokenPipeError, OSError):
            pass
        self.process.join(timeout)
        if self.process.is_alive():
            self.kill()
        self.conn.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.conn.close()


class WorkerPool(JobPool):
    """`size` worker processes serving a bounded FIFO of jobs."""

    def __init__(self, size: int, queue_limit: int, *, retry_after: int = 5, warmup: bool = True,
                 start_method: str = "spawn", kill_grace_seconds: float = 5.0,
                 on_start: Callable[[Job], None] | None = None,
                 on_finish: Callable[[Job, dict[str, Any]], dict[str, Any]] | None = None):
        super().__init__(queue_limit, retry_after, warmup, on_start, on_finish)
        self.size = size
        self.grace = kill_grace_seconds
        self._ctx = multiprocessing.get_context(start_method)
        self._queue: queue.Queue = queue.Queue()
        self._workers: list[_Worker | None] = [None] * size
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._ready = [threading.Event() for _ in range(size)]

    # ------------------------------------------------------------------ life cycle
    def start(self, wait: bool = True, timeout: float | None = None) -> None:
        for slot in range(self.size):
            t = threading.Thread(target=self._slot_loop, args=(slot,), name=f"plena-dispatch-{slot}", daemon=True)
            t.start()
            self._threads.append(t)
        if wait:
            deadline = None if timeout is None else time.monotonic() + timeout
            for ev in self._ready:
                ev.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def shutdown(self) -> None:
        """Stop taking jobs, resolve queued ones as interrupted, stop running ones, stop workers."""
        self._stopping.set()
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not _STOP:
                self._resolve(job, _pool_outcome("failed", "interrupted", "the service stopped before this run started"))
        for _ in self._threads:
            self._queue.put(_STOP)
        for t in self._threads:
            t.join(self.grace + 10)

    # ------------------------------------------------------------------ state
    @property
    def workers_ready(self) -> int:
        return sum(1 for w in self._workers if w is not None and w.ready and w.process.is_alive())

    @property
    def worker_pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w is not None and w.process.pid is not None]

    @property
    def warmup_problems(self) -> list[str]:
        return [w.problem for w in self._workers if w is not None and w.problem]

    # ------------------------------------------------------------------ submit / cancel
    def submit(self, job: Job) -> Job:
        self._admit(job, self._stopping.is_set())
        self._queue.put(job)
        return job

    def cancel(self, job_id: str) -> bool:
        """Ask a queued or running job to stop; False when it is not in the pool (finished/unknown)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return False
            job.cancel_requested = True
            job.touch()
            queued = job.state == "queued"
            if queued:
                job.state = "done"   # the dispatcher skips it
        if queued:
            self._resolve(job, _pool_outcome("cancelled", "cancelled", "the run was cancelled before it started"))
        return True

    def _resolve(self, job: Job, outcome: dict[str, Any]) -> None:
        """Finish a job exactly once: store (on_finish), release its queue slot, resolve the future."""
        outcome = self._stored(job, outcome)
        with self._lock:
            self._jobs.pop(job.id, None)
        self._settle(job, outcome)

    # ------------------------------------------------------------------ dispatch
    def _spawn(self, slot: int) -> _Worker | None:
        """Start the worker of `slot` and wait for its warm-up; None when the pool is stopping."""
        while not self._stopping.is_set():
            worker = _Worker(self._ctx, slot, self.warmup)
            self.started_workers += 1
            if worker.wait_ready(self._stopping):
                self._workers[slot] = worker
                self._ready[slot].set()
                return worker
            code = worker.process.exitcode
            worker.kill()
            if self._stopping.is_set():
                break
            log.error("worker %d exited during start-up (exit code %s); starting another", slot, code)
            time.sleep(1.0)
        self._ready[slot].set()
        return None

    def _replace(self, slot: int) -> None:
        worker = self._workers[slot]
        self._workers[slot] = None
        if worker is not None:
            worker.kill()

    def _supervise(self, slot: int) -> None:
        """Between jobs: replace this slot's worker if it died (killed, out of memory)."""
        worker = self._workers[slot]
        if self._stopping.is_set() or (worker is not None and worker.process.is_alive()):
            return
        if worker is not None:
            log.warning("idle worker %d died (%s); starting another", slot, exit_description(worker.process))
        self._replace(slot)
        self._spawn(slot)

    def _slot_loop(self, slot: int) -> None:
        self._spawn(slot)
        while True:
            try:
                job = self._queue.get(timeout=SUPERVISE_SECONDS)
            except queue.Empty:
                self._supervise(slot)
                continue
            if job is _STOP:
                break
            with self._lock:
                if job.state != "queued":     # cancelled while queued
                    continue
                job.state = "running"
                job.touch()
            self._started(job)
            outcome = self._execute(slot, job)
            self._resolve(job, outcome)
            if self._workers[slot] is None and not self._stopping.is_set():
                self._spawn(slot)   # replace a killed worker now, not when the next job waits for it
        worker = self._workers[slot]
        self._workers[slot] = None
        if worker is not None:
            worker.stop()

    def _execute(self, slot: int, job: Job) -> dict[str, Any]:
        worker = self._workers[slot]
        if worker is None or not worker.process.is_alive():
            self._replace(slot)
            worker = self._spawn(slot)
            if worker is None:
                return _pool_outcome("failed", "interrupted", "the service stopped before this run started")
        try:
            worker.conn.send(("run", job.id, job.payload))
        except (BrokenPipeError, OSError):
            self._replace(slot)
            return _pool_outcome("failed", "worker_lost", "the worker process was gone; the run was not started")
        hard_deadline = time.monotonic() + job.wall_limit + self.grace + OUTPUT_ALLOWANCE_SECONDS
        cancel_deadline: float | None = None
        while True:
            try:
                if worker.conn.poll(POLL_SECONDS):
                    msg = worker.conn.recv()
                    if msg[0] == "progress":
                        job.progress = (msg[1], msg[2])
                        job.touch()
                    elif msg[0] == "done":
                        return msg[1]
                    continue
            except (EOFError, OSError):
                how = exit_description(worker.process)
                self._replace(slot)
                return _pool_outcome("failed", "worker_lost",
                                     f"the worker process running this program exited ({how}); it was replaced")
            now = time.monotonic()
            if self._stopping.is_set():
                self._replace(slot)
                return _pool_outcome("failed", "interrupted", "the service stopped while this run was running")
            if job.cancel_requested and cancel_deadline is None:
                cancel_deadline = now + self.grace
                try:
                    worker.conn.send(("cancel",))
                except (BrokenPipeError, OSError):
                    pass
            if cancel_deadline is not None and now > cancel_deadline:
                self._replace(slot)
                return _pool_outcome("cancelled", "cancelled", "the run was cancelled (its worker was replaced)")
            if now > hard_deadline:
                self._replace(slot)
                return _pool_outcome("failed", "budget",
                                     f"the run exceeded its wall-time budget of {job.wall_limit:g} s "
                                     "(its worker was replaced)")
            if not worker.process.is_alive() and not worker.conn.poll():
                how = exit_description(worker.process)
                self._replace(slot)
                return _pool_outcome("failed", "worker_lost",
                                     f"the worker process running this program exited ({how}); it was replaced")
