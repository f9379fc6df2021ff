"""Cycle-exact HBM2 timing model: the reference's Ramulator2 configuration rebuilt in numba.

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

How it is fast (same results as the tick-by-tick model kept in tests/hbm2_oracle.py):

* One channel per quad is run.  A block's 4 transfers go to the 4 channels of one quad with the
  same bank and row, and the entry points only offer whole blocks, so those 4 channels see the
  same requests at the same clocks and stay equal: only the quad's channel 0 is run (~4x less
  work than running all 8), the other 3 are written from it when the state is inspected, and a
  single-transfer `send` (tests only) ends the mirroring of its quad ("Mirrored quads" below).
* Channels are independent.  Every timing constraint lives on a node of one channel, and the
  memory system ticks every cycle (catch-up ticks when idle, the tick chain while reads are
  pending), so a channel's state is a function of the (clk, request) sequence sent to it.  Each
  channel therefore keeps its own clock and is ticked lazily, only up to the clk of the next
  request sent to it or until the reads the current batch queued on it have been issued.
* Only ticks that issue a command are run.  After any change on a channel (a command issued, a
  request queued, a veto) one scan of the active buffer and of the buffer the write mode selects
  gives the earliest cycle at which some entry becomes ready, and the entry that wins FR-FCFS
  then.  The ticks before that cycle can only settle the write mode, which is idempotent while
  the buffer sizes stand still, or serve reads: the `pending` FIFO serves its head only, one
  read per tick, so a read's serve cycle is max(its departure, the previous read's serve + 1),
  known when it departs (`_push_read`).  So no tick is run for serving, and a batch ends at the
  largest serve cycle of its reads.
* Ready cycles are tracked per bank.  Issuing a command raises `ready` on the four nodes of its
  path; the model also keeps, per bank and command, the maximum over the bank's path
  (`eff_ready`), raised over the affected bank range at issue time, so judging a queue entry is
  one lookup instead of four.
* Buffers never shift: an entry taken out of the middle is marked dead in place (see B_READ).
* A DMA batch is offered in one pass: each transfer is appended to its channel's queue after
  that channel alone has been brought to the send's clk; a refused transfer's retries jump
  straight to the next cycle at which its channel can issue.

Compile time is part of the product (the first run on a fresh machine compiles this): one
function, `_run`, drives a channel for every entry point (catch-up, send with retries, the end
of a batch); its parts are inlined into it, _plan, _tick, _send and _issue at one call site each,
_push_read and _append at two; flags are run-time int64 values, never literals (numba compiles a
callee once per literal argument value).  Compiled as separate functions instead, all the parts
cost ~15% more host time per block; _push_read and _append alone ~6% for ~1 s less compile.

State layout.  The whole model state is ONE flat int64 array (`st`): a small header (the
wrapper's `next_instant`, counters, which quads are mirrored), then one fixed-size region per
channel (clock, write mode, the cached scan, ready cycles, ACT history, open rows, the three
buffers as field arrays), then per channel a ring of runs of serve cycles of the reads not yet
served, whose capacity is chosen at construction.  The device is fixed by the reference (it
always builds `hbm2_preset(8)`), so every offset is a module constant that numba folds into the
code.  `state_views(st)` gives named, shaped numpy views for inspection and tests.

Time unit: one cycle = 1 ns = one tCK = one accelerator cycle.
"""

from __future__ import annotations

import numpy as np
from emulator.core.jit import inline_jit, jit

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
# enter write mode when |write| > 0.8 * 32 (25.6, i.e. >= 26); leave when < 0.2 * 32 (6.4, <= 6)
WM_ENTER = int(np.floor(WR_HIGH_WATERMARK * WRITE_BUFFER_NOMINAL)) + 1
WM_LEAVE = int(np.ceil(WR_LOW_WATERMARK * WRITE_BUFFER_NOMINAL)) - 1
FAW_WINDOW = 4               # nFAW: the 5th ACT >= 15 after the 1st of the last four
N_FAW = 15
DEFAULT_PENDING_CAPACITY = 4096
RETRY, DRAIN = 1, 2          # _run's flags
NEVER = np.iinfo(np.int64).max // 2   # "no event": larger than any reachable cycle


def _log2_exact(n: int, what: str) -> int:
    if n <= 0 or n & (n - 1):
        raise ValueError(f"HBM2 organisation: {what} ({n}) must be a power of two")
    return n.bit_length() - 1


N_CH = ORGANISATION["channels"]
CH_BITS = _log2_exact(N_CH, "channels")
PC_BITS = _log2_exact(ORGANISATION["pseudochannels"], "pseudochannels")
BG_BITS = _log2_exact(ORGANISATION["bankgroups"], "bankgroups")
BA_BITS = _log2_exact(ORGANISATION["banks"], "banks")
TX_BITS = _log2_exact(TRANSFER_BYTES, "transfer bytes")
BLOCK_BITS = _log2_exact(BLOCK_BYTES, "block bytes")
TX_PER_BLOCK_BITS = BLOCK_BITS - TX_BITS
# Nodes inside one channel, numbered so that a node's subtree is a contiguous range of banks:
# pseudochannel p, bank group g = (p << BG_BITS) | bg, bank b = (g << BA_BITS) | ba.
PCS = 1 << PC_BITS
BGS = PCS << BG_BITS
BANKS = BGS << BA_BITS
BANKS_PER_PC = BANKS // PCS
BANKS_PER_BG = BANKS // BGS

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


