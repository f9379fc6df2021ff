"""FROZEN ORACLE: the previous HBM2 timing model (emulator/hbm/hbm2.py as of commit 07f2c60),
kept verbatim for differential testing of the rewritten model (tests/test_hbm2_differential.py,
bench/bench_hbm.py).  It is not used by the product.  Do not edit it to follow the new model: its
only job is to be what the model was when it passed every corpus case.  Remove it once the new
model has earned trust.

Original docstring follows.

Cycle-exact HBM2 timing model: the reference's Ramulator2 configuration rebuilt in numba.

What is modelled (all from /work/shared/reference/hbm2-timing.md, section numbers below):

* the device (§2, §3, §5): 8 channels x 2 pseudochannels x 4 bank groups x 4 banks, MOP4CLXOR
  address mapping on 16-byte transfers, per-node `ready[cmd]` cycles for ACT/PRE/RD/WR, the
  nFAW window of the last four ACTs per pseudochannel, and the open row of every bank (open-row
  policy, no auto-precharge, no refresh: §7 shows the reference never refreshes);
* one Generic controller per channel (§6): read/write/active buffers of 33 entries in insertion
  order, FR-FCFS, write-mode watermarks, the PRE veto for banks with an activating request,
  read forwarding from the write buffer and the `pending` FIFO that is served from its head only;
* the Rust wrapper (§9, §10): lazy ticking with catch-up, one tick chain while reads are pending,
  "tick first" when a tick and a refused-read retry fall on the same instant, refused reads
  holding the read FIFO lock so later transfers queue behind them, posted writes that never
  schedule ticks.  The one-cycle back-to-back penalty is not a rule of its own: it follows from
  `next_instant` being one past the tick that fired the previous access's last callback.

State layout.  The whole model state is ONE flat int64 array (`mem`): a header of parameters,
the wrapper's two scalars and the offsets of the regions that follow (timing table, ready
cycles, ACT history, open rows, request buffers, pending FIFOs).  One array rather than a tuple
of arrays because every njit call that receives an array pays for reference counting; with a
single array the per-tick helper calls stay cheap and the inner loops index plain integers.
`state_views(mem)` gives named, shaped numpy views for inspection and tests.

Time unit: one cycle = 1 ns = one tCK = one accelerator cycle.
"""

from __future__ import annotations

import numpy as np
from emulator.core.jit import jit

# ------------------------------------------------------------------------------ device description
# HBM2_8Gb organisation with the channel count forced to 8 (§1, §2).
ORGANISATION = {"channels": 8, "pseudochannels": 2, "bankgroups": 4, "banks": 4}
TRANSFER_BYTES = 16          # internal prefetch 2 x 64-bit channel / 8 (§2, §9)
BLOCK_BYTES = 64             # the emulator's access unit: 4 transfers, one per channel
COLUMN_LOW_BITS = 2          # MOP4CLXOR: 2 column bits below the channel bits ...
COLUMN_HIGH_BITS = 3         # ... and 3 above the bank bits (64 columns / prefetch 2 = 2^5)
READ_LATENCY = 11            # nCL + nBL: RD issue -> data (§3)
FORWARD_DELAY = 1            # a read forwarded from the write buffer departs at clk + 1 (§6)
QUEUE_CAPACITY = 33          # buffers accept while size <= 32 (§6)
WRITE_BUFFER_NOMINAL = 32    # the max_size the write-mode watermarks refer to
WR_HIGH_WATERMARK = 0.8
WR_LOW_WATERMARK = 0.2
FAW_WINDOW = 4               # nFAW: the 5th ACT >= 15 after the 1st of the last four
N_FAW = 15
DEFAULT_PENDING_CAPACITY = 4096
_NO_LIMIT = np.iinfo(np.int64).max   # _skip_quiet_ticks without an outside event to stop at

ACT, PRE, RD, WR = 0, 1, 2, 3
COMMANDS = ("ACT", "PRE", "RD", "WR")
LEVELS = ("channel", "pseudochannel", "bankgroup", "bank")
N_CMD = 4
N_LEVEL = 4

