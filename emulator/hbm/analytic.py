"""Analytic HBM timing: a closed-form estimate instead of the cycle-exact HBM2 model.

For a batch of block reads issued together at cycle `now`:

    end = now + FIRST_ACCESS + CYCLES_PER_TRANSFER * (max over pseudochannels p of N(p) - 1)

* N(p) is the number of 16-byte transfers of the batch that the HBM2 address mapping
  (MOP4CLXOR, see hbm2.map_address) sends to pseudochannel p (of the 8 x 2): a block's 4
  transfers go to 4 different channels, so N counts how the batch spreads over the device.
* FIRST_ACCESS = nRCD + nCL + nBL = 7 + 7 + 4 = 18 cycles: a read of a closed bank.
* CYCLES_PER_TRANSFER = 2: the RD->RD spacing on one pseudochannel (nBL/2 after the
  reference's patch), so each pseudochannel streams one transfer per 2 cycles.
* An empty batch ends at `now`.

Writes are posted into an unbounded queue: `write_block` returns `now`.  There is no state
between calls: no open rows (row conflicts cost nothing extra), no queue limits, no
write-to-read turnaround and no back-to-back penalty.  The estimate is exact for a lone batch
to closed banks without queueing (e.g. 4 contiguous 64-wide H_PREFETCH_V rows: 32 cycles) and
optimistic otherwise.
"""

from __future__ import annotations

import numpy as np
from emulator.core.jit import jit

from emulator.hbm.hbm2 import ORGANISATION, PC_BITS, TX_BITS, TX_PER_BLOCK_BITS, map_address

FIRST_ACCESS = 7 + 7 + 4     # nRCDRD + nCL + nBL
CYCLES_PER_TRANSFER = 2      # patched nBL/2 RD->RD gap per pseudochannel
# state array: [FIRST_ACCESS, CYCLES_PER_TRANSFER, counts per pseudochannel (scratch)...]
A_FIRST, A_PER_TRANSFER, A_COUNTS = 0, 1, 2


def new_analytic_state() -> np.ndarray:
    n_pc = ORGANISATION["channels"] * ORGANISATION["pseudochannels"]
    st = np.zeros(A_COUNTS + n_pc, dtype=np.int64)
    st[A_FIRST] = FIRST_ACCESS
    st[A_PER_TRANSFER] = CYCLES_PER_TRANSFER
    return st


@jit
def analytic_read_batch(st, now, block_addrs, n):
    """Completion time of n block reads issued at `now` (formula in the module docstring)."""
    if n <= 0:
        return now
    if n > block_addrs.shape[0]:
        raise ValueError("analytic HBM model: n is larger than the block address array")
    st[A_COUNTS:] = 0
    busiest = 0
    for b in range(n):
        for j in range(1 << TX_PER_BLOCK_BITS):
            ch, pc, _bg, _ba, _row, _col = map_address(block_addrs[b] + (j << TX_BITS))
            k = A_COUNTS + (ch << PC_BITS) + pc
            st[k] += 1
            if st[k] > busiest:
                busiest = st[k]
    return now + st[A_FIRST] + st[A_PER_TRANSFER] * (busiest - 1)


@jit
def analytic_write_block(st, now, block_addr):
    """Writes are posted without limit: accepted at `now`."""
    return now
