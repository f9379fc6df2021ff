"""Debugger stops evaluated inside the run loop (the debugger in emulator/debug/ arms them).

A normal run leaves every pc's D_STOP flag 0, so the whole mechanism costs one load from the
decoded row the loop reads anyway and one never-taken branch per instruction.  A debug session
sets flags on the pcs that need a check, so running to a breakpoint stays in jitted code:

- STOP_PC: stop before this pc (breakpoints on a pc, a source line, a section entry, an opcode).
- STOP_COND: before this pc, evaluate the condition table `conds` (register / cycle /
  instruction-count conditions).  Rows with pc -1 apply everywhere and are edge-triggered (stop
  when the condition *becomes* true, like a watch on an expression); rows with a pc are checked
  each time that pc is reached (`break PC if COND`).
- STOP_WATCH: after this pc ran, compare the watched memory with its snapshot in `dbg` (only
  pcs whose opcode can write a watched memory get this flag) and stop if anything changed.

Resuming skips the before-checks once at the instruction the session stopped at
(dbg[DB_SKIP_AT] = that dynamic instruction count), like gdb stepping over the breakpoint it
stands on.
"""

import math

import numpy as np

from .hbm_store import PAGE_MASK, PAGE_SHIFT, page_row
from .jit import jit
from .state import INSTRUCTIONS, LOOP_SP, NOW, P_HBM_CAPACITY, P_MLEN, P_VLEN, SCALE, STRIDE, V_MASK

# D_STOP flag bits.
STOP_PC, STOP_COND, STOP_WATCH = 1, 2, 4

# dbg: int64[DB_HEADER + n_watch * WATCH_SIZE + snapshot elements].
DB_SKIP_AT, DB_HIT_KIND, DB_HIT_INDEX, DB_N_WATCH, DB_WRITER = range(5)  # DB_WRITER: pc that changed a watch
DB_HEADER = 8
HIT_NONE, HIT_PC, HIT_COND, HIT_WATCH = range(4)

# Watch table rows (after the header): what is watched, as element addresses of that memory.
W_KIND, W_FIRST, W_COUNT, W_SNAP = range(4)
WATCH_SIZE = 4
WK_VRAM, WK_MRAM, WK_FPSRAM, WK_INTSRAM, WK_HBM = range(5)  # VRAM/MRAM elements, SRAM entries, HBM bytes

# conds: float64[k, COND_SIZE] (float so FP-register thresholds keep their value).
C_PC, C_KIND, C_INDEX, C_OP, C_VALUE, C_LAST = range(6)
COND_SIZE = 6
CK_GP, CK_FP, CK_ADDR, CK_SCALE, CK_STRIDE, CK_V_MASK, CK_CYCLE, CK_INSTRUCTIONS, CK_LOOP_DEPTH = range(9)
OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE = range(6)


@jit
def cond_holds(op, a, b):
    if op == OP_EQ:
        return a == b
    if op == OP_NE:
        return a != b
    if op == OP_LT:
        return a < b
    if op == OP_LE:
        return a <= b
    if op == OP_GT:
        return a > b
    return a >= b


@jit
def bf16_value(h):
    """bf16 bits -> float64, by arithmetic (no array round trip: this runs inside the loop)."""
    h = np.int64(h)
    sign = -1.0 if h & 0x8000 else 1.0
    e, mant = (h >> 7) & 0xFF, h & 0x7F
    if e == 0xFF:
        return np.nan if mant else sign * np.inf
    if e == 0:
        return sign * math.ldexp(np.float64(mant), -133)
    return sign * math.ldexp(np.float64(mant + 128), e - 134)


# The checks below stay out of line (@jit, not inlined): they run only at flagged pcs, and
# inlining them into the run loop would bloat the loop every normal run executes.