# Every timing constraint reachable with ACT/PRE/RD/WR (§5 table; window-1 constraints, the
# nFAW window is N_FAW/FAW_WINDOW above).  (level, after, before, min gap in cycles).
TIMING_CONSTRAINTS = (
    ("channel", "ACT", "ACT", 2), ("channel", "ACT", "PRE", 2),       # two-cycle ACT on the bus
    ("pseudochannel", "ACT", "ACT", 2),                               # nRRDS
    ("pseudochannel", "RD", "RD", 2), ("pseudochannel", "WR", "WR", 2),  # nBL/2 (patched)
    ("pseudochannel", "RD", "WR", 11),                                # nCL + nBL + 2 - nCWL
    ("pseudochannel", "WR", "RD", 9),                                 # nCWL + nBL + nWTRS
    ("bankgroup", "RD", "RD", 2), ("bankgroup", "WR", "WR", 2),       # nCCDL
    ("bankgroup", "WR", "RD", 10),                                    # nCWL + nBL + nWTRL
    ("bankgroup", "ACT", "ACT", 3),                                   # nRRDL
    ("bank", "ACT", "ACT", 19),                                       # nRC
    ("bank", "ACT", "RD", 7), ("bank", "ACT", "WR", 7),               # nRCDRD / nRCDWR
    ("bank", "ACT", "PRE", 17),                                       # nRAS
    ("bank", "PRE", "ACT", 7),                                        # nRP
    ("bank", "RD", "PRE", 3),                                         # max(nRTPS, nRTPL)
    ("bank", "WR", "PRE", 14),                                        # nCWL + nBL + nWR
)

# ------------------------------------------------------------------------------ flat layout
# Header slots of `mem`.
(H_MINIMAL, H_CH_BITS, H_PC_BITS, H_BG_BITS, H_BA_BITS, H_TX_BITS, H_BLOCK_BITS,
 H_COL_LO_BITS, H_COL_HI_BITS, H_READ_LATENCY, H_FORWARD_DELAY, H_QUEUE_CAPACITY,
 H_WM_ENTER, H_WM_LEAVE, H_FAW, H_FAW_WINDOW, H_PEND_CAP,
 H_NEXT,        # next_instant == every controller's clk (§9 invariant)
 H_PENDING,     # accepted reads whose callback has not fired (the wrapper's pending_reads)
 O_LAT, O_READY_CH, O_READY_PC, O_READY_BG, O_READY_BANK, O_ACT_HIST, O_OPEN_ROW,
 O_POOL, O_FREE, O_FREE_N, O_ORDER, O_BUF_LEN, O_WRITE_MODE,
 O_PEND_DEPART, O_PEND_COUNT, O_PEND_HEAD, O_PEND_LEN, O_NOT_BEFORE,
 N_HEADER) = range(38)

# Request buffers.  Each channel keeps its requests in a pool of 3 x 33 entry slots; each of its
# three buffers is an array of slot ids in insertion order (removal shifts the ids down), so
# moving a request to the active buffer moves one id.
B_READ, B_WRITE, B_ACTIVE = 0, 1, 2
N_BUF_KINDS = 3
E_ADDR, E_PC, E_BG, E_BANK, E_ROW, E_ARRIVE, E_WRITE = range(7)   # E_PC/BG/BANK: flat node ids
N_ENTRY_FIELDS = 7


def _log2_exact(n: int, what: str) -> int:
    if n <= 0 or n & (n - 1):
        raise ValueError(f"HBM2 organisation: {what} ({n}) must be a power of two")
    return n.bit_length() - 1


def timing_table() -> np.ndarray:
    """TIMING_CONSTRAINTS as lat[level, after, before] (max over duplicates, -1 = none)."""
    lat = np.full((N_LEVEL, N_CMD, N_CMD), -1, dtype=np.int64)
    for level, after, before, gap in TIMING_CONSTRAINTS:
        i, p, f = LEVELS.index(level), COMMANDS.index(after), COMMANDS.index(before)
        lat[i, p, f] = max(lat[i, p, f], gap)
    return lat


def _region_shapes(pending_capacity: int, minimal: bool) -> dict[int, tuple[tuple[int, ...], int]]:
    """{offset slot: (shape, fill value)} of every region after the header."""
    org = ORGANISATION
    n_ch, n_pc, n_bg, n_ba = org["channels"], org["pseudochannels"], org["bankgroups"], org["banks"]
    queue = QUEUE_CAPACITY
    if minimal:  # same header (the mapping is read from it), almost no state
        n_ch = n_pc = n_bg = n_ba = 1
        queue = pending_capacity = 1
    pcs = n_ch * n_pc
    bgs = pcs * n_bg
    banks = bgs * n_ba
    return {
        O_LAT: ((N_LEVEL, N_CMD, N_CMD), -1),
        O_READY_CH: ((n_ch, N_CMD), -1),          # ready[cmd] per node, -1 = never constrained
        O_READY_PC: ((pcs, N_CMD), -1),
        O_READY_BG: ((bgs, N_CMD), -1),
        O_READY_BANK: ((banks, N_CMD), -1),
        O_ACT_HIST: ((pcs, FAW_WINDOW), -1),      # last ACT issue times per pseudochannel, newest first
        O_OPEN_ROW: ((banks,), -1),               # -1 = closed
        O_POOL: ((n_ch, N_BUF_KINDS * queue, N_ENTRY_FIELDS), 0),
        O_FREE: ((n_ch, N_BUF_KINDS * queue), 0),   # stack of free pool slots
        O_FREE_N: ((n_ch,), 0),
        O_ORDER: ((n_ch, N_BUF_KINDS, queue), 0),    # slot ids per buffer, oldest first
        O_BUF_LEN: ((n_ch, N_BUF_KINDS), 0),
        O_WRITE_MODE: ((n_ch,), 0),
        O_PEND_DEPART: ((n_ch, pending_capacity), 0),  # pending FIFO: ring of (depart, count) runs
        O_PEND_COUNT: ((n_ch, pending_capacity), 0),
        O_PEND_HEAD: ((n_ch,), 0),
        O_PEND_LEN: ((n_ch,), 0),
        # per buffer: no entry can be ready before this clk (-1 = unknown); a cache that saves
        # rescanning buffers in which nothing changed since a scan found nothing ready
        O_NOT_BEFORE: ((n_ch, N_BUF_KINDS), -1),
    }