def timing_table() -> np.ndarray:
    """TIMING_CONSTRAINTS as lat[level, after, before] (max over duplicates, -1 = none)."""
    lat = np.full((N_LEVEL, N_CMD, N_CMD), -1, dtype=np.int64)
    for level, after, before, gap in TIMING_CONSTRAINTS:
        i, p, f = LEVELS.index(level), COMMANDS.index(after), COMMANDS.index(before)
        lat[i, p, f] = max(lat[i, p, f], gap)
    return lat


LAT = timing_table()   # a global array: numba compiles it in as a constant

# ------------------------------------------------------------------------------ flat layout
# Header slots of `st`.
(H_MINIMAL,
 H_NEXT,         # next_instant: the wrapper's clock; no channel's clock is ahead of it (§9)
 H_SERVE_CAP,    # runs each channel's serve ring holds
 H_SERVED,       # reads served so far (all channels, ever), as far as the channels' clocks have got
 H_LAST_SERVE,   # clk of the last read served in the current batch
 H_MIRRORED,     # bit q set: channels 1..3 of quad q are mirrors of its channel 0 (see _is_mirror)
 N_HEADER) = range(7)

# Request buffers: three per channel, each a window of WINDOW slots per field.  The live
# entries sit between the buffer's head and tail in insertion order; an entry taken out of the
# middle is marked DEAD in place (no shifting), the head skips dead entries, and the live ones
# are moved back to the window's start only when the tail reaches its end.  E_RBW packs what
# FR-FCFS reads: row << 6 | is_write << 5 | bank.
B_READ, B_WRITE, B_ACTIVE = 0, 1, 2
N_BUF_KINDS = 3
E_ADDR, E_RBW, E_ARRIVE = range(3)
N_ENTRY_FIELDS = 3
WINDOW = 2 * QUEUE_CAPACITY - 2   # >= 31 appends between two compactions of a full buffer
DEAD = -1                         # E_RBW of an entry taken out (a live E_RBW is >= 0)
RBW_BANK_MASK = BANKS - 1
RBW_WRITE_SHIFT = 5
RBW_ROW_SHIFT = 6
assert BANKS <= 1 << RBW_WRITE_SHIFT

# One channel's region: (name, size) in order; the offsets below are derived from it.
_CHANNEL_FIELDS = (
    ("clk", 1),          # the ticks up to and including this clk have run on this channel
    ("write_mode", 1),
    ("wm_settled", 1),   # the write mode a tick that finds no ready active entry leaves behind
    ("plan_ok", 1),      # the cached scan below is valid (nothing changed since it was made)
    ("act_at", 1), ("act_pos", 1), ("act_cmd", 1),     # scan: active buffer's first ready cycle ...
    ("src_at", 1), ("src_pos", 1), ("src_cmd", 1),     # ... and the write-mode buffer's
    ("queued_reads", 1),  # reads in the read or active buffer (their RD not issued yet)
    ("unserved", 1),      # reads whose callback has not fired (RD issued or forwarded)
    ("last_serve", 1),    # clk of the tick that serves the newest read (-1: none yet)
    ("buf_len", N_BUF_KINDS), ("buf_head", N_BUF_KINDS), ("buf_tail", N_BUF_KINDS),
    ("serve_head", 1), ("serve_len", 1),
    ("ready_ch", N_CMD),
    ("ready_pc", PCS * N_CMD),
    ("ready_bg", BGS * N_CMD),
    ("ready_bank", BANKS * N_CMD),
    ("eff_ready", N_CMD * BANKS),   # [cmd, bank]: max of ready[cmd] over the bank's path
    ("act_hist", PCS * FAW_WINDOW),  # last ACT issue times per pseudochannel, newest first
    ("open_row", BANKS),             # -1 = closed
    ("buffers", N_BUF_KINDS * N_ENTRY_FIELDS * WINDOW),
)
_offsets = {}
_pos = 0
for _name, _size in _CHANNEL_FIELDS:
    _offsets[_name] = _pos
    _pos += _size
CH_SIZE = _pos
C_CLK = _offsets["clk"]
C_WM = _offsets["write_mode"]
C_WM_SETTLED = _offsets["wm_settled"]
C_PLAN_OK = _offsets["plan_ok"]
C_ACT_AT = _offsets["act_at"]
C_ACT_POS = _offsets["act_pos"]
C_ACT_CMD = _offsets["act_cmd"]
C_SRC_AT = _offsets["src_at"]
C_SRC_POS = _offsets["src_pos"]
C_SRC_CMD = _offsets["src_cmd"]
C_QREADS = _offsets["queued_reads"]
C_UNSERVED = _offsets["unserved"]
C_LAST_SERVE = _offsets["last_serve"]
C_LEN = _offsets["buf_len"]
C_HEAD = _offsets["buf_head"]
C_TAIL = _offsets["buf_tail"]
C_SHEAD = _offsets["serve_head"]
C_SLEN = _offsets["serve_len"]
C_RCH = _offsets["ready_ch"]
C_RPC = _offsets["ready_pc"]
C_RBG = _offsets["ready_bg"]
C_RBANK = _offsets["ready_bank"]
C_EFF = _offsets["eff_ready"]
C_ACTH = _offsets["act_hist"]
C_OPEN = _offsets["open_row"]
C_BUF = _offsets["buffers"]
BUF_STRIDE = N_ENTRY_FIELDS * WINDOW             # from one buffer kind to the next
C_ADDR = C_BUF + E_ADDR * WINDOW                 # field arrays of buffer kind 0; + kind * BUF_STRIDE
C_RBW = C_BUF + E_RBW * WINDOW
C_ARRIVE = C_BUF + E_ARRIVE * WINDOW
CH_BASE = N_HEADER
SERVE_BASE = CH_BASE + N_CH * CH_SIZE   # per channel: first serve clk[cap], then count[cap]

