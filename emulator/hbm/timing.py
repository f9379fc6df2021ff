"""The HBM timing interface the executor uses: one state object, two models.

`new_timing_state("hbm2" | "analytic")` builds a `TimingState` (a namedtuple of an int and two
flat int64 arrays, usable inside numba).  `read_batch` / `write_block` dispatch on `ts.kind`:

* `read_batch(ts, now, block_addrs, n)`: n 64-byte-aligned block reads (byte addresses, in
  that order, duplicates allowed) all issued at cycle `now`; returns the cycle at which the last
  one completes.  H_PREFETCH_V/M make one call per instruction; H_STORE_V one per block.
* `write_block(ts, now, block_addr)`: posts the writes of one block at `now` and returns the
  cycle the last was accepted (== now while the write queue has room).

Byte counters are the executor's business.  The HBM2 model carries its clock, queues and bank
state across calls, so one state must be used for one program run, with non-decreasing `now`.

Both raise ValueError (from inside numba) on a misaligned or negative block address, on n larger
than the address array, and if a channel's pending-read FIFO outgrows `pending_capacity`.
"""

from __future__ import annotations

from collections import namedtuple

from emulator.core.jit import jit

from emulator.hbm.analytic import analytic_read_batch, analytic_write_block, new_analytic_state
from emulator.hbm.hbm2 import DEFAULT_PENDING_CAPACITY, hbm2_read_batch, hbm2_write_block, new_hbm2_state

KIND_ANALYTIC = 0
KIND_HBM2 = 1
HBM_MODEL_KINDS = {"analytic": KIND_ANALYTIC, "hbm2": KIND_HBM2}

# kind: KIND_*; hbm2: the HBM2 model's state array (hbm2.new_hbm2_state; a minimal stand-in
# when kind is analytic, so that both kinds have the same numba type); analytic: the analytic
# model's array (analytic.new_analytic_state).
TimingState = namedtuple("TimingState", ["kind", "hbm2", "analytic"])

__all__ = [
    "HBM_MODEL_KINDS", "KIND_ANALYTIC", "KIND_HBM2", "TimingState",
    "new_timing_state", "read_batch", "write_block",
]


def new_timing_state(model: str, pending_capacity: int = DEFAULT_PENDING_CAPACITY) -> TimingState:
    """A fresh state for `model` ("hbm2" or "analytic"); the other model's part is a small stand-in."""
    if model not in HBM_MODEL_KINDS:
        raise ValueError(f"unknown HBM timing model {model!r}; expected one of {sorted(HBM_MODEL_KINDS)}")
    kind = HBM_MODEL_KINDS[model]
    hbm2 = new_hbm2_state(pending_capacity=pending_capacity, minimal=kind != KIND_HBM2)
    return TimingState(kind=kind, hbm2=hbm2, analytic=new_analytic_state())


@jit
def read_batch(ts, now, block_addrs, n):
    if ts.kind == KIND_HBM2:
        return hbm2_read_batch(ts.hbm2, now, block_addrs, n)
    return analytic_read_batch(ts.analytic, now, block_addrs, n)


@jit
def write_block(ts, now, block_addr):
    if ts.kind == KIND_HBM2:
        return hbm2_write_block(ts.hbm2, now, block_addr)
    return analytic_write_block(ts.analytic, now, block_addr)
