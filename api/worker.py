"""What runs inside a worker process: one emulation per call, plain data in, plain data out.

`execute_run(payload, progress)` takes only picklable plain data (ASM text or words, settings TOML
text plus an overrides dict, image bytes, float32 tensor bytes, the outputs wanted) and returns a
plain dict; it never raises.  `worker_main` is the process loop the pool starts: it warms the
numba JIT with a tiny program, then serves ("run", job_id, payload) messages over its pipe,
sending ("progress", instructions, cycles) while a run goes on and ("done", outcome) at the end.
A ("cancel",) message that arrives during a run stops it at the next progress report.
`execute_estimate` does the same for static estimates (payload kind "estimate").

Each run builds its own machine from the payload: nothing of one run is visible to the next.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger("plena.api.worker")

# Budgets and output size checks produce these EmulationError-shaped dicts too.
ERROR_FIELDS = ("kind", "pc", "opcode", "line", "source", "message")
PROFILE_SUMMARY_SECTIONS = 100     # top-level sections in the run response (by cycles)
PROFILE_SUMMARY_STALLS = 10        # overlapped runs: stall causes in the run response
PROFILE_STORED_SECTIONS = 1000     # top-level sections kept in the stored plena-profile document


class RunCancelled(Exception):
    """Raised from the progress callback when the parent asked to cancel the run."""


def error_dict(kind: str, message: str, pc: int | None = None, opcode: str | None = None,
               line: int | None = None, source: str | None = None) -> dict[str, Any]:
    return {"kind": kind, "pc": pc, "opcode": opcode, "line": line, "source": source, "message": message}


def internal_error(stage: str) -> dict[str, Any]:
    """An error dict for an unexpected exception (called from its `except` block): the traceback
    goes to the log under an incident id; the client gets the id, never the traceback."""
    incident = uuid.uuid4().hex[:12]
    log.exception("incident %s: %s failed with an unexpected error", incident, stage)
    return error_dict("internal", f"internal error (incident {incident}); the service log has the details")


def issue(loc: list, msg: str, type_: str, ctx: dict | None = None) -> dict[str, Any]:
    return {"loc": list(loc), "msg": msg, "type": type_, "ctx": ctx}


# ----------------------------------------------------------------------------- building inputs

class InvalidInput(Exception):
    """A request part that cannot be used; `issue` is its FieldIssue dict."""

    def __init__(self, issue: dict[str, Any]):
        super().__init__(issue["msg"])
        self.issue = issue


def build_settings(spec: dict | None):
    """Settings from {"toml": text | None, "overrides": {...}, "missing": policy}; InvalidInput
    (loc body.settings) when they cannot be used."""
    from emulator.settings import load_settings

    spec = spec or {}
    overrides = spec.get("overrides") or None
    missing = spec.get("missing", "error")
    try:
        if spec.get("toml") is not None:
            return load_settings(text=spec["toml"], overrides=overrides, missing=missing)
        return load_settings(overrides=overrides, missing=missing)
    except ValueError as exc:   # SettingsError
        raise InvalidInput(input_issue(exc, ["body", "settings"])) from None
    except Exception as exc:  # everything here comes from the request: never a server error
        log.warning("settings loader raised %s for a request's settings", type(exc).__name__, exc_info=True)
        raise InvalidInput(issue(["body", "settings"], f"settings cannot be read ({type(exc).__name__}: {exc})",
                                 "settings_error")) from None


def build_program(spec: dict):
    """Program from {"asm": text} | {"mem": text} | {"words": [...]}, plus an optional name;
    InvalidInput (loc body.program.<kind>) when it cannot be assembled or parsed."""
    from emulator.asm import assemble, parse_mem
    from emulator.errors import InputError
    from emulator.program import Program

    name = spec.get("name")
    try:
        if spec.get("asm") is not None:
            program = assemble(spec["asm"], name=name)
        elif spec.get("mem") is not None:
            program = parse_mem(spec["mem"], name=name)
        else:
            program = Program(words=np.asarray(spec["words"], dtype=np.uint32), name=name)
    except InputError as exc:
        raise InvalidInput(input_issue(exc, program_loc(spec))) from None
    except Exception as exc:  # everything here comes from the request: never a server error
        log.warning("assembler raised %s for a request's program", type(exc).__name__, exc_info=True)
        raise InvalidInput(issue(program_loc(spec), f"program cannot be read ({type(exc).__name__}: {exc})",
                                 "program_error")) from None
    return program   # an empty program runs nothing in 0 cycles, as in the reference (and the CLI)


def program_loc(spec: dict) -> list[str]:
    kind = next(k for k in ("asm", "mem", "words") if spec.get(k) is not None)
    return ["body", "program", kind]


def input_issue(exc: BaseException, loc: list) -> dict[str, Any]:
    """A FieldIssue dict for an emulator InputError (or SettingsError) raised at `loc`."""
    from emulator.errors import AssemblerError, ImageError, MemFileError

    ctx: dict[str, Any] | None = None
    if isinstance(exc, AssemblerError):
        kind = "assembler_error"
        if exc.line_no is not None:
            ctx = {"line": exc.line_no, "text": exc.line}
    elif isinstance(exc, MemFileError):
        kind = "mem_error"
        line_no = getattr(exc, "line_no", None)
        if line_no is not None:
            ctx = {"line": line_no, "token": getattr(exc, "token", None), "word": getattr(exc, "index", None)}
    elif isinstance(exc, ImageError):
        kind = "image_error"
    elif type(exc).__name__ == "SettingsError":
        kind = "settings_error"
    else:
        kind = "input_error"
    return issue(loc, str(exc), kind, ctx)


# ----------------------------------------------------------------------------- reading outputs

def _hbm_window(hbm: Any, addr: int, n: int) -> np.ndarray:
    return np.frombuffer(hbm.read(int(addr), int(n)), dtype=np.uint8)


def read_outputs(result: Any, outputs: dict) -> list[dict[str, Any]]:
    """The requested VRAM/HBM regions as float32 arrays: [{name, shape, data (bytes)}]."""
    from emulator.tensors import mx_layout, read_mx_tensor, read_vram_tensor

    state = result.state
    vram_used = state.vram[:max(int(state.vram_rows_used), 0)]
    out = []
    for r in outputs.get("vram_regions", []):
        arr = read_vram_tensor(vram_used, r["start_row"], r["num_rows"], r["row_dim"],
                               r.get("num_batches"), r.get("elements_per_batch"))
        out.append({"name": r["name"], "shape": list(arr.shape), "data": arr.astype("<f4").tobytes()})
    for r in outputs.get("hbm_regions", []):
        lay = mx_layout(r["shape"], r["addr"])
        window = _hbm_window(state.hbm, r["addr"], lay["end"] - lay["element_addr"])
        arr = read_mx_tensor(window, 0, r["shape"])
        out.append({"name": r["name"], "shape": list(arr.shape), "data": arr.astype("<f4").tobytes()})
    return out


def dump_sizes(result: Any, names: list[str]) -> dict[str, int]:
    """Bytes each requested dump will take (the VRAM dump is trimmed to the rows in use)."""
    s, st = result.settings, result.state
    sizes = {"vram": int(st.vram_rows_used) * s.VLEN * 2, "mram": s.mram_tiles * s.MLEN * s.MLEN * 2,
             "fpsram": 2 * 1024, "intsram": 4 * 1024}
    return {n: sizes[n] for n in names}


def read_dumps(result: Any, names: list[str]) -> dict[str, bytes]:
    """The reference's dump files: vram_dump.bin (trimmed after the last non-zero row; every later
    row of the VECTOR_SRAM_SIZE rows is zero), mram_dump.bin, fpsram_dump.bin, intsram_dump.bin."""
    from emulator.images import fpsram_dump_bytes, intsram_dump_bytes, mram_dump_bytes, vram_dump_bytes

    s, st = result.settings, result.state
    out = {}
    for name in names:
        if name == "vram":
            used = st.vram[:max(int(st.vram_rows_used), 0)]
            out[name] = vram_dump_bytes(used, total_rows=s.VECTOR_SRAM_SIZE, trim=True)
        elif name == "mram":
            out[name] = mram_dump_bytes(st.mram, total_tiles=s.mram_tiles)
        elif name == "fpsram":
            out[name] = fpsram_dump_bytes(st.fp_sram)
        elif name == "intsram":
            out[name] = intsram_dump_bytes(st.int_sram)
    return out


def perfetto_trace(result: Any, section_mode: str | None = None) -> bytes:
    """Chrome/Perfetto trace-event JSON of the run (profiler.trace: a sections track and one track
    per unit; exact for the recorded instructions, an aggregated tail after them)."""
    from profiler.sections import build_sections
    from profiler.trace import build_trace

    doc = build_trace(result, build_sections(result.program, section_mode))
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


def _section_summary(node: Any, total_cycles: int) -> dict[str, Any]:
    st = node.stats
    return {
        "name": node.name, "path": list(node.path), "first_pc": node.first_pc,
        "static_instructions": node.static_instructions, "instructions": st.instructions,
        "cycles": st.cycles, "share": st.cycles / total_cycles if total_cycles else 0.0,
        "hbm_bytes_read": st.hbm_bytes_read, "hbm_bytes_written": st.hbm_bytes_written, "macs": st.macs,
        "sections": [_section_summary(c, total_cycles) for c in node.children[:PROFILE_SUMMARY_SECTIONS]],
    }


def profile_summary(profile: Any) -> dict[str, Any]:
    """The per-section summary returned with a run (top sections by cycles, nested markers kept)."""
    from isa_specs import UNITS

    t = profile.totals
    return {
        "sections_mode": profile.sections_mode,
        "totals": {"cycles": t.cycles, "instructions": t.instructions, "hbm_bytes_read": t.hbm_bytes_read,
                   "hbm_bytes_written": t.hbm_bytes_written, "macs": t.macs},
        "unit_cycles": {u: t.unit_cycles.get(u, 0) for u in UNITS},
        "sections": [_section_summary(s, t.cycles) for s in profile.sections[:PROFILE_SUMMARY_SECTIONS]],
        "sections_total": len(profile.sections),
        "timing": profile.timing,
        "overlapped": None if profile.overlapped is None else {
            **{k: v for k, v in profile.overlapped.items() if k not in ("stalls", "model")},
            "stalls": profile.overlapped["stalls"][:PROFILE_SUMMARY_STALLS]},
    }


def build_profile(result: Any, section_mode: str | None = None,
                  max_bytes: int = 0) -> tuple[dict[str, Any], bytes]:
    """(summary, full plena-profile JSON) of a run, from the profiler package.  Over `max_bytes`
    (when given) the stored document leaves out its per-line source heat table."""
    import dataclasses

    from profiler.aggregate import profile_run
    from profiler.report import profile_to_dict

    prof = profile_run(result, section_mode=section_mode)
    summary = profile_summary(prof)
    stored = dataclasses.replace(prof, sections=prof.sections[:PROFILE_STORED_SECTIONS])
    doc = profile_to_dict(stored)
    if len(prof.sections) > PROFILE_STORED_SECTIONS:
        doc["warnings"].append(f"only the {PROFILE_STORED_SECTIONS} top sections of {len(prof.sections)} are kept")
    blob = json.dumps(doc, separators=(",", ":")).encode()
    if max_bytes and len(blob) > max_bytes and doc.get("source") is not None:
        doc["source"] = None
        doc["warnings"].append(f"the source heat table is left out: the profile took {len(blob):,} bytes, "
                               f"more than this service stores per run ({max_bytes:,})")
        blob = json.dumps(doc, separators=(",", ":")).encode()
    return summary, blob


# ----------------------------------------------------------------------------- the run

def execute_run(payload: dict[str, Any], progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run one emulation; returns a plain outcome dict (never raises).

    Outcome keys: status ("succeeded" | "failed" | "invalid" | "cancelled" | "internal"),
    program_sha256, totals {cycles, instructions, hbm_bytes_read, hbm_bytes_written, hbm_model,
    wall_seconds}, error (EmulationError fields), issues (FieldIssue dicts), outputs
    [{name, shape, data}], dumps {name: bytes}, trace (bytes), profile (summary dict),
    profile_json (bytes), warnings [str].
    """
    from emulator.errors import EmulationError, InputError

    outcome: dict[str, Any] = {"status": "internal", "totals": None, "error": None, "issues": None,
                               "outputs": [], "dumps": {}, "trace": None, "profile": None,
                               "profile_json": None, "warnings": []}
    started = time.perf_counter()
    stage_loc: list = ["body"]
    try:
        settings = build_settings(payload.get("settings"))
        program = build_program(payload["program"])
        outcome["program_sha256"] = program.sha256
        outcome["warnings"] += [str(w) for w in program.warnings] + list(settings.warnings)
        images = payload.get("images") or {}
        # The MXFP8 layout is 2-D: leading dimensions are rows (as emulator.tensors.mx_layout).
        tensors = {t["name"]: (np.frombuffer(t["data"], dtype="<f4").reshape(-1, t["shape"][-1]), int(t["hbm_addr"]))
                   for t in payload.get("tensors") or []}
        stage_loc = ["body", "images"] if images and not tensors else (["body", "tensors"] if tensors and not images
                                                                      else ["body"])
        from emulator.runner import run

        result = run(program, settings=settings, hbm=images.get("hbm"), fp_sram=images.get("fp_sram"),
                     int_sram=images.get("int_sram"), vram=images.get("vram"), tensors=tensors or None,
                     max_instructions=payload.get("max_instructions"),
                     max_wall_seconds=payload.get("max_wall_seconds"),
                     trace_limit=int(payload.get("trace_limit") or 0), progress=progress,
                     max_memory_bytes=payload.get("max_run_bytes"))
    except RunCancelled:
        outcome["status"] = "cancelled"
        outcome["error"] = error_dict("cancelled", "the run was cancelled")
        return outcome
    except InvalidInput as exc:
        outcome["status"] = "invalid"
        outcome["issues"] = [exc.issue]
        return outcome
    except InputError as exc:
        outcome["status"] = "invalid"
        outcome["issues"] = [input_issue(exc, stage_loc)]
        return outcome
    except ValueError as exc:  # input the loaders reject without an InputError: still the request's
        log.warning("run() raised ValueError for a request", exc_info=True)
        outcome["status"] = "invalid"
        outcome["issues"] = [input_issue(exc, stage_loc)]
        return outcome
    except EmulationError as exc:  # raised before the machine ran (e.g. a load error)
        outcome["status"] = "failed"
        outcome["error"] = exc.to_dict()
        return outcome
    except MemoryError:
        outcome["status"] = "failed"
        outcome["error"] = error_dict("resources", "the run needs more memory than the worker has")
        return outcome
    except Exception:
        outcome["error"] = internal_error("run")
        return outcome

    outcome["warnings"] += list(getattr(result, "warnings", []) or [])
    outcome["totals"] = {"cycles": int(result.cycles), "instructions": int(result.instructions),
                         "hbm_bytes_read": int(result.hbm_bytes_read),
                         "hbm_bytes_written": int(result.hbm_bytes_written), "hbm_model": result.hbm_model,
                         "wall_seconds": float(result.wall_seconds)}
    try:
        finish_outputs(result, payload, outcome)
    except InputError as exc:   # a region that does not fit the settings (e.g. a bad batch split)
        outcome["status"] = "invalid"
        outcome["issues"] = [input_issue(exc, ["body", "outputs"])]
        outcome["outputs"], outcome["dumps"] = [], {}
    except MemoryError:
        outcome["status"] = "failed"
        outcome["error"] = error_dict("resources", "the outputs need more memory than the worker has")
        outcome["outputs"], outcome["dumps"] = [], {}
    except Exception:
        outcome["status"] = "internal"
        outcome["error"] = internal_error("reading the outputs")
        outcome["outputs"], outcome["dumps"] = [], {}
    outcome["totals"]["wall_seconds"] = float(result.wall_seconds) or (time.perf_counter() - started)
    return outcome


