"""Service settings, read from the environment (prefix `PLENA_API_`) or a `.env` file.

Tests and embedders override `get_service_settings` through FastAPI's dependency overrides or
pass a `ServiceSettings` to `create_app()`; everything else reads the cached getter.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_workers() -> int:
    """CPUs this process may run on (a container's cpuset, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:   # not on Linux
        return max(1, os.cpu_count() or 1)


class ServiceSettings(BaseSettings):
    """Limits and storage of the HTTP service (not the hardware: that is `plena_settings.toml`)."""

    model_config = SettingsConfigDict(env_prefix="PLENA_API_", env_file=".env", extra="ignore")

    database_url: str = Field(
        "sqlite:///./plena_runs.db",
        description="SQLAlchemy URL of the run history (e.g. postgresql+psycopg://user:pw@host/db).",
    )
    data_dir: Path = Field(Path("./plena_data"), description="Where dumps and traces are kept on disk.")
    blob_storage: Literal["disk", "db"] = Field(
        "disk", description="Keep dumps/traces/outputs as files under data_dir or as rows in the database.")
    workers: int = Field(default_factory=_default_workers, ge=1, le=256,
                         description="Emulation worker processes (default: one per CPU).")
    queue_limit: int = Field(64, ge=1, description="Runs queued or running at once; more get 429.")
    retry_after_seconds: int = Field(5, ge=1, description="Retry-After sent with 429.")
    max_body_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="Largest request body accepted.")
    max_json_body_bytes: int = Field(
        32 * 1024 * 1024, ge=1024,
        description="Largest JSON request body: parsing JSON and decoding its base64 images holds several copies "
                    "of it at once, so big images go as multipart/form-data (bounded by max_body_bytes).")
    max_instructions: int = Field(2_000_000_000, ge=1, description="Dynamic instruction budget per run.")
    max_wall_seconds: float = Field(600.0, gt=0, description="Wall-time budget per run.")
    max_output_bytes: int = Field(256 * 1024 * 1024, ge=1024,
                                  description="Output tensors plus dumps of one run (bytes as stored).")
    max_trace_events: int = Field(200_000, ge=0, le=1 << 26, description="Most instructions recorded for a trace.")
    max_run_bytes: int = Field(
        1 << 30, ge=1 << 20,
        description="Memory one run may allocate: the machine-state arrays its settings size (VRAM, MRAM, "
                    "accumulators, DMA buffers, trace, per-instruction counters) plus the HBM pages it writes. "
                    "Over it before the run: 422; while running: 400 with error kind `resources`.")
    retention_runs: int = Field(10_000, ge=1, description="Finished runs kept; older ones are deleted.")
    retention_grace_seconds: float = Field(
        60.0, ge=0, description="Runs finished this recently are never deleted (their clients may still read them).")
    kill_grace_seconds: float = Field(
        5.0, gt=0, description="How long a worker may take to honour a cancel or budget before it is replaced.")
    warmup: bool = Field(True, description="Run a tiny program in every worker at start-up (numba JIT).")
    start_method: Literal["spawn", "forkserver"] = Field(
        "spawn", description="multiprocessing start method of the worker processes.")
    dask_scheduler: str | None = Field(
        None, description="Send runs (and batch jobs) to this Dask scheduler (tcp://HOST:8786) instead of "
                          "the local worker processes.")
    batch_root: Path | None = Field(
        None, description="Directory that server-side paths of POST /v1/batches manifests are relative to "
                          "(and confined to); unset: batches upload their files.")
    batch_max_jobs: int = Field(10_000, ge=1, description="Most jobs one batch may make.")
    host: str = Field("127.0.0.1", description="Address `plena-serve` binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port `plena-serve` listens on.")

    @field_validator("dask_scheduler", "batch_root", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("database_url")
    @classmethod
    def _url_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("database_url must not be empty")
        return v


@lru_cache(maxsize=1)
def get_service_settings() -> ServiceSettings:
    return ServiceSettings()
