"""Bit-exact number formats of the reference, as small jitted kernels.

Tested against ml_dtypes / plain numpy oracles in tests/test_numerics.py.  References:
matrix-vector-machines.md §2.1 (the VRAM bf16 cast and its NaN quirk), scalar-control §2.3
(half::bf16::from_f32 for FP registers), hbm-dma-mx-formats.md §2.2-2.4 (E4M3 / E8M0 decode and
the store-side quantiser), verified-corrections.md A3 and D3 (V_RED_SUM order and NaN choice),
A5/A6 (NaN payloads).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .jit import jit, jit_alloc
from .simd import vadd, vload_bf16, vstore, vzero

F32_ONE_E_MINUS_9 = np.float32(1e-9)


# Bit casts between f32 and u32 as one register move.  (A one-element array viewed as the other
# type gives the same bits but allocates and reference-counts two objects per call: measured as
# most of the time of a scalar FP instruction.)
@intrinsic
def _f32_as_u32(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.uint32(types.float32), codegen


@intrinsic
def _u32_as_f32(typingctx, u):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.uint32), codegen


@jit
def f32_bits(x):
    return np.int64(_f32_as_u32(np.float32(x)))


@jit
def f32_from_bits(u):
    return _u32_as_f32(np.uint32(u & 0xFFFFFFFF))


@jit
def bf16_to_f32(h):
    """bf16 bits -> f32 (exact)."""
    return f32_from_bits(np.int64(h) << 16)


@jit
def bf16_bits_from_f32_bits(u):
    """The reference's generic FpType cast used for every VRAM write and the MRAM dump.

    Round-to-nearest-even on the mantissa; a carry saturates the exponent.  Identical to the
    usual RNE for non-NaN input; a NaN's payload is rounded like a mantissa (so it can become inf).
    """
    sign = (u >> 31) & 1
    e = (u >> 23) & 0xFF
    m = u & 0x7FFFFF
    keep = m >> 16
    guard = (m >> 15) & 1
    if guard == 1 and ((m & 0x7FFF) != 0 or (keep & 1) == 1):
        keep += 1
    if keep == 0x80:
        keep = 0
        e = min(e + 1, 255)
    return np.uint16((sign << 15) | (e << 7) | keep)


@jit
def f32_row_to_bf16(src, dst):
    """dst[i] = VRAM cast of src[i] (f32 row -> bf16 bits row): `bf16_bits_from_f32_bits`
    branch-free, so the lanes run side by side (SIMD).  The magnitude rounds to nearest even by
    the usual integer add (a carry runs into the exponent by itself); only a NaN whose payload
    carries out reaches 0x8000, which the subtraction turns into the saturated 0x7F80 (inf)."""
    bits = src.view(np.uint32)
    for i in range(src.shape[0]):
        u = bits[i]
        mag = u & np.uint32(0x7FFFFFFF)
        r = (mag + np.uint32(0x7FFF) + ((mag >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
        r = r - ((r >> np.uint32(15)) << np.uint32(7))
        dst[i] = ((u >> np.uint32(16)) & np.uint32(0x8000)) | r


@jit
def bf16_row_to_f32(src, dst):
    """dst[i] = exact f32 of bf16 bits src[i]."""
    bits = dst.view(np.uint32)
    for i in range(src.shape[0]):
        bits[i] = np.uint32(src[i]) << np.uint32(16)


@jit
def f32_to_bf16_reg(x):
    """half::bf16::from_f32: RNE, NaN -> (bits >> 16) | 0x0040 (quiet, payload kept)."""
    u = f32_bits(x)
    if (u & 0x7F800000) == 0x7F800000 and (u & 0x7FFFFF) != 0:
        return np.uint16(((u >> 16) | 0x0040) & 0xFFFF)
    return np.uint16(((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF)


@jit
def quiet(x):
    """The NaN x86 arithmetic returns for a NaN operand: same sign and payload, quiet bit set."""
    return f32_from_bits(f32_bits(x) | 0x400000)


@jit
def exp_f32(x):
    """expf as the reference computes it (matches f64 exp rounded to f32 on every tested input)."""
    return np.float32(math.exp(np.float64(x)))


@jit
def log2_floor_f32(t):
    """floor(log2_f32(t)) as a saturating i32 cast (inf -> i32::MAX, NaN -> 0).

    A correctly rounded f32 log2 is what the reference's libm gives on these inputs; computing it
    in f64 and rounding to f32 reproduces that rounding (which matters only just below a power of 2).
    """
    if math.isnan(t):
        return np.int64(0)
    if math.isinf(t):
        return np.int64(2147483647) if t > 0 else np.int64(-2147483648)
    if t <= 0:
        return np.int64(-2147483648)  # log2(0) = -inf
    return np.int64(math.floor(np.float32(math.log2(np.float64(t)))))


@jit
def pow2_f32(e):
    return np.float32(math.ldexp(1.0, e))


@jit
def hw_round(x):
    """The quantiser's HWROUND: keep 2 fraction bits (truncate), then ties-to-even; u32 saturating."""
    t = np.float32(math.floor(np.float32(x * np.float32(4.0)))) / np.float32(4.0)
    fl = np.float32(math.floor(t)) if not math.isnan(t) and not math.isinf(t) else t
    fr = t - fl
    if math.isnan(fl) or fl < 0:
        base = np.int64(0)
    elif fl >= 4294967295.0:
        base = np.int64(4294967295)
    else:
        base = np.int64(fl)
    if fr > 0.5:
        return (base + 1) & 0xFFFFFFFF
    if fr < 0.5:
        return base
    return base if base % 2 == 0 else (base + 1) & 0xFFFFFFFF


