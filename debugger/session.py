"""Session: a PLENA machine you can stop, inspect, change and resume.

Built from the same inputs as `emulator.run()`.  Every way of moving forward (`step`, `next`,
`finish`, `continue_`, `run_until`) runs the jitted run loop with the session's breakpoints armed
in it (emulator/core/stops.py), so a program runs at close to full speed until it stops.  Reads
return numbers a user understands (bf16 decoded to float32, MXFP8 HBM tensors dequantised).

    s = Session(Path("prog.asm"), hbm="hbm.bin", fp_sram="fp_sram.bin")
    s.break_at(line=42); s.watch("vram", 8)
    stop = s.continue_()          # Stop(reason="breakpoint", location=..., cycle=...)
    s.registers().gp[3], s.vram_rows(8), s.loop_stack()
    s.compare(8, golden, atol=1e-2)
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emulator.asm import disassemble_word
from emulator.core import state as S
from emulator.core import stops as K
from emulator.core.loop import HANDLERS
from emulator.errors import EmulationError, InputError
from emulator.program import Program
from emulator.result import RunResult
from emulator.runner import ImageSource, new_machine
from emulator.settings import Settings
from emulator.tensors import bf16_bits_to_f32, f32_to_bf16_bits, read_mx_tensor, read_vram_tensor, mx_layout
from profiler.sections import build_sections

from .stops import (
    MEMORY_WRITERS, WATCH_KIND, Breakpoint, Condition, Location, Stop, StopTables, WatchHit, Watchpoint,
)

CHUNK = 1 << 20            # instructions per run-loop call while continuing (keeps Ctrl-C responsive)
MAX_WATCH_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class Registers:
    gp: tuple[int, ...]              # gp0-gp15, u32
    fp: tuple[float, ...]            # f0-f7, bf16 decoded
    addr: tuple[int, ...]            # a0-a15, u64
    scale: int
    stride: int
    v_mask: int


@dataclass(frozen=True)
class LoopFrame:
    start_pc: int                    # the C_LOOP_START
    end_pc: int | None               # the C_LOOP_END that closes it (static match), if found
    register: int                    # gp register counting down
    count: int                       # iterations in all
    remaining: int                   # iterations left, including the current one
    instructions: int                # instructions in the current iteration so far (MAX_LOOP check)

    @property
    def iteration(self) -> int:
        """0-based index of the current iteration."""
        return self.count - self.remaining


@dataclass(frozen=True)
class Mismatch:
    index: tuple[int, ...]
    got: float
    want: float


@dataclass(frozen=True)
class CompareResult:
    """The test benches' allclose check of a VRAM range against a golden tensor."""

    ok: bool
    compared: int
    mismatched: int
    max_abs_error: float
    first_mismatches: tuple[Mismatch, ...]
    atol: float
    rtol: float

    def describe(self) -> str:
        head = (f"{'MATCH' if self.ok else 'MISMATCH'}: {self.mismatched} of {self.compared} elements differ "
                f"(atol {self.atol}, rtol {self.rtol}); max |got - want| = {self.max_abs_error:g}")
        rows = [f"  at {list(m.index)}: got {m.got:g}, want {m.want:g}" for m in self.first_mismatches]
        return "\n".join([head, *rows])