def finish_outputs(result: Any, payload: dict[str, Any], outcome: dict[str, Any]) -> None:
    """Totals are in `outcome`; add error/outputs/dumps/trace/profile."""
    wanted = payload.get("outputs") or {}
    limit = int(payload.get("max_output_bytes") or 0)
    if result.error is not None:
        outcome["status"] = "failed"
        outcome["error"] = result.error.to_dict()
    else:
        outcome["status"] = "succeeded"
    dumps = list(wanted.get("dumps") or [])
    sizes = dump_sizes(result, dumps)
    tensor_bytes = 4 * (sum(r["num_rows"] * r["row_dim"] for r in wanted.get("vram_regions", []))
                        + sum(math.prod(r["shape"]) for r in wanted.get("hbm_regions", [])))
    total = tensor_bytes + sum(sizes.values())
    if limit and total > limit:
        outcome["status"] = "failed"
        outcome["error"] = error_dict(
            "output_limit", f"the outputs asked for take {total} bytes (tensors {tensor_bytes}, dumps "
                            f"{sizes}); this service returns at most {limit} bytes per run")
        return
    if outcome["status"] == "succeeded":
        outcome["outputs"] = read_outputs(result, wanted)
    outcome["dumps"] = read_dumps(result, dumps)   # kept on failure too: the state up to the abort
    if result.trace is not None and payload.get("trace_limit"):
        outcome["trace"] = perfetto_trace(result, payload.get("sections"))
    try:
        outcome["profile"], outcome["profile_json"] = build_profile(result, payload.get("sections"), limit)
    except Exception as exc:  # a profile problem (e.g. unbalanced @section markers) never fails the run
        log.warning("no profile for this run: %s", exc)
        outcome["warnings"].append(f"no profile: {exc}")