def new_hbm2_state(pending_capacity: int = DEFAULT_PENDING_CAPACITY, minimal: bool = False) -> np.ndarray:
    """A fresh, idle HBM2 model at time 0 (all banks closed, empty queues, write mode off).

    `pending_capacity` is the number of (depart, count) runs each channel's pending FIFO holds;
    the model raises ValueError if a batch ever needs more.  `minimal=True` builds the stand-in
    used by a state that runs the analytic model: the header (address mapping) is complete, the
    model itself is not usable.
    """
    if pending_capacity < 1:
        raise ValueError(f"pending_capacity must be >= 1 (got {pending_capacity})")
    org = ORGANISATION
    shapes = _region_shapes(pending_capacity, minimal)
    size = N_HEADER + sum(int(np.prod(s)) for s, _ in shapes.values())
    mem = np.zeros(size, dtype=np.int64)
    mem[H_MINIMAL] = 1 if minimal else 0
    mem[H_CH_BITS] = _log2_exact(org["channels"], "channels")
    mem[H_PC_BITS] = _log2_exact(org["pseudochannels"], "pseudochannels")
    mem[H_BG_BITS] = _log2_exact(org["bankgroups"], "bankgroups")
    mem[H_BA_BITS] = _log2_exact(org["banks"], "banks")
    mem[H_TX_BITS] = _log2_exact(TRANSFER_BYTES, "transfer bytes")
    mem[H_BLOCK_BITS] = _log2_exact(BLOCK_BYTES, "block bytes")
    mem[H_COL_LO_BITS] = COLUMN_LOW_BITS
    mem[H_COL_HI_BITS] = COLUMN_HIGH_BITS
    mem[H_READ_LATENCY] = READ_LATENCY
    mem[H_FORWARD_DELAY] = FORWARD_DELAY
    mem[H_QUEUE_CAPACITY] = shapes[O_ORDER][0][2]
    # enter write mode when |write| > 0.8 * 32 (25.6, i.e. >= 26); leave when < 0.2 * 32 (6.4, <= 6)
    mem[H_WM_ENTER] = int(np.floor(WR_HIGH_WATERMARK * WRITE_BUFFER_NOMINAL)) + 1
    mem[H_WM_LEAVE] = int(np.ceil(WR_LOW_WATERMARK * WRITE_BUFFER_NOMINAL)) - 1
    mem[H_FAW] = N_FAW
    mem[H_FAW_WINDOW] = FAW_WINDOW
    mem[H_PEND_CAP] = shapes[O_PEND_DEPART][0][1]
    pos = N_HEADER
    for slot, (shape, fill) in shapes.items():
        mem[slot] = pos
        n = int(np.prod(shape))
        mem[pos:pos + n] = fill
        pos += n
    mem[mem[O_LAT]:mem[O_LAT] + N_LEVEL * N_CMD * N_CMD] = timing_table().ravel()
    n_ch, pool = shapes[O_FREE][0]
    mem[mem[O_FREE]:mem[O_FREE] + n_ch * pool] = np.tile(np.arange(pool - 1, -1, -1), n_ch)
    mem[mem[O_FREE_N]:mem[O_FREE_N] + n_ch] = pool
    return mem


def state_views(mem: np.ndarray) -> dict[str, np.ndarray | int]:
    """Named views of a state array (shared memory, not copies): for tests and debugging."""
    shapes = _region_shapes(int(mem[H_PEND_CAP]), bool(mem[H_MINIMAL]))
    names = {O_LAT: "lat", O_READY_CH: "ready_ch", O_READY_PC: "ready_pc", O_READY_BG: "ready_bg",
             O_READY_BANK: "ready_bank", O_ACT_HIST: "act_hist", O_OPEN_ROW: "open_row",
             O_POOL: "pool", O_FREE: "free", O_FREE_N: "free_n", O_ORDER: "order",
             O_BUF_LEN: "buf_len", O_WRITE_MODE: "write_mode", O_PEND_DEPART: "pend_depart",
             O_PEND_COUNT: "pend_count", O_PEND_HEAD: "pend_head", O_PEND_LEN: "pend_len",
             O_NOT_BEFORE: "not_before"}
    out: dict[str, np.ndarray | int] = {"next_instant": int(mem[H_NEXT]), "pending_reads": int(mem[H_PENDING])}
    for slot, (shape, _fill) in shapes.items():
        start = int(mem[slot])
        out[names[slot]] = mem[start:start + int(np.prod(shape))].reshape(shape)
    return out


