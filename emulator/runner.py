"""The Python façade over the jitted core: Program + images + Settings -> RunResult.

`run()` builds the machine state arrays, calls the run loop in chunks (so budgets, progress and
pool growth are handled here, never per instruction), and turns the core's status codes into
typed errors that name the pc, the opcode, the source line and the reason.
"""

from __future__ import annotations

import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from isa_specs import load_isa

from . import _compile_helper as compile_helper
from ._jit_cache import announce_if_cold, is_cached
from .core import state as S
from .core.hbm_store import SparseHbm
from .core.loop import run_loop
from .core.matmul_order import sgemm_orders
from .core.matrix import scratch_shape
from .core.numerics import e4m3_decode_table, e8m0_decode_table
from .core.stops import DB_SKIP_AT, no_stops
from .decode import decode, unknown_opcodes
from .errors import BudgetExceeded, EmulationError, ImageError, InputError, ResourceError
from .hbm.timing import new_timing_state
from .images import load_fp_sram, load_hbm_preload, load_int_sram, load_vram_preload
from .program import Program
from .result import MachineState, RunResult, TraceEvents
from .settings import Settings, default_settings

if TYPE_CHECKING:  # imported when a run asks for the overlapped timing (start-up time)
    from .timing.scheduler import OverlapScheduler

CHUNK_INSTRUCTIONS = 1 << 20   # instructions per run-loop call between budget/progress checks
PROGRESS_INTERVAL_S = 0.1
MAX_TRACE_LIMIT = 1 << 26      # trace rows (24 bytes each) one run may record
# The cycle counter is int64.  With the settings' ranges one instruction costs < 2**40 cycles, so a
# chunk adds < 2**60: a run that starts a chunk below this limit cannot wrap inside it.
CYCLE_LIMIT = 1 << 62
PROGRAM_SUFFIXES = (".asm", ".mem", ".hex")

ImageSource = bytes | bytearray | memoryview | np.ndarray | str | os.PathLike | None


# ------------------------------------------------------------------------------------ messages

_KIND = {
    S.E_INVALID_OPCODE: "invalid_opcode",
    S.E_VRAM_ALIGN: "alignment", S.E_MRAM_ALIGN: "alignment", S.E_MM_ROW_GRANULAR: "alignment",
    S.E_BLOCK_ALIGN: "alignment", S.E_MV_OFFSET_RANGE: "alignment", S.E_HEAD_ALIGN: "alignment",
    S.E_WO_ALIGN: "alignment", S.E_BWO_ALIGN: "alignment", S.E_PREFETCH_ALIGN: "alignment",
    S.E_VRAM_RANGE: "out_of_range", S.E_MRAM_RANGE: "out_of_range", S.E_FPSRAM_RANGE: "out_of_range",
    S.E_INTSRAM_RANGE: "out_of_range", S.E_MAP_WINDOW: "out_of_range", S.E_HBM_WRITE_RANGE: "out_of_range",
    S.E_PREFETCH_TILE_RANGE: "out_of_range",
    S.E_NARROW: "narrow", S.E_BMV_SHAPE: "shape", S.E_BROADCAST_ASSERT: "assert",
    S.E_FP_REGISTER: "fp_register", S.E_TOPK_POLICY: "topk_policy",
    S.E_LOOP_ZERO: "loop", S.E_LOOP_NO_MATCH: "loop", S.E_BREAK_EMPTY: "loop", S.E_LOOP_STACK: "loop",
    S.E_MAX_LOOP: "max_loop",
}