QUAD_CHANNELS = 1 << TX_PER_BLOCK_BITS   # a block's 4 transfers go to the 4 channels of one quad
N_QUADS = N_CH // QUAD_CHANNELS

def new_hbm2_state(pending_capacity: int = DEFAULT_PENDING_CAPACITY, minimal: bool = False,
                   mirror_quads: bool = True) -> np.ndarray:
    """A fresh, idle HBM2 model at time 0 (all banks closed, empty queues, write mode off).

    `pending_capacity` is the number of runs of consecutive serve cycles each channel's record
    of unserved reads holds; the model raises ValueError if a batch ever needs more.
    `mirror_quads=False` runs all 8 channels instead of one per quad (see "Mirrored quads");
    the results are the same either way.
    `minimal=True` builds the small stand-in used by a state that runs the analytic model (the
    model itself is not usable).
    """
    if pending_capacity < 1:
        raise ValueError(f"pending_capacity must be >= 1 (got {pending_capacity})")
    if minimal:
        st = np.zeros(N_HEADER, dtype=np.int64)
        st[H_MINIMAL] = 1
        return st
    st = np.zeros(SERVE_BASE + N_CH * 2 * pending_capacity, dtype=np.int64)
    st[H_SERVE_CAP] = pending_capacity
    st[H_LAST_SERVE] = -1
    st[H_MIRRORED] = (1 << N_QUADS) - 1 if mirror_quads else 0   # fresh channels are identical
    chans = st[CH_BASE:SERVE_BASE].reshape(N_CH, CH_SIZE)
    for name in ("last_serve", "ready_ch", "ready_pc", "ready_bg", "ready_bank", "eff_ready", "act_hist",
                 "open_row"):
        chans[:, _offsets[name]:_offsets[name] + dict(_CHANNEL_FIELDS)[name]] = -1
    return st


def _check_state(st: np.ndarray) -> None:
    if st[H_MINIMAL] != 0:
        raise ValueError("HBM2 model: this timing state was built for the analytic model")


def state_views(st: np.ndarray) -> dict[str, np.ndarray | int]:
    """Named views of a state array (shared memory, not copies): for tests and debugging.

    Every channel is first brought up to next_instant (a no-op for the results: those ticks
    would run anyway before the channel is next used), so the views show the state the
    reference's controllers have at that instant.  Node ids are per channel: pseudochannel p,
    bank group (p << 2) | bg, bank (group << 2) | ba.  `queue_entries` lists a buffer's live
    requests; `serve_first`/`serve_count` are the runs of serve cycles of unserved reads.
    """
    _check_state(st)
    synchronise(st)
    for quad in range(N_QUADS):
        if st[H_MIRRORED] >> quad & 1:
            _write_mirrors(st, quad)
    cap = int(st[H_SERVE_CAP])
    chans = st[CH_BASE:SERVE_BASE].reshape(N_CH, CH_SIZE)
    serve = st[SERVE_BASE:SERVE_BASE + N_CH * 2 * cap].reshape(N_CH, 2, cap)

    def region(name, *shape):
        start = _offsets[name]
        view = chans[:, start:start + int(np.prod(shape))].reshape(N_CH, *shape)
        assert np.shares_memory(view, st)
        return view

    return {
        "next_instant": int(st[H_NEXT]),
        "pending_reads": int(region("unserved").sum()),
        "clk": region("clk"),
        "write_mode": region("write_mode"),
        "buf_len": region("buf_len", N_BUF_KINDS),
        "buf_head": region("buf_head", N_BUF_KINDS),
        "buf_tail": region("buf_tail", N_BUF_KINDS),
        "ready_ch": region("ready_ch", N_CMD),
        "ready_pc": region("ready_pc", PCS, N_CMD),
        "ready_bg": region("ready_bg", BGS, N_CMD),
        "ready_bank": region("ready_bank", BANKS, N_CMD),
        "eff_ready": region("eff_ready", N_CMD, BANKS),
        "act_hist": region("act_hist", PCS, FAW_WINDOW),
        "open_row": region("open_row", BANKS),
        "buffers": region("buffers", N_BUF_KINDS, N_ENTRY_FIELDS, WINDOW),
        "serve_head": region("serve_head"),
        "serve_len": region("serve_len"),
        "serve_first": serve[:, 0, :],
        "serve_count": serve[:, 1, :],
    }