def execute_estimate(payload: dict[str, Any], progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Static estimate (no emulation) with the profiler's `static_profile`; plain outcome dict
    with status, estimate {cycles, instructions, hbm bytes, hbm_model, exact, estimated, notes,
    error}, profile (summary), issues."""
    from emulator.errors import InputError

    outcome: dict[str, Any] = {"status": "internal", "estimate": None, "profile": None, "issues": None,
                               "error": None}
    stage_loc: list = ["body"]
    try:
        from profiler.static import static_profile

        settings = build_settings(payload.get("settings"))
        program = build_program(payload["program"])
        stage_loc = ["body", "int_sram"]
        prof = static_profile(program, settings, int_sram=payload.get("int_sram"),
                              max_instructions=payload.get("max_instructions"),
                              max_wall_seconds=payload.get("max_wall_seconds"),
                              section_mode=payload.get("sections"))
    except RunCancelled:
        outcome["status"] = "cancelled"
        outcome["error"] = error_dict("cancelled", "the estimate was cancelled")
        return outcome
    except InvalidInput as exc:
        outcome["status"] = "invalid"
        outcome["issues"] = [exc.issue]
        return outcome
    except (InputError, ValueError) as exc:
        outcome["status"] = "invalid"
        outcome["issues"] = [input_issue(exc, stage_loc)]
        return outcome
    except Exception:
        outcome["error"] = internal_error("estimate")
        return outcome
    t = prof.totals
    info = prof.estimate or {}
    outcome["status"] = "succeeded"
    outcome["estimate"] = {"program_sha256": prof.program_sha256, "program_words": prof.program_words,
                           "cycles": t.cycles, "instructions": t.instructions,
                           "hbm_bytes_read": t.hbm_bytes_read, "hbm_bytes_written": t.hbm_bytes_written,
                           "hbm_model": prof.hbm_model, "exact": bool(info.get("exact", False)),
                           "estimated": list(info.get("estimated", [])), "notes": list(info.get("notes", [])),
                           "error": prof.error, "wall_seconds": prof.wall_seconds}
    outcome["profile"] = profile_summary(prof)
    from profiler.report import profile_to_dict

    outcome["profile_doc"] = profile_to_dict(prof)   # the dashboard draws the full document
    return outcome


def execute(payload: dict[str, Any], progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Dispatch a job payload by its kind ("run", the default, "estimate" or "batch_job")."""
    if payload.get("kind") == "estimate":
        return execute_estimate(payload, progress)
    if payload.get("kind") == "batch_job":
        from .batches import execute_batch_job

        return execute_batch_job(payload, progress)
    return execute_run(payload, progress)


# ----------------------------------------------------------------------------- the process loop

WARMUP_PAYLOAD: dict[str, Any] = {
    "program": {"asm": "S_ADDI_INT gp1, gp0, 256\nC_SET_SCALE_REG gp1\nH_PREFETCH_V gp0, gp0, a0, 0, 0\n",
                "name": "warmup"},
    "settings": None,
    "images": {},
    "tensors": [{"name": "x", "hbm_addr": 0, "shape": [4, 64],
                 "data": np.linspace(-1, 1, 256, dtype="<f4").tobytes()}],
    "outputs": {"vram_regions": [{"name": "x", "start_row": 0, "num_rows": 4, "row_dim": 64}],
                "hbm_regions": [{"name": "x_hbm", "addr": 0, "shape": [4, 64]}], "dumps": ["fpsram"]},
    "max_instructions": 1000,
    "max_wall_seconds": 600.0,
    "trace_limit": 16,
}


def warm_up() -> str | None:
    """Compile the numba kernels (run loop and static estimator) with a tiny program; returns a
    problem description or None."""
    problems = []
    outcome = execute_run(WARMUP_PAYLOAD)
    if outcome["status"] != "succeeded":
        problems.append(f"warm-up run ended {outcome['status']}: {outcome['error'] or outcome['issues']}")
    outcome = execute_estimate({"kind": "estimate", "program": WARMUP_PAYLOAD["program"], "settings": None})
    if outcome["status"] != "succeeded":
        problems.append(f"warm-up estimate ended {outcome['status']}: {outcome['error'] or outcome['issues']}")
    return "; ".join(problems) or None


def worker_main(conn: Any, warmup: bool) -> None:
    """Entry point of a worker process (started by api.jobs.WorkerPool)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the pool decides when workers stop
    from emulator._jit_cache import suppress_notice
    suppress_notice()   # the service announced a cold cache once, not once per worker
    problem = None
    if warmup:
        try:
            problem = warm_up()
        except Exception:
            problem = internal_error("warm-up")["message"]   # /healthz shows it: no traceback
    try:
        conn.send(("ready", problem))
    except (BrokenPipeError, OSError):
        return

    def report(instructions: int, cycles: int) -> None:
        conn.send(("progress", int(instructions), int(cycles)))
        while conn.poll():
            if conn.recv()[0] == "cancel":
                raise RunCancelled

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] == "stop":
            return
        if msg[0] != "run":   # a cancel that arrived after its run had finished
            continue
        outcome = execute(msg[2], report)
        try:
            conn.send(("done", outcome))
        except (BrokenPipeError, OSError):
            return
