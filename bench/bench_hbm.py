"""Cost of the HBM timing models: host time per simulated 64-byte block, the HBM2 model vs its
oracle (tests/hbm2_oracle.py, the tick-by-tick model it replaced) vs the analytic estimate,
measured in one process.

    python bench/bench_hbm.py [--repeats 7] [--instructions 200]

Each workload is a run of DMA instructions issued back to back (or with compute gaps) through
the models' block interface from an njit driver loop, as the executor does, with addresses built
as H_PREFETCH_M/V and H_STORE_V build them (MLEN = VLEN = 64, SCALE region at 1 MiB).  Reported:
the median over the repeats of host time / 64-byte block accesses (a store counts its read and
its write) and the ratio oracle / new, plus simulated cycles per instruction (identical for
the two HBM2 models, which is checked).  JIT compilation is excluded by a warm-up run.  Host
time is the measuring thread's CPU time (time.thread_time: the models run in it), so time spent
descheduled on a shared machine is not counted; the models are interleaved per repeat so that
cache and frequency effects hit them alike.  Compare ratios, not absolute times.
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

from emulator.hbm import hbm2  # noqa: E402
from emulator.hbm.timing import new_timing_state, read_batch, write_block  # noqa: E402
from tests import hbm2_oracle  # noqa: E402

SCALE_BASE = 1 << 20
DIM = 64
OP_READ_BATCH, OP_STORE, OP_IDLE = 0, 1, 2


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


def _make_driver(read_fn, write_fn):
    """An njit loop over a program of DMA operations for one model's read/write functions."""
    @njit
    def drive(state, kinds, starts, idle, blocks):
        """kinds[i]: OP_*; blocks[starts[i]:starts[i+1]] its blocks; idle[i] cycles for OP_IDLE."""
        one = np.zeros(1, dtype=np.int64)
        t = 0
        for i in range(len(kinds)):
            a, b = starts[i], starts[i + 1]
            if kinds[i] == OP_READ_BATCH:
                t = read_fn(state, t, blocks[a:b], b - a)
            elif kinds[i] == OP_STORE:
                for j in range(a, b):  # H_STORE_V: read a block, then post its write
                    one[0] = blocks[j]
                    t = read_fn(state, t, one, 1)
                    t = write_fn(state, t, blocks[j])
            else:
                t += idle[i]
        return t
    return drive


# name: (new state, njit driver); built lazily (each driver compiles on first use)
MODELS = {
    "hbm2": (hbm2.new_hbm2_state, (hbm2.hbm2_read_batch, hbm2.hbm2_write_block)),
    "oracle": (hbm2_oracle.new_hbm2_state, (hbm2_oracle.hbm2_read_batch, hbm2_oracle.hbm2_write_block)),
    "analytic": (lambda: new_timing_state("analytic"), (read_batch, write_block)),
}
_drivers: dict = {}


def _driver(model: str):
    functions = MODELS[model][1]
    if functions not in _drivers:
        _drivers[functions] = _make_driver(*functions)
    return _drivers[functions]


def _instruction(kind: str, rows: int, stride: int, offset: int, rng) -> tuple[int, list[int]]:
    if kind == "prefetch":
        return OP_READ_BATCH, prefetch_batch(offset, rows, stride)
    if kind == "random":
        # a prefetch of 1..64 rows at a random base and stride
        base = 64 * int(rng.integers(0, 1 << 22))
        stride = int(rng.choice([DIM, 128, 4096, 8192, 64 * int(rng.integers(1, 3000))]))
        return OP_READ_BATCH, prefetch_batch(base, int(rng.integers(1, 65)), stride)
    return OP_STORE, store_blocks(offset, rows, stride)


# name: list of (kind, rows, stride, offset step per repetition); one repetition = one "instruction"
# group.  The large program repeats a linear-layer-like tile step: a weight tile, activation rows,
# a compute gap, a store of results.
WORKLOADS = {
    "H_PREFETCH_M contiguous": [("prefetch", 64, DIM, 4096)],
    "H_PREFETCH_M stride 4096": [("prefetch", 64, 4096, 64)],
    "H_PREFETCH_M stride 128 KiB": [("prefetch", 64, 128 * 1024, 64)],   # every access a row conflict
    "H_PREFETCH_V 4 rows": [("prefetch", 4, DIM, 256)],
    "H_STORE_V 4 rows": [("store", 4, DIM, 256)],
    "large program (PM, 4x PV, idle 300, SV)": [
        ("prefetch", 64, DIM, 4096), ("prefetch", 4, DIM, 256), ("prefetch", 4, DIM, 256),
        ("prefetch", 4, DIM, 256), ("prefetch", 4, DIM, 256), ("idle", 300, 0, 0), ("store", 4, DIM, 256)],
    "random prefetches": [("random", 0, 0, 0)],
}