# ------------------------------------------------------------------------------ address mapping
@jit
def map_address(mem, addr):
    """MOP4CLXOR (§2): byte address -> (channel, pseudochannel, bankgroup, bank, row, column).

    Fields from the LSB of the transfer index: low column bits, channel, pseudochannel,
    bankgroup, bank, high column bits, row (not masked).  Then the column bits are XOR-ed into
    the levels from the channel down, consumed LSB first; with 5 column bits nothing is left
    for the bank or the row.
    """
    ch_bits = mem[H_CH_BITS]
    pc_bits = mem[H_PC_BITS]
    bg_bits = mem[H_BG_BITS]
    ba_bits = mem[H_BA_BITS]
    lo_bits = mem[H_COL_LO_BITS]
    hi_bits = mem[H_COL_HI_BITS]
    x = addr >> mem[H_TX_BITS]
    c_lo = x & ((1 << lo_bits) - 1)
    x >>= lo_bits
    ch = x & ((1 << ch_bits) - 1)
    x >>= ch_bits
    pc = x & ((1 << pc_bits) - 1)
    x >>= pc_bits
    bg = x & ((1 << bg_bits) - 1)
    x >>= bg_bits
    ba = x & ((1 << ba_bits) - 1)
    x >>= ba_bits
    c_hi = x & ((1 << hi_bits) - 1)
    row = x >> hi_bits
    col = c_lo | (c_hi << lo_bits)
    rest = col
    ch ^= rest & ((1 << ch_bits) - 1)
    rest >>= ch_bits
    pc ^= rest & ((1 << pc_bits) - 1)
    rest >>= pc_bits
    bg ^= rest & ((1 << bg_bits) - 1)
    rest >>= bg_bits
    ba ^= rest & ((1 << ba_bits) - 1)
    rest >>= ba_bits
    row ^= rest
    return ch, pc, bg, ba, row, col


# ------------------------------------------------------------------------------ index helpers
@jit
def _order(mem, ch, kind):
    """Offset of a buffer's slot-id array."""
    return mem[O_ORDER] + (ch * N_BUF_KINDS + kind) * mem[H_QUEUE_CAPACITY]


@jit
def _slot(mem, ch, slot):
    """Offset of a pool entry's first field."""
    return mem[O_POOL] + (ch * N_BUF_KINDS * mem[H_QUEUE_CAPACITY] + slot) * N_ENTRY_FIELDS


@jit
def _entry(mem, ch, kind, idx):
    """Offset of the first field of the idx-th (in insertion order) request of a buffer."""
    return _slot(mem, ch, mem[_order(mem, ch, kind) + idx])


# ------------------------------------------------------------------------------ device
@jit
def _issue(mem, cmd, ch, pcn, bgn, ban, row, clk):
    """Issue `cmd` at `clk`: every node on the path applies its constraints; update the bank."""
    lat = mem[O_LAT] + cmd * N_CMD
    for f in range(N_CMD):
        for level in range(N_LEVEL):
            gap = mem[lat + level * N_CMD * N_CMD + f]
            if gap < 0:
                continue
            if level == 0:
                r = mem[O_READY_CH] + ch * N_CMD + f
            elif level == 1:
                r = mem[O_READY_PC] + pcn * N_CMD + f
            elif level == 2:
                r = mem[O_READY_BG] + bgn * N_CMD + f
            else:
                r = mem[O_READY_BANK] + ban * N_CMD + f
            if clk + gap > mem[r]:
                mem[r] = clk + gap
    if cmd == ACT:
        w = mem[H_FAW_WINDOW]
        hist = mem[O_ACT_HIST] + pcn * w
        for i in range(w - 1, 0, -1):
            mem[hist + i] = mem[hist + i - 1]
        mem[hist] = clk
        oldest = mem[hist + w - 1]
        r = mem[O_READY_PC] + pcn * N_CMD + ACT
        if oldest >= 0 and oldest + mem[H_FAW] > mem[r]:
            mem[r] = oldest + mem[H_FAW]
        mem[mem[O_OPEN_ROW] + ban] = row
    elif cmd == PRE:
        mem[mem[O_OPEN_ROW] + ban] = -1