def queue_entries(views: dict, ch: int, kind: int) -> list[tuple[int, int, int, int, int]]:
    """The live requests of one buffer of a state_views() dict in order, as (addr, bank, row,
    arrive, is_write)."""
    out = []
    for i in range(int(views["buf_head"][ch, kind]), int(views["buf_tail"][ch, kind])):
        addr, rbw, arrive = (int(x) for x in views["buffers"][ch, kind, :, i])
        if rbw != DEAD:
            out.append((addr, rbw & RBW_BANK_MASK, rbw >> RBW_ROW_SHIFT, arrive, (rbw >> RBW_WRITE_SHIFT) & 1))
    assert len(out) == int(views["buf_len"][ch, kind])
    return out


# ------------------------------------------------------------------------------ address mapping
@jit
def map_address(addr):
    """MOP4CLXOR (§2): byte address -> (channel, pseudochannel, bankgroup, bank, row, column).

    Fields from the LSB of the transfer index: low column bits, channel, pseudochannel,
    bankgroup, bank, high column bits, row (not masked).  Then the column bits are XOR-ed into
    the levels from the channel down, consumed LSB first; with 5 column bits nothing is left
    for the bank or the row.
    """
    x = addr >> TX_BITS
    c_lo = x & ((1 << COLUMN_LOW_BITS) - 1)
    x >>= COLUMN_LOW_BITS
    ch = x & ((1 << CH_BITS) - 1)
    x >>= CH_BITS
    pc = x & ((1 << PC_BITS) - 1)
    x >>= PC_BITS
    bg = x & ((1 << BG_BITS) - 1)
    x >>= BG_BITS
    ba = x & ((1 << BA_BITS) - 1)
    x >>= BA_BITS
    c_hi = x & ((1 << COLUMN_HIGH_BITS) - 1)
    row = x >> COLUMN_HIGH_BITS
    col = c_lo | (c_hi << COLUMN_LOW_BITS)
    rest = col
    ch ^= rest & ((1 << CH_BITS) - 1)
    rest >>= CH_BITS
    pc ^= rest & ((1 << PC_BITS) - 1)
    rest >>= PC_BITS
    bg ^= rest & ((1 << BG_BITS) - 1)
    rest >>= BG_BITS
    ba ^= rest & ((1 << BA_BITS) - 1)
    rest >>= BA_BITS
    row ^= rest
    return ch, pc, bg, ba, row, col


# ------------------------------------------------------------------------------ channel helpers
# Small helpers are plain @jit (compiled once each; LLVM inlines them into their callers); the
# parts of _run are inline_jit with one or two call sites each (see the module docstring).
@jit
def _raise_ready(st, node, eff, n_banks, at):
    """ready[cmd] of a node becomes at least `at`; so does eff_ready[cmd] of the n_banks banks
    below it, which start at offset `eff`."""
    if at > st[node]:
        st[node] = at
        # unsigned indices and no branch: the compiler vectorises this
        e = np.uint64(eff)
        for b in range(np.uint64(n_banks)):
            st[e + b] = max(st[e + b], at)


@inline_jit
def _issue(st, cb, cmd, bank, row, clk):
    """Issue `cmd` at `clk`: every node on the path applies its constraints; update the bank."""
    pc = bank >> (BG_BITS + BA_BITS)
    bg = bank >> BA_BITS
    for level in range(N_LEVEL):
        if level == 0:
            node, first, n_banks = cb + C_RCH, 0, BANKS
        elif level == 1:
            node, first, n_banks = cb + C_RPC + pc * N_CMD, pc * BANKS_PER_PC, BANKS_PER_PC
        elif level == 2:
            node, first, n_banks = cb + C_RBG + bg * N_CMD, bg * BANKS_PER_BG, BANKS_PER_BG
        else:
            node, first, n_banks = cb + C_RBANK + bank * N_CMD, bank, 1
        for f in range(N_CMD):
            gap = LAT[level, cmd, f]
            if gap >= 0:
                _raise_ready(st, node + f, cb + C_EFF + f * BANKS + first, n_banks, clk + gap)
    if cmd == ACT:
        hist = cb + C_ACTH + pc * FAW_WINDOW
        for i in range(FAW_WINDOW - 1, 0, -1):
            st[hist + i] = st[hist + i - 1]
        st[hist] = clk
        oldest = st[hist + FAW_WINDOW - 1]
        if oldest >= 0:
            _raise_ready(st, cb + C_RPC + pc * N_CMD + cmd, cb + C_EFF + cmd * BANKS + pc * BANKS_PER_PC,
                         np.int64(BANKS_PER_PC), oldest + N_FAW)  # not a literal: one compiled _raise_ready
        st[cb + C_OPEN + bank] = row
    elif cmd == PRE:
        st[cb + C_OPEN + bank] = -1


