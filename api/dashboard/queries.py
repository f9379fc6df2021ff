"""Run-history queries of the dashboard: the runs list (filter, sort, paginate) with a settings
summary per row.  Reads the service's tables directly (api/db.py) so that sorting happens in SQL
and a page of 50 rows out of 10,000 costs one indexed query, not a scan in Python."""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import func, or_, select
from sqlalchemy.orm import load_only

from ..db import RunRecord, RunStore
from ..schemas import RunStatus

SortKey = Literal["created_at", "program_name", "program_sha256", "tag", "status", "cycles", "instructions",
                  "hbm_bytes", "wall_seconds", "hbm_model"]
SORT_COLUMNS: dict[str, Any] = {
    "created_at": RunRecord.created_at,
    "program_name": RunRecord.program_name,
    "program_sha256": RunRecord.program_sha256,
    "tag": RunRecord.tag,
    "status": RunRecord.status,
    "cycles": RunRecord.cycles,
    "instructions": RunRecord.instructions,
    "hbm_bytes": func.coalesce(RunRecord.hbm_bytes_read, 0) + func.coalesce(RunRecord.hbm_bytes_written, 0),
    "wall_seconds": RunRecord.wall_seconds,
    "hbm_model": RunRecord.hbm_model,
}
SUMMARY_KEYS = ("MLEN", "VLEN", "BLEN", "HLEN")


class SettingsSummary(BaseModel):
    MLEN: int | None = None
    VLEN: int | None = None
    BLEN: int | None = None
    HLEN: int | None = None
    hbm_model: str | None = None
    custom: bool = Field(description="the run gave its own settings file or overrides")
    problem: str | None = Field(None, description="why the settings could not be read back")


class RunRow(BaseModel):
    id: str
    status: RunStatus
    tag: str | None
    program_name: str | None
    program_sha256: str
    program_words: int
    created_at: datetime
    finished_at: datetime | None
    cycles: int | None
    instructions: int | None
    hbm_bytes_read: int | None
    hbm_bytes_written: int | None
    wall_seconds: float | None
    error_kind: str | None
    settings: SettingsSummary


class RunPage(BaseModel):
    items: list[RunRow]
    total: int
    limit: int
    offset: int
    sort: SortKey
    order: Literal["asc", "desc"]


@lru_cache(maxsize=256)
def _settings_summary(toml: str | None, overrides_json: str, missing: str) -> SettingsSummary:
    from ..worker import InvalidInput, build_settings

    overrides = json.loads(overrides_json)
    custom = toml is not None or bool(overrides)
    try:
        s = build_settings({"toml": toml, "overrides": overrides, "missing": missing})
    except InvalidInput as exc:
        return SettingsSummary(custom=custom, problem=str(exc.issue.get("msg")))
    return SettingsSummary(**{k: getattr(s, k) for k in SUMMARY_KEYS}, hbm_model=s.hbm_model, custom=custom)


def settings_summary(record: RunRecord) -> SettingsSummary:
    """MLEN/VLEN/BLEN/HLEN and HBM model a run used (cached per distinct settings)."""
    return _settings_summary(record.settings_toml, json.dumps(record.settings_overrides or {}, sort_keys=True),
                             record.settings_missing or "error")


def list_runs(store: RunStore, *, tag: str | None = None, program: str | None = None, status: str | None = None,
              sort: str = "created_at", order: str = "desc", limit: int = 50, offset: int = 0) -> RunPage:
    """One page of the history.  `program` matches a substring of the program name or a prefix
    of its sha256; `tag` a substring of the tag."""
    conds = []
    if tag:
        conds.append(RunRecord.tag.contains(tag, autoescape=True))
    if program:
        conds.append(or_(RunRecord.program_name.contains(program, autoescape=True),
                         RunRecord.program_sha256.startswith(program.lower(), autoescape=True)))
    if status:
        conds.append(RunRecord.status == status)
    column = SORT_COLUMNS[sort]
    primary = column.asc().nulls_last() if order == "asc" else column.desc().nulls_last()
    tiebreak = (RunRecord.created_at.desc(), RunRecord.id.desc())
    fields = (RunRecord.id, RunRecord.status, RunRecord.tag, RunRecord.program_name, RunRecord.program_sha256,
              RunRecord.program_words, RunRecord.created_at, RunRecord.finished_at, RunRecord.cycles,
              RunRecord.instructions, RunRecord.hbm_bytes_read, RunRecord.hbm_bytes_written,
              RunRecord.wall_seconds, RunRecord.error, RunRecord.settings_toml, RunRecord.settings_overrides,
              RunRecord.settings_missing)
    with store.sessions() as s:
        total = s.scalar(select(func.count()).select_from(RunRecord).where(*conds)) or 0
        rows = s.scalars(select(RunRecord).options(load_only(*fields)).where(*conds)
                         .order_by(primary, *tiebreak).limit(limit).offset(offset)).all()
        items = [RunRow(id=r.id, status=r.status, tag=r.tag, program_name=r.program_name,
                        program_sha256=r.program_sha256, program_words=r.program_words, created_at=r.created_at,
                        finished_at=r.finished_at, cycles=r.cycles, instructions=r.instructions,
                        hbm_bytes_read=r.hbm_bytes_read, hbm_bytes_written=r.hbm_bytes_written,
                        wall_seconds=r.wall_seconds, error_kind=(r.error or {}).get("kind"),
                        settings=settings_summary(r)) for r in rows]
    return RunPage(items=items, total=int(total), limit=limit, offset=offset, sort=sort, order=order)