def _message(code: int, a: int, b: int, c: int, settings: Settings) -> str:
    m = settings.MLEN
    if code == S.E_INVALID_OPCODE:
        return "invalid opcode: the decoder does not implement this word's opcode"
    if code in (S.E_VRAM_ALIGN, S.E_MRAM_ALIGN, S.E_PREFETCH_ALIGN):
        where = "VRAM" if code == S.E_VRAM_ALIGN else "MRAM" if code == S.E_MRAM_ALIGN else "SRAM destination"
        return f"{where} address {a} is not a multiple of {b}"
    if code in (S.E_VRAM_RANGE, S.E_MRAM_RANGE):
        where = "VRAM row" if code == S.E_VRAM_RANGE else "MRAM tile"
        return f"address {a} out of bounds ({where} {b} >= depth {c})"
    if code == S.E_MM_ROW_GRANULAR:
        return (f"matrix address {a}: its offset {b} inside the tile must be a whole number of "
                f"{m}-element rows (row-granular column-block ABI)")
    if code == S.E_BLOCK_ALIGN:
        return f"matrix address {a}: column/row offset {b} is not a multiple of BLEN ({c})"
    if code == S.E_MV_OFFSET_RANGE:
        return f"matrix address {a}: column offset {b} must be < MLEN ({c})"
    if code == S.E_HEAD_ALIGN:
        return f"matrix address {a}: head offset {b} is not a multiple of HLEN ({c})"
    if code == S.E_WO_ALIGN:
        return f"write-out address {a}: lane offset {b} is not a multiple of BLEN ({c})"
    if code == S.E_BWO_ALIGN:
        return f"write-out address {a} is not a multiple of MLEN ({b})"
    if code == S.E_NARROW:
        return f"matrix address {a}: slice start {b} + length exceeds the tile dimension {c}"
    if code == S.E_BMV_SHAPE:
        return (f"M_BMV always aborts in the reference: its [{a}, {b}] accumulator cannot take the "
                f"[{a}, {a}, {b}]-shaped broadcast product")
    if code == S.E_BROADCAST_ASSERT:
        return f"BROADCAST_AMOUNT*HLEN ({a}*{b}) must equal MLEN ({c}) for broadcast matrix ops"
    if code == S.E_FP_REGISTER:
        return f"FP register f{a} does not exist (the FP register file has f0-f7)"
    if code == S.E_FPSRAM_RANGE:
        return f"FP SRAM index {a} out of range (FP SRAM has {b} entries)"
    if code == S.E_INTSRAM_RANGE:
        return f"INT SRAM index {a} out of range (INT SRAM has {b} entries)"
    if code == S.E_MAP_WINDOW:
        return f"FP SRAM window [{a}, {b}) runs past the end of FP SRAM ({c} entries)"
    if code == S.E_HBM_WRITE_RANGE:
        return f"HBM write to block {a} beyond the HBM capacity ({b} bytes)"
    if code == S.E_PREFETCH_TILE_RANGE:
        return f"H_PREFETCH_M would fill MRAM tile {a}; MRAM has {b} tiles"
    if code == S.E_TOPK_POLICY:
        return f"unsupported V_TOPK policy {a}; expected 0 (32 experts, top 4) or 1 (128 experts, top 8)"
    if code == S.E_LOOP_ZERO:
        return "C_LOOP_START iteration count must be greater than 0"
    if code == S.E_LOOP_NO_MATCH:
        return f"no matching C_LOOP_START found for register gp{a}"
    if code == S.E_BREAK_EMPTY:
        return "no active loop to break out of"
    if code == S.E_LOOP_STACK:
        return f"more than {a} nested active loops (C_LOOP_START without C_LOOP_END inside a loop?)"
    if code == S.E_MAX_LOOP:
        return (f"loop at pc {a} exceeded MAX_LOOP_INSTRUCTIONS ({settings.MAX_LOOP_INSTRUCTIONS}); "
                f"current iteration {b}, instructions in this iteration {c}; aborted before this instruction ran")
    return f"abort code {code}"


def _mnemonic(word: int) -> str:
    spec = load_isa()
    op = spec.by_opcode.get(spec.fields["opcode"].extract(int(word)))
    return op.mnemonic if op is not None and op.decodable else "INVALID"


def error_from_core(err: np.ndarray, program: Program, settings: Settings, cycles: int) -> EmulationError:
    code, pc = int(err[0]), int(err[1])
    word = int(program.words[pc]) if 0 <= pc < len(program) else None
    return EmulationError(
        _KIND.get(code, "abort"), _message(code, int(err[2]), int(err[3]), int(err[4]), settings),
        pc=pc, opcode=_mnemonic(word) if word is not None else None, word=word,
        source=program.source_ref(pc), cycles=cycles)


