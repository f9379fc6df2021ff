"""The overlapped timing model: decoupled units, DMA in parallel with compute, stall attribution.

The data path does not depend on timing, so this model never touches data: the run loop logs,
per dynamic instruction, the register values its footprint depends on (emulator/core/state.py
OPLOG_*), and `schedule` replays that log chunk by chunk, keeping its own clock and its own HBM
timing state.  The model (README "Overlapped timing", isa_specs/overlap_model.toml):

* Front end: instructions issue in program order, at most `issue_width` per cycle.  Issuing
  puts the instruction into its unit's queue; if the queue already holds `queue_depth`
  instructions that have not started, issue waits until the oldest of them starts (a
  "unit full" stall that holds up every later instruction).  Loops resolve at issue.
* Units: each starts its queued instructions in order, one when the unit is free: it stays
  busy for the instruction's occupancy (default its sequential duration; a unit's
  `initiation_interval` > 0 caps it, which models a pipelined unit).  Results are ready at
  start + the sequential duration.
* Hazards: an instruction starts only when everything it reads was written (RAW) and everything
  it writes is no longer read or written by an earlier instruction (WAR, WAW).  Register operands
  (gp/fp/address, scale/stride/mask) are read when the instruction starts; memories (SRAM
  entries, VRAM rows, MRAM tiles, HBM blocks) and the accumulators are held until it ends.  Resources: emulator/timing/footprint.py plus 64-byte
  HBM blocks.
* DMA: H_PREFETCH_* and H_STORE_V call the HBM timing model (hbm2 or analytic) at their
  scheduled start, with this model's own HBM state, so overlapping DMAs meet in the model.  The
  two DMA units share one HBM request port that takes requests in program order (a DMA never
  starts before an earlier DMA), which keeps the model's time monotonic.
* Zero-cycle instructions (the reference's f0 no-ops) take no issue slot and no unit.

With one shared unit (decoupled = false), queue depth 1 and no overrides, every instruction
starts exactly when the previous one ends: the total equals the sequential total.  Decoupled,
the sequential schedule is one the model could take, and the model starts every instruction as
early as it can, so the total is at most the sequential total plus `dma_extra`: the cycles DMAs
took beyond their sequential durations because they met the HBM in another state (e.g. a store's
posted writes still draining).  With the analytic HBM model DMA durations do not depend on the
start time and the total never exceeds the sequential one.
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.typed import Dict

from ..core.dma import h_prefetch, h_store, prefetch_blocks, store_blocks
from ..core.jit import inline_jit, jit, jit_alloc, python_entry
from ..core.loop import H_H_PREFETCH_M, H_H_PREFETCH_V, H_H_STORE_V
from ..core.state import (
    CTRL_SIZE, D_COST, D_HANDLER, D_IMM18, D_RD, D_RS1, D_RS2, D_RS3, NOW, OPLOG_AREG_RS2, OPLOG_PC,
    OPLOG_RD, OPLOG_RS1, OPLOG_RS2, OPLOG_SCALE, OPLOG_SEQ_CYCLES, OPLOG_STRIDE, OPLOG_TOP_LOOP_REG, SCALE, STRIDE,
)
from .footprint import SP_HBM, SP_MACC, footprint, space_of

# Per-resource columns (table rows and HBM rows alike): end of the last write and of the latest
# read, the dynamic instructions that did them (stored +1 so a zeroed table means "never"), and
# the dependency-chain finish times of both.
W_END, W_DYN, R_END, R_DYN, W_DEP, R_DEP = range(6)
RES_COLS = 6

# Scalars of the scheduler (`sc`).
(SC_LAST_ISSUE, SC_ISSUED_IN_CYCLE, SC_ISSUE_DYN, SC_LAST_DMA_START, SC_LAST_DMA_DYN, SC_TOTAL,
 SC_TOTAL_DYN, SC_DEP_BOUND, SC_DYN, SC_HBM_USED, SC_ISSUE_WIDTH, SC_FRONT_STALL, SC_DMA_EXTRA) = range(13)
SC_SIZE = 16

# Per-unit columns (`units`).
(U_FREE, U_LAST_DYN, U_II, U_QDEPTH, U_QPOS, U_BUSY, U_STALLED, U_COUNT) = range(8)
UNIT_COLS = 8

# Per-pc columns (`per_pc`): cycles (its durations here), cycles its unit waited on hazards or
# the HBM port before it could start, cycles the front end waited to issue it (unit full).
PC_CYCLES, PC_STALL, PC_ISSUE_STALL = range(3)
PC_COLS = 3

# Per dynamic instruction (`dyn`): pc, issue, start, end, and the events that bound its start
# and its issue, encoded as 2*dyn + (0 start event | 1 issue event), -1 for time 0.
DY_PC, DY_ISSUE, DY_START, DY_END, DY_START_PRED, DY_ISSUE_PRED = range(6)
DYN_COLS = 6

# Stall causes (keys of the `stalls` dict: see stall_key).
CAUSE_RAW, CAUSE_WAR, CAUSE_WAW, CAUSE_HBM_PORT, CAUSE_UNIT_FULL = range(5)
CAUSES = ("RAW", "WAR", "WAW", "hbm_port", "unit_full")

# Status of `schedule`.
SCHED_DONE, SCHED_NEED_HBM_ROWS, SCHED_NEED_DYN = range(3)


@jit
def stall_key(unit, cause, space, blocker_pc):
    return ((unit * 8 + cause) * 32 + space) * (1 << 40) + blocker_pc


def decode_stall_key(key: int) -> tuple[int, int, int, int]:
    blocker_pc = key % (1 << 40)
    rest = key >> 40
    return rest // 256, (rest // 32) % 8, rest % 32, blocker_pc


# The typed dicts are made and read in cached compiled code: Dict.empty() and iterating a dict from
# Python compile numba's dict helpers (~16 functions, ~1 s of CPU) in every process.
@python_entry
@jit_alloc
def _int64_dict():
    return Dict.empty(key_type=types.int64, value_type=types.int64)


def new_hbm_index():
    return _int64_dict()


def new_stall_dict():
    return _int64_dict()


@python_entry
@jit_alloc
def dict_items(d):
    """(keys, values) of an int64 -> int64 typed dict, as two arrays in its iteration order."""
    keys = np.empty(len(d), dtype=np.int64)
    values = np.empty(len(d), dtype=np.int64)
    i = 0
    for k, v in d.items():
        keys[i] = k
        values[i] = v
        i += 1
    return keys, values


@inline_jit
def _hbm_row(hbm_index, hbm_res, sc, block):
    """Row of HBM block `block` (byte address / 64), created on first use; -1 if the table is full."""
    key = block >> 6
    row = hbm_index.get(key, -1)
    if row >= 0:
        return row
    row = sc[SC_HBM_USED]
    if row >= hbm_res.shape[0]:
        return -1
    hbm_index[key] = row
    sc[SC_HBM_USED] = row + 1
    return row


@inline_jit
def _wait_for(res, row, write, hz, hz_dyn, hz_cause, hz_row, dep_ready):
    """Fold resource `row` into the running hazard wait: (time, blocking dyn, cause, row) of the
    latest constraint so far, and the dependency-chain ready time."""
    t = res[row, W_END]
    if t > hz:
        hz, hz_dyn, hz_cause, hz_row = t, res[row, W_DYN] - 1, CAUSE_WAW if write else CAUSE_RAW, row
    dr = res[row, W_DEP]
    if write:
        t = res[row, R_END]
        if t > hz:
            hz, hz_dyn, hz_cause, hz_row = t, res[row, R_DYN] - 1, CAUSE_WAR, row
        if res[row, R_DEP] > dr:
            dr = res[row, R_DEP]
    if dr > dep_ready:
        dep_ready = dr
    return hz, hz_dyn, hz_cause, hz_row, dep_ready


@inline_jit
def _commit(res, row, write, dyn, end, dep_fin):
    if write:
        res[row, W_END] = end
        res[row, W_DYN] = dyn + 1
        if dep_fin > res[row, W_DEP]:
            res[row, W_DEP] = dep_fin
    else:
        if end >= res[row, R_END]:
            res[row, R_END] = end
            res[row, R_DYN] = dyn + 1
        if dep_fin > res[row, R_DEP]:
            res[row, R_DEP] = dep_fin


@python_entry
@jit_alloc  # the typed dicts need numba's runtime
def schedule(oplog, n_rows, first_row, dec, params, base, unit_of, occupancy, res, hbm_index, hbm_res,
             sc, units, qstart, qdyn, per_pc, dyn, stalls, fr, fw, hb, ts, dgp, dareg, dctrl, dvram, dmram,
             dpt, dpool, df32, du8, dblk, done, derr):
    """Schedule oplog[first_row:n_rows]; returns (status, next row).

    Stops early (SCHED_NEED_HBM_ROWS / SCHED_NEED_DYN) before an instruction whose HBM blocks or
    per-dynamic record do not fit, so the caller can grow the table and resume at that row.
    """
    for r in range(first_row, n_rows):
        d = sc[SC_DYN]
        if d >= dyn.shape[0]:
            return SCHED_NEED_DYN, r
        pc = oplog[r, OPLOG_PC]
        h = dec[pc, D_HANDLER]
        rd = dec[pc, D_RD]
        rs1 = dec[pc, D_RS1]
        rs2 = dec[pc, D_RS2]
        rs3 = dec[pc, D_RS3]
        is_dma = h == H_H_PREFETCH_V or h == H_H_PREFETCH_M or h == H_H_STORE_V
        nf = footprint(h, rd, rs1, rs2, rs3, dec[pc, D_IMM18], oplog[r, OPLOG_RD], oplog[r, OPLOG_RS1],
                       oplog[r, OPLOG_RS2], oplog[r, OPLOG_TOP_LOOP_REG], params, base, fr, fw)
        nh = 0
        if is_dma:
            dgp[rd] = oplog[r, OPLOG_RD]
            dgp[rs1] = oplog[r, OPLOG_RS1]
            dareg[rs2] = oplog[r, OPLOG_AREG_RS2]
            dctrl[SCALE] = oplog[r, OPLOG_SCALE]
            dctrl[STRIDE] = oplog[r, OPLOG_STRIDE]
            if h == H_H_STORE_V:
                nblk = store_blocks(rs1, rs2, rs3, dgp, dareg, dctrl, params, hb)
            else:
                nblk = prefetch_blocks(h == H_H_PREFETCH_M, rs1, rs2, rs3, dgp, dareg, dctrl, params, hb)
            for b in range(nblk):
                row = _hbm_row(hbm_index, hbm_res, sc, hb[b])
                if row < 0:
                    return SCHED_NEED_HBM_ROWS, r
                hb[b] = row
            nh = nblk
        seq_cost = dec[pc, D_COST]
        u = unit_of[h]
        # ---- issue (in order; zero-cycle instructions take no slot and no unit)
        t_issue = sc[SC_LAST_ISSUE]
        issue_pred = -1 if sc[SC_ISSUE_DYN] < 0 else 2 * sc[SC_ISSUE_DYN] + 1
        takes_slot = is_dma or seq_cost > 0
        q_pos = units[u, U_QPOS]
        if takes_slot:
            if sc[SC_ISSUED_IN_CYCLE] >= sc[SC_ISSUE_WIDTH]:
                t_issue += 1
            q_t = qstart[u, q_pos]
            if q_t > t_issue:  # the unit's queue is full until its oldest waiting instruction starts
                front = q_t - t_issue
                sc[SC_FRONT_STALL] += front
                per_pc[pc, PC_ISSUE_STALL] += front
                key = stall_key(u, np.int64(CAUSE_UNIT_FULL), np.int64(0), dyn[qdyn[u, q_pos], DY_PC])  # one compiled stall_key
                stalls[key] = stalls.get(key, 0) + front
                t_issue = q_t
                issue_pred = 2 * qdyn[u, q_pos]
            if t_issue == sc[SC_LAST_ISSUE] and sc[SC_ISSUE_DYN] >= 0:
                sc[SC_ISSUED_IN_CYCLE] += 1
            else:
                sc[SC_ISSUED_IN_CYCLE] = 1
            sc[SC_LAST_ISSUE] = t_issue
            sc[SC_ISSUE_DYN] = d
        # ---- start: unit free, hazards, HBM port
        start = t_issue
        start_pred = 2 * d + 1
        waited_from = t_issue
        if takes_slot and units[u, U_FREE] > start:
            start = units[u, U_FREE]
            start_pred = 2 * units[u, U_LAST_DYN]
            waited_from = start
        hz = -1
        hz_dyn = -1
        hz_cause = 0
        hz_space = 0
        dep_ready = 0
        hz_row = -1
        for k in range(nf):
            hz, hz_dyn, hz_cause, hz_row, dep_ready = _wait_for(res, fr[k], fw[k], hz, hz_dyn, hz_cause, hz_row,
                                                                dep_ready)
        if hz_row >= 0:
            hz_space = space_of(hz_row, base)
        hbm_row = -1
        for k in range(nh):
            hz, hz_dyn, hz_cause, hbm_row, dep_ready = _wait_for(hbm_res, hb[k], h == H_H_STORE_V, hz, hz_dyn,
                                                                 hz_cause, hbm_row, dep_ready)
        if hbm_row >= 0:
            hz_space = SP_HBM
        if is_dma and sc[SC_LAST_DMA_START] > hz:
            hz = sc[SC_LAST_DMA_START]
            hz_dyn = sc[SC_LAST_DMA_DYN]
            hz_cause = CAUSE_HBM_PORT
            hz_space = SP_HBM
        if hz >= start and hz_dyn >= 0:
            stall = hz - waited_from
            if stall > 0 and takes_slot:
                units[u, U_STALLED] += stall
                per_pc[pc, PC_STALL] += stall
                key = stall_key(u, hz_cause, hz_space, dyn[hz_dyn, DY_PC])
                stalls[key] = stalls.get(key, 0) + stall
            start = hz
            # a hazard ends at the blocker's end, the HBM port frees at its start
            start_pred = 2 * hz_dyn
        # ---- duration (DMA: the HBM model at the scheduled start)
        if is_dma:
            dctrl[NOW] = start
            if h == H_H_STORE_V:
                end = h_store(rd, rs1, rs2, rs3, dgp, dareg, dctrl, params, dvram, dpt, dpool, ts, done,
                              df32, du8, du8, derr, pc, np.bool_(False))
            else:
                end = h_prefetch(h == H_H_PREFETCH_M, rd, rs1, rs2, rs3, dgp, dareg, dctrl, params, dvram,
                                 dmram, dpt, dpool, ts, dblk, df32, df32, df32, du8, du8, derr, pc,
                                 np.bool_(False))  # run-time bool: one compile of the DMA kernels (core/loop.py)
            dur = end - start
            if dur > oplog[r, OPLOG_SEQ_CYCLES]:  # started elsewhere in time, it met more HBM contention
                sc[SC_DMA_EXTRA] += dur - oplog[r, OPLOG_SEQ_CYCLES]
            sc[SC_LAST_DMA_START] = start
            sc[SC_LAST_DMA_DYN] = d
        else:
            dur = seq_cost
            end = start + dur
        if takes_slot:
            hold = dur
            occ = occupancy[h]
            if occ >= 0 and not is_dma:
                hold = occ
            if units[u, U_II] > 0 and units[u, U_II] < hold:
                hold = units[u, U_II]
            units[u, U_FREE] = start + hold
            units[u, U_LAST_DYN] = d
            units[u, U_BUSY] += hold
            units[u, U_COUNT] += 1
            qstart[u, q_pos] = start
            qdyn[u, q_pos] = d
            units[u, U_QPOS] = (q_pos + 1) % units[u, U_QDEPTH]
        # ---- commit
        dep_fin = dep_ready + dur
        if dep_fin > sc[SC_DEP_BOUND]:
            sc[SC_DEP_BOUND] = dep_fin
        reg_rows = base[SP_MACC]  # registers are read when the instruction starts, memories until it ends
        for k in range(nf):
            if not fw[k] and fr[k] < reg_rows:
                _commit(res, fr[k], False, d, start, dep_ready)
            else:
                _commit(res, fr[k], fw[k], d, end, dep_fin)
        for k in range(nh):
            _commit(hbm_res, hb[k], h == H_H_STORE_V, d, end, dep_fin)
        if end > sc[SC_TOTAL] or sc[SC_TOTAL_DYN] < 0:
            sc[SC_TOTAL] = end
            sc[SC_TOTAL_DYN] = d
        per_pc[pc, PC_CYCLES] += dur
        dyn[d, DY_PC] = pc
        dyn[d, DY_ISSUE] = t_issue
        dyn[d, DY_START] = start
        dyn[d, DY_END] = end
        dyn[d, DY_START_PRED] = start_pred
        dyn[d, DY_ISSUE_PRED] = issue_pred
        sc[SC_DYN] = d + 1
    return SCHED_DONE, n_rows


@python_entry
@jit
def critical_path(dyn, last_dyn, out):
    """out[pc] += cycles of the chain of binding events from the last instruction back to 0.

    Each event (an instruction's start, or its issue) was set by one earlier event; the chain's
    steps telescope, so out sums to the end time of the last instruction.  Returns the number of
    instructions on the chain.
    """
    if last_dyn < 0:
        return 0
    t_hi = dyn[last_dyn, DY_END]
    ev = 2 * last_dyn
    count = 0
    seen_dyn = -1
    while ev >= 0:
        d = ev // 2
        t = dyn[d, DY_ISSUE] if ev % 2 == 1 else dyn[d, DY_START]
        pc = dyn[d, DY_PC]
        if t_hi > t:
            out[pc] += t_hi - t
            t_hi = t
        if d != seen_dyn:
            count += 1
            seen_dyn = d
        nxt = dyn[d, DY_ISSUE_PRED] if ev % 2 == 1 else dyn[d, DY_START_PRED]
        if nxt == ev:
            break
        ev = nxt
    return count