# ------------------------------------------------------------------------------ controller
@jit
def _pending_push(mem, ch, depart):
    """Append one read to the channel's pending FIFO (consecutive equal departs share a run)."""
    cap = mem[H_PEND_CAP]
    n = mem[mem[O_PEND_LEN] + ch]
    head = mem[mem[O_PEND_HEAD] + ch]
    row = ch * cap
    if n > 0:
        last = row + (head + n - 1) % cap
        if mem[mem[O_PEND_DEPART] + last] == depart:
            mem[mem[O_PEND_COUNT] + last] += 1
            return
    if n == cap:
        raise ValueError("HBM2 model: a channel's pending-read FIFO overflowed; "
                         "build the timing state with a larger pending_capacity")
    slot = row + (head + n) % cap
    mem[mem[O_PEND_DEPART] + slot] = depart
    mem[mem[O_PEND_COUNT] + slot] = 1
    mem[mem[O_PEND_LEN] + ch] = n + 1


@jit
def _pending_serve(mem, ch, clk):
    """Serve at most one read, and only the FIFO head: returns 1 if it completed this tick."""
    n = mem[mem[O_PEND_LEN] + ch]
    if n == 0:
        return 0
    cap = mem[H_PEND_CAP]
    head = mem[mem[O_PEND_HEAD] + ch]
    slot = ch * cap + head
    if mem[mem[O_PEND_DEPART] + slot] > clk:
        return 0
    c = mem[O_PEND_COUNT] + slot
    mem[c] -= 1
    if mem[c] == 0:
        mem[mem[O_PEND_HEAD] + ch] = (head + 1) % cap
        mem[mem[O_PEND_LEN] + ch] = n - 1
    return 1


@jit
def _unlink(mem, ch, kind, idx):
    """Take the idx-th request out of a buffer, keeping the others' order; returns its slot."""
    nl = mem[O_BUF_LEN] + ch * N_BUF_KINDS + kind
    n = mem[nl]
    order = _order(mem, ch, kind)
    slot = mem[order + idx]
    for i in range(order + idx, order + n - 1):
        mem[i] = mem[i + 1]
    mem[nl] = n - 1
    return slot


@jit
def _link(mem, ch, kind, slot):
    """Append a pool slot to a buffer (the caller checked the capacity)."""
    nl = mem[O_BUF_LEN] + ch * N_BUF_KINDS + kind
    n = mem[nl]
    mem[_order(mem, ch, kind) + n] = slot
    mem[nl] = n + 1


@jit
def _entry_command(mem, e, open_rows, r_ch, r_pc, r_bg, r_ba):
    """(prerequisite command, cycle it becomes issuable) of the queue entry at `e`: ACT for a
    closed bank, the final RD/WR on a row hit, PRE on a row conflict; ready at the latest of the
    channel, pseudochannel, bank-group and bank ready times for that command."""
    ban = mem[e + E_BANK]
    open_row = mem[open_rows + ban]
    if open_row == -1:
        cmd = ACT
    elif open_row == mem[e + E_ROW]:
        cmd = WR if mem[e + E_WRITE] != 0 else RD
    else:
        cmd = PRE
    at = max(max(mem[r_ch + cmd], mem[r_pc + mem[e + E_PC] * N_CMD + cmd]),
             max(mem[r_bg + mem[e + E_BG] * N_CMD + cmd], mem[r_ba + ban * N_CMD + cmd]))
    return cmd, at


@jit
def _best(mem, ch, kind, clk):
    """FR-FCFS over one non-empty buffer: ready first, then oldest arrival, then list order.

    Returns (index, command, ready) of the winner.  The command is the request's prerequisite
    at its bank (§4): ACT if closed, the RD/WR itself on a row hit, PRE on a row conflict.
    When nothing is ready, also records in not_before[ch, kind] the first clk at which some
    entry would be ready if nothing changes (ready cycles only change when this channel issues).

    The read and write buffers are appended in non-decreasing `arrive` order (arrive = clk at
    send), so there the fold's winner is the first ready entry (or entry 0 if none is ready) and
    the scan stops at it.  The active buffer takes requests in ACT order, so it gets the full fold.
    """
    sorted_by_arrival = kind != B_ACTIVE
    n = mem[mem[O_BUF_LEN] + ch * N_BUF_KINDS + kind]
    order = _order(mem, ch, kind)
    pool = _slot(mem, ch, 0)
    r_ch = mem[O_READY_CH] + ch * N_CMD
    r_pc = mem[O_READY_PC]
    r_bg = mem[O_READY_BG]
    r_ba = mem[O_READY_BANK]
    open_rows = mem[O_OPEN_ROW]
    not_before = -1
    if sorted_by_arrival:
        # the fold reduces to: the first ready entry, else entry 0
        first_cmd = -1
        for i in range(n):
            e = pool + mem[order + i] * N_ENTRY_FIELDS
            cmd, at = _entry_command(mem, e, open_rows, r_ch, r_pc, r_bg, r_ba)
            if clk >= at:
                return i, cmd, True
            if i == 0:
                first_cmd = cmd
                not_before = at
            elif at < not_before:
                not_before = at
        mem[mem[O_NOT_BEFORE] + ch * N_BUF_KINDS + kind] = not_before
        return 0, first_cmd, False
    best_i = -1
    best_cmd = -1
    best_ready = False
    best_arrive = 0
    for i in range(n):
        e = pool + mem[order + i] * N_ENTRY_FIELDS
        cmd, at = _entry_command(mem, e, open_rows, r_ch, r_pc, r_bg, r_ba)
        ready = clk >= at
        if not_before < 0 or at < not_before:
            not_before = at
        arrive = mem[e + E_ARRIVE]
        if best_i < 0 or (ready and not best_ready) or (ready == best_ready and arrive < best_arrive):
            best_i = i
            best_cmd = cmd
            best_ready = ready
            best_arrive = arrive
    if not best_ready:
        mem[mem[O_NOT_BEFORE] + ch * N_BUF_KINDS + kind] = not_before
    return best_i, best_cmd, best_ready