class Session:
    def __init__(self, program: Program | str | os.PathLike, *, settings: Settings | None = None,
                 hbm: ImageSource = None, fp_sram: ImageSource = None, int_sram: ImageSource = None,
                 vram: ImageSource = None, tensors: Mapping[str, tuple[np.ndarray, int]] | None = None,
                 section_mode: str | None = None, trace_limit: int = 0,
                 seconds_labels: Sequence[np.ndarray] | None = None):
        self.machine = new_machine(program, settings=settings, hbm=hbm, fp_sram=fp_sram, int_sram=int_sram,
                                   vram=vram, tensors=tensors, trace_limit=trace_limit, seconds_labels=seconds_labels)
        self._trace_limit = trace_limit
        m = self.machine
        self.program: Program = m.program
        self.settings: Settings = m.settings
        self.error: EmulationError | None = m.decode_error
        self._wall = 0.0
        self._started = False
        self._next_id = 1
        self.breakpoints: dict[int, Breakpoint] = {}
        self.watchpoints: dict[int, Watchpoint] = {}
        self._cond_last: dict[int, float] = {}
        n = len(self.program)
        words = self.program.words.astype(np.int64)
        if m.dec is not None:
            self._handler = m.dec[:, S.D_HANDLER].copy()
            self._rd = m.dec[:, S.D_RD].copy()
        else:
            self._handler = np.zeros(n, dtype=np.int64)
            self._rd = np.zeros(n, dtype=np.int64)
        self._words = words
        self.sections = build_sections(self.program, section_mode)
        self._section_names = [" / ".join(p) for p in self.sections.paths]
        self._line_pc: dict[int, int] = {}
        if self.program.source is not None:
            for pc, src in enumerate(self.program.source):
                self._line_pc.setdefault(src.line_no, pc)

    # ------------------------------------------------------------------ where we are
    @property
    def pc(self) -> int:
        return self.machine.pc

    @property
    def cycle(self) -> int:
        return int(self.machine.ctrl[S.NOW])

    @property
    def instructions(self) -> int:
        return int(self.machine.ctrl[S.INSTRUCTIONS])

    @property
    def finished(self) -> bool:
        """True once the program ended or aborted: nothing more can run."""
        return self.error is not None or self.machine.finished

    def opcode(self, pc: int) -> str:
        return HANDLERS[int(self._handler[pc])] if self.machine.dec is not None else "INVALID"

    def location(self, pc: int | None = None) -> Location | None:
        pc = self.pc if pc is None else int(pc)
        if not 0 <= pc < len(self.program):
            return None
        src = self.program.source[pc] if self.program.source is not None else None
        text = src.text if src is not None else disassemble_word(int(self._words[pc]))
        return Location(pc, src.line_no if src else None, text, self.section_of(pc))

    def section_of(self, pc: int) -> str:
        return self._section_names[int(self.sections.pc_section[pc])]

    def pc_of_line(self, line: int) -> int:
        """The first instruction at or after ASM line `line`."""
        if self.program.source is None:
            raise InputError("this program has no ASM source (machine code): break on a pc instead")
        after = [ln for ln in self._line_pc if ln >= line]
        if not after:
            raise InputError(f"no instruction at or after line {line}")
        return self._line_pc[min(after)]

    # ------------------------------------------------------------------ state reads
    def registers(self) -> Registers:
        m = self.machine
        return Registers(
            gp=tuple(int(x) for x in m.gp), fp=tuple(float(x) for x in bf16_bits_to_f32(m.fpr[:8])),
            addr=tuple(int(x) for x in m.areg.view(np.uint64)), scale=int(m.ctrl[S.SCALE]),
            stride=int(m.ctrl[S.STRIDE]), v_mask=int(m.ctrl[S.V_MASK]))

    def register(self, name: str) -> int | float:
        kind, index = _register(name)
        r = self.registers()
        return {"gp": lambda: r.gp[index], "f": lambda: r.fp[index], "a": lambda: r.addr[index],
                "scale": lambda: r.scale, "stride": lambda: r.stride, "v_mask": lambda: r.v_mask}[kind]()

    def vram_bits(self, first_row: int, count: int = 1) -> np.ndarray:
        self._check_range("VRAM row", first_row, count, self.settings.VECTOR_SRAM_SIZE)
        return self.machine.vram[first_row:first_row + count].copy()

    def vram_rows(self, first_row: int, count: int = 1) -> np.ndarray:
        """float32[count, VLEN] (bf16 decoded)."""
        return bf16_bits_to_f32(self.vram_bits(first_row, count))

    def mram_tile(self, tile: int) -> np.ndarray:
        """float32[MLEN, MLEN] (MRAM keeps f32 values)."""
        self._check_range("MRAM tile", tile, 1, self.settings.mram_tiles)
        m = self.settings.MLEN
        return self.machine.mram[tile].reshape(m, m).copy()

    def fp_sram(self, first: int = 0, count: int = 1) -> np.ndarray:
        self._check_range("FP SRAM entry", first, count, self.machine.fpsram.shape[0])
        return bf16_bits_to_f32(self.machine.fpsram[first:first + count])

    def int_sram(self, first: int = 0, count: int = 1) -> np.ndarray:
        self._check_range("INT SRAM entry", first, count, self.machine.intsram.shape[0])
        return self.machine.intsram[first:first + count].copy()

    def hbm_bytes(self, addr: int, count: int) -> bytes:
        self._check_range("HBM byte", addr, count, self.settings.HBM_SIZE)
        return self.machine.store.read(int(addr), int(count))

    def hbm_tensor(self, addr: int, shape: tuple[int, ...], scale_addr: int | None = None) -> np.ndarray:
        """An MXFP8 tensor in HBM (elements at addr, scales after them unless scale_addr), dequantised."""
        lay = mx_layout(shape, 0)
        n_elem = lay["rows"] * lay["cols"]
        if scale_addr is None:
            data = self.hbm_bytes(addr, n_elem + lay["rows"] * lay["scale_row_bytes"])
            return read_mx_tensor(np.frombuffer(data, dtype=np.uint8), 0, shape)
        elems = self.hbm_bytes(addr, n_elem)
        scales = self.hbm_bytes(scale_addr, lay["rows"] * lay["scale_row_bytes"])
        return read_mx_tensor(np.frombuffer(elems + scales, dtype=np.uint8), 0, shape, scale_base=n_elem)

    def loop_stack(self) -> list[LoopFrame]:
        """Active hardware loops, outermost first."""
        m = self.machine
        out = []
        for e in range(int(m.ctrl[S.LOOP_SP])):
            row = m.loops[e]
            start = int(row[S.L_START_PC])
            out.append(LoopFrame(start, self._loop_end_pc(start), int(row[S.L_REG]), int(row[S.L_COUNT]),
                                 int(row[S.L_CURRENT]), int(row[S.L_INSTR_COUNT])))
        return out

    # ------------------------------------------------------------------ state writes (what-if)
    def set_register(self, name: str, value: int | float) -> None:
        kind, index = _register(name)
        m = self.machine
        if kind == "f":
            m.fpr[index] = f32_to_bf16_bits(np.array([value], dtype=np.float32))[0]
            return
        v = int(value)
        limit = 1 << (64 if kind == "a" else 32)
        if not 0 <= v < limit:
            raise InputError(f"{name} = {value}: out of range 0..{limit - 1}")
        if kind == "gp":
            m.gp[index] = v
        elif kind == "a":
            m.areg.view(np.uint64)[index] = v
        else:
            m.ctrl[{"scale": S.SCALE, "stride": S.STRIDE, "v_mask": S.V_MASK}[kind]] = v

    def set_vram_row(self, row: int, values) -> None:
        """Write one VRAM row (VLEN floats, rounded to bf16)."""
        self._check_range("VRAM row", row, 1, self.settings.VECTOR_SRAM_SIZE)
        vals = np.asarray(values, dtype=np.float32).reshape(-1)
        if vals.size != self.settings.VLEN:
            raise InputError(f"a VRAM row has {self.settings.VLEN} values, got {vals.size}")
        self.machine.vram[row] = f32_to_bf16_bits(vals)
        self.machine.ctrl[S.VRAM_ROWS_USED] = max(int(self.machine.ctrl[S.VRAM_ROWS_USED]), row + 1)

    def set_fp_sram(self, first: int, values) -> None:
        vals = np.asarray(values, dtype=np.float32).reshape(-1)
        self._check_range("FP SRAM entry", first, vals.size, self.machine.fpsram.shape[0])
        self.machine.fpsram[first:first + vals.size] = f32_to_bf16_bits(vals)

    def set_int_sram(self, first: int, values) -> None:
        vals = np.asarray(values, dtype=np.int64).reshape(-1)
        self._check_range("INT SRAM entry", first, vals.size, self.machine.intsram.shape[0])
        if vals.size and (vals.min() < 0 or vals.max() > 0xFFFFFFFF):
            raise InputError("INT SRAM values are u32 (0..4294967295)")
        self.machine.intsram[first:first + vals.size] = vals.astype(np.uint32)

    # ------------------------------------------------------------------ golden check
    def compare(self, first_row: int, golden, atol: float = 1e-2, rtol: float = 1e-2,
                row_dim: int | None = None, max_report: int = 10) -> CompareResult:
        """Compare VRAM (read as a lane stream from `first_row`, `row_dim` values per row, VLEN by
        default) with `golden` (array or .npy path): |got - want| <= atol + rtol*|want|, NaN == NaN."""
        if isinstance(golden, (str, os.PathLike)):
            try:
                golden = np.load(Path(golden), allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise InputError(f"cannot read golden tensor {str(golden)!r}: {exc}") from exc
        want = np.asarray(golden, dtype=np.float32)
        if want.size == 0:
            raise InputError("the golden tensor is empty")
        dim = int(row_dim or self.settings.VLEN)
        if want.ndim >= 2 and row_dim is None and want.shape[-1] <= self.settings.VLEN:
            dim = want.shape[-1]
        flat = want.reshape(-1, dim) if want.size % dim == 0 else None
        if flat is None:
            raise InputError(f"golden tensor of {want.size} elements is not a whole number of {dim}-value rows")
        self._check_range("VRAM row", first_row, 1, self.settings.VECTOR_SRAM_SIZE)
        rows_needed = flat.shape[0]
        vram = self.machine.vram[first_row:first_row + rows_needed]
        got = read_vram_tensor(vram, 0, rows_needed, dim if dim == self.settings.VLEN else self.settings.VLEN,
                               slice_per_row=None if dim == self.settings.VLEN else dim)
        got = got.reshape(want.shape)
        close = np.isclose(got, want, atol=atol, rtol=rtol, equal_nan=True)
        bad = np.argwhere(~close)
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        finite = diff[np.isfinite(diff)]
        return CompareResult(
            ok=bad.shape[0] == 0, compared=int(want.size), mismatched=int(bad.shape[0]),
            max_abs_error=float(finite.max()) if finite.size else 0.0,
            first_mismatches=tuple(Mismatch(tuple(int(i) for i in idx), float(got[tuple(idx)]), float(want[tuple(idx)]))
                                   for idx in bad[:max_report]),
            atol=atol, rtol=rtol)

    # ------------------------------------------------------------------ breakpoints
    def break_at(self, *, pc: int | None = None, line: int | None = None, section: str | None = None,
                 opcode: str | None = None, cycle: int | None = None, instruction: int | None = None,
                 condition: str | None = None, temporary: bool = False) -> Breakpoint:
        """One breakpoint: exactly one of pc / line / section / opcode / cycle / instruction, or only
        a condition.  A condition next to a pc/line/section/opcode makes it conditional there."""
        given = {k: v for k, v in dict(pc=pc, line=line, section=section, opcode=opcode, cycle=cycle,
                                       instruction=instruction).items() if v is not None}
        if len(given) > 1 or (not given and condition is None):
            raise InputError("give exactly one of pc, line, section, opcode, cycle, instruction (or only a condition)")
        cond = Condition.parse(condition) if condition is not None else None
        n = len(self.program)
        kind, where, pcs = "condition", cond.text if cond else "", ()
        if pc is not None:
            if not 0 <= int(pc) < n:
                raise InputError(f"pc {pc} is outside the program (0-{n - 1})")
            kind, where, pcs = "pc", f"pc {int(pc)}", (int(pc),)
        elif line is not None:
            target = self.pc_of_line(int(line))
            kind, where, pcs = "line", f"line {int(line)}", (target,)
        elif section is not None:
            kind, where, pcs = "section", f"section {section!r}", self._section_entries(section)
        elif opcode is not None:
            name = opcode.upper()
            if name not in HANDLERS:
                raise InputError(f"unknown opcode {opcode!r}")
            pcs = tuple(int(p) for p in np.nonzero(self._handler == HANDLERS.index(name))[0])
            if not pcs:
                raise InputError(f"the program has no {name} instruction")
            kind, where = "opcode", f"opcode {name}"
        elif cycle is not None:
            if cond is not None:
                raise InputError("a cycle breakpoint cannot take a condition")
            cond = Condition.parse(f"cycle >= {int(cycle)}")
            kind, where = "cycle", cond.text
        elif instruction is not None:
            if cond is not None:
                raise InputError("an instruction-count breakpoint cannot take a condition")
            cond = Condition.parse(f"instructions >= {int(instruction)}")
            kind, where = "instruction", cond.text
        bp = Breakpoint(self._new_id(), kind, where, pcs, cond, temporary)
        self.breakpoints[bp.id] = bp
        if cond is not None and not pcs:
            self._cond_last[bp.id] = 1.0 if self._eval(cond) else 0.0
        return bp

    def watch(self, memory: str, first: int, count: int = 1) -> Watchpoint:
        """Stop after an instruction changes VRAM rows / MRAM tiles / FP or INT SRAM entries / HBM bytes."""
        memory = memory.lower().replace("-", "_")
        if memory not in WATCH_KIND:
            raise InputError(f"unknown memory {memory!r}: use one of {', '.join(WATCH_KIND)}")
        limit = {"vram": self.settings.VECTOR_SRAM_SIZE, "mram": self.settings.mram_tiles,
                 "fp_sram": self.machine.fpsram.shape[0], "int_sram": self.machine.intsram.shape[0],
                 "hbm": self.settings.HBM_SIZE}[memory]
        self._check_range(memory, first, count, limit)
        if count * self._element_size(memory) > MAX_WATCH_ELEMENTS:
            raise InputError(f"watch range too large ({count} units of {memory}); watch at most "
                             f"{MAX_WATCH_ELEMENTS} elements")
        w = Watchpoint(self._new_id(), memory, int(first), int(count))
        self.watchpoints[w.id] = w
        return w

    def delete(self, ident: int | None = None) -> None:
        """Delete one breakpoint/watchpoint by id, or all of them."""
        if ident is None:
            self.breakpoints.clear()
            self.watchpoints.clear()
            return
        if self.breakpoints.pop(ident, None) is None and self.watchpoints.pop(ident, None) is None:
            raise InputError(f"no breakpoint or watchpoint #{ident}")

    def enable(self, ident: int, enabled: bool = True) -> None:
        item = self.breakpoints.get(ident) or self.watchpoints.get(ident)
        if item is None:
            raise InputError(f"no breakpoint or watchpoint #{ident}")
        item.enabled = enabled

    # ------------------------------------------------------------------ moving
    def step(self, n: int = 1) -> Stop:
        """Run n instructions (stopping early at a breakpoint or watchpoint)."""
        if n < 1:
            raise InputError("step count must be >= 1")
        return self._resume(self.instructions + int(n), "step")

    def next(self) -> Stop:
        """Step over a loop: at a C_LOOP_START run until its C_LOOP_END falls through; else step."""
        pc = self.pc
        if not self.finished and self.opcode(pc) == "C_LOOP_START":
            end = self._loop_end_pc(pc)
            if end is not None and end + 1 <= len(self.program):
                return self._resume(None, "finish", internal=(end + 1,))
        return self.step(1)

    def finish(self) -> Stop:
        """Run until the innermost active loop ends."""
        frames = self.loop_stack()
        if not frames:
            raise InputError("no active loop to finish")
        end = frames[-1].end_pc
        if end is None:
            raise InputError(f"the loop started at pc {frames[-1].start_pc} has no matching C_LOOP_END")
        return self._resume(None, "finish", internal=(end + 1,))

    def continue_(self, max_instructions: int | None = None) -> Stop:
        """Run until a breakpoint, a watchpoint, the end, an abort, or `max_instructions` more."""
        limit = None if max_instructions is None else self.instructions + int(max_instructions)
        return self._resume(limit, "limit")

    def run_until(self, *, max_instructions: int | None = None, **location) -> Stop:
        """Continue to a one-off breakpoint (keywords as for break_at), also honouring the others."""
        bp = self.break_at(temporary=True, **location)
        try:
            return self.continue_(max_instructions)
        finally:
            self.breakpoints.pop(bp.id, None)

    def run_to_end(self, max_instructions: int | None = None) -> RunResult:
        """Continue with no breakpoints armed and return the RunResult (as `emulator.run` would).

        `max_instructions` is a total budget like run()'s: reaching it ends the session with a
        BudgetExceeded error."""
        saved_b, saved_w = self.breakpoints, self.watchpoints
        self.breakpoints, self.watchpoints = {}, {}
        try:
            left = None if max_instructions is None else max(int(max_instructions) - self.instructions, 0)
            if left != 0:
                self._resume(None if left is None else self.instructions + left, "limit")
            if not self.finished and max_instructions is not None:
                self.error = self.machine.budget_error(f"instruction budget of {max_instructions} exhausted")
        finally:
            self.breakpoints, self.watchpoints = saved_b, saved_w
        return self.result()

    def result(self) -> RunResult:
        """The RunResult of the run so far (final once `finished`)."""
        return self.machine.result(self.error, self._wall, self._trace_limit)

    # ------------------------------------------------------------------ internals
    def _new_id(self) -> int:
        i = self._next_id
        self._next_id += 1
        return i

    def _check_range(self, what: str, first: int, count: int, limit: int) -> None:
        first, count = int(first), int(count)
        if count < 1 or first < 0 or first + count > limit:
            raise InputError(f"{what} range [{first}, {first + count}) is outside 0..{limit - 1}")

    def _element_size(self, memory: str) -> int:
        return {"vram": self.settings.VLEN, "mram": self.settings.MLEN ** 2}.get(memory, 1)

    def _eval(self, cond: Condition) -> bool:
        """Whether `cond` holds now (the run loop's own check on a one-row table, edge state 0)."""
        m = self.machine
        dbg, _ = K.no_stops()
        conds = np.array([[-1.0, cond.kind, cond.index, cond.op, cond.value, 0.0]])
        return bool(K.stop_before(K.STOP_COND, self.pc, m.gp, m.fpr, m.areg, m.ctrl, dbg, conds))

    def _section_entries(self, name: str) -> tuple[int, ...]:
        """First pc of every run of consecutive instructions in a section whose name contains `name`."""
        ids = [i for i, s in enumerate(self._section_names) if name.lower() in s.lower()]
        if not ids:
            known = ", ".join(sorted(set(self._section_names))[:12])
            raise InputError(f"no section matches {name!r} (sections: {known})")
        inside = np.isin(self.sections.pc_section, ids)
        starts = inside & ~np.concatenate(([False], inside[:-1]))
        return tuple(int(p) for p in np.nonzero(starts)[0])

    def _loop_end_pc(self, start_pc: int) -> int | None:
        """The C_LOOP_END that ends the loop started at start_pc (matching like the reference:
        an END closes the innermost open loop on its register)."""
        reg = int(self._rd[start_pc])
        start_h, end_h = HANDLERS.index("C_LOOP_START"), HANDLERS.index("C_LOOP_END")
        inner: list[int] = []
        for pc in range(start_pc + 1, len(self.program)):
            h, rd = int(self._handler[pc]), int(self._rd[pc])
            if h == start_h:
                inner.append(rd)
            elif h == end_h:
                if rd in inner:
                    del inner[len(inner) - 1 - inner[::-1].index(rd)]
                elif rd == reg:
                    return pc
        return None

    def _arm(self, internal: tuple[int, ...]) -> StopTables:
        n = len(self.program)
        flags = np.zeros(n, dtype=np.int64)
        cond_rows, owners = [], []
        for bp in self.breakpoints.values():
            if not bp.enabled:
                continue
            pcs = np.asarray(bp.pcs, dtype=np.int64)
            if bp.condition is None:
                flags[pcs] |= K.STOP_PC
                continue
            c = bp.condition
            flags[pcs if bp.pcs else slice(None)] |= K.STOP_COND
            at = -1.0 if not bp.pcs else 0.0
            for p in (bp.pcs or (-1,)):
                cond_rows.append([float(p) if bp.pcs else at, c.kind, c.index, c.op, c.value,
                                  self._cond_last.get(bp.id, 0.0)])
                owners.append(bp.id)
        for p in internal:
            if p < n:
                flags[p] |= K.STOP_PC
        watches = [w for w in self.watchpoints.values() if w.enabled]
        handler_names = np.array(HANDLERS)[self._handler] if n else np.array([], dtype=str)
        sizes = [w.count * self._element_size(w.memory) for w in watches]
        dbg = np.zeros(K.DB_HEADER + K.WATCH_SIZE * len(watches) + sum(sizes), dtype=np.int64)
        dbg[K.DB_SKIP_AT] = self.instructions if self._started else -1
        dbg[K.DB_N_WATCH] = len(watches)
        snap = K.DB_HEADER + K.WATCH_SIZE * len(watches)
        for i, (w, size) in enumerate(zip(watches, sizes)):
            row = K.DB_HEADER + i * K.WATCH_SIZE
            dbg[row + K.W_KIND] = WATCH_KIND[w.memory]
            dbg[row + K.W_FIRST] = w.first * self._element_size(w.memory)
            dbg[row + K.W_COUNT] = size
            dbg[row + K.W_SNAP] = snap
            snap += size
            flags[np.isin(handler_names, MEMORY_WRITERS[w.memory])] |= K.STOP_WATCH
        conds = np.array(cond_rows, dtype=np.float64).reshape(-1, K.COND_SIZE)
        m = self.machine
        if watches:
            K.sync_watches(-1, dbg, m.vram, m.mram, m.fpsram, m.intsram, m.store.page_table, m.store.pool, m.params,
                           True)
        return StopTables(flags, dbg, conds, owners)

    def _resume(self, stop_after: int | None, plain_reason: str, internal: tuple[int, ...] = ()) -> Stop:
        if self.finished:
            return self._stop("error" if self.error is not None else "end")
        m = self.machine
        tables = self._arm(internal)
        m.dec[:, S.D_STOP] = tables.flags
        m.dbg, m.conds = tables.dbg, tables.conds
        t0 = time.perf_counter()
        try:
            while True:
                limit = self.instructions + CHUNK
                if stop_after is not None:
                    limit = min(limit, stop_after)
                status = m.advance(limit)
                self._started = True
                if status != S.ST_CHUNK or (stop_after is not None and self.instructions >= stop_after):
                    break
                m.dbg[K.DB_SKIP_AT] = -1   # a chunk boundary is not a stop: check this pc normally
        finally:
            self._wall += time.perf_counter() - t0
            m.dec[:, S.D_STOP] = 0
            for k, owner in enumerate(tables.cond_owner):
                if tables.conds[k, K.C_PC] < 0:
                    self._cond_last[owner] = float(tables.conds[k, K.C_LAST])
        if status == S.ST_DONE:
            return self._stop("end")
        if status == S.ST_ERROR:
            self.error = m.core_error()
            return self._stop("error")
        if status == S.ST_CHUNK:
            return self._stop(plain_reason if plain_reason != "finish" else "limit")
        kind, index = int(m.dbg[K.DB_HIT_KIND]), int(m.dbg[K.DB_HIT_INDEX])
        if kind == K.HIT_WATCH:
            return self._watch_stop(tables)
        if kind == K.HIT_COND:
            bp = self.breakpoints[tables.cond_owner[index]]
            return self._hit(bp, "condition" if not bp.pcs else "breakpoint")
        user = [bp for bp in self.breakpoints.values()
                if bp.enabled and bp.condition is None and index in bp.pcs]
        if user:
            return self._hit(user[0], "breakpoint")
        return self._stop("finish")

    def _hit(self, bp: Breakpoint, reason: str) -> Stop:
        bp.hits += 1
        if bp.temporary:
            self.breakpoints.pop(bp.id, None)
        return self._stop(reason, breakpoint=bp)

    def _watch_stop(self, tables: StopTables) -> Stop:
        m = self.machine
        watches = [w for w in self.watchpoints.values() if w.enabled]
        old = tables.dbg
        new = old.copy()
        K.sync_watches(-1, new, m.vram, m.mram, m.fpsram, m.intsram, m.store.page_table, m.store.pool, m.params,
                       True)
        hits = []
        for i, w in enumerate(watches):
            row = K.DB_HEADER + i * K.WATCH_SIZE
            snap, size = int(old[row + K.W_SNAP]), int(old[row + K.W_COUNT])
            old_bits, new_bits = old[snap:snap + size], new[snap:snap + size]
            if np.array_equal(old_bits, new_bits):
                continue
            unit = self._element_size(w.memory)
            changed = np.nonzero((old_bits != new_bits).reshape(-1, unit).any(axis=1))[0] + w.first
            w.hits += 1
            hits.append(WatchHit(w, self._decode(w, old_bits), self._decode(w, new_bits),
                                 tuple(int(c) for c in changed)))
        return self._stop("watchpoint", watch_hits=tuple(hits), writer=self.location(int(old[K.DB_WRITER])))

    def _decode(self, w: Watchpoint, bits: np.ndarray) -> np.ndarray:
        if w.memory == "vram":
            return bf16_bits_to_f32(bits.astype(np.uint16)).reshape(w.count, self.settings.VLEN)
        if w.memory == "mram":
            m = self.settings.MLEN
            return bits.astype(np.uint32).view(np.float32).reshape(w.count, m, m)
        if w.memory == "fp_sram":
            return bf16_bits_to_f32(bits.astype(np.uint16))
        if w.memory == "int_sram":
            return bits.astype(np.uint32)
        return bits.astype(np.uint8)

    def _stop(self, reason: str, breakpoint: Breakpoint | None = None, watch_hits: tuple[WatchHit, ...] = (),
              writer: Location | None = None) -> Stop:
        loc = None if reason == "end" or (self.finished and self.error is None) else self.location()
        return Stop(reason, loc, self.cycle, self.instructions, breakpoint, watch_hits, writer,
                    self.error if reason == "error" else None)


_REGISTER_NAMES = {"scale", "stride", "v_mask", "vmask"}


def _register(name: str) -> tuple[str, int]:
    """('gp', 3) from 'gp3'; ('scale', 0) from 'scale'."""
    text = name.strip().lower()
    if text in _REGISTER_NAMES:
        return ("v_mask" if text == "vmask" else text), 0
    for prefix, limit in (("gp", 16), ("f", 8), ("a", 16)):
        if text.startswith(prefix) and text[len(prefix):].isdigit():
            idx = int(text[len(prefix):])
            if idx >= limit:
                raise InputError(f"register {name!r} does not exist ({prefix}0-{prefix}{limit - 1})")
            return prefix, idx
    raise InputError(f"unknown register {name!r} (gp0-gp15, f0-f7, a0-a15, scale, stride, v_mask)")