def build_program(steps, n_instr: int):
    """The DMA operations of n_instr repetitions of a workload's steps, as driver arrays."""
    kinds, idle, batches = [], [], []
    rng = np.random.default_rng(0)
    for i in range(n_instr):
        for kind, rows, stride, step in steps:
            if kind == "idle":
                kinds.append(OP_IDLE)
                idle.append(rows)
                batches.append([])
                continue
            op, blocks = _instruction(kind, rows, stride, (i * step) % (1 << 30), rng)
            kinds.append(op)
            idle.append(0)
            batches.append(blocks)
    blocks = np.array([b for batch in batches for b in batch], dtype=np.int64)
    starts = np.cumsum([0] + [len(b) for b in batches]).astype(np.int64)
    accesses = sum(len(b) * (2 if k == OP_STORE else 1) for k, b in zip(kinds, batches))
    return np.array(kinds, dtype=np.int64), starts, np.array(idle, dtype=np.int64), blocks, accesses


def run_program(model: str, program) -> tuple[float, int]:
    """(host seconds, simulated end cycle) of one run of `program` on a fresh model state."""
    kinds, starts, idle, blocks, _ = program
    state = MODELS[model][0]()
    drive = _driver(model)
    start = time.thread_time()
    cycles = drive(state, kinds, starts, idle, blocks)
    elapsed = time.thread_time() - start
    return elapsed, int(cycles)


def run_workload(model: str, name: str, n_instr: int) -> tuple[float, int, int]:
    """Returns (host seconds, 64-byte block accesses, simulated cycles) for n_instr repetitions."""
    program = build_program(WORKLOADS[name], n_instr)
    sec, cycles = run_program(model, program)
    return sec, program[4], cycles


def measure(name: str, models, n_instr: int, repeats: int) -> dict[str, tuple[float, int]]:
    """{model: (median ns per block access, simulated cycles)}; models
    interleaved per repeat so that load changes on the machine hit them alike."""
    program = build_program(WORKLOADS[name], n_instr)
    for model in models:
        run_program(model, build_program(WORKLOADS[name], 2))  # compile / warm up
    times: dict[str, list[float]] = {m: [] for m in models}
    cycles: dict[str, int] = {}
    for _ in range(repeats):
        for model in models:
            sec, cycles[model] = run_program(model, program)
            times[model].append(sec / program[4] * 1e9)
    return {m: (statistics.median(times[m]), cycles[m]) for m in models}


def python_call_cost(model: str, calls: int = 20000) -> float:
    """Microseconds per read_batch call made from Python (an empty batch: dispatch only)."""
    ts = new_timing_state(model)
    empty = np.zeros(0, dtype=np.int64)
    read_batch(ts, 0, empty, 0)
    start = time.thread_time()
    for _ in range(calls):
        read_batch(ts, 0, empty, 0)
    return (time.thread_time() - start) / calls * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--instructions", type=int, default=200, help="repetitions of each workload")
    args = ap.parse_args()
    models = ("hbm2", "oracle", "analytic")
    print(f"{'workload':43s} {'oracle':>8s} {'hbm2':>8s} {'speed-up':>8s} "
          f"{'analytic':>8s} {'cycles/rep':>10s}   (ns of CPU per 64-byte block, medians of {args.repeats})")
    ratios = []
    for name in WORKLOADS:
        got = measure(name, models, args.instructions, args.repeats)
        if got["hbm2"][1] != got["oracle"][1]:
            raise SystemExit(f"{name}: hbm2 and the oracle disagree: {got['hbm2'][1]} vs {got['oracle'][1]} cycles")
        ratio = got["oracle"][0] / got["hbm2"][0]
        ratios.append(ratio)
        print(f"{name:43s} {got['oracle'][0]:8.1f} {got['hbm2'][0]:8.1f} {ratio:7.2f}x "
              f"{got['analytic'][0]:8.1f} {got['hbm2'][1] / args.instructions:10.1f}")
    print(f"HBM2 model vs its oracle, speed-up per block, median over the workloads: "
          f"{statistics.median(ratios):.2f}x (min {min(ratios):.2f}x, max {max(ratios):.2f}x)")
    for model in ("hbm2", "analytic"):
        print(f"read_batch called from Python ({model}): {python_call_cost(model):.2f} us per call")


if __name__ == "__main__":
    main()
