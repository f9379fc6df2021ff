"""A batch's results directory: rows written as they arrive, so an interrupted batch can resume.

    DIR/results.parquet        the result table (Parquet), or DIR/results.csv (CSV)
    DIR/parts/part-*.parquet   rows not yet folded into results.parquet (while running, or after
                               an interruption); each part is written whole (temp file + rename)
    DIR/summary.json           counts, timing and settings of the batch (rewritten as it goes)
    DIR/profiles/JOB.json      each job's plena-profile JSON (profiler/SCHEMA.md)
    DIR/dumps/JOB/*.bin        each job's reference dumps (when the manifest asks for them)

CSV rows are appended one by one (a torn last line from a killed process is dropped on resume).
Both formats share one column schema (`SCHEMA`), so `read_rows` returns the same table either way.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .job import DUMP_NAMES

SCHEMA = pa.schema([
    ("job_id", pa.string()),
    ("program", pa.string()),
    ("program_path", pa.string()),
    ("program_file_sha256", pa.string()),
    ("program_sha256", pa.string()),
    ("settings_path", pa.string()),
    ("settings_key", pa.string()),
    ("overrides", pa.string()),
    ("status", pa.string()),
    ("hbm_model", pa.string()),
    ("cycles", pa.int64()),
    ("instructions", pa.int64()),
    ("hbm_bytes_read", pa.int64()),
    ("hbm_bytes_written", pa.int64()),
    ("wall_seconds", pa.float64()),
    *[(f"{d}_sha256", pa.string()) for d in DUMP_NAMES],
    ("error_kind", pa.string()),
    ("error_pc", pa.int64()),
    ("error_opcode", pa.string()),
    ("error_line", pa.int64()),
    ("error_message", pa.string()),
    ("worker", pa.string()),
    ("run_id", pa.string()),             # the service's run history id (service batches)
    ("profile_path", pa.string()),
    ("dumps_dir", pa.string()),
    ("finished_at", pa.string()),
])
COLUMNS = SCHEMA.names
RESULT_FILES = {"parquet": "results.parquet", "csv": "results.csv"}
SUMMARY_FILE = "summary.json"
FLUSH_SECONDS = 1.0


class ResultsError(ValueError):
    """A results directory or file that cannot be read or continued."""


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in rows], schema=SCHEMA)


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def results_format(out_dir: Path) -> str | None:
    """Which format the directory holds results in (None when it holds none)."""
    if (out_dir / RESULT_FILES["csv"]).exists():
        return "csv"
    if (out_dir / RESULT_FILES["parquet"]).exists() or any((out_dir / "parts").glob("part-*.parquet")):
        return "parquet"
    return None


def read_rows(path: str | Path) -> pa.Table:
    """The result table of a batch directory (or of a results.parquet / results.csv file)."""
    p = Path(path)
    if p.is_file():
        files, parts = [p], []
    elif p.is_dir():
        fmt = results_format(p)
        if fmt is None:
            raise ResultsError(f"{p} holds no batch results ({' or '.join(RESULT_FILES.values())})")
        files = [p / RESULT_FILES[fmt]] if (p / RESULT_FILES[fmt]).exists() else []
        parts = sorted((p / "parts").glob("part-*.parquet")) if fmt == "parquet" else []
    else:
        raise ResultsError(f"{p} does not exist")
    tables = []
    try:
        for f in files + parts:
            if f.suffix == ".csv":
                tables.append(_read_csv(f))
            else:
                tables.append(pq.read_table(f).select(COLUMNS).cast(SCHEMA))
    except (pa.ArrowException, OSError, KeyError) as exc:
        raise ResultsError(f"cannot read batch results from {p}: {exc}") from None
    if not tables:
        return SCHEMA.empty_table()
    table = pa.concat_tables(tables)
    # A part folded into results.parquet just before a crash could still be on disk: one row per job.
    seen: set[str] = set()
    keep = [not (j in seen or seen.add(j)) for j in table.column("job_id").to_pylist()]
    return table if all(keep) else table.filter(pa.array(keep))


def _read_csv(path: Path) -> pa.Table:
    data = path.read_bytes()
    if not data.strip():
        return SCHEMA.empty_table()
    opts = pacsv.ConvertOptions(column_types=SCHEMA, strings_can_be_null=True, include_columns=COLUMNS)
    return pacsv.read_csv(io.BytesIO(data), convert_options=opts).select(COLUMNS)


class ResultWriter:
    """Appends rows to a batch directory; `done` holds the job ids already recorded."""

    def __init__(self, out_dir: str | Path, fmt: str, *, resume: bool):
        self.dir = Path(out_dir)
        self.fmt = fmt
        self.pending: list[dict[str, Any]] = []
        self.last_flush = time.monotonic()
        existing = results_format(self.dir) if self.dir.exists() else None
        if existing is not None and not resume:
            raise ResultsError(f"{self.dir} already holds batch results: pass --resume to continue that batch, "
                               "or choose a new --out directory")
        if existing is not None and existing != fmt:
            raise ResultsError(f"{self.dir} holds {existing} results; resume it with format {existing!r}")
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "parts").mkdir(exist_ok=True)
        if fmt == "csv":
            self._repair_csv()
        self.previous = read_rows(self.dir).to_pylist() if existing is not None else []
        self.done: set[str] = {r["job_id"] for r in self.previous}
        self._seq = max([int(p.stem.split("-")[1]) for p in (self.dir / "parts").glob("part-*.parquet")] + [0])

    @property
    def results_path(self) -> Path:
        return self.dir / RESULT_FILES[self.fmt]

    def _repair_csv(self) -> None:
        """Drop a torn last line (a process killed mid-write) so appends start on a clean line."""
        path = self.results_path
        if not path.exists():
            return
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            _atomic_write(path, data[: data.rfind(b"\n") + 1])

    # ------------------------------------------------------------------ artifacts
    def write_profile(self, job_id: str, data: bytes) -> str:
        d = self.dir / "profiles"
        d.mkdir(exist_ok=True)
        path = d / f"{job_id}.json"
        _atomic_write(path, data)
        return str(path.relative_to(self.dir))

    def write_dumps(self, job_id: str, dumps: dict[str, bytes]) -> str:
        from emulator.images import FPSRAM_DUMP, INTSRAM_DUMP, MRAM_DUMP, VRAM_DUMP

        names = {"vram": VRAM_DUMP, "mram": MRAM_DUMP, "fpsram": FPSRAM_DUMP, "intsram": INTSRAM_DUMP}
        d = self.dir / "dumps" / job_id
        d.mkdir(parents=True, exist_ok=True)
        for name, data in dumps.items():
            _atomic_write(d / names[name], data)
        return str(d.relative_to(self.dir))

    # ------------------------------------------------------------------ rows
    def add(self, row: dict[str, Any]) -> bool:
        """Record one finished job (False when its id is already recorded: never a duplicate row)."""
        if row["job_id"] in self.done:
            return False
        self.done.add(row["job_id"])
        if self.fmt == "csv":
            self._append_csv(row)
        else:
            self.pending.append(row)
            if time.monotonic() - self.last_flush >= FLUSH_SECONDS:
                self.flush()
        return True

    def _append_csv(self, row: dict[str, Any]) -> None:
        path = self.results_path
        new = not path.exists() or path.stat().st_size == 0
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        if new:
            w.writeheader()
        w.writerow({c: row.get(c) for c in COLUMNS})
        with open(path, "a", encoding="utf-8", newline="") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())

    def flush(self) -> None:
        if self.fmt == "parquet" and self.pending:
            self._seq += 1
            _atomic_write(self.dir / "parts" / f"part-{self._seq:06d}.parquet", _parquet_bytes(_table(self.pending)))
            self.pending = []
        self.last_flush = time.monotonic()

    def finish(self) -> Path:
        """Fold the parts into results.parquet (one file) and remove them."""
        self.flush()
        if self.fmt == "parquet":
            parts = sorted((self.dir / "parts").glob("part-*.parquet"))
            table = read_rows(self.dir)
            _atomic_write(self.results_path, _parquet_bytes(table))
            for p in parts:
                p.unlink()
        try:
            (self.dir / "parts").rmdir()
        except OSError:
            pass
        return self.results_path

    def write_summary(self, summary: dict[str, Any]) -> None:
        _atomic_write(self.dir / SUMMARY_FILE, (json.dumps(summary, indent=2, default=str) + "\n").encode())