@jit
def _controller_tick(mem, ch, clk):
    """One Generic-controller tick at `clk` (already incremented).  Returns completed reads (0/1)."""
    done = _pending_serve(mem, ch, clk)
    lens = mem[O_BUF_LEN] + ch * N_BUF_KINDS
    n_read = mem[lens + B_READ]
    n_write = mem[lens + B_WRITE]
    n_active = mem[lens + B_ACTIVE]
    wm = mem[O_WRITE_MODE] + ch
    nb = mem[O_NOT_BEFORE] + ch * N_BUF_KINDS
    if n_read == 0 and n_write == 0 and n_active == 0:
        mem[wm] = 1  # what set_write_mode does with an empty read buffer
        return done

    found = False
    src = -1
    idx = -1
    cmd = -1
    if n_active > 0 and clk >= mem[nb + B_ACTIVE]:
        idx, cmd, found = _best(mem, ch, B_ACTIVE, clk)
        src = B_ACTIVE
    if not found:
        if mem[wm] == 0:
            if n_write >= mem[H_WM_ENTER] or n_read == 0:
                mem[wm] = 1
        elif n_write <= mem[H_WM_LEAVE] and n_read != 0:
            mem[wm] = 0
        src = B_WRITE if mem[wm] != 0 else B_READ
        if mem[lens + src] > 0 and clk >= mem[nb + src]:
            idx, cmd, found = _best(mem, ch, src, clk)
    if not found:
        return done
    e = _entry(mem, ch, src, idx)
    ban = mem[e + E_BANK]
    if cmd == PRE:
        # never close a row that a request in the active buffer is waiting for
        for i in range(n_active):
            if mem[_entry(mem, ch, B_ACTIVE, i) + E_BANK] == ban:
                return done
    is_write = mem[e + E_WRITE] != 0
    _issue(mem, cmd, ch, mem[e + E_PC], mem[e + E_BG], ban, mem[e + E_ROW], clk)
    for kind in range(N_BUF_KINDS):  # ready cycles and open rows changed: rescan
        mem[nb + kind] = -1
    if cmd == (WR if is_write else RD):
        if not is_write:
            _pending_push(mem, ch, clk + mem[H_READ_LATENCY])
        slot = _unlink(mem, ch, src, idx)
        free_n = mem[O_FREE_N] + ch
        mem[mem[O_FREE] + ch * N_BUF_KINDS * mem[H_QUEUE_CAPACITY] + mem[free_n]] = slot
        mem[free_n] += 1
    elif cmd == ACT and mem[lens + B_ACTIVE] < mem[H_QUEUE_CAPACITY]:
        # move to the active buffer (if it is full the request stays where it is)
        _link(mem, ch, B_ACTIVE, _unlink(mem, ch, src, idx))
    return done


@jit
def _all_idle(mem):
    n_ch = 1 << mem[H_CH_BITS]
    lens = mem[O_BUF_LEN]
    pend = mem[O_PEND_LEN]
    for i in range(n_ch * N_BUF_KINDS):
        if mem[lens + i] != 0:
            return False
    for ch in range(n_ch):
        if mem[pend + ch] != 0:
            return False
    return True


@jit
def tick_all(mem):
    """One memory-system tick at simulated time next_instant.  Returns the completed reads."""
    clk = mem[H_NEXT] + 1
    done = 0
    lens = mem[O_BUF_LEN]
    for ch in range(1 << mem[H_CH_BITS]):
        b = lens + ch * N_BUF_KINDS
        if (mem[b + B_READ] == 0 and mem[b + B_WRITE] == 0 and mem[b + B_ACTIVE] == 0
                and mem[mem[O_PEND_LEN] + ch] == 0):
            mem[mem[O_WRITE_MODE] + ch] = 1  # an idle controller's tick only sets write mode
            continue
        done += _controller_tick(mem, ch, clk)
    mem[H_NEXT] = clk
    return done


