"""One batch job, as it runs on a worker: a plain-data task in, a result row (plus artifacts) out.

`task_for(job, options)` builds the task on the client (with the input bytes when inputs travel
with the tasks, with paths when workers read a shared file system); `run_task(task)` runs it
anywhere the package is installed and never raises for a problem of the job itself: a program
that does not assemble, an image that does not fit, an abort or an exhausted budget is a row with
status "invalid" or "failed" and its error, and the batch goes on.

Dump hashes are the sha256 of the exact bytes `emulate --out` writes (trimmed VRAM/MRAM dumps,
FP SRAM as bf16, INT SRAM), so a batch row can be checked against a single CLI run.
"""

from __future__ import annotations

import hashlib
import logging
import io
import json
import os
import socket
import time
import traceback
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .manifest import BatchOptions, Job

log = logging.getLogger("plena.batch")

ROW_STATUSES = ("ok", "failed", "invalid")    # "invalid": the job's inputs could not be used
DUMP_NAMES = ("vram", "mram", "fpsram", "intsram")


def task_for(job: Job, options: BatchOptions) -> dict[str, Any]:
    """The picklable task for one job (what travels to the worker)."""
    travel = options.inputs == "travel"

    def file(f) -> dict[str, Any]:
        return {"path": str(f.path), "data": f.path.read_bytes() if travel else None}

    return {
        "job_id": job.job_id,
        "name": job.name,
        "program": file(job.program),
        "images": {kind: file(f) for kind, f in job.images.items()},
        "tensors": {name: {**file(f), "hbm_addr": addr} for name, (f, addr) in job.tensors.items()},
        "settings": file(job.settings) if job.settings is not None else None,
        "settings_missing": job.settings_missing,
        "overrides": dict(job.overrides),
        "max_instructions": options.max_instructions,
        "max_seconds": options.max_seconds,
        "profile": options.profile,
        "dumps": options.dumps,
    }


def base_row(job: Job) -> dict[str, Any]:
    """The columns a job's row has before it runs (known on the client)."""
    return {
        "job_id": job.job_id,
        "program": job.name,
        "program_path": str(job.program.path),
        "program_file_sha256": job.program.sha256,
        "settings_path": str(job.settings.path) if job.settings else None,
        "settings_key": job.settings_key,
        "overrides": job.overrides_json(),
    }


def _data(spec: dict[str, Any]) -> bytes:
    return spec["data"] if spec.get("data") is not None else Path(spec["path"]).read_bytes()


def dump_payloads(result: Any) -> dict[str, bytes]:
    """The four dumps exactly as `emulate --out` writes them (trimmed VRAM rows / MRAM tiles)."""
    from emulator.images import fpsram_dump_bytes, intsram_dump_bytes, mram_dump_bytes, vram_dump_bytes

    st, s = result.state, result.settings
    return {
        "vram": vram_dump_bytes(st.vram[: st.vram_rows_used], s.VECTOR_SRAM_SIZE, trim=True),
        "mram": mram_dump_bytes(st.mram[: st.mram_tiles_used], trim=True),
        "fpsram": fpsram_dump_bytes(st.fp_sram),
        "intsram": intsram_dump_bytes(st.int_sram),
    }


def _error_columns(kind: str | None = None, message: str | None = None, pc: int | None = None,
                   opcode: str | None = None, line: int | None = None) -> dict[str, Any]:
    return {"error_kind": kind, "error_pc": pc, "error_opcode": opcode, "error_line": line, "error_message": message}


def empty_result_columns() -> dict[str, Any]:
    return {"status": None, "program_sha256": None, "hbm_model": None, "cycles": None, "instructions": None,
            "hbm_bytes_read": None, "hbm_bytes_written": None, "wall_seconds": None,
            **{f"{d}_sha256": None for d in DUMP_NAMES}, **_error_columns(), "worker": None}


@lru_cache(maxsize=128)
def settings_for(text: str | None, missing: str, overrides_json: str) -> Any:
    """Settings of a job, parsed once per worker: the jobs of a batch share a few settings files and
    grid points, and parsing one costs more than running a small program.  (Settings are immutable.)"""
    from emulator.settings import load_settings

    base = load_settings(text=text, missing=missing) if text is not None else load_settings(missing=missing)
    overrides = json.loads(overrides_json)
    return base.with_overrides(overrides) if overrides else base