# ------------------------------------------------------------------------------------ inputs

def as_program(program: Program | str | os.PathLike) -> Program:
    """Program, ASM text, or a path to a .asm / .mem / .hex file.

    A str is a path when it is one line ending in .asm, .mem or .hex (no ASM line looks like
    that); it must then name a file.  Any other str is ASM text.
    """
    if isinstance(program, Program):
        return program
    from .asm import assemble, load_program
    if isinstance(program, os.PathLike):
        return load_program(Path(program))
    if isinstance(program, str):
        if "\n" not in program and program.strip().lower().endswith(PROGRAM_SUFFIXES):
            path = Path(program.strip())
            if not path.is_file():
                raise InputError(f"no program file {str(path)!r} (a one-line str ending in "
                                 f"{'/'.join(PROGRAM_SUFFIXES)} is read as a path)")
            return load_program(path)
        return assemble(program)
    raise InputError(f"program must be a Program, ASM text or a path, got {type(program).__name__}")


def check_budgets(max_instructions: int | None, max_wall_seconds: float | None, trace_limit: int) -> None:
    """Budgets and the trace limit as `run()` accepts them (InputError otherwise)."""
    if max_instructions is not None and (isinstance(max_instructions, bool)
                                         or not isinstance(max_instructions, (int, np.integer))
                                         or max_instructions < 1):
        raise InputError(f"max_instructions must be a positive integer (got {max_instructions!r})")
    if max_wall_seconds is not None:
        try:
            ok = not isinstance(max_wall_seconds, bool) and math.isfinite(max_wall_seconds) and max_wall_seconds > 0
        except TypeError:
            ok = False
        if not ok:
            raise InputError(f"max_wall_seconds must be a finite number of seconds > 0 (got {max_wall_seconds!r})")
    if isinstance(trace_limit, bool) or not isinstance(trace_limit, (int, np.integer)) \
            or not 0 <= trace_limit <= MAX_TRACE_LIMIT:
        raise InputError(f"trace_limit must be an integer 0..{MAX_TRACE_LIMIT:,} (got {trace_limit!r})")


def state_bytes(settings: Settings, instructions: int, trace_limit: int = 0) -> dict[str, int]:
    """Bytes of the machine-state arrays `new_machine()` allocates, by array (the sparse HBM comes
    on top and grows with the bytes written).  VRAM and MRAM are counted whole although their
    pages only become resident when touched: a program may touch all of them."""
    m, a = settings.MLEN, settings.BROADCAST_AMOUNT
    return {
        "vram": settings.vram_bytes,
        "mram": settings.mram_bytes,
        "broadcast_accumulators": 4 * a * m * (m + 1),
        "dma_blocks": 8 * dma_block_capacity(settings),
        "per_pc_counters": 8 * S.COUNTER_SIZE * instructions + 8 * S.DEC_SIZE * instructions,
        "trace": 24 * trace_limit,
        "fixed": 1 << 20,   # SRAMs, registers, decode tables, row buffers
    }


def largest_arrays(settings: Settings, instructions: int, trace_limit: int) -> str:
    """The three largest arrays of `state_bytes`, for messages."""
    sizes = sorted(state_bytes(settings, instructions, trace_limit).items(), key=lambda kv: -kv[1])
    return ", ".join(f"{name} {size:,} bytes" for name, size in sizes[:3])


def _image_bytes(source: ImageSource) -> bytes | str | os.PathLike:
    if isinstance(source, np.ndarray):
        return source.tobytes()
    return source


def _place_tensors(hbm: SparseHbm, tensors: Mapping[str, tuple[np.ndarray, int]]) -> None:
    """Quantise each float tensor to MXFP8 and write it (element rows, then scale rows) at its address."""
    from .tensors import mx_tensor_bytes
    for name, (values, addr) in tensors.items():
        try:
            arr = np.asarray(values)
            if arr.dtype.kind not in "biuf":
                raise InputError(f"values must be numbers, got an array of dtype {arr.dtype}")
            data, _ = mx_tensor_bytes(arr.astype(np.float32))
        except (InputError, ValueError, TypeError) as exc:
            raise ImageError(f"tensor {name!r}: {exc}") from exc
        if addr < 0 or addr + len(data) > hbm.capacity:
            raise ImageError(f"tensor {name!r} at {addr} ({len(data)} bytes) does not fit in HBM ({hbm.capacity} bytes)")
        hbm.write(int(addr), data)


