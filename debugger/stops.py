"""Breakpoints, watchpoints and the stops they produce (plain data; the Session arms them).

Breakpoint locations resolve to sets of pcs (pc, source line, section entry, opcode) or to a
condition (a register, the cycle count, the dynamic instruction count, the loop depth compared
with a number).  Watchpoints name a memory range; they fire after an instruction that changed
it (value semantics, like gdb's `watch`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from emulator.core import stops as K
from emulator.errors import EmulationError, InputError

# Which memories each executor handler can write: the only pcs that get a watch check, and the
# only memories the instruction trace diffs after an instruction.
MEMORY_WRITERS: dict[str, tuple[str, ...]] = {
    "vram": ("V_ADD_VV", "V_ADD_VF", "V_SUB_VV", "V_SUB_VF", "V_MUL_VV", "V_MUL_VF", "V_MAX_VF",
             "V_MIN_VF", "V_EXP_V", "V_RECI_V", "V_SHFT_V", "M_MM_WO", "M_MV_WO", "M_BMM_WO",
             "M_BMV_WO", "H_PREFETCH_V", "S_MAP_V_FP"),
    "mram": ("H_PREFETCH_M",),
    "fp_sram": ("S_ST_FP", "V_TOPK"),
    "int_sram": ("S_ST_INT", "V_TOPK"),
    "hbm": ("H_STORE_V",),
}
MEMORIES = tuple(MEMORY_WRITERS)
WATCH_KIND = {"vram": K.WK_VRAM, "mram": K.WK_MRAM, "fp_sram": K.WK_FPSRAM, "int_sram": K.WK_INTSRAM,
              "hbm": K.WK_HBM}

_OPS = {"==": K.OP_EQ, "!=": K.OP_NE, "<": K.OP_LT, "<=": K.OP_LE, ">": K.OP_GT, ">=": K.OP_GE}
_COND_RE = re.compile(r"^\s*([A-Za-z_]+)(\d*)\s*(==|!=|<=|>=|<|>)\s*(\S+)\s*$")
_QUANTITIES = {  # name -> (kind, has an index, index limit)
    "gp": (K.CK_GP, True, 16), "f": (K.CK_FP, True, 8), "a": (K.CK_ADDR, True, 16),
    "scale": (K.CK_SCALE, False, 0), "stride": (K.CK_STRIDE, False, 0), "v_mask": (K.CK_V_MASK, False, 0),
    "vmask": (K.CK_V_MASK, False, 0), "cycle": (K.CK_CYCLE, False, 0), "cycles": (K.CK_CYCLE, False, 0),
    "instructions": (K.CK_INSTRUCTIONS, False, 0), "loop_depth": (K.CK_LOOP_DEPTH, False, 0),
}


@dataclass(frozen=True)
class Condition:
    """`quantity OP value`, e.g. gp3 == 5, f1 > 0.5, cycle >= 1000."""

    text: str
    kind: int
    index: int
    op: int
    value: float

    @staticmethod
    def parse(text: str) -> "Condition":
        m = _COND_RE.match(text)
        if not m:
            raise InputError(f"bad condition {text!r}: expected QUANTITY OP VALUE, e.g. 'gp3 == 5', 'f1 > 0.5', "
                             f"'cycle >= 1000' (quantities: gpN, fN, aN, scale, stride, v_mask, cycle, "
                             f"instructions, loop_depth; OP one of {' '.join(_OPS)})")
        name, digits, op, value = m.groups()
        spec = _QUANTITIES.get(name.lower())
        if spec is None:
            raise InputError(f"bad condition {text!r}: unknown quantity {name + digits!r}")
        kind, indexed, limit = spec
        if indexed != bool(digits):
            raise InputError(f"bad condition {text!r}: {name} {'needs' if indexed else 'takes no'} a register number")
        index = int(digits) if digits else 0
        if indexed and index >= limit:
            raise InputError(f"bad condition {text!r}: {name}{index} does not exist ({name}0-{name}{limit - 1})")
        try:
            number = float(int(value, 0)) if kind != K.CK_FP else float(value)
        except ValueError:
            try:
                number = float(value)
            except ValueError:
                raise InputError(f"bad condition {text!r}: {value!r} is not a number") from None
        return Condition(f"{name}{digits} {op} {value}", kind, index, _OPS[op], number)


@dataclass
class Breakpoint:
    """A stop before an instruction.  `pcs` is empty for pure conditions (checked everywhere,
    stopping when the condition becomes true); with pcs and a condition, it stops at those pcs
    whenever the condition holds there."""

    id: int
    kind: str                        # pc | line | section | opcode | cycle | instruction | condition
    where: str                       # what the user asked for, for listings
    pcs: tuple[int, ...] = ()
    condition: Condition | None = None
    temporary: bool = False
    enabled: bool = True
    hits: int = 0

    def describe(self) -> str:
        parts = [f"#{self.id}", "tbreak" if self.temporary else "break", self.where]
        if self.condition is not None and self.kind not in ("cycle", "instruction", "condition"):
            parts.append(f"if {self.condition.text}")
        if self.pcs and self.kind != "pc":
            shown = ", ".join(str(p) for p in self.pcs[:8]) + (", ..." if len(self.pcs) > 8 else "")
            parts.append(f"(pc {shown})")
        if not self.enabled:
            parts.append("[disabled]")
        parts.append(f"hits {self.hits}")
        return " ".join(parts)


@dataclass
class Watchpoint:
    """A memory range watched for changes: VRAM rows, MRAM tiles, FP/INT SRAM entries, HBM bytes."""

    id: int
    memory: str                      # vram | mram | fp_sram | int_sram | hbm
    first: int                       # first row / tile / entry / byte address
    count: int                       # rows / tiles / entries / bytes
    enabled: bool = True
    hits: int = 0

    @property
    def where(self) -> str:
        unit = {"vram": "row", "mram": "tile", "fp_sram": "entry", "int_sram": "entry", "hbm": "byte"}[self.memory]
        last = self.first + self.count - 1
        span = f"{self.first}" if self.count == 1 else f"{self.first}-{last}"
        return f"{self.memory} {unit}{'s' if self.count > 1 else ''} {span}"

    def describe(self) -> str:
        return f"#{self.id} watch {self.where}{'' if self.enabled else ' [disabled]'} hits {self.hits}"


@dataclass(frozen=True)
class WatchHit:
    """What one watched range looked like before and after the instruction that changed it.

    `old`/`new` are decoded values (VRAM rows and FP SRAM as float32 from bf16, MRAM tiles float32,
    INT SRAM uint32, HBM uint8); `changed` lists the changed rows/tiles/entries/bytes."""

    watch: Watchpoint
    old: np.ndarray
    new: np.ndarray
    changed: tuple[int, ...]


@dataclass(frozen=True)
class Location:
    pc: int
    line: int | None                 # 1-based ASM line (None for machine code)
    text: str                        # the ASM line, or the disassembly of a .mem word
    section: str

    def describe(self) -> str:
        where = f"line {self.line}" if self.line is not None else "(no source)"
        return f"pc {self.pc}, {where} [{self.section}]: {self.text}"


@dataclass(frozen=True)
class Stop:
    """Why and where the machine stopped.

    reason: breakpoint | condition | watchpoint | step | finish | end | error | limit.
    `location` is the next instruction to run (None at the end of the program); for a watchpoint
    the instruction that wrote is `writer`.
    """

    reason: str
    location: Location | None
    cycle: int
    instructions: int
    breakpoint: Breakpoint | None = None
    watch_hits: tuple[WatchHit, ...] = ()
    writer: Location | None = None
    error: EmulationError | None = None

    @property
    def pc(self) -> int | None:
        return self.location.pc if self.location is not None else None

    def describe(self) -> str:
        head = {"breakpoint": f"Breakpoint #{self.breakpoint.id}" if self.breakpoint else "Breakpoint",
                "condition": f"Condition #{self.breakpoint.id} ({self.breakpoint.where})" if self.breakpoint else "Condition",
                "watchpoint": "Watchpoint", "step": "Stepped", "finish": "Finished",
                "end": "Program ended", "error": "Program aborted", "limit": "Instruction limit reached"}[self.reason]
        lines = [f"{head} at cycle {self.cycle}, after {self.instructions} instructions"]
        for hit in self.watch_hits:
            lines.append(f"  watch #{hit.watch.id} {hit.watch.where}: changed {_span(hit.changed)}"
                         + (f" by pc {self.writer.pc} ({self.writer.text})" if self.writer else ""))
        if self.error is not None:
            lines.append(f"  {self.error}")
        if self.location is not None:
            lines.append(f"  next: {self.location.describe()}")
        return "\n".join(lines)


def _span(items: tuple[int, ...]) -> str:
    shown = ", ".join(str(i) for i in items[:8])
    return shown + (f", ... ({len(items)} in all)" if len(items) > 8 else "")


@dataclass
class StopTables:
    """The arrays the run loop reads (D_STOP flags go into the decoded program)."""

    flags: np.ndarray                 # int64[n]
    dbg: np.ndarray
    conds: np.ndarray
    cond_owner: list[int] = field(default_factory=list)   # breakpoint id per conds row