@jit
def e4m3_encode(y):
    """minifloat_ieee_quantize_hardware for E4M3 (bias 7): no carry into the exponent."""
    if y == 0.0:
        return np.uint8(0)
    s = 1 if y < 0.0 else 0
    a = np.float32(abs(y))
    e = log2_floor_f32(np.float32(a + F32_ONE_E_MINUS_9))
    ovf = e > 7
    e = min(max(e, -7), 7)
    mant = np.float32(a / pow2_f32(e))
    if e != -7:
        q = hw_round(np.float32((mant - np.float32(1.0)) * np.float32(8.0)))
    else:
        q = hw_round(np.float32(mant * np.float32(8.0)))
    q = min(max(q, 0), 7)
    if ovf:
        q = 7
    return np.uint8((s << 7) | ((e + 7) << 3) | q)


@jit
def mx_quantize_row(vals, elem_out, scale_out, block):
    """H_STORE_V's quantiser (Rust QuantTensor::into_bytes) for one row of f32 values."""
    n = vals.shape[0]
    nb = n // block
    for b in range(nb):
        max_abs = np.float32(0.0)
        for i in range(block):
            v = abs(vals[b * block + i])
            if v > max_abs:  # f32::max ignores NaN
                max_abs = v
        if max_abs == 0.0:
            scale_out[b] = 0
            for i in range(block):
                elem_out[b * block + i] = 0
            continue
        e = log2_floor_f32(np.float32(max_abs + F32_ONE_E_MINUS_9))
        e = min(max(e, -127), 127)
        scale_out[b] = np.uint8(e + 127)
        p = pow2_f32(e)
        for i in range(block):
            x = vals[b * block + i]
            y = np.float32(0.0) if x == 0.0 else np.float32(x / p)
            elem_out[b * block + i] = e4m3_encode(y)


def e4m3_decode_table() -> np.ndarray:
    """f32 value of every E4M3 code as the emulator decodes it (hbm-dma-mx-formats.md §2.2).

    Subnormals are (m/8)*2^-7 (not IEEE's 2^-6), there is no OCP "FN" handling (0x78 = +inf),
    and NaN codes keep a payload: f32 bits sign | 0x7F800000 | m << 20 (verified-corrections A6).
    """
    codes = np.arange(256, dtype=np.uint32)
    sign, e, m = codes >> 7, (codes >> 3) & 0xF, codes & 0x7
    mag = np.where(e == 0, m / 8.0 * 2.0 ** -7, (1 + m / 8.0) * np.exp2(e.astype(np.float64) - 7))
    mag = np.where(e == 15, np.inf, mag)
    bits = np.where(sign == 1, -mag, mag).astype(np.float32).view(np.uint32)
    nan_bits = (sign << 31) | 0x7F800000 | (m << 20)
    return np.where((e == 15) & (m != 0), nan_bits, bits).astype(np.uint32).view(np.float32)


def e8m0_decode_table() -> np.ndarray:
    """f32 value of every E8M0 scale byte: 0 -> 0.0 (not 2^-127), 255 -> +inf, else 2^(b-127)."""
    vals = np.exp2(np.arange(256, dtype=np.float64) - 127)
    vals[0], vals[255] = 0.0, np.inf
    return vals.astype(np.float32)


@jit
def first_nan(a, b):
    """The NaN x86 arithmetic returns when a or b is NaN: the first NaN operand, quieted."""
    return quiet(a) if math.isnan(a) else quiet(b)


@jit
def add_nan_first(a, b):
    """a + b with x86 NaN propagation made explicit: the first NaN operand wins, quieted.

    (A plain `a + b` lets the compiler commute the operands, which changes which NaN survives.)
    """
    if math.isnan(a) or math.isnan(b):
        return first_nan(a, b)
    return np.float32(a + b)


@jit
def add_nan_second(a, b):
    """a + b where the second NaN operand wins, quieted: the reference's elementwise VV kernels
    and its in-place accumulator adds (verified-corrections A5)."""
    return add_nan_first(b, a)


