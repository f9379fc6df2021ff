"""Shared dependencies, as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from starlette.concurrency import run_in_threadpool

from .config import ServiceSettings
from .db import RunRecord
from .schemas import RUN_ID_PATTERN
from .service import RunService


def get_service(request: Request) -> RunService:
    return request.app.state.service


ServiceDep = Annotated[RunService, Depends(get_service)]


def get_settings(service: ServiceDep) -> ServiceSettings:
    return service.cfg


SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]

RunId = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="run id (32 lower-case hex digits)",
                            examples=["3f2a9c0d4e5b6a7c8d9e0f1a2b3c4d5e"])]


async def existing_run(run_id: RunId, service: ServiceDep) -> RunRecord:
    record = await run_in_threadpool(service.store.get, run_id)
    if record is None:
        raise HTTPException(404, f"no run {run_id}")
    return record


RunDep = Annotated[RunRecord, Depends(existing_run)]