# ------------------------------------------------------------------------------------ run

def hardware_params(settings: Settings) -> np.ndarray:
    """The core's `params` array (emulator/core/state.py layout) for these settings."""
    params = np.zeros(S.PARAMS_SIZE, dtype=np.int64)
    params[S.P_MLEN], params[S.P_VLEN] = settings.MLEN, settings.VLEN
    params[S.P_BLEN], params[S.P_HLEN] = settings.BLEN, settings.HLEN
    params[S.P_BROADCAST] = settings.BROADCAST_AMOUNT
    params[S.P_MAX_LOOP] = settings.MAX_LOOP_INSTRUCTIONS
    params[S.P_PREFETCH_M_ROWS] = settings.prefetch_m_rows
    params[S.P_PREFETCH_V_ROWS] = settings.HBM_V_Prefetch_Amount
    params[S.P_WRITEBACK_ROWS] = settings.HBM_V_Writeback_Amount
    params[S.P_VRAM_DEPTH] = settings.VECTOR_SRAM_SIZE
    params[S.P_MRAM_TILES] = settings.mram_tiles
    params[S.P_HBM_CAPACITY] = settings.HBM_SIZE
    params[S.P_MX_BLOCK] = settings.precision["HBM_V_ACT_TYPE"].block
    params[S.P_MM_ORDER], params[S.P_TMM_ORDER] = sgemm_orders(settings.BLEN)
    return params


