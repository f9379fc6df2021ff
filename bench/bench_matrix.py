"""Matrix kernels against their hardware limit: ns per instruction, ours vs a limit kernel.

    python bench/bench_matrix.py [--repeats 7] [--calls 200]

For each matrix opcode and shape (MLEN 64/128/256, BLEN 4/16) it times the core's kernel
(emulator.core.matrix, called directly as the run loop calls it: address checks, VRAM bf16 ->
f32 loads, the library's summation order, NaN checks, accumulation) and a *limit* kernel doing
the same multiply-adds on operands already converted, laid out contiguously and checked: nothing
but vectorisable f32 multiply-adds over independent accumulators, each in plain k order (the
fastest of an expanded-operand stream, a broadcast-row form and the same four rows at a time).
Plain k order is the cheapest order: the lane and panel orders (LANES4, GEMV, PANELS) add the same
products in other groupings plus a few combining adds, so the limit is a lower bound for them too.
The ratio ours / limit is the figure of merit (target <= 3).  A last line shows what the 128-wide panel split costs at K = 256
(M_MM / M_TMM at MLEN 256, BLEN 16, against the same kernel forced to plain k order).

Times are medians of `--repeats` batches of about `--calls` instructions each (fewer for the big
ones); every repeat times ours and the limit back to back, and the ratio printed is the median of
the per-repeat ratios.  The machines here are shared and noisy: compare the ratios of one run.  Importable: `measure()` returns the rows.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from emulator.core import matrix as mx  # noqa: E402
from emulator.core import state as S  # noqa: E402
from emulator.core.matmul_order import PANELS, SEQUENTIAL  # noqa: E402
from emulator.runner import hardware_params  # noqa: E402
from emulator.settings import default_settings  # noqa: E402

SHAPES = ((64, 4), (64, 16), (128, 4), (128, 16), (256, 4), (256, 16))
HLEN = {64: 16, 128: 16, 256: 64}          # head length per MLEN (BROADCAST_AMOUNT = MLEN / HLEN)
OPS = ("M_MM", "M_TMM", "M_MV", "M_TMV", "M_BMM", "M_BTMM", "M_BTMV")


# ------------------------------------------------------------------------------- limit kernels

@njit(cache=True)
def limit_stream(xe, we, acc, calls):
    """acc[l] += xe[k, l] * we[k, l] in k order: one independent accumulator per SIMD lane."""
    for _ in range(calls):
        for k in range(xe.shape[0]):
            for lane in range(acc.shape[0]):
                acc[lane] = acc[lane] + xe[k, lane] * we[k, lane]


@njit(cache=True)
def limit_rows(x, w, acc, calls):
    """acc[i, n] += x[i, k] * w[k, n] in k order: a broadcast x times a contiguous w row."""
    for _ in range(calls):
        for i in range(acc.shape[0]):
            for k in range(w.shape[0]):
                xv = x[i, k]
                for n in range(acc.shape[1]):
                    acc[i, n] = acc[i, n] + xv * w[k, n]


@njit(cache=True)
def limit_rows4(x, w, acc, calls):
    """As limit_rows, four rows at a time: each w row is loaded once for four accumulator rows."""
    for _ in range(calls):
        for i in range(0, acc.shape[0] - 3, 4):
            for k in range(w.shape[0]):
                x0 = x[i, k]
                x1 = x[i + 1, k]
                x2 = x[i + 2, k]
                x3 = x[i + 3, k]
                for n in range(acc.shape[1]):
                    wv = w[k, n]
                    acc[i, n] = acc[i, n] + x0 * wv
                    acc[i + 1, n] = acc[i + 1, n] + x1 * wv
                    acc[i + 2, n] = acc[i + 2, n] + x2 * wv
                    acc[i + 3, n] = acc[i + 3, n] + x3 * wv


def limit_forms(outputs: int, k: int, rows: int):
    """The limit kernels for `outputs` independent dot products of length k (`rows` x outputs/rows),
    as functions of a call count, on operands already converted and laid out."""
    rng = np.random.default_rng(0)
    xe = rng.standard_normal((k, outputs)).astype(np.float32)
    we = rng.standard_normal((k, outputs)).astype(np.float32)
    acc = np.zeros(outputs, np.float32)
    x = rng.standard_normal((rows, k)).astype(np.float32)
    w = rng.standard_normal((k, outputs // rows)).astype(np.float32)
    acc2 = np.zeros((rows, outputs // rows), np.float32)
    forms = [lambda c: limit_stream(xe, we, acc, c), lambda c: limit_rows(x, w, acc2, c)]
    if rows % 4 == 0:
        forms.append(lambda c: limit_rows4(x, w, acc2, c))
    return forms


def _ns(fn, calls: int) -> float:
    t0 = time.perf_counter()
    fn(calls)
    return (time.perf_counter() - t0) / calls * 1e9


def compare(ours, limits, calls: int, repeats: int) -> tuple[float, float, float]:
    """(median ns of ours, median ns of the limit, median of the per-repeat ratios).  Each repeat
    times ours and every limit form back to back (the limit is the fastest form), so a load spike
    on this shared machine hits both sides of a ratio alike."""
    for fn in (ours, *limits):
        fn(1)                                        # compile / warm
    ours_t, limit_t, ratios = [], [], []
    for _ in range(repeats):
        o = _ns(ours, calls)
        lim = min(_ns(fn, calls) for fn in limits)
        ours_t.append(o)
        limit_t.append(lim)
        ratios.append(o / lim)
    return statistics.median(ours_t), statistics.median(limit_t), statistics.median(ratios)


# ------------------------------------------------------------------------------- our kernels

@dataclass
class Machine:
    params: np.ndarray
    vram: np.ndarray
    mram: np.ndarray
    macc: np.ndarray
    vacc: np.ndarray
    hmacc: np.ndarray
    hvacc: np.ndarray
    scratch: np.ndarray
    err: np.ndarray


def machine(mlen: int, blen: int) -> Machine:
    h = HLEN[mlen]
    settings = default_settings().with_overrides(
        {"MLEN": mlen, "VLEN": mlen, "BLEN": blen, "HLEN": h, "BROADCAST_AMOUNT": mlen // h})
    params = hardware_params(settings)
    rng = np.random.default_rng(1)
    rows = mlen
    params[S.P_VRAM_DEPTH] = rows
    vram = (rng.integers(0x3C00, 0x4100, (rows, mlen)) | (rng.integers(0, 2, (rows, mlen)) << 15)).astype(np.uint16)
    mram = rng.standard_normal((2, mlen * mlen)).astype(np.float32)
    params[S.P_MRAM_TILES] = 2
    a = mlen // h
    return Machine(params, vram, mram, np.zeros((blen, blen), np.float32), np.zeros(blen, np.float32),
                   np.zeros((a, mlen, mlen), np.float32), np.zeros((a, mlen), np.float32),
                   np.zeros(mx.scratch_shape(mlen, mlen), np.float32), np.zeros(S.ERR_SIZE, np.int64))


@njit(cache=True)
def _run_op(op, mm, calls, vram, mram, macc, vacc, hmacc, hvacc, params, scratch, err):
    ok = True
    for _ in range(calls):
        if op == 0:
            ok = mx.m_mm(False, mm, 0, vram, mram, macc, params, scratch, err, 0)
        elif op == 1:
            ok = mx.m_mm(True, mm, 0, vram, mram, macc, params, scratch, err, 0)
        elif op == 2:
            ok = mx.m_mv(False, mm, 0, vram, mram, vacc, params, scratch, err, 0)
        elif op == 3:
            ok = mx.m_mv(True, mm, 0, vram, mram, vacc, params, scratch, err, 0)
        elif op == 4:
            ok = mx.m_bmm(mm, 0, vram, mram, hmacc, params, scratch, err, 0)
        elif op == 5:
            ok = mx.m_btmm(mm, 0, vram, mram, hmacc, params, scratch, err, 0)
        else:
            ok = mx.m_bmv(True, mm, 0, vram, mram, hvacc, params, scratch, err, 0)
    return ok


def op_call(name: str, mach: Machine):
    code = OPS.index(name)
    m = int(mach.params[S.P_MLEN])
    h = int(mach.params[S.P_HLEN])
    b = int(mach.params[S.P_BLEN])
    # a valid matrix address in tile 1: column block 1 (M_MM/M_TMM), column B (M_MV), head 1 (broadcast ops)
    addr = m * m + {"M_MM": b * m, "M_TMM": b * m, "M_MV": b, "M_TMV": 0}.get(name, h)

    def call(c: int) -> None:
        assert _run_op(code, addr, c, mach.vram, mach.mram, mach.macc, mach.vacc, mach.hmacc, mach.hvacc,
                       mach.params, mach.scratch, mach.err), mach.err
    return call


def work(name: str, mlen: int, blen: int) -> tuple[int, int, int]:
    """(independent outputs, K, rows of the broadcast form) of one instruction."""
    h = HLEN[mlen]
    a = mlen // h
    return {"M_MM": (blen * blen, mlen, blen), "M_TMM": (blen * blen, mlen, blen), "M_MV": (blen, mlen, 1),
            "M_TMV": (blen, mlen, 1), "M_BMM": (a * mlen * mlen, h, a * mlen),
            "M_BTMM": (a * mlen * mlen, h, a * mlen), "M_BTMV": (a * mlen, h, a)}[name]


def measure(calls: int = 200, repeats: int = 7, ops=OPS, shapes=SHAPES) -> list[dict]:
    rows = []
    for mlen, blen in shapes:
        mach = machine(mlen, blen)
        for name in ops:
            outputs, k, brows = work(name, mlen, blen)
            n_calls = max(1, calls * 4096 // (outputs * k) if outputs * k > 4096 else calls)
            ours, limit, ratio = compare(op_call(name, mach), limit_forms(outputs, k, brows), n_calls, repeats)
            rows.append({"op": name, "mlen": mlen, "blen": blen, "macs": outputs * k,
                         "ours_ns": ours, "limit_ns": limit, "ratio": ratio})
    return rows


def panel_split_cost(calls: int = 200, repeats: int = 7) -> list[dict]:
    """M_MM / M_TMM at MLEN 256, BLEN 16 (K = 256): panel order vs the same kernel in k order."""
    out = []
    mach = machine(256, 16)
    for name, slot in (("M_MM", S.P_MM_ORDER), ("M_TMM", S.P_TMM_ORDER)):
        plain_mach = machine(256, 16)
        plain_mach.params[slot] = SEQUENTIAL
        panels, plain, ratio = compare(op_call(name, mach), [op_call(name, plain_mach)], calls, repeats)
        out.append({"op": name, "panels_ns": panels, "k_order_ns": plain, "ratio": ratio})
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--calls", type=int, default=200)
    args = ap.parse_args(argv)
    print(f"{'op':8} {'MLEN':>5} {'BLEN':>5} {'MACs':>9} {'ours ns':>10} {'limit ns':>10} {'ours/limit':>10}")
    for r in measure(args.calls, args.repeats):
        print(f"{r['op']:8} {r['mlen']:5d} {r['blen']:5d} {r['macs']:9d} {r['ours_ns']:10.0f} "
              f"{r['limit_ns']:10.0f} {r['ratio']:10.2f}")
    for r in panel_split_cost(args.calls, args.repeats):
        print(f"K=256 panel split, {r['op']} MLEN 256 BLEN 16: {r['panels_ns']:.0f} ns vs {r['k_order_ns']:.0f} ns "
              f"in plain k order (x{r['ratio']:.2f})")


if __name__ == "__main__":
    main()