def execute_job(task: dict[str, Any], progress: Any = None) -> tuple[dict[str, Any], Any]:
    """Run one job in this process: (result columns, RunResult or None when it never ran).
    Never raises for the job's own problems; `progress(instructions, cycles)` as for `run()`."""
    from emulator.asm import assemble, parse_mem
    from emulator.errors import EmulationError, InputError, ResourceError
    from emulator.runner import run
    from emulator.settings import SettingsError

    row = empty_result_columns()
    row["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    started = time.perf_counter()

    def stop(status: str, **error: Any) -> tuple[dict[str, Any], None]:
        row.update(status=status, wall_seconds=time.perf_counter() - started, **_error_columns(**error))
        return row, None

    try:
        prog_spec = task["program"]
        text = _data(prog_spec).decode("utf-8")
        if Path(prog_spec["path"]).suffix.lower() in (".mem", ".hex"):
            program = parse_mem(text, name=task["name"])
        else:
            program = assemble(text, name=task["name"])
        row["program_sha256"] = program.sha256
        text = _data(task["settings"]).decode("utf-8") if task.get("settings") is not None else None
        settings = settings_for(text, task["settings_missing"], json.dumps(task["overrides"], sort_keys=True))
        images = {kind: _data(spec) for kind, spec in task["images"].items()}
        tensors = {name: (np.load(io.BytesIO(_data(spec)), allow_pickle=False), int(spec["hbm_addr"]))
                   for name, spec in task["tensors"].items()}
        result = run(program, settings=settings, hbm=images.get("hbm"), fp_sram=images.get("fpsram"),
                     int_sram=images.get("intsram"), vram=images.get("vram"), tensors=tensors or None,
                     max_instructions=task.get("max_instructions"), max_wall_seconds=task.get("max_seconds"),
                     max_memory_bytes=task.get("max_run_bytes"), progress=progress)
    except UnicodeDecodeError as exc:
        return stop("invalid", kind="input", message=f"a text input is not UTF-8 ({exc.reason})")
    except ResourceError as exc:   # the settings size a machine over the service's per-run budget
        return stop("invalid", kind="resources", message=str(exc))
    except (InputError, SettingsError, OSError, ValueError) as exc:
        return stop("invalid", kind="input", message=str(exc), line=getattr(exc, "line_no", None))
    except EmulationError as exc:
        d = exc.to_dict()
        return stop("failed", kind=d["kind"], message=d["message"], pc=d["pc"], opcode=d["opcode"], line=d["line"])
    except MemoryError:
        return stop("failed", kind="resources", message="the job needs more memory than the worker has")
    except Exception:  # a bug of ours: recorded on the row, the batch goes on
        return stop("failed", kind="internal", message=traceback.format_exc(limit=8))

    row.update(hbm_model=result.hbm_model, cycles=int(result.cycles), instructions=int(result.instructions),
               hbm_bytes_read=int(result.hbm_bytes_read), hbm_bytes_written=int(result.hbm_bytes_written),
               wall_seconds=float(result.wall_seconds))
    if result.error is not None:
        d = result.error.to_dict()
        row.update(status="failed", **_error_columns(d["kind"], d["message"], d["pc"], d["opcode"], d["line"]))
    else:
        row["status"] = "ok"
        for name, data in dump_payloads(result).items():
            row[f"{name}_sha256"] = hashlib.sha256(data).hexdigest()
    return row, result


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Run one job (the Dask task); returns {"row": result columns, "profile_json": bytes | None,
    "dumps": {name: bytes} | None}.  Never raises for the job's own problems."""
    row, result = execute_job(task)
    out: dict[str, Any] = {"row": row, "profile_json": None, "dumps": None}
    if result is None:
        return out
    if task.get("dumps") and row["status"] == "ok":
        out["dumps"] = dump_payloads(result)
    if task.get("profile"):
        try:
            from profiler.aggregate import profile_run
            from profiler.report import profile_to_dict

            out["profile_json"] = json.dumps(profile_to_dict(profile_run(result)), separators=(",", ":")).encode()
        except Exception as exc:  # e.g. unbalanced @section markers: the run's numbers still stand
            log.warning("job %s: no profile (%s: %s)", task["job_id"], type(exc).__name__, exc)
    return out