def dma_block_capacity(settings: Settings) -> int:
    """Size of the block-address scratch array one DMA instruction can fill."""
    rows = max(settings.prefetch_m_rows, settings.HBM_V_Prefetch_Amount, settings.HBM_V_Writeback_Amount)
    return rows * (max(settings.MLEN, settings.VLEN) // 64 + 3) + 1


@dataclass
class _Setup:
    """What a run derives from its program and settings alone (both immutable)."""

    program: Program       # held, so the ids in the cache key stay theirs
    settings: Settings
    dec: np.ndarray | None
    decode_error: EmulationError | None
    warnings: list[str]
    params: np.ndarray
    block_capacity: int


# Runs of the same Program object with the same Settings object (the service, API loops, sweeps)
# reuse the decoded program, its warnings and the parameter array: for a small program that set-up
# is most of the per-run cost.  Small programs only, so the cache stays a few MiB.
_SETUP_CACHE: OrderedDict[tuple[int, int], _Setup] = OrderedDict()
SETUP_CACHE_ENTRIES = 16
SETUP_CACHE_MAX_INSTRUCTIONS = 1 << 16


def _setup(program: Program, settings: Settings) -> _Setup:
    key = (id(program), id(settings))
    hit = _SETUP_CACHE.get(key)
    if hit is not None and hit.program is program and hit.settings is settings:
        _SETUP_CACHE.move_to_end(key)
        return hit
    spec = load_isa()
    warnings = list(settings.warnings)
    warnings += [f"pc {pc}: unknown opcode 0x{op:02X} (the reference logs it while decoding; executing it aborts)"
                 for pc, op in unknown_opcodes(program, spec)]
    try:
        dec, decode_error = decode(program, settings, spec), None
    except EmulationError as exc:
        dec, decode_error = None, exc
    setup = _Setup(program, settings, dec, decode_error, warnings, hardware_params(settings),
                   dma_block_capacity(settings))
    if len(program) <= SETUP_CACHE_MAX_INSTRUCTIONS:
        _SETUP_CACHE[key] = setup
        while len(_SETUP_CACHE) > SETUP_CACHE_ENTRIES:
            _SETUP_CACHE.popitem(last=False)
    return setup


_timing_template = lru_cache(maxsize=None)(new_timing_state)   # building one takes longer than a copy


def _fresh_timing_state(model: str):
    """A fresh HBM timing state: a copy of the one built once per model."""
    template = _timing_template(model)
    return template._replace(hbm2=template.hbm2.copy(), analytic=template.analytic.copy())


@lru_cache(maxsize=1)
def _decode_tables() -> tuple[np.ndarray, np.ndarray]:
    """The E4M3 and E8M0 decode tables (read-only for the kernels: one pair per process)."""
    return e4m3_decode_table(), e8m0_decode_table()


@dataclass
class Machine:
    """Every array of one run's machine state, in the layout the jitted run loop takes.

    `run()` drives it to the end; the debugger (emulator/debug) drives the same object in steps
    and stops.  `dec` is None when decoding failed (`decode_error` says why).
    """

    program: Program
    settings: Settings
    dec: np.ndarray | None
    decode_error: EmulationError | None
    warnings: list[str]
    counters: np.ndarray
    gp: np.ndarray
    fpr: np.ndarray
    areg: np.ndarray
    ctrl: np.ndarray
    loops: np.ndarray
    params: np.ndarray
    vram: np.ndarray
    mram: np.ndarray
    fpsram: np.ndarray
    intsram: np.ndarray
    macc: np.ndarray
    vacc: np.ndarray
    hmacc: np.ndarray
    hvacc: np.ndarray
    store: SparseHbm
    ts: object
    e4m3: np.ndarray
    e8m0: np.ndarray
    rows: np.ndarray
    blk: np.ndarray
    seen: np.ndarray
    vals: np.ndarray
    ebuf: np.ndarray
    sbuf: np.ndarray
    trace: np.ndarray
    labels: np.ndarray
    label_secs: np.ndarray
    err: np.ndarray
    dbg: np.ndarray
    conds: np.ndarray
    # overlapped timing: the run loop's operand log (empty for sequential runs) and the model
    oplog: np.ndarray
    scheduler: OverlapScheduler | None

    @property
    def pc(self) -> int:
        return int(self.ctrl[S.PC])

    @property
    def finished(self) -> bool:
        return self.dec is None or self.pc >= len(self.program)

    def advance(self, stop_after: int) -> int:
        """Run until `stop_after` dynamic instructions, the end, an abort or a debugger stop.

        Grows the HBM page pool and resumes when the loop asks for pages; returns the final
        status (never ST_NEED_PAGES).  Raises ResourceError when the pool would outgrow the
        store's budget (or MemoryError when the machine has no more).
        """
        while True:
            self.ctrl[S.HBM_PAGES_USED] = self.store.pages_used
            logged_from = int(self.ctrl[S.INSTRUCTIONS])
            limit = stop_after if self.scheduler is None else min(stop_after, logged_from + self.oplog.shape[0])
            args = (self.dec, self.counters, self.gp, self.fpr, self.areg, self.ctrl, self.loops, self.params,
                    self.vram, self.mram, self.fpsram, self.intsram, self.macc, self.vacc, self.hmacc, self.hvacc,
                    self.store.page_table, self.store.pool, self.ts, self.e4m3, self.e8m0, self.rows, self.blk,
                    self.seen, self.vals, self.ebuf, self.sbuf, self.trace, self.labels, self.label_secs, self.err,
                    limit, self.dbg, self.conds, self.oplog)
            # the first run on an empty cache: a helper process compiles part of the loop meanwhile
            status = compile_helper.call(run_loop, args) if compile_helper.pending() else run_loop(*args)
            self.store.pages_used = int(self.ctrl[S.HBM_PAGES_USED])
            if self.scheduler is not None:  # the operand log holds one chunk: schedule it now
                self.scheduler.consume(self.oplog, int(self.ctrl[S.INSTRUCTIONS]) - logged_from)
                if status == S.ST_CHUNK and self.ctrl[S.INSTRUCTIONS] < stop_after:
                    continue
            if status != S.ST_NEED_PAGES:
                return status
            self.store.ensure_free(int(self.err[2]))
            # The stalled instruction already passed its debugger checks: do not stop there again.
            self.dbg[DB_SKIP_AT] = self.ctrl[S.INSTRUCTIONS]

    def core_error(self) -> EmulationError:
        return error_from_core(self.err, self.program, self.settings, int(self.ctrl[S.NOW]))

    def resources_error(self, message: str) -> EmulationError:
        pc = self.pc
        return EmulationError("resources", message, pc=pc, opcode=_mnemonic(self.program.words[pc]),
                              source=self.program.source_ref(pc), cycles=int(self.ctrl[S.NOW]))

    def budget_error(self, message: str) -> BudgetExceeded:
        pc = self.pc
        return BudgetExceeded("budget", message, pc=pc, opcode=_mnemonic(self.program.words[pc]),
                              source=self.program.source_ref(pc), cycles=int(self.ctrl[S.NOW]))

    def state(self) -> MachineState:
        """The architectural state now (arrays are the live ones; gp/fp/addr are copies)."""
        ctrl = self.ctrl
        return MachineState(
            vram=self.vram, vram_rows_used=int(ctrl[S.VRAM_ROWS_USED]), mram=self.mram,
            mram_tiles_used=int(ctrl[S.MRAM_TILES_USED]), fp_sram=self.fpsram, int_sram=self.intsram,
            gp=self.gp.astype(np.uint32), fp=self.fpr[:8].copy(), addr=self.areg.view(np.uint64).copy(),
            scale=int(ctrl[S.SCALE]), stride=int(ctrl[S.STRIDE]), v_mask=int(ctrl[S.V_MASK]), hbm=self.store)

    def result(self, error: EmulationError | None, wall_seconds: float, trace_limit: int = 0) -> RunResult:
        ctrl, counters = self.ctrl, self.counters
        used = int(ctrl[S.TRACE_USED])
        trace_events = None
        if trace_limit > 0:
            trace_events = TraceEvents(pc=self.trace[:used, 0].astype(np.int32), start=self.trace[:used, 1].copy(),
                                       end=self.trace[:used, 2].copy(), truncated=int(ctrl[S.INSTRUCTIONS]) > used)
        return RunResult(
            program=self.program, settings=self.settings, cycles=int(ctrl[S.NOW]),
            instructions=int(ctrl[S.INSTRUCTIONS]), hbm_bytes_read=int(ctrl[S.HBM_READ]),
            hbm_bytes_written=int(ctrl[S.HBM_WRITTEN]), hbm_model=self.settings.hbm_model,
            pc_count=counters[:, S.C_COUNT].copy(), pc_cycles=counters[:, S.C_CYCLES].copy(),
            pc_hbm_read=counters[:, S.C_HBM_READ].copy(), pc_hbm_written=counters[:, S.C_HBM_WRITTEN].copy(),
            state=self.state(), error=error, wall_seconds=wall_seconds, trace=trace_events,
            label_seconds=[self.label_secs[i].copy() for i in range(self.label_secs.shape[0])],
            warnings=self.warnings, timing=self.settings.timing,
            overlap=self.scheduler.result(trace_limit) if self.scheduler is not None else None)


def new_machine(
    program: Program | str | os.PathLike,
    *,
    settings: Settings | None = None,
    hbm: ImageSource = None,
    fp_sram: ImageSource = None,
    int_sram: ImageSource = None,
    vram: ImageSource = None,
    tensors: Mapping[str, tuple[np.ndarray, int]] | None = None,
    trace_limit: int = 0,
    seconds_labels: Sequence[np.ndarray] | None = None,
    hbm_budget: int | None = None,
) -> Machine:
    """The machine state before the first instruction (arguments as for `run()`; `hbm_budget`
    bounds the bytes of HBM pages the run may write, preloads included)."""
    if not is_cached(run_loop):  # before anything jitted (the HBM store's writers too) compiles
        announce_if_cold(run_loop)
        compile_helper.start()
    program = as_program(program)
    settings = settings or default_settings()
    setup = _setup(program, settings)
    m, v, b, a = settings.MLEN, settings.VLEN, settings.BLEN, settings.BROADCAST_AMOUNT
    n = len(program)

    fpsram = load_fp_sram(_image_bytes(fp_sram)) if fp_sram is not None else np.zeros(1024, np.uint16)
    intsram = load_int_sram(_image_bytes(int_sram)) if int_sram is not None else np.zeros(1024, np.uint32)
    vram_arr = np.zeros((settings.VECTOR_SRAM_SIZE, v), dtype=np.uint16)  # pages materialise on touch
    ctrl = np.zeros(S.CTRL_SIZE, dtype=np.int64)
    ctrl[S.STRIDE] = 1
    if vram is not None:
        pre = load_vram_preload(_image_bytes(vram), v, settings.VECTOR_SRAM_SIZE)
        vram_arr[: pre.shape[0]] = pre
        nz = np.nonzero(pre.any(axis=1))[0]
        ctrl[S.VRAM_ROWS_USED] = int(nz[-1]) + 1 if nz.size else 0
    store = SparseHbm(settings.HBM_SIZE, max_bytes=hbm_budget)
    if hbm is not None:
        data = load_hbm_preload(_image_bytes(hbm), settings.HBM_SIZE)
        if data.size:
            store.write(0, data)
    if tensors:
        _place_tensors(store, tensors)
    label_maps = [np.asarray(lab, dtype=np.int32) for lab in (seconds_labels or [])]
    for lab in label_maps:
        if lab.shape != (n,):
            raise InputError(f"a seconds label map must have one entry per instruction ({n}), got {lab.shape}")
    labels = np.stack(label_maps) if label_maps else np.zeros((0, n), dtype=np.int32)
    n_labels = max([int(lab.max()) + 1 for lab in label_maps if lab.size] + [1])

    # the debugger arms stops in dec and the kernels must never see a shared params array change
    dec = setup.dec.copy() if setup.dec is not None else None
    params = setup.params.copy()
    dbg, conds = no_stops()
    blk = np.zeros(setup.block_capacity, dtype=np.int64)
    overlapped = settings.timing == "overlapped" and dec is not None
    ts = _fresh_timing_state(settings.hbm_model)
    e4m3, e8m0 = _decode_tables()
    scheduler, oplog_rows = None, 0
    if overlapped:
        from .timing.scheduler import OPLOG_CHUNK, OverlapScheduler
        scheduler, oplog_rows = OverlapScheduler(settings, dec, params, blk.shape[0], ts), OPLOG_CHUNK
    return Machine(
        program=program, settings=settings, dec=dec, decode_error=setup.decode_error, warnings=list(setup.warnings),
        counters=np.zeros((n, S.COUNTER_SIZE), dtype=np.int64),
        gp=np.zeros(16, dtype=np.int64), fpr=np.zeros(16, dtype=np.uint16), areg=np.zeros(16, dtype=np.int64),
        ctrl=ctrl, loops=np.zeros((S.LOOP_STACK_CAP, S.LOOP_SIZE), dtype=np.int64),
        params=params, vram=vram_arr,
        mram=np.zeros((settings.mram_tiles, m * m), dtype=np.float32), fpsram=fpsram, intsram=intsram,
        macc=np.zeros((b, b), dtype=np.float32), vacc=np.zeros(b, dtype=np.float32),
        hmacc=np.zeros((a, m, m), dtype=np.float32), hvacc=np.zeros((a, m), dtype=np.float32),
        store=store, ts=ts, e4m3=e4m3, e8m0=e8m0,
        rows=np.zeros(scratch_shape(m, v), dtype=np.float32),
        blk=blk,
        seen=np.zeros(settings.HBM_V_Writeback_Amount * 4 + 4, dtype=np.int64),
        vals=np.zeros(max(m, v), dtype=np.float32), ebuf=np.zeros(max(m, v), dtype=np.uint8),
        sbuf=np.zeros(max(m, v) // 8 + 1, dtype=np.uint8),
        trace=np.zeros((max(int(trace_limit), 0), 3), dtype=np.int64), labels=labels,
        label_secs=np.zeros((labels.shape[0], n_labels), dtype=np.float64),
        err=np.zeros(S.ERR_SIZE, dtype=np.int64), dbg=dbg, conds=conds,
        oplog=np.zeros((oplog_rows, S.OPLOG_SIZE), dtype=np.int64), scheduler=scheduler)


def run(
    program: Program | str | os.PathLike,
    *,
    settings: Settings | None = None,
    hbm: ImageSource = None,
    fp_sram: ImageSource = None,
    int_sram: ImageSource = None,
    vram: ImageSource = None,
    tensors: Mapping[str, tuple[np.ndarray, int]] | None = None,
    max_instructions: int | None = None,
    max_wall_seconds: float | None = None,
    trace_limit: int = 0,
    seconds_labels: Sequence[np.ndarray] | None = None,
    progress: Callable[[int, int], None] | None = None,
    raise_on_error: bool = False,
    max_memory_bytes: int | None = None,
) -> RunResult:
    """Run a PLENA program and return its RunResult (see emulator/result.py).

    Preloads use the reference's file formats (HBM raw bytes, FP SRAM f16, INT SRAM u32, VRAM
    bf16 rows); `tensors` places float arrays into HBM as MXFP8 at given byte addresses.  Errors
    of the program end up in `result.error` (or are raised with `raise_on_error=True`); bad input
    always raises an InputError before anything runs.  A program without instructions runs
    nothing in 0 cycles, as in the reference.  Budgets: `max_instructions` (>= 1),
    `max_wall_seconds` (> 0) and `max_memory_bytes` for the state arrays plus the HBM pages the
    run writes (`state_bytes`): over it before the run, a ResourceError (an InputError); during
    it, an error of kind "resources".
    """
    t0 = time.perf_counter()
    program = as_program(program)
    settings = settings or default_settings()
    check_budgets(max_instructions, max_wall_seconds, trace_limit)
    fixed_bytes = sum(state_bytes(settings, len(program), trace_limit).values())
    if max_memory_bytes is not None and fixed_bytes > max_memory_bytes:
        raise ResourceError(f"the machine state for these settings takes {fixed_bytes:,} bytes "
                            f"({largest_arrays(settings, len(program), trace_limit)}); the memory budget is "
                            f"{max_memory_bytes:,} bytes")
    try:
        machine = new_machine(program, settings=settings, hbm=hbm, fp_sram=fp_sram, int_sram=int_sram, vram=vram,
                              tensors=tensors, trace_limit=trace_limit, seconds_labels=seconds_labels,
                              hbm_budget=None if max_memory_bytes is None else max_memory_bytes - fixed_bytes)
    except MemoryError:
        raise ResourceError(f"not enough memory for the machine state of these settings "
                            f"({largest_arrays(settings, len(program), trace_limit)})") from None
    ctrl = machine.ctrl
    error = machine.decode_error

    # ---- run in chunks
    last_progress = t0
    while machine.dec is not None:
        limit = ctrl[S.INSTRUCTIONS] + CHUNK_INSTRUCTIONS
        if max_instructions is not None:
            limit = min(limit, int(max_instructions))
        try:
            status = machine.advance(limit)
        except ResourceError as exc:
            error = machine.resources_error(str(exc))
            break
        except MemoryError:
            error = machine.resources_error("not enough memory for the HBM pages this program writes")
            break
        if status == S.ST_DONE:
            break
        if status == S.ST_ERROR:
            error = machine.core_error()
            break
        if ctrl[S.NOW] >= CYCLE_LIMIT:
            error = machine.resources_error(f"the cycle counter passed 2**62 ({int(ctrl[S.NOW]):,}); the run was "
                                            "stopped before it could wrap")
            break
        now = time.perf_counter()
        if max_instructions is not None and ctrl[S.INSTRUCTIONS] >= max_instructions:
            error = machine.budget_error(f"instruction budget of {max_instructions} exhausted")
            break
        if max_wall_seconds is not None and now - t0 > max_wall_seconds:
            error = machine.budget_error(f"wall-time budget of {max_wall_seconds} s exhausted")
            break
        if progress is not None and now - last_progress >= PROGRESS_INTERVAL_S:
            progress(int(ctrl[S.INSTRUCTIONS]), int(ctrl[S.NOW]))
            last_progress = now

    if error is not None and raise_on_error:
        raise error
    return machine.result(error, time.perf_counter() - t0, trace_limit)
