"""Run history: SQLAlchemy 2 models, a small repository object and blob storage.

A SQLite file by default (zero set-up); any SQLAlchemy URL by configuration.  Large results
(output tensors, dumps, traces) are blobs, kept as files under `data_dir` or as rows, with a
retention limit on finished runs.  Blob file names are built from the server's run id and a
fixed blob name only; nothing a client sends becomes part of a path.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    create_engine,
    delete,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from .schemas import FINISHED_STATUSES

# Blob names are fixed: outputs, trace, the full profile and one per dump.
BLOB_NAMES = ("outputs", "trace", "profile", "dump_vram", "dump_mram", "dump_fpsram", "dump_intsram")


class UTCDateTime(TypeDecorator):
    """Timestamps stored as naive UTC (SQLite has no time zones) and read back as aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class RunRecord(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    tag: Mapped[str | None] = mapped_column(String(64), index=True)
    program_sha256: Mapped[str] = mapped_column(String(64), index=True)
    program_name: Mapped[str | None] = mapped_column(String(64))
    program_words: Mapped[int] = mapped_column(Integer)
    settings_toml: Mapped[str | None] = mapped_column(Text)
    settings_overrides: Mapped[dict] = mapped_column(JSON, default=dict)
    settings_missing: Mapped[str] = mapped_column(String(32), default="error")
    options: Mapped[dict] = mapped_column(JSON, default=dict)   # outputs wanted, budgets, trace
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cycles: Mapped[int | None] = mapped_column(BigInteger)
    instructions: Mapped[int | None] = mapped_column(BigInteger)
    hbm_bytes_read: Mapped[int | None] = mapped_column(BigInteger)
    hbm_bytes_written: Mapped[int | None] = mapped_column(BigInteger)
    hbm_model: Mapped[str | None] = mapped_column(String(16))
    wall_seconds: Mapped[float | None] = mapped_column(Float)
    profile: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[dict | None] = mapped_column(JSON)      # EmulationErrorOut fields
    issues: Mapped[list | None] = mapped_column(JSON)     # FieldIssue list (status invalid)
    outputs_meta: Mapped[list | None] = mapped_column(JSON)  # [{name, shape}] of the outputs blob
    warnings: Mapped[list] = mapped_column(JSON, default=list)


class RunBlob(Base):
    __tablename__ = "run_blobs"

    run_id: Mapped[str] = mapped_column(String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    media_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    on_disk: Mapped[bool] = mapped_column(default=False)
    data: Mapped[bytes | None] = mapped_column(LargeBinary)


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL mode and a busy timeout so that request threads and
    the job threads can write concurrently."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            if url not in ("sqlite://", "sqlite:///:memory:"):
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


class RunStore:
    """Everything the service keeps about runs."""

    def __init__(self, url: str, data_dir: Path, blob_storage: str, retention_runs: int,
                 retention_grace_seconds: float = 60.0):
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.blob_dir = Path(data_dir).resolve() / "blobs"
        self.blob_storage = blob_storage
        self.retention_runs = retention_runs
        self.retention_grace_seconds = retention_grace_seconds

    # ---------------------------------------------------------------- lifecycle
    def create_schema(self) -> None:
        Base.metadata.create_all(self.engine)

    def mark_interrupted(self) -> int:
        """Runs left queued/running by a previous process never finish: mark them failed."""
        with self.sessions.begin() as s:
            res = s.execute(
                update(RunRecord)
                .where(RunRecord.status.in_(("queued", "running")))
                .values(status="failed", finished_at=utcnow(),
                        error={"kind": "interrupted", "pc": None, "opcode": None, "line": None, "source": None,
                               "message": "the service stopped before this run finished"}))
            return res.rowcount or 0

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(select(1))
            return True
        except Exception:  # any driver error means the database is unusable right now
            return False

    def dispose(self) -> None:
        self.engine.dispose()

    # ---------------------------------------------------------------- runs
    def add(self, record: RunRecord) -> None:
        with self.sessions.begin() as s:
            s.add(record)

    def get(self, run_id: str) -> RunRecord | None:
        with self.sessions() as s:
            return s.get(RunRecord, run_id)

    def delete(self, run_id: str) -> None:
        with self.sessions.begin() as s:
            s.execute(delete(RunBlob).where(RunBlob.run_id == run_id))
            s.execute(delete(RunRecord).where(RunRecord.id == run_id))
        shutil.rmtree(self.blob_dir / run_id, ignore_errors=True)

    def update(self, run_id: str, **values: Any) -> None:
        with self.sessions.begin() as s:
            s.execute(update(RunRecord).where(RunRecord.id == run_id).values(**values))

    def list(self, *, program_sha256: str | None, tag: str | None, status: str | None,
             limit: int, offset: int) -> tuple[list[RunRecord], int]:
        conds = []
        if program_sha256:
            conds.append(RunRecord.program_sha256 == program_sha256)
        if tag:
            conds.append(RunRecord.tag == tag)
        if status:
            conds.append(RunRecord.status == status)
        with self.sessions() as s:
            total = s.scalar(select(func.count()).select_from(RunRecord).where(*conds)) or 0
            rows = s.scalars(select(RunRecord).where(*conds)
                             .order_by(RunRecord.created_at.desc(), RunRecord.id.desc())
                             .limit(limit).offset(offset)).all()
        return list(rows), int(total)

    def finish(self, run_id: str, values: dict[str, Any], blobs: dict[str, tuple[bytes, str]]) -> None:
        """Store a finished run's totals and its blobs ({name: (data, media type)}), then apply
        the retention limit."""
        for name in blobs:
            if name not in BLOB_NAMES:
                raise ValueError(f"unknown blob name {name!r}")
        rows = []
        for name, (data, media_type) in blobs.items():
            on_disk = self.blob_storage == "disk"
            if on_disk:
                self._write_file(run_id, name, data)
            rows.append(RunBlob(run_id=run_id, name=name, media_type=media_type, size=len(data),
                                on_disk=on_disk, data=None if on_disk else data))
        with self.sessions.begin() as s:
            s.execute(update(RunRecord).where(RunRecord.id == run_id).values(**values))
            for row in rows:
                s.merge(row)
        self.enforce_retention()

    # ---------------------------------------------------------------- blobs
    def blob_info(self, run_id: str) -> dict[str, int]:
        with self.sessions() as s:
            return {b.name: b.size for b in s.scalars(select(RunBlob).where(RunBlob.run_id == run_id))}

    def blob(self, run_id: str, name: str) -> tuple[bytes, str] | None:
        with self.sessions() as s:
            row = s.get(RunBlob, (run_id, name))
        if row is None:
            return None
        if not row.on_disk:
            return row.data or b"", row.media_type
        try:
            return self._path(run_id, name).read_bytes(), row.media_type
        except FileNotFoundError:
            return None

    def _path(self, run_id: str, name: str) -> Path:
        # Both parts are server-made: a uuid hex and one of BLOB_NAMES.
        if name not in BLOB_NAMES or len(run_id) != 32 or not all(c in "0123456789abcdef" for c in run_id):
            raise ValueError("invalid blob reference")
        return self.blob_dir / run_id / name

    def _write_file(self, run_id: str, name: str, data: bytes) -> None:
        path = self._path(run_id, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # ---------------------------------------------------------------- retention
    def enforce_retention(self) -> int:
        """Delete the oldest finished runs beyond `retention_runs` (rows, blobs and files).  Runs
        that finished within the last `retention_grace_seconds` are kept, so that the client that
        waits for a run can still read it."""
        with self.sessions.begin() as s:
            finished = RunRecord.status.in_(FINISHED_STATUSES) & (
                RunRecord.finished_at < utcnow() - timedelta(seconds=self.retention_grace_seconds))
            count = s.scalar(select(func.count()).select_from(RunRecord)
                             .where(RunRecord.status.in_(FINISHED_STATUSES))) or 0
            excess = count - self.retention_runs
            if excess <= 0:
                return 0
            old = s.scalars(select(RunRecord.id).where(finished)
                            .order_by(RunRecord.created_at.asc(), RunRecord.id.asc()).limit(excess)).all()
            s.execute(delete(RunBlob).where(RunBlob.run_id.in_(old)))
            s.execute(delete(RunRecord).where(RunRecord.id.in_(old)))
        for run_id in old:
            shutil.rmtree(self.blob_dir / run_id, ignore_errors=True)
        return len(old)
