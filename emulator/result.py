"""RunResult: what one emulation run produced (final machine state, totals, per-pc counters)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .errors import EmulationError
from .program import Program
from .settings import Settings

if TYPE_CHECKING:
    from .timing.scheduler import OverlapResult


@dataclass
class MachineState:
    """Final architectural state after a run (numpy arrays; bf16 values are kept as uint16 bits).

    `vram[row, lane]` (VECTOR_SRAM_SIZE rows of VLEN lanes; untouched pages are never materialised),
    `mram[tile, MLEN*MLEN]` f32 (the reference keeps MRAM unrounded), `fp_sram[1024]` bf16 bits,
    `int_sram[1024]` u32, `gp[16]` u32, `fp[8]` bf16 bits, `addr[16]` u64, and the HBM as a
    sparse page store (`hbm.read(addr, n) -> bytes`).
    """

    vram: np.ndarray
    vram_rows_used: int          # 1 + the highest VRAM row ever written (0 if none)
    mram: np.ndarray
    mram_tiles_used: int         # 1 + the highest MRAM tile ever written
    fp_sram: np.ndarray
    int_sram: np.ndarray
    gp: np.ndarray
    fp: np.ndarray
    addr: np.ndarray
    scale: int
    stride: int
    v_mask: int
    hbm: "object"                # emulator.memory.SparseHbm


@dataclass
class TraceEvents:
    """Per dynamic instruction, in execution order, for the first `len(pc)` instructions."""

    pc: np.ndarray       # int32
    start: np.ndarray    # int64 cycle at which it started
    end: np.ndarray      # int64 cycle at which it ended
    truncated: bool      # True when the run executed more instructions than were recorded


@dataclass
class RunResult:
    program: Program
    settings: Settings
    cycles: int
    instructions: int            # dynamic instruction count
    hbm_bytes_read: int          # 64 per block access, like the reference
    hbm_bytes_written: int
    hbm_model: str               # which HBM timing model produced the DMA cycles
    pc_count: np.ndarray         # int64[n]: executions per static instruction
    pc_cycles: np.ndarray        # int64[n]: cycles spent per static instruction
    pc_hbm_read: np.ndarray      # int64[n]
    pc_hbm_written: np.ndarray   # int64[n]
    state: MachineState
    error: EmulationError | None = None
    wall_seconds: float = 0.0
    trace: TraceEvents | None = None
    # Optional f64 seconds accumulated per label in execution order (for the reference's
    # stage-profile JSON, whose float sums depend on that order): label_seconds[i][label].
    label_seconds: list[np.ndarray] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # "sequential": `cycles` and the per-pc counters are the reference's timing (always computed).
    # "overlapped": additionally `overlap` holds the overlapped model's figures (emulator/timing).
    timing: str = "sequential"
    overlap: "OverlapResult | None" = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def summary(self) -> dict:
        out = {
            "cycles": self.cycles,
            "instructions": self.instructions,
            "hbm_bytes_read": self.hbm_bytes_read,
            "hbm_bytes_written": self.hbm_bytes_written,
            "hbm_model": self.hbm_model,
            "wall_seconds": round(self.wall_seconds, 6),
        }
        if self.overlap is not None:
            out["timing"] = self.timing
            out["overlapped"] = self.overlap.summary()
        if self.error is not None:
            out["error"] = self.error.to_dict()
        return out
