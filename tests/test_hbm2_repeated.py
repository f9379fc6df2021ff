"""Repeated DMA shapes against the oracle: the HBM2 model (tests/hbm2_oracle.py's replacement)
driven call by call with a few read-batch shapes repeated at bases that move them to other rows,
bank groups and channels, with back-to-back, short, long and "behind" gaps, writes ticked through
right before a batch (its channels drained but their ready cycles and ACT times not yet stale),
posted writes and stores in between, reads forwarded from queued writes, open-row collisions
with the previous batch, and refusals.  This is the traffic of real programs (a tile prefetch
repeated thousands of times), which the random sequences of test_hbm2_differential rarely build.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_hbm2_differential import ROW, SCALE_BASE, prefetch_blocks, run_both

KIB = 1024


def _prefetch(base: int, rows: int, stride: int, dim: int = 64) -> list[int]:
    out = []
    for k in range(rows):
        e = base + k * stride
        out += list(range(e & ~63, e + dim, 64))
        out.append((SCALE_BASE + base // 8 + int(np.float32(k) * (np.float32(stride) / np.float32(8)))) & ~63)
    return out


# Shapes of read batches, each a function of a base that moves the whole batch.
SHAPES = (
    lambda base: _prefetch(base, 4, 64),                                  # H_PREFETCH_V-like
    lambda base: _prefetch(base, 16, 64),
    lambda base: _prefetch(base, 8, 4096),
    lambda base: [base + k * ROW for k in range(5)],                      # row conflicts in one bank
    lambda base: [base + (k % 4) * 4 * KIB + (k // 4) * ROW for k in range(48)],  # refusals (>33 per channel)
    lambda base: [base + 64 * k for k in range(8)] + [base + ROW + 1024 * k for k in range(4)],
)


def repeated_calls(seed: int, n_calls: int):
    """(kind, gap kind, gap, blocks) like test_hbm2_differential.random_calls, with few distinct shapes."""
    rng = np.random.default_rng(seed)
    written: list[int] = []
    for _ in range(n_calls):
        gap_kind = rng.choice(["back_to_back", "short", "medium", "long", "behind"], p=[0.3, 0.2, 0.3, 0.1, 0.1])
        gap = {"back_to_back": 0, "short": int(rng.integers(1, 6)), "medium": int(rng.integers(6, 80)),
               "long": int(rng.integers(3000, 9000)), "behind": 0}[gap_kind]
        # bases that rename to few keys: whole rows, bank / bank-group / channel steps
        base = ROW * int(rng.integers(0, 3)) + 4 * KIB * int(rng.integers(0, 2)) + 512 * int(rng.integers(0, 2))
        what = rng.choice(["read", "store", "write", "forward", "prefetch", "ticks"],
                          p=[0.7, 0.08, 0.07, 0.05, 0.05, 0.05])
        if what == "ticks":
            # drained right before the next call, which starts with recent ready cycles and ACTs
            yield "ticks", "back_to_back", int(rng.integers(9, 16)), [base + 1024 * k for k in range(2)]
        elif what == "read":
            yield "read", gap_kind, gap, SHAPES[int(rng.integers(0, len(SHAPES)))](base)
        elif what == "prefetch":
            yield "read", gap_kind, gap, prefetch_blocks(rng, base)
        elif what == "store":
            blocks = [base + 64 * k for k in range(int(rng.integers(1, 4)))]
            yield "store", gap_kind, gap, blocks
            written += blocks
        elif what == "write":
            blocks = [base + k * ROW for k in range(int(rng.integers(1, 6)))]
            yield "write", gap_kind, gap, blocks
            written += blocks
        else:
            pool = written[-20:] or [0]
            yield "read", gap_kind, gap, [pool[int(i)] for i in rng.integers(0, len(pool), 3)]


@pytest.mark.parametrize("seed", range(8))
def test_repeated_shapes_match_the_oracle(seed):
    run_both(seed, 200, calls_of=repeated_calls)


@pytest.mark.parametrize("seed", range(2))
def test_repeated_shapes_on_all_channels_match_the_oracle(seed):
    """The same with every channel run (no mirrored quads)."""
    run_both(seed, 150, calls_of=repeated_calls, mirror_quads=False)