@jit
def _read_refused(mem, addr):
    """Whether send(mem, addr, False) would refuse the read now (it would change nothing)."""
    ch = map_address(mem, addr)[0]
    if mem[mem[O_BUF_LEN] + ch * N_BUF_KINDS + B_READ] < mem[H_QUEUE_CAPACITY]:
        return False
    for i in range(mem[mem[O_BUF_LEN] + ch * N_BUF_KINDS + B_WRITE]):
        if mem[_entry(mem, ch, B_WRITE, i) + E_ADDR] == addr:
            return False   # forwarded from the write buffer: accepted
    return True


@jit
def send(mem, addr, is_write):
    """Offer one 16-byte request to its channel at the current clk.  False = refused (queue full)."""
    ch, pc, bg, ba, row, _col = map_address(mem, addr)
    clk = mem[H_NEXT]
    lens = mem[O_BUF_LEN] + ch * N_BUF_KINDS
    if not is_write:
        for i in range(mem[lens + B_WRITE]):
            if mem[_entry(mem, ch, B_WRITE, i) + E_ADDR] == addr:
                _pending_push(mem, ch, clk + mem[H_FORWARD_DELAY])
                return True
    kind = B_WRITE if is_write else B_READ
    n = mem[lens + kind]
    if n >= mem[H_QUEUE_CAPACITY]:
        return False
    pcn = (ch << mem[H_PC_BITS]) + pc
    bgn = (pcn << mem[H_BG_BITS]) + bg
    free_n = mem[O_FREE_N] + ch
    mem[free_n] -= 1
    slot = mem[mem[O_FREE] + ch * N_BUF_KINDS * mem[H_QUEUE_CAPACITY] + mem[free_n]]
    e = _slot(mem, ch, slot)
    mem[e + E_ADDR] = addr
    mem[e + E_PC] = pcn
    mem[e + E_BG] = bgn
    mem[e + E_BANK] = (bgn << mem[H_BA_BITS]) + ba
    mem[e + E_ROW] = row
    mem[e + E_ARRIVE] = clk
    mem[e + E_WRITE] = 1 if is_write else 0
    _link(mem, ch, kind, slot)
    mem[mem[O_NOT_BEFORE] + ch * N_BUF_KINDS + kind] = -1  # a new entry may be ready sooner
    return True


@jit
def _first_busy_clk(mem):
    """Called right after a tick: a lower bound on the clk of the next tick that can change
    anything (serve a read or issue a command).  Every tick before it is a no-op.

    Per channel: the head of `pending` departs at its recorded cycle; a command can be chosen
    only from the active buffer or the buffer the write mode selects, and those buffers'
    not_before cycles are exact lower bounds while nothing is issued or sent on the channel
    (-1, i.e. unknown, blocks skipping).  The write mode is already at its fixed point after a
    tick that issued nothing (the watermark update is idempotent while buffer sizes are
    unchanged); if it is not, skipping is refused rather than reasoned about.
    """
    clk = mem[H_NEXT]
    bound = -1
    have = False
    for ch in range(1 << mem[H_CH_BITS]):
        if mem[mem[O_PEND_LEN] + ch] > 0:
            depart = mem[mem[O_PEND_DEPART] + ch * mem[H_PEND_CAP] + mem[mem[O_PEND_HEAD] + ch]]
            if not have or depart < bound:
                bound = depart
                have = True
            if bound <= clk + 1:
                return clk + 1
        lens = mem[O_BUF_LEN] + ch * N_BUF_KINDS
        n_read = mem[lens + B_READ]
        n_write = mem[lens + B_WRITE]
        n_active = mem[lens + B_ACTIVE]
        if n_read == 0 and n_write == 0 and n_active == 0:
            if mem[mem[O_WRITE_MODE] + ch] == 0:
                return clk + 1
            continue
        nb = mem[O_NOT_BEFORE] + ch * N_BUF_KINDS
        if n_active > 0:
            v = mem[nb + B_ACTIVE]
            if v <= clk + 1:
                return clk + 1
            if not have or v < bound:
                bound = v
                have = True
        wm = mem[mem[O_WRITE_MODE] + ch]
        if wm == 0:
            if n_write >= mem[H_WM_ENTER] or n_read == 0:
                return clk + 1
        elif n_write <= mem[H_WM_LEAVE] and n_read != 0:
            return clk + 1
        src = B_WRITE if wm != 0 else B_READ
        if mem[lens + src] > 0:
            v = mem[nb + src]
            if v <= clk + 1:
                return clk + 1
            if not have or v < bound:
                bound = v
                have = True
    if not have:
        return clk + 1
    return bound


@jit
def _skip_quiet_ticks(mem, limit):
    """After a tick: jump next_instant over the ticks that provably do nothing, but not past
    `limit` (the next_instant an outside event such as a retry or the catch-up target must see)."""
    target = _first_busy_clk(mem) - 1
    if target > limit:
        target = limit
    if target > mem[H_NEXT]:
        mem[H_NEXT] = target