@jit
def stop_before(flag, pc, gp, fpr, areg, ctrl, dbg, conds):
    """True if the debugger wants to stop before pc runs (records why in dbg)."""
    if ctrl[INSTRUCTIONS] == dbg[DB_SKIP_AT]:
        return False
    if flag & STOP_PC:
        dbg[DB_HIT_KIND] = HIT_PC
        dbg[DB_HIT_INDEX] = pc
        return True
    if flag & STOP_COND:
        for k in range(conds.shape[0]):
            at = conds[k, C_PC]
            if at >= 0 and at != pc:
                continue
            kind, index = np.int64(conds[k, C_KIND]), np.int64(conds[k, C_INDEX])
            if kind == CK_GP:
                v = np.float64(gp[index])
            elif kind == CK_FP:
                v = bf16_value(fpr[index])
            elif kind == CK_ADDR:  # u64 bits held in int64
                v = np.float64(areg[index]) + (18446744073709551616.0 if areg[index] < 0 else 0.0)
            elif kind == CK_SCALE:
                v = np.float64(ctrl[SCALE])
            elif kind == CK_STRIDE:
                v = np.float64(ctrl[STRIDE])
            elif kind == CK_V_MASK:
                v = np.float64(ctrl[V_MASK])
            elif kind == CK_CYCLE:
                v = np.float64(ctrl[NOW])
            elif kind == CK_INSTRUCTIONS:
                v = np.float64(ctrl[INSTRUCTIONS])
            else:
                v = np.float64(ctrl[LOOP_SP])
            holds = cond_holds(np.int64(conds[k, C_OP]), v, conds[k, C_VALUE])
            if at < 0:  # edge-triggered: only a false -> true transition stops
                was = conds[k, C_LAST]
                conds[k, C_LAST] = 1.0 if holds else 0.0
                if not holds or was != 0.0:
                    continue
            elif not holds:
                continue
            dbg[DB_HIT_KIND] = HIT_COND
            dbg[DB_HIT_INDEX] = k
            return True
    return False


@jit
def _sync(dbg, snap, i, v, take):
    """Store v as element i of a snapshot (take) or say whether it differs from it."""
    if take:
        dbg[snap + i] = v
        return False
    return dbg[snap + i] != v


@jit
def sync_watches(pc, dbg, vram, mram, fpsram, intsram, pt, pool, params, take):
    """take=True: copy every watched region into its snapshot.  take=False: True if a watched
    region differs from its snapshot after pc ran (records pc and the first such watch in dbg).
    Values are int64 bits: bf16 / f32 / u32 / HBM bytes; VRAM and MRAM watches cover whole rows
    and tiles (W_FIRST and W_COUNT are multiples of VLEN and MLEN*MLEN)."""
    vlen = params[P_VLEN]
    tile = params[P_MLEN] * params[P_MLEN]
    capacity = params[P_HBM_CAPACITY]
    for w in range(dbg[DB_N_WATCH]):
        row = DB_HEADER + w * WATCH_SIZE
        kind, first, count, snap = dbg[row + W_KIND], dbg[row + W_FIRST], dbg[row + W_COUNT], dbg[row + W_SNAP]
        changed = False
        if kind == WK_VRAM:
            for r in range(count // vlen):
                src = vram[first // vlen + r]
                for lane in range(vlen):
                    changed |= _sync(dbg, snap, r * vlen + lane, np.int64(src[lane]), take)
        elif kind == WK_MRAM:
            for t in range(count // tile):
                src = mram[first // tile + t].view(np.uint32)
                for e in range(tile):
                    changed |= _sync(dbg, snap, t * tile + e, np.int64(src[e]), take)
        elif kind == WK_FPSRAM:
            for i in range(count):
                changed |= _sync(dbg, snap, i, np.int64(fpsram[first + i]), take)
        elif kind == WK_INTSRAM:
            for i in range(count):
                changed |= _sync(dbg, snap, i, np.int64(intsram[first + i]), take)
        else:
            for i in range(count):
                a = first + i
                v = np.int64(0)
                if 0 <= a < capacity:
                    p = page_row(pt, a >> PAGE_SHIFT)   # hbm_store.py: a hash table, -1 = absent
                    if p >= 0:
                        v = np.int64(pool[p, a & PAGE_MASK])
                changed |= _sync(dbg, snap, i, v, take)
        if changed:
            dbg[DB_HIT_KIND] = HIT_WATCH
            dbg[DB_HIT_INDEX] = w
            dbg[DB_WRITER] = pc
            return True
    return False


def no_stops():
    """The (dbg, conds) pair of a normal run: nothing armed."""
    dbg = np.zeros(DB_HEADER, dtype=np.int64)
    dbg[DB_SKIP_AT] = -1
    return dbg, np.zeros((0, COND_SIZE), dtype=np.float64)
