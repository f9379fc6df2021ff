"""Python driver of the overlapped timing model: operand log chunks in, OverlapResult out.

`OverlapScheduler(settings, dec)` holds the jitted scheduler's state between run-loop chunks;
`consume(oplog, n)` schedules the next n logged instructions (growing its tables when the
scheduler asks), `result()` summarises: totals, per-unit busy/stalled/idle, stall attribution,
critical path per pc, the dependency bound, and per dynamic instruction issue/start/end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..core import state as S
from ..core.hbm_store import empty_table
from ..core.loop import HANDLERS
from ..hbm.timing import new_timing_state
from .footprint import SPACES, max_footprint, resource_bases
from .overlap import (
    CAUSES, DY_END, DY_ISSUE, DY_PC, DY_START, DYN_COLS, PC_COLS, PC_CYCLES, PC_ISSUE_STALL, PC_STALL,
    RES_COLS, SC_DEP_BOUND, SC_DYN, SC_FRONT_STALL, SC_ISSUE_DYN, SC_ISSUE_WIDTH, SC_LAST_DMA_DYN,
    SC_DMA_EXTRA, SC_LAST_DMA_START, SC_SIZE, SC_TOTAL, SC_TOTAL_DYN, SCHED_DONE, SCHED_NEED_DYN, U_BUSY, U_COUNT,
    U_II, U_LAST_DYN, U_QDEPTH, U_STALLED, UNIT_COLS, critical_path, decode_stall_key, dict_items,
    new_hbm_index, new_stall_dict, schedule,
)

if TYPE_CHECKING:
    from ..settings import Settings

OPLOG_CHUNK = 1 << 16       # dynamic instructions per run-loop call in overlapped mode
HBM_ROWS_INITIAL = 1 << 12


@dataclass
class UnitTiming:
    name: str
    instructions: int
    busy: int
    stalled: int      # free, with an instruction waiting on a hazard or the HBM port
    idle: int         # free with nothing to do (total - busy - stalled)


@dataclass
class Stall:
    unit: str          # the unit that waited (for unit_full: the unit whose queue was full)
    cause: str         # RAW / WAR / WAW on `resource`, hbm_port, or unit_full (front end)
    resource: str      # resource space (gp, vram_row, hbm_block, ...) or "" for unit_full
    blocker_pc: int    # the earlier instruction waited on
    cycles: int


@dataclass
class OverlapResult:
    """What the overlapped model computed for one run (sequential figures live in RunResult)."""

    cycles: int                     # total cycles, overlapped
    instructions: int
    units: list[UnitTiming]
    front_end_stall: int            # cycles the in-order front end waited on full unit queues
    stalls: list[Stall]             # aggregated, largest first
    dependency_bound: int           # longest RAW/WAR/WAW chain (durations as scheduled)
    critical_instructions: int      # dynamic instructions on the critical path
    dma_extra: int                  # cycles DMAs took beyond their sequential durations (HBM state)
    pc_cycles: np.ndarray           # int64[n]: cycles per static instruction (DMA: as scheduled)
    pc_stall: np.ndarray            # int64[n]: cycles its unit waited on hazards / the HBM port
    pc_issue_stall: np.ndarray      # int64[n]: cycles the front end waited to issue it
    pc_critical: np.ndarray         # int64[n]: its share of the critical path (sums to cycles)
    model: dict = field(default_factory=dict)
    # Per dynamic instruction in program order (first `trace_limit` of them): pc, issue, start,
    # end, unit index (into `units`).
    trace_pc: np.ndarray | None = None
    trace_issue: np.ndarray | None = None
    trace_start: np.ndarray | None = None
    trace_end: np.ndarray | None = None
    trace_unit: np.ndarray | None = None

    @property
    def busiest_unit_busy(self) -> int:
        return max((u.busy for u in self.units), default=0)

    def summary(self) -> dict:
        return {
            "cycles": self.cycles,
            "front_end_stall": self.front_end_stall,
            "dependency_bound": self.dependency_bound,
            "critical_instructions": self.critical_instructions,
            "dma_extra": self.dma_extra,
            "units": [vars(u) for u in self.units],
            "top_stalls": [vars(s) for s in self.stalls[:10]],
        }


class OverlapScheduler:
    def __init__(self, settings: Settings, dec: np.ndarray, params: np.ndarray, block_capacity: int,
                 fresh_timing_state=None):
        """`fresh_timing_state`: an unused HBM TimingState to copy (cheaper than building one)."""
        model = settings.overlap
        self.settings = settings
        self.dec = dec
        self.params = params
        self.unit_names = model.unit_names()
        self.unit_of, self.occupancy, ii, depth = model.unit_tables(HANDLERS)
        self.base = resource_bases(settings.mram_tiles, settings.VECTOR_SRAM_SIZE)
        n_res = int(self.base[-1])
        # VRAM rows are most of the table; untouched pages of np.zeros are never materialised.
        self.res = np.zeros((n_res, RES_COLS), dtype=np.int64)
        self.hbm_index = new_hbm_index()
        self.hbm_res = np.zeros((HBM_ROWS_INITIAL, RES_COLS), dtype=np.int64)
        self.sc = np.zeros(SC_SIZE, dtype=np.int64)
        self.sc[SC_ISSUE_DYN] = -1
        self.sc[SC_LAST_DMA_DYN] = -1
        self.sc[SC_LAST_DMA_START] = -1
        self.sc[SC_TOTAL_DYN] = -1
        self.sc[SC_ISSUE_WIDTH] = model.issue_width
        n_units = len(self.unit_names)
        self.units = np.zeros((n_units, UNIT_COLS), dtype=np.int64)
        self.units[:, U_LAST_DYN] = -1
        self.units[:, U_II] = ii
        self.units[:, U_QDEPTH] = depth
        qmax = int(depth.max())
        self.qstart = np.zeros((n_units, qmax), dtype=np.int64)
        self.qdyn = np.zeros((n_units, qmax), dtype=np.int64)
        n = dec.shape[0]
        self.per_pc = np.zeros((n, PC_COLS), dtype=np.int64)
        self.dyn = np.zeros((OPLOG_CHUNK, DYN_COLS), dtype=np.int64)
        self.stalls = new_stall_dict()
        nf = max_footprint(settings.MLEN, settings.VLEN, settings.BROADCAST_AMOUNT, settings.HBM_V_Prefetch_Amount,
                           settings.HBM_V_Writeback_Amount, settings.prefetch_m_rows)
        self.fr = np.zeros(nf, dtype=np.int64)
        self.fw = np.zeros(nf, dtype=np.bool_)
        self.hb = np.zeros(block_capacity, dtype=np.int64)
        if fresh_timing_state is not None:  # the model's state is plain arrays: a copy is a fresh state
            ts = fresh_timing_state
            self.ts = ts._replace(hbm2=ts.hbm2.copy(), analytic=ts.analytic.copy())
        else:
            self.ts = new_timing_state(settings.hbm_model)
        self.dgp = np.zeros(16, dtype=np.int64)
        self.dareg = np.zeros(16, dtype=np.int64)
        self.dctrl = np.zeros(S.CTRL_SIZE, dtype=np.int64)
        self.dvram = np.zeros((1, 1), dtype=np.uint16)
        self.dmram = np.zeros((1, 1), dtype=np.float32)
        self.dpt = empty_table(2)
        self.dpool = np.zeros((1, 1), dtype=np.uint8)
        self.df32 = np.zeros(1, dtype=np.float32)
        self.du8 = np.zeros(1, dtype=np.uint8)
        self.dblk = np.zeros(block_capacity, dtype=np.int64)
        self.done = np.zeros(1, dtype=np.int64)
        self.derr = np.zeros(S.ERR_SIZE, dtype=np.int64)

    def consume(self, oplog: np.ndarray, n_rows: int) -> None:
        """Schedule the first n_rows logged instructions of this chunk."""
        row = 0
        while True:
            status, row = schedule(
                oplog, n_rows, row, self.dec, self.params, self.base, self.unit_of, self.occupancy, self.res,
                self.hbm_index, self.hbm_res, self.sc, self.units, self.qstart, self.qdyn, self.per_pc, self.dyn,
                self.stalls, self.fr, self.fw, self.hb, self.ts, self.dgp, self.dareg, self.dctrl, self.dvram,
                self.dmram, self.dpt, self.dpool, self.df32, self.du8, self.dblk, self.done, self.derr)
            if status == SCHED_DONE:
                return
            if status == SCHED_NEED_DYN:
                self.dyn = _grown(self.dyn, max(self.dyn.shape[0] * 2, int(self.sc[SC_DYN]) + n_rows))
            else:
                self.hbm_res = _grown(self.hbm_res, self.hbm_res.shape[0] * 2)

    def result(self, trace_limit: int = 0) -> OverlapResult:
        total = int(self.sc[SC_TOTAL])
        n_dyn = int(self.sc[SC_DYN])
        units = []
        for i, name in enumerate(self.unit_names):
            busy, stalled = int(self.units[i, U_BUSY]), int(self.units[i, U_STALLED])
            units.append(UnitTiming(name, int(self.units[i, U_COUNT]), busy, stalled, total - busy - stalled))
        stalls = []
        for key, cycles in zip(*(a.tolist() for a in dict_items(self.stalls))):
            u, cause, space, blocker = decode_stall_key(int(key))
            stalls.append(Stall(self.unit_names[u], CAUSES[cause], "" if CAUSES[cause] == "unit_full" else SPACES[space],
                                int(blocker), int(cycles)))
        stalls.sort(key=lambda s: (-s.cycles, s.unit, s.cause, s.blocker_pc))
        crit = np.zeros(self.dec.shape[0], dtype=np.int64)
        count = critical_path(self.dyn, int(self.sc[SC_TOTAL_DYN]), crit)
        k = min(max(int(trace_limit), 0), n_dyn)
        d = self.dyn[:k]
        return OverlapResult(
            cycles=total, instructions=n_dyn, units=units, front_end_stall=int(self.sc[SC_FRONT_STALL]),
            stalls=stalls, dependency_bound=int(self.sc[SC_DEP_BOUND]), critical_instructions=int(count),
            dma_extra=int(self.sc[SC_DMA_EXTRA]),
            pc_cycles=self.per_pc[:, PC_CYCLES].copy(), pc_stall=self.per_pc[:, PC_STALL].copy(),
            pc_issue_stall=self.per_pc[:, PC_ISSUE_STALL].copy(), pc_critical=crit,
            model=self.settings.overlap.model_dump(),
            trace_pc=d[:, DY_PC].astype(np.int32), trace_issue=d[:, DY_ISSUE].copy(),
            trace_start=d[:, DY_START].copy(), trace_end=d[:, DY_END].copy(),
            trace_unit=self.unit_of[self.dec[d[:, DY_PC], S.D_HANDLER]].astype(np.int32) if k else np.zeros(0, np.int32))


def _grown(a: np.ndarray, rows: int) -> np.ndarray:
    new = np.zeros((rows,) + a.shape[1:], dtype=a.dtype)
    new[: a.shape[0]] = a
    return new
