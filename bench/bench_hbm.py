"""Cost of the HBM timing models: host time per simulated 64-byte block and per DMA instruction.

    python bench/bench_hbm.py [--repeats 7] [--instructions 200]

Each workload issues the block batches of a run of DMA instructions back to back through
`emulator.hbm.timing` (the executor's interface), from an njit driver loop as the executor does,
with addresses built as H_PREFETCH_M/V and H_STORE_V build them (MLEN = VLEN = 64, SCALE region
at 1 MiB).  Reported: median over the repeats of (host time / 64-byte block accesses) and
(host time / instructions), plus simulated cycles per instruction, for the hbm2 and analytic
models; then the cost of one call from Python (what a caller outside numba pays on top).
JIT compilation (or cache loading) is excluded by a warm-up run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emulator.hbm.timing import new_timing_state, read_batch, write_block  # noqa: E402

SCALE_BASE = 1 << 20
DIM = 64


def prefetch_batch(offset: int, rows: int, stride: int) -> list[int]:
    """Per row: the element block(s), then the block holding the row's scales (f32 scale stride)."""
    out = []
    for k in range(rows):
        e = offset + ((k * stride) & 0xFFFFFFFF)
        out.extend(range(e & ~63, e + DIM, 64))
        s = SCALE_BASE + offset // 8 + int(np.float32(k) * (np.float32(stride) / np.float32(8)))
        out.append(s & ~63)
    return out


def store_blocks(offset: int, rows: int, stride: int) -> list[int]:
    """Per row: element blocks then scale blocks, each read-modify-written."""
    out = []
    for k in range(rows):
        e = offset + k * stride
        s = SCALE_BASE + offset // 8 + int(np.float32(k) * (np.float32(stride) / np.float32(8)))
        out.extend(range(e & ~63, e + DIM, 64))
        out.extend(range(s & ~63, s + DIM // 8, 64))
    return out


@njit(cache=True)
def drive_prefetches(ts, blocks, starts):
    """One read_batch per instruction; instruction i reads blocks[starts[i]:starts[i+1]]."""
    t = 0
    for i in range(len(starts) - 1):
        a, b = starts[i], starts[i + 1]
        t = read_batch(ts, t, blocks[a:b], b - a)
    return t


@njit(cache=True)
def drive_stores(ts, blocks, starts):
    """Per block: read it (a batch of one), then post its write."""
    one = np.zeros(1, dtype=np.int64)
    t = 0
    for j in range(starts[-1]):
        one[0] = blocks[j]
        t = read_batch(ts, t, one, 1)
        t = write_block(ts, t, blocks[j])
    return t


WORKLOADS = {
    # name: (kind, rows, stride, offset step per instruction)
    "H_PREFETCH_M contiguous": ("prefetch", 64, DIM, 4096),
    "H_PREFETCH_M stride 4096": ("prefetch", 64, 4096, 64),
    "H_PREFETCH_M stride 128 KiB": ("prefetch", 64, 128 * 1024, 64),   # every access a row conflict
    "H_PREFETCH_V 4 rows": ("prefetch", 4, DIM, 256),
    "H_STORE_V 4 rows": ("store", 4, DIM, 256),
}


def run_workload(model: str, kind: str, rows: int, stride: int, step: int, n_instr: int):
    """Returns (host seconds, 64-byte block accesses, simulated cycles) for n_instr instructions."""
    make = prefetch_batch if kind == "prefetch" else store_blocks
    per_instr = [make(i * step, rows, stride) for i in range(n_instr)]
    blocks = np.array([b for batch in per_instr for b in batch], dtype=np.int64)
    starts = np.cumsum([0] + [len(batch) for batch in per_instr]).astype(np.int64)
    ts = new_timing_state(model)
    drive = drive_prefetches if kind == "prefetch" else drive_stores
    start = time.perf_counter()
    cycles = drive(ts, blocks, starts)
    sec = time.perf_counter() - start
    accesses = len(blocks) if kind == "prefetch" else 2 * len(blocks)  # a store reads and writes
    return sec, accesses, int(cycles)


def python_call_cost(model: str, calls: int = 20000) -> float:
    """Microseconds per read_batch call made from Python (an empty batch: dispatch only)."""
    ts = new_timing_state(model)
    empty = np.zeros(0, dtype=np.int64)
    read_batch(ts, 0, empty, 0)
    start = time.perf_counter()
    for _ in range(calls):
        read_batch(ts, 0, empty, 0)
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--instructions", type=int, default=200)
    args = ap.parse_args()
    print(f"{'workload':30s} {'model':8s} {'ns/block':>10s} {'us/instr':>10s} {'cycles/instr':>13s}")
    for name, (kind, rows, stride, step) in WORKLOADS.items():
        for model in ("hbm2", "analytic"):
            run_workload(model, kind, rows, stride, step, 2)  # JIT / cache warm-up
            per_block, per_instr = [], []
            cycles = 0
            for _ in range(args.repeats):
                sec, blocks, cycles = run_workload(model, kind, rows, stride, step, args.instructions)
                per_block.append(sec / blocks * 1e9)
                per_instr.append(sec / args.instructions * 1e6)
            print(f"{name:30s} {model:8s} {statistics.median(per_block):10.1f} "
                  f"{statistics.median(per_instr):10.2f} {cycles / args.instructions:13.1f}")
    for model in ("hbm2", "analytic"):
        print(f"read_batch called from Python ({model}): {python_call_cost(model):.2f} us per call")


if __name__ == "__main__":
    main()