@jit
def _pop_served(st, ch, cb, clk):
    """Forget the reads served by the ticks up to and including `clk`."""
    cap = st[H_SERVE_CAP]
    first = SERVE_BASE + ch * 2 * cap
    # a mirrored quad's channel 0 serves for its 4 channels
    weight = QUAD_CHANNELS if ch % QUAD_CHANNELS == 0 and st[H_MIRRORED] >> (ch // QUAD_CHANNELS) & 1 else 1
    while st[cb + C_SLEN] > 0:
        head = st[cb + C_SHEAD]
        start = st[first + head]
        if start > clk:
            return
        count = st[first + cap + head]
        n = clk - start + 1
        if n < count:
            st[first + head] = start + n
            st[first + cap + head] = count - n
            st[cb + C_UNSERVED] -= n
            st[H_SERVED] += n * weight
            return
        st[cb + C_UNSERVED] -= count
        st[H_SERVED] += count * weight
        st[cb + C_SHEAD] = head + 1 if head + 1 < cap else 0
        st[cb + C_SLEN] -= 1


@inline_jit
def _push_read(st, ch, cb, depart, clk):
    """A read departs the controller at `depart` (RD issued or forwarded at `clk`).

    The `pending` FIFO serves only its head, at most one read per tick, so the k-th read is
    served at max(depart_k, serve_{k-1} + 1) (§6 step 2): its callback's clk is known now, and
    no tick has to be run for it.  Unserved reads are kept as runs of consecutive serve cycles.
    """
    serve = st[cb + C_LAST_SERVE] + 1
    if serve < depart:
        serve = depart
    st[cb + C_LAST_SERVE] = serve
    if serve > st[H_LAST_SERVE]:
        st[H_LAST_SERVE] = serve
    st[cb + C_UNSERVED] += 1
    cap = st[H_SERVE_CAP]
    first = SERVE_BASE + ch * 2 * cap
    n = st[cb + C_SLEN]
    head = st[cb + C_SHEAD]
    if n > 0:
        last = head + n - 1
        if last >= cap:
            last -= cap
        if st[first + last] + st[first + cap + last] == serve:
            st[first + cap + last] += 1
            return
    if n == cap:
        _pop_served(st, ch, cb, clk)   # (the new read is counted but not in the ring: not popped)
        n = st[cb + C_SLEN]
        head = st[cb + C_SHEAD]
        if n == cap:
            raise ValueError("HBM2 model: a channel's pending-read FIFO overflowed; "
                             "build the timing state with a larger pending_capacity")
    slot = head + n
    if slot >= cap:
        slot -= cap
    st[first + slot] = serve
    st[first + cap + slot] = 1
    st[cb + C_SLEN] = n + 1


@inline_jit
def _append(st, cb, kind, addr, rbw, arrive):
    """Append a request to a buffer (the caller checked the capacity)."""
    buf = cb + kind * BUF_STRIDE
    tail = st[cb + C_TAIL + kind]
    if tail == WINDOW:
        # compact: move the live entries to the window's start, in order
        j = 0
        for i in range(st[cb + C_HEAD + kind], WINDOW):
            if st[buf + C_RBW + i] != DEAD:
                st[buf + C_ADDR + j] = st[buf + C_ADDR + i]
                st[buf + C_RBW + j] = st[buf + C_RBW + i]
                st[buf + C_ARRIVE + j] = st[buf + C_ARRIVE + i]
                j += 1
        st[cb + C_HEAD + kind] = 0
        tail = j
    st[buf + C_ADDR + tail] = addr
    st[buf + C_RBW + tail] = rbw
    st[buf + C_ARRIVE + tail] = arrive
    st[cb + C_TAIL + kind] = tail + 1
    st[cb + C_LEN + kind] += 1


@jit
def _remove(st, cb, kind, pos):
    """Take the entry at window position `pos` out of a buffer, keeping the others' order."""
    buf = cb + kind * BUF_STRIDE
    st[buf + C_RBW + pos] = DEAD
    n = st[cb + C_LEN + kind] - 1
    st[cb + C_LEN + kind] = n
    if n == 0:
        st[cb + C_HEAD + kind] = 0
        st[cb + C_TAIL + kind] = 0
    elif pos == st[cb + C_HEAD + kind]:
        pos += 1
        while st[buf + C_RBW + pos] == DEAD:
            pos += 1
        st[cb + C_HEAD + kind] = pos


@jit
def _settled_write_mode(st, cb):
    """The write mode after a tick whose active buffer has nothing ready (§6 step 4.2).

    The update depends on the buffer sizes only and is idempotent, so every such tick until the
    sizes change leaves the same value.  An empty controller ends up in write mode (|read| == 0).
    """
    n_read = st[cb + C_LEN + B_READ]
    n_write = st[cb + C_LEN + B_WRITE]
    if st[cb + C_WM] == 0:
        return 1 if n_write >= WM_ENTER or n_read == 0 else 0
    return 0 if n_write <= WM_LEAVE and n_read != 0 else 1


@inline_jit
def _plan(st, cb):
    """Scan the active buffer and the buffer the settled write mode selects.

    For each, records the first cycle after the channel's clk at which one of its entries is
    ready, and the FR-FCFS winner at that cycle (ready first, then oldest arrival, then list
    order; the read and write buffers are filled in arrival order, so there the winner is the
    first entry ready that soon).  Valid until the channel issues or queues something.
    """
    lo = st[cb + C_CLK] + 1
    wm = _settled_write_mode(st, cb)
    st[cb + C_WM_SETTLED] = wm
    best = NEVER
    best_i = -1
    best_arrive = 0
    buf = cb + B_ACTIVE * BUF_STRIDE
    # An active entry's bank is open on its row until its RD/WR: its ACT opened it, and the PRE
    # veto keeps any other request from closing it meanwhile.  So its command is the final one.
    eff = cb + C_EFF + RD * BANKS
    for i in range(st[cb + C_HEAD + B_ACTIVE], st[cb + C_TAIL + B_ACTIVE]):
        rbw = st[buf + C_RBW + i]
        if rbw == DEAD:
            continue
        at = st[eff + ((rbw >> RBW_WRITE_SHIFT) & 1) * BANKS + (rbw & RBW_BANK_MASK)]
        if at < lo:
            at = lo
        arrive = st[buf + C_ARRIVE + i]
        if at < best or (at == best and arrive < best_arrive):
            best = at
            best_i = i
            best_arrive = arrive
    st[cb + C_ACT_AT] = best
    st[cb + C_ACT_POS] = best_i
    if best_i >= 0:
        st[cb + C_ACT_CMD] = RD + ((st[buf + C_RBW + best_i] >> RBW_WRITE_SHIFT) & 1)
    src = B_WRITE if wm != 0 else B_READ
    best = NEVER
    best_i = -1
    best_cmd = -1
    buf = cb + src * BUF_STRIDE
    # An entry's command is ACT (closed bank), RD/WR (row hit) or PRE (row conflict), and entries
    # of one bank with the same command are ready at the same cycle, so only the first of them can
    # win: one bit per bank and command class marks the pairs judged already.  (The buffer holds
    # reads only or writes only, so RD and WR never share it.)
    seen_closed_or_conflict = np.uint64(0)
    seen_hit = np.uint64(0)
    for i in range(st[cb + C_HEAD + src], st[cb + C_TAIL + src]):
        rbw = st[buf + C_RBW + i]
        if rbw == DEAD:
            continue
        bank = rbw & RBW_BANK_MASK
        bit = np.uint64(1) << np.uint64(bank)
        open_row = st[cb + C_OPEN + bank]
        if open_row == rbw >> RBW_ROW_SHIFT:
            if seen_hit & bit:
                continue
            seen_hit |= bit
            cmd = RD + ((rbw >> RBW_WRITE_SHIFT) & 1)
        else:
            if seen_closed_or_conflict & bit:
                continue
            seen_closed_or_conflict |= bit
            cmd = ACT if open_row == -1 else PRE
        at = st[cb + C_EFF + cmd * BANKS + bank]
        if at < lo:
            at = lo
        if at < best:
            best = at
            best_i = i
            best_cmd = cmd
            if best == lo:
                break
    st[cb + C_SRC_AT] = best
    st[cb + C_SRC_POS] = best_i
    st[cb + C_SRC_CMD] = best_cmd
    st[cb + C_PLAN_OK] = 1


@inline_jit
def _tick(st, ch, cb, clk):
    """The controller tick at `clk` = the channel's next command event (§6); the ticks before
    it, if any, only settled the write mode or served reads (whose serve cycles are already
    known, see _push_read)."""
    if clk > st[cb + C_CLK] + 1:
        st[cb + C_WM] = st[cb + C_WM_SETTLED]
    st[cb + C_CLK] = clk
    if st[cb + C_ACT_AT] == clk:
        src = B_ACTIVE
        pos = st[cb + C_ACT_POS]
        cmd = st[cb + C_ACT_CMD]
    else:
        st[cb + C_WM] = st[cb + C_WM_SETTLED]
        src = B_WRITE if st[cb + C_WM] != 0 else B_READ
        pos = st[cb + C_SRC_POS]
        cmd = st[cb + C_SRC_CMD]
    buf = cb + src * BUF_STRIDE
    rbw = st[buf + C_RBW + pos]
    bank = rbw & RBW_BANK_MASK
    st[cb + C_PLAN_OK] = 0
    if cmd == PRE:
        # never close a row that a request in the active buffer is waiting for
        active = cb + B_ACTIVE * BUF_STRIDE + C_RBW
        for i in range(st[cb + C_HEAD + B_ACTIVE], st[cb + C_TAIL + B_ACTIVE]):
            a = st[active + i]
            if a != DEAD and a & RBW_BANK_MASK == bank:
                return
    _issue(st, cb, cmd, bank, rbw >> RBW_ROW_SHIFT, clk)
    is_write = (rbw >> RBW_WRITE_SHIFT) & 1
    if cmd == RD + is_write:
        if is_write == 0:
            _push_read(st, ch, cb, clk + READ_LATENCY, clk)
            st[cb + C_QREADS] -= 1
        _remove(st, cb, src, pos)
    elif cmd == ACT and st[cb + C_LEN + B_ACTIVE] < QUEUE_CAPACITY:
        # move to the active buffer (if it is full the request stays where it is)
        addr = st[buf + C_ADDR + pos]
        arrive = st[buf + C_ARRIVE + pos]
        _remove(st, cb, src, pos)
        _append(st, cb, np.int64(B_ACTIVE), addr, rbw, arrive)


@inline_jit
def _send(st, ch, cb, addr, is_write, clk):
    """Offer one 16-byte request to channel `ch`, whose clock is at `clk`.  False = refused."""
    if is_write == 0:
        buf = cb + B_WRITE * BUF_STRIDE
        for i in range(st[cb + C_HEAD + B_WRITE], st[cb + C_TAIL + B_WRITE]):
            if st[buf + C_ADDR + i] == addr and st[buf + C_RBW + i] != DEAD:
                _push_read(st, ch, cb, clk + FORWARD_DELAY, clk)
                return True
    kind = B_WRITE if is_write != 0 else B_READ
    if st[cb + C_LEN + kind] >= QUEUE_CAPACITY:
        return False
    _ch, pc, bg, ba, row, _col = map_address(addr)
    bank = (((pc << BG_BITS) | bg) << BA_BITS) | ba
    _append(st, cb, kind, addr, (row << RBW_ROW_SHIFT) | (is_write << RBW_WRITE_SHIFT) | bank, clk)
    if is_write == 0:
        st[cb + C_QREADS] += 1
    st[cb + C_PLAN_OK] = 0
    return True


@jit
def _run(st, ch, cb, clk, addr, is_write, flags):
    """Drive one channel; the one loop every entry point uses.

    * Runs the channel's ticks up to and including `clk`, skipping those that do nothing: after
      any change (a command issued, a request queued, a veto) `_plan` finds the next cycle at
      which a command can be chosen; the ticks before it can only settle the write mode (which is
      idempotent while the buffer sizes stand still) or serve reads (whose serve cycles are known).
    * Then, if addr >= 0, offers that request at `clk`; if it is refused and `flags` has RETRY,
      offers it again after each following tick that issues a command (only those can make room)
      until it is accepted.  Returns the clk at which it was accepted, or -1 if refused (no RETRY).
    * clk == NEVER with addr < 0 runs the channel until every read queued on it has been issued
      (returns NEVER); so does DRAIN in `flags` once the request has been accepted (the batch's
      last request to this channel: one call instead of two).
    """
    accepted = clk
    while True:
        if st[cb + C_CLK] >= clk:
            if addr < 0:
                _pop_served(st, ch, cb, clk)
                return clk
            if _send(st, ch, cb, addr, is_write, clk):
                if flags & DRAIN == 0:
                    return clk
                accepted = clk
                addr = -1
                clk = NEVER
                continue
            if flags & RETRY == 0:
                return -1
            if st[cb + C_PLAN_OK] == 0:
                _plan(st, cb)
            clk = min(st[cb + C_ACT_AT], st[cb + C_SRC_AT])  # the next tick that can issue
            if clk == NEVER:
                raise ValueError("HBM2 model: a refused request waits for a channel with nothing to issue")
        elif clk == NEVER and st[cb + C_QREADS] == 0:
            return accepted
        if st[cb + C_PLAN_OK] == 0:
            _plan(st, cb)
        at = min(st[cb + C_ACT_AT], st[cb + C_SRC_AT])
        if at > clk:
            st[cb + C_WM] = st[cb + C_WM_SETTLED]
            st[cb + C_CLK] = clk
            _pop_served(st, ch, cb, clk)
        elif at == NEVER:
            raise ValueError("HBM2 model: reads are queued on a channel with nothing to issue")
        else:
            _tick(st, ch, cb, at)


@jit
def _channel_of(addr):
    """map_address(addr)[0]: the channel bits XOR the low column bits (§2)."""
    x = addr >> TX_BITS
    col = (x & ((1 << COLUMN_LOW_BITS) - 1)) | (((x >> (COLUMN_LOW_BITS + CH_BITS + PC_BITS + BG_BITS + BA_BITS))
                                                 & ((1 << COLUMN_HIGH_BITS) - 1)) << COLUMN_LOW_BITS)
    return ((x >> COLUMN_LOW_BITS) ^ col) & ((1 << CH_BITS) - 1)


# ------------------------------------------------------------------------------ mirrored quads
# The 4 transfers of a block go to the 4 channels of one quad (ch0 ^ j, j = 0..3) with the same
# pseudochannel, bank group, bank and row (§2), and the model's entry points (read batches and
# block writes) only ever offer whole blocks.  So the 4 channels of a quad receive the same
# requests (same banks, rows and order; addresses differing in bits 4..5 only, consistently, so
# forwarding matches the same blocks) at the same clocks, and channels that start equal stay
# equal: a refused transfer is refused on all 4 and accepted again at the same tick.  While a
# quad is mirrored (H_MIRRORED) only its channel 0 is run; it stands for 4 in the served count;
# channels 1..3 are written from it when someone looks (state_views) or when a single transfer
# (`send`) is about to make them differ, which ends the mirroring of that quad for good.
@jit
def _is_mirror(st, ch):
    """Channel ch is not run: its quad is mirrored and it is not the quad's channel 0."""
    return ch % QUAD_CHANNELS != 0 and st[H_MIRRORED] >> (ch // QUAD_CHANNELS) & 1 != 0


@jit
def _write_mirrors(st, quad):
    """Write channels 1..3 of a mirrored quad from its channel 0 (the addresses of their queued
    transfers are their own: the block's transfer that goes to each)."""
    rep = quad * QUAD_CHANNELS
    rb = CH_BASE + rep * CH_SIZE
    cap = st[H_SERVE_CAP]
    for ch in range(rep + 1, rep + QUAD_CHANNELS):
        cb = CH_BASE + ch * CH_SIZE
        for i in range(CH_SIZE):
            st[cb + i] = st[rb + i]
        for kind in range(N_BUF_KINDS):
            buf = cb + kind * BUF_STRIDE + C_ADDR
            for i in range(st[cb + C_HEAD + kind], st[cb + C_TAIL + kind]):
                block = st[buf + i] & ~(BLOCK_BYTES - 1)
                j = (_channel_of(block) ^ ch) % QUAD_CHANNELS
                st[buf + i] = block + (j << TX_BITS)
        src = SERVE_BASE + rep * 2 * cap
        dst = SERVE_BASE + ch * 2 * cap
        for i in range(st[cb + C_SLEN]):
            slot = (st[cb + C_SHEAD] + i) % cap
            st[dst + slot] = st[src + slot]
            st[dst + cap + slot] = st[src + cap + slot]


@jit
def synchronise(st):
    """Bring every channel's clock up to next_instant (changes no result; for inspection)."""
    no_request = np.int64(-1)
    for ch in range(N_CH):
        if not _is_mirror(st, ch):
            _run(st, ch, CH_BASE + ch * CH_SIZE, st[H_NEXT], no_request, np.int64(0), np.int64(0))


@jit
def send(st, addr, is_write):
    """Offer one 16-byte request at the current next_instant.  False = refused (queue full)."""
    ch = _channel_of(addr)
    quad = ch // QUAD_CHANNELS
    if st[H_MIRRORED] >> quad & 1:
        # one transfer, not a block: the quad's channels part ways
        _write_mirrors(st, quad)
        st[H_MIRRORED] &= ~(1 << quad)
    w = np.int64(1) if is_write else np.int64(0)
    return _run(st, ch, CH_BASE + ch * CH_SIZE, st[H_NEXT], addr, w, np.int64(0)) >= 0


@jit
def tick_all(st):
    """One memory-system tick at simulated time next_instant.  Returns the reads it served."""
    synchronise(st)
    served = st[H_SERVED]
    st[H_NEXT] += 1
    synchronise(st)
    return st[H_SERVED] - served


# ------------------------------------------------------------------------------ wrapper (§9, §10)
@jit
def _check_usable(st):
    if st[H_MINIMAL] != 0:
        raise ValueError("HBM2 model: this timing state was built for the analytic model")


@jit
def _check_block(addr):
    if addr < 0 or addr & (BLOCK_BYTES - 1) != 0:
        raise ValueError("HBM2 model: block addresses must be non-negative multiples of the block size")


@jit
def _check_batch(block_addrs, n):
    if n > block_addrs.shape[0]:
        raise ValueError("HBM2 model: n is larger than the block address array")
    for b in range(n):
        _check_block(block_addrs[b])


@jit
def hbm2_read_batch(st, now, block_addrs, n):
    """Offer n block reads at `now` (4 transfers each, strictly in order); return the time of the
    tick that fires the last callback (`now` for an empty batch).

    No read is pending when a batch starts, so the first transfer sees the caught-up clock
    max(next_instant, now), and so does every transfer offered with it: the batch's tick runs
    after the whole offer.  A refused transfer holds the read lock: it and the transfers behind
    it are offered again after the tick of each following instant (tick first), i.e. at the clk
    after the tick at which its channel made room.  The batch ends with the tick that serves its
    last read; next_instant is one past it.
    """
    _check_usable(st)
    if n <= 0:
        return now
    _check_batch(block_addrs, n)
    clk = st[H_NEXT]
    if clk < now:
        clk = now   # catch-up: the ticks up to now run lazily, channel by channel
    st[H_NEXT] = clk
    st[H_LAST_SERVE] = -1
    read = np.int64(0)
    flags = np.int64(RETRY)
    mirrored = st[H_MIRRORED]
    for b in range(n):
        block = block_addrs[b]
        if b == n - 1:
            # the last block's transfers go to 4 different channels, each its channel's last
            # transfer of the batch: those channels can finish their share right away
            flags |= DRAIN
        ch0 = _channel_of(block)
        j = 0
        j_end = QUAD_CHANNELS
        if mirrored >> (ch0 // QUAD_CHANNELS) & 1:
            # only the transfer to the quad's channel 0; its twins are accepted when it is
            j = ch0 % QUAD_CHANNELS
            j_end = j + 1
        for j in range(j, j_end):
            ch = ch0 ^ j
            accepted = _run(st, ch, CH_BASE + ch * CH_SIZE, clk, block + (j << TX_BITS), read, flags)
            if accepted != clk:
                clk = accepted
                st[H_NEXT] = clk
    no_request = np.int64(-1)
    for ch in range(N_CH):
        cb = CH_BASE + ch * CH_SIZE
        if st[cb + C_QREADS] > 0 and not _is_mirror(st, ch):
            _run(st, ch, cb, np.int64(NEVER), no_request, read, read)
    st[H_NEXT] = st[H_LAST_SERVE]
    return st[H_LAST_SERVE] - 1


@jit
def hbm2_write_block(st, now, block_addr):
    """Post the 4 write transfers of one block at `now`, retrying each cycle while refused.

    Returns the time the last one was accepted.  Writes never schedule ticks; a refused write
    waits for the catch-up ticks of the following cycles to drain its queue.
    """
    _check_usable(st)
    _check_block(block_addr)
    write = np.int64(1)
    t = now
    for j in range(1 << TX_PER_BLOCK_BITS):
        addr = block_addr + (j << TX_BITS)
        if st[H_NEXT] < t:
            st[H_NEXT] = t
        ch = _channel_of(addr)
        if _is_mirror(st, ch):
            continue
        accepted = _run(st, ch, CH_BASE + ch * CH_SIZE, st[H_NEXT], addr, write, np.int64(RETRY))
        if accepted != st[H_NEXT]:
            t = accepted
            st[H_NEXT] = t
    return t