@jit
def sub_nan_first(a, b):
    """a - b where the first NaN operand wins, quieted."""
    if math.isnan(a) or math.isnan(b):
        return first_nan(a, b)
    return np.float32(a - b)


@jit
def mul_nan_first(a, b):
    """a * b where the first NaN operand wins, quieted (x86 scalar rule, operand order explicit)."""
    if math.isnan(a) or math.isnan(b):
        return first_nan(a, b)
    return np.float32(a * b)


@jit
def vec_sum_f32_into(x, start, n, acc):
    """torch.sum's order on a contiguous f32 row, NaN choice included (verified-corrections A3, D3);
    `acc` is f32 scratch of >= 32 (the four 8-lane accumulators, acc[8*a + lane]).

    Vectors of 8 lanes go round-robin into 4 accumulators that start at 0; the accumulators are
    combined ((a0 + a1) + a2) + a3 lane-wise, then the 8 lanes are added sequentially from 0.
    Verified for 64 and 16 lanes; a tail shorter than 8 lanes is added sequentially at the end
    (unverified).  NaN choice (D3): in the vertical adds and the accumulator combination the
    accumulated (left) operand's NaN wins; in the final lane sum the later lane's NaN wins.
    """
    for j in range(32):
        acc[j] = 0.0
    nvec = n // 8
    for v in range(nvec):
        a = v % 4
        for lane in range(8):
            acc[8 * a + lane] = add_nan_first(acc[8 * a + lane], x[start + v * 8 + lane])
    total = np.float32(0.0)
    for lane in range(8):
        s = add_nan_first(add_nan_first(add_nan_first(acc[lane], acc[8 + lane]), acc[16 + lane]), acc[24 + lane])
        total = add_nan_second(total, s)
    for i in range(nvec * 8, n):
        total = add_nan_second(total, x[start + i])
    return total


@jit_alloc
def vec_sum_f32(x, start, n):
    """`vec_sum_f32_into` with scratch of its own (for tests and callers without scratch)."""
    return vec_sum_f32_into(x, start, n, np.zeros(32, dtype=np.float32))


@jit
def _slot_total(acc):
    """The four accumulators' 8 lanes combined as torch.sum does (vec_sum_f32_into, plain adds)."""
    total = np.float32(0.0)
    for lane in range(8):
        total = total + (((acc[lane] + acc[8 + lane]) + acc[16 + lane]) + acc[24 + lane])
    return total


@jit
def row_sum_f32(x, start, n, acc):
    """vec_sum_f32 at SIMD speed, same bits: its order with plain f32 adds, NaN results redone by
    vec_sum_f32_into (which picks the NaN; without NaN operands every NaN is the one default NaN).

    Vector v's lane l goes to accumulator v % 4, i.e. element i to slot i % 32 of `acc` (f32
    scratch of >= 32), so the vertical adds run over 32 contiguous slots at a time.
    """
    body = n - n % 8
    rounds = body - body % 32
    for j in range(32):
        acc[j] = 0.0
    for c in range(start, start + rounds, 32):
        for j in range(32):
            acc[j] = acc[j] + x[c + j]
    for j in range(body - rounds):          # the last 1..3 vectors: accumulators 0..
        acc[j] = acc[j] + x[start + rounds + j]
    total = _slot_total(acc)
    for i in range(start + body, start + n):
        total = total + x[i]
    if math.isnan(total):
        return vec_sum_f32_into(x, start, n, acc)
    return total


@jit
def row_sum_bf16(bits, n, row, acc):
    """`row_sum_f32` of the bf16 row `bits[:n]` (the VRAM row itself), its 32 slots two 16-lane
    registers for the rounds of 32 (simd.py), the bf16 -> f32 widening inside the loads.  A NaN
    result is redone by `row_sum_f32` on the row widened into `row` (f32 scratch of >= n)."""
    body = n - n % 8
    rounds = body - body % 32
    a0 = vzero()
    a1 = a0
    for c in range(0, rounds, 32):
        a0 = vadd(a0, vload_bf16(bits, c))
        a1 = vadd(a1, vload_bf16(bits, c + 16))
    vstore(acc, 0, a0)
    vstore(acc, 16, a1)
    for j in range(body - rounds):          # the last 1..3 vectors: accumulators 0..
        acc[j] = acc[j] + bf16_to_f32(bits[rounds + j])
    total = _slot_total(acc)
    for i in range(body, n):
        total = total + bf16_to_f32(bits[i])
    if math.isnan(total):
        bf16_row_to_f32(bits[:n], row[:n])
        return row_sum_f32(row, np.int64(0), n, acc)
    return total


@jit
def fmax_num(a, b):
    """IEEE maxNum as Rust's f32::max: a NaN operand is ignored."""
    if math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return a if a >= b else b