# ------------------------------------------------------------------------------ wrapper (§9, §10)
@jit
def catch_up(mem, now):
    """Bring next_instant up to `now` (the wrapper does this only while no read is pending).

    Ticks while any controller has work (queued writes drain here), skipping runs of ticks in
    which nothing can be issued; once all are idle the remaining ticks would only switch every
    controller to write mode, so they are replaced by exactly that.
    """
    while mem[H_NEXT] < now:
        if _all_idle(mem):
            for ch in range(1 << mem[H_CH_BITS]):
                mem[mem[O_WRITE_MODE] + ch] = 1
            mem[H_NEXT] = now
            return
        tick_all(mem)
        _skip_quiet_ticks(mem, now)


@jit
def _check_usable(mem):
    if mem[H_MINIMAL] != 0:
        raise ValueError("HBM2 model: this timing state was built for the analytic model")


@jit
def _check_block(mem, addr):
    if addr < 0 or addr & ((1 << mem[H_BLOCK_BITS]) - 1) != 0:
        raise ValueError("HBM2 model: block addresses must be non-negative multiples of the block size")


@jit
def _check_batch(mem, block_addrs, n):
    if n > block_addrs.shape[0]:
        raise ValueError("HBM2 model: n is larger than the block address array")
    for b in range(n):
        _check_block(mem, block_addrs[b])


@jit
def hbm2_read_batch(mem, now, block_addrs, n):
    """Offer n block reads at `now` (4 transfers each, strictly in order); return the time of the
    tick that fires the last callback (`now` for an empty batch)."""
    _check_usable(mem)
    if n <= 0:
        return now
    _check_batch(mem, block_addrs, n)
    tx_bits = mem[H_TX_BITS]
    per_block_bits = mem[H_BLOCK_BITS] - tx_bits
    total = n << per_block_bits
    q = 0              # next transfer to offer: the FIFO read lock's queue
    tick_at = -1       # time of the pending tick event, -1 = none
    retry_at = -1      # time of the pending retry of transfer q, -1 = none
    last_done = now
    t = now
    offering = True
    while True:
        if offering:
            # offer transfers at time t until one is refused (it keeps the lock and retries)
            retry_at = -1
            while q < total:
                if mem[H_PENDING] == 0:
                    catch_up(mem, t)
                addr = block_addrs[q >> per_block_bits] + ((q & ((1 << per_block_bits) - 1)) << tx_bits)
                if not send(mem, addr, False):
                    retry_at = t + 1
                    break
                mem[H_PENDING] += 1
                if mem[H_PENDING] == 1:
                    tick_at = mem[H_NEXT]  # may equal t: it still runs after this offer
                q += 1
            offering = False
        if q >= total and mem[H_PENDING] == 0:
            return last_done
        if tick_at >= 0 and (retry_at < 0 or tick_at <= retry_at):  # same instant: tick first
            done = tick_all(mem)
            if done > 0:
                mem[H_PENDING] -= done
                last_done = tick_at
            if mem[H_PENDING] > 0:
                # Ticks that change nothing are skipped.  A pending retry that would be refused
                # now stays refused through them (a queue changes only when its channel issues),
                # so those retries are skipped too and the retry moves to the next real tick's
                # instant, where it still runs after the tick.  A retry that could succeed must
                # see next_instant == retry_at + 1, so the skip stops there.
                if retry_at < 0:
                    _skip_quiet_ticks(mem, _NO_LIMIT)
                elif _read_refused(mem, block_addrs[q >> per_block_bits]
                                   + ((q & ((1 << per_block_bits) - 1)) << tx_bits)):
                    _skip_quiet_ticks(mem, _NO_LIMIT)
                    if mem[H_NEXT] > retry_at:
                        retry_at = mem[H_NEXT]
                else:
                    _skip_quiet_ticks(mem, retry_at + 1)
                tick_at = mem[H_NEXT]
            else:
                tick_at = -1
        elif retry_at >= 0:
            t = retry_at
            offering = True
        else:
            raise ValueError("HBM2 model: reads pending with no tick or retry scheduled")


@jit
def hbm2_write_block(mem, now, block_addr):
    """Post the 4 write transfers of one block at `now`, retrying each cycle while refused.

    Returns the time the last one was accepted.  Writes never schedule ticks; a refused write
    waits for the catch-up ticks of the following cycles to drain its queue.
    """
    _check_usable(mem)
    _check_block(mem, block_addr)
    tx_bits = mem[H_TX_BITS]
    t = now
    for j in range(1 << (mem[H_BLOCK_BITS] - tx_bits)):
        while True:
            if mem[H_PENDING] == 0:
                catch_up(mem, t)
            if send(mem, block_addr + (j << tx_bits), True):
                break
            if mem[H_PENDING] != 0:
                raise ValueError("HBM2 model: write refused while reads are pending")
            t += 1
    return t
