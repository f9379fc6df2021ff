"""The bit-exact number-format kernels of emulator.core.numerics, called directly (they are numba
functions callable from Python), against ml_dtypes / plain-numpy oracles and the examples pinned
in hbm-dma-mx-formats.md §2 and verified-corrections.md."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

from emulator.core import numerics as nx
from tests import oracle

RNG_SEED = 20240601


def f32_from_bits(bits) -> np.ndarray:
    return np.asarray(bits, dtype=np.uint32).view(np.float32)


def random_non_nan_f32_bits(rng: np.random.Generator, n: int) -> np.ndarray:
    bits = rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)
    bits = bits[~np.isnan(bits.view(np.float32))]
    # make sure the edges are in: ±0, ±inf, the largest finite values, subnormals, rounding ties
    edges = np.array([0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7F7FFFFF, 0xFF7FFFFF,
                      0x7F7F8000, 0x7F7F7FFF, 0x00000001, 0x807FFFFF, 0x3F808000, 0x3F818000,
                      0x3F808001, 0x3F80FFFF], dtype=np.uint32)
    return np.concatenate([bits, edges])


# ------------------------------------------------------------------------------ f32 -> bf16

def test_vram_cast_equals_ml_dtypes_rne_on_random_non_nan_bit_patterns():
    bits = random_non_nan_f32_bits(np.random.default_rng(RNG_SEED), 200_000)
    got = np.zeros(bits.size, dtype=np.uint16)
    nx.f32_row_to_bf16(f32_from_bits(bits), got)
    expected = f32_from_bits(bits).astype(ml_dtypes.bfloat16).view(np.uint16)
    bad = np.nonzero(got != expected)[0]
    assert bad.size == 0, [(hex(bits[i]), hex(got[i]), hex(expected[i])) for i in bad[:5]]


def test_vram_cast_scalar_kernel_agrees_with_the_row_kernel():
    bits = random_non_nan_f32_bits(np.random.default_rng(RNG_SEED + 1), 3000)
    row = np.zeros(bits.size, dtype=np.uint16)
    nx.f32_row_to_bf16(f32_from_bits(bits), row)
    assert [int(nx.bf16_bits_from_f32_bits(int(b))) for b in bits] == row.tolist()


@pytest.mark.parametrize("f32_bits, bf16_bits", [
    (0x7FFFFFFF, 0x7F80),   # payload rounds up past 0x7F: the carry saturates into +inf
    (0x7F800001, 0x7F80),   # payload only in the low 16 bits: rounds away, leaving +inf
    (0xFF800001, 0xFF80),
    (0xFFFFFFFF, 0xFF80),
    (0x7FC00000, 0x7FC0),   # ordinary quiet NaN stays NaN
    (0xFFC00000, 0xFFC0),   # x86 default NaN
    (0x7F810000, 0x7F81),   # signalling NaN: not quieted
])
def test_vram_cast_nan_quirk(f32_bits, bf16_bits):
    assert int(nx.bf16_bits_from_f32_bits(f32_bits)) == bf16_bits
    row = np.zeros(1, dtype=np.uint16)
    nx.f32_row_to_bf16(f32_from_bits([f32_bits]), row)
    assert int(row[0]) == bf16_bits


def test_register_cast_equals_ml_dtypes_rne_on_random_non_nan_values():
    bits = random_non_nan_f32_bits(np.random.default_rng(RNG_SEED + 2), 4000)
    values = f32_from_bits(bits)
    got = [int(nx.f32_to_bf16_reg(v)) for v in values]
    assert got == values.astype(ml_dtypes.bfloat16).view(np.uint16).tolist()


@pytest.mark.parametrize("f32_bits", [0x7FC00000, 0xFFC00000, 0x7FC12345, 0xFFE54321, 0x7F800001,
                                      0x7FFFFFFF, 0xFF812345])
def test_register_cast_quiets_nan_and_keeps_sign_and_top_payload(f32_bits):
    # half::bf16::from_f32: (bits >> 16) | 0x0040 -- never inf, unlike the VRAM cast
    got = int(nx.f32_to_bf16_reg(f32_from_bits([f32_bits])[0]))
    assert got == oracle.reg_bf16_bits(f32_from_bits([f32_bits])[0])
    assert got == ((f32_bits >> 16) | 0x0040) & 0xFFFF
    assert (got & 0x7F80) == 0x7F80 and (got & 0x7F) != 0        # still a NaN


# ------------------------------------------------------------------------------ MX decode

def test_e4m3_table_equals_ml_dtypes_on_normals_inf_and_nan():
    table = nx.e4m3_decode_table()
    ml = np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e4m3).astype(np.float32)
    exp_field = (np.arange(256) >> 3) & 0xF
    normal = (exp_field >= 1) & (exp_field <= 14)
    assert np.array_equal(table[normal].view(np.uint32), ml[normal].view(np.uint32))
    for code in (0x78, 0xF8):
        assert table[code] == ml[code] and np.isinf(table[code])
    nan_codes = np.nonzero((exp_field == 15) & ((np.arange(256) & 7) != 0))[0]
    assert np.isnan(table[nan_codes]).all() and np.isnan(ml[nan_codes]).all()


def test_e4m3_table_nan_codes_keep_sign_and_payload():
    table = nx.e4m3_decode_table().view(np.uint32)
    for code in range(256):
        if (code >> 3) & 0xF == 15 and code & 7:
            assert table[code] == ((code >> 7) << 31) | 0x7F800000 | ((code & 7) << 20), hex(code)


def test_e4m3_table_subnormals_are_half_of_ieee():
    # The reference decodes exponent field 0 as (m/8)·2^-7; IEEE/OCP (and ml_dtypes) use 2^-6.
    table = nx.e4m3_decode_table()
    ml = np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e4m3).astype(np.float32)
    sub = [c for c in range(256) if (c >> 3) & 0xF == 0]
    assert np.array_equal(table[sub] * np.float32(2), ml[sub])
    assert table[0x00].view(np.uint32) == 0 and table[0x80].view(np.uint32) == 0x80000000   # ±0
    assert table[0x01] == 2.0 ** -10 and table[0x07] == np.float32(0.0068359375)


def test_e4m3_table_equals_the_oracle_decode():
    table = nx.e4m3_decode_table()
    finite = ~np.isnan(oracle.E4M3)
    assert np.array_equal(table[finite].view(np.uint32), oracle.E4M3[finite].view(np.uint32))


def test_e8m0_table():
    table = nx.e8m0_decode_table()
    ml = np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e8m0fnu).astype(np.float32)
    assert np.array_equal(table[1:255].view(np.uint32), ml[1:255].view(np.uint32))
    # Where the reference differs from OCP E8M0: byte 0 is 0.0 (not 2^-127), byte 255 is +inf (not NaN).
    assert table[0] == 0.0 and not np.signbit(table[0])
    assert table[255] == np.inf
    assert np.array_equal(table.view(np.uint32), oracle.E8M0.view(np.uint32))


# ------------------------------------------------------------------------------ store quantiser

def quantize(values, block: int = 8) -> tuple[list[int], list[int]]:
    vals = np.asarray(values, dtype=np.float32)
    elems = np.zeros(vals.size, dtype=np.uint8)
    scales = np.zeros(vals.size // block + 1, dtype=np.uint8)
    nx.mx_quantize_row(vals, elems, scales, block)
    return elems.tolist(), scales[: vals.size // block].tolist()


@pytest.mark.parametrize("value, code", [
    (1.0625, 0x38),       # (m-1)*8 = 0.5: a tie, to even
    (1.0859375, 0x38),    # 0.6875 truncates to 0.5 first, then the tie goes to even
    (1.1875, 0x3A),       # 1.5 -> 2
    (1.328125, 0x3A),     # 2.625 truncates to 2.5 -> 2
    (1.96875, 0x3F),      # 7.75 -> 8 saturates at 7: no carry into the exponent
    (1.0, 0x38),
    (-1.5, 0xBC),
])
def test_store_quantiser_pinned_element_examples(value, code):
    elems, scales = quantize([value] + [0.0] * 7)
    assert scales == [127]                # block max in [1, 2): scale 2^0
    assert elems == [code] + [0] * 7


def test_store_quantiser_block_of_four_example():
    elems, scales = quantize([0.5, 1.0, 2.0, 4.0], block=4)
    assert elems == [0x20, 0x28, 0x30, 0x38] and scales == [129]


def test_store_quantiser_special_blocks():
    # zero block -> scale 0 and zero elements (the image writer would write scale 97)
    assert quantize([0.0] * 8) == ([0] * 8, [0])
    assert quantize([-0.0] * 8) == ([0] * 8, [0])
    # a NaN is skipped by the block max and encodes as 0x38
    elems, scales = quantize([np.nan, 1.0, 0.5, 0, 0, 0, 0, 0])
    assert elems[0] == 0x38 and elems[1:3] == [0x38, 0x30] and scales == [127]
    # an inf block: E clamps to 127, the inf element saturates to 0x77
    elems, scales = quantize([np.inf, 1.0, 0, 0, 0, 0, 0, -np.inf])
    assert scales == [254] and elems[0] == 0x77 and elems[7] == 0xF7
    # a negative value that rounds to zero magnitude keeps its sign: 0x80
    elems, scales = quantize([1.0, -2.0 ** -12, 0, 0, 0, 0, 0, 0])
    assert elems[:2] == [0x38, 0x80] and scales == [127]


def test_store_quantiser_equals_the_oracle_on_random_rows():
    rng = np.random.default_rng(RNG_SEED + 3)
    n_rows = 300
    mant = 1 + rng.integers(0, 128, (n_rows, 64)) / 128
    expo = rng.integers(-40, 20, (n_rows, 64)) + rng.integers(-30, 30, (n_rows, 1))
    sign = rng.choice([-1.0, 1.0], (n_rows, 64))
    rows = (sign * mant * np.exp2(expo.astype(np.float64))).astype(ml_dtypes.bfloat16).astype(np.float32)
    rows[rng.random(rows.shape) < 0.1] = 0.0
    rows[5, 8:16] = 0.0                    # an all-zero block
    for row in rows:
        got_e, got_s = quantize(row)
        want_e, want_s = oracle.mx_quantize_row(row)
        assert got_e == want_e.tolist() and got_s == want_s.tolist(), row


def test_e4m3_encode_equals_the_oracle_on_a_grid():
    grid = np.concatenate([np.arange(-2048, 2049) / 1024.0, 2.0 ** np.arange(-12, 9, 0.25),
                           -(2.0 ** np.arange(-12, 9, 0.25))]).astype(np.float32)
    got = [int(nx.e4m3_encode(y)) for y in grid]
    assert got == [oracle.e4m3_encode(y) for y in grid]


@pytest.mark.parametrize("x, expected", [
    (0.5, 0), (1.5, 2), (2.5, 2), (3.5, 4),   # ties to even
    (0.625, 0),    # 0.625 -> truncated to 0.5 (two fraction bits), then a tie -> 0
    (0.74, 0),     # -> 0.5 -> 0
    (0.75, 1), (2.74, 2), (2.76, 3), (6.96, 7),
    (0.0, 0), (-0.3, 0), (-3.0, 0),           # u32 saturation: negatives -> 0
])
def test_hw_round_pinned(x, expected):
    assert int(nx.hw_round(np.float32(x))) == expected
    assert oracle.hw_round(float(np.float32(x))) == expected


def test_hw_round_equals_the_oracle_on_a_grid():
    grid = np.concatenate([np.arange(-64, 1024) / 32.0, [1e6 + 0.5, 2.0**31 + 0.5, 2.0**33]]).astype(np.float32)
    assert [int(nx.hw_round(x)) for x in grid] == [oracle.hw_round(float(x)) for x in grid]


# ------------------------------------------------------------------------------ V_RED_SUM order

def test_row_sum_order_probe():
    # verified-corrections A3: the reference gives 61, a sequential sum 0, numpy.sum 55
    x = np.array([2.0**24] + [1.0] * 62 + [-(2.0**24)], dtype=np.float32)
    assert nx.vec_sum_f32(x, 0, 64) == 61.0
    assert oracle.reference_row_sum(x) == 61.0


@pytest.mark.parametrize("n", [64, 16])
def test_row_sum_equals_the_documented_order_on_wide_random_rows(n):
    rng = np.random.default_rng(RNG_SEED + n)
    for _ in range(500):
        x = (rng.standard_normal(n) * np.exp2(rng.integers(-20, 21, n))).astype(np.float32)
        got = nx.vec_sum_f32(x, 0, n)
        want = oracle.reference_row_sum(x)
        assert np.float32(got).view(np.uint32) == want.view(np.uint32), x


def test_row_sum_head_window_and_signed_zero():
    # a 16-lane head inside a longer row is summed on its own window
    x = np.zeros(64, dtype=np.float32)
    x[16:32] = [2.0**24] + [1.0] * 14 + [-(2.0**24)]
    assert nx.vec_sum_f32(x, 16, 16) == oracle.reference_row_sum(x[16:32]) == 13.0
    # an all -0 row sums to +0 (every accumulator starts at +0)
    s = nx.vec_sum_f32(np.full(64, -0.0, dtype=np.float32), 0, 64)
    assert s == 0.0 and not math.copysign(1.0, s) < 0


@pytest.mark.parametrize("n", [1, 7, 8, 16, 24, 31, 32, 40, 64, 100, 128, 256, 1000])
def test_row_sum_fast_path_equals_the_definition(n):
    """row_sum_f32 (plain adds, SIMD) gives vec_sum_f32's bits, NaN payload choices and signed
    zeros included, on windows of a longer row."""
    rng = np.random.default_rng(RNG_SEED + 7 * n)
    acc = np.full(32, np.nan, dtype=np.float32)       # stale scratch must not leak in
    specials = np.array([0x7FC00000, 0xFFC00001, 0x7FA00000, 0x7F800000, 0xFF800000, 0x80000000],
                        dtype=np.uint32).view(np.float32)
    for trial in range(300):
        x = (rng.standard_normal(n + 5) * np.exp2(rng.integers(-30, 31, n + 5))).astype(np.float32)
        for _ in range(trial % 4):
            x[rng.integers(0, n + 5)] = specials[rng.integers(0, len(specials))]
        if trial % 50 == 0:
            x[:] = -0.0
        got = nx.row_sum_f32(x, 3, n, acc)
        want = nx.vec_sum_f32(x, 3, n)
        assert np.float32(got).view(np.uint32) == np.float32(want).view(np.uint32), (trial, x)


@pytest.mark.parametrize("n", [1, 7, 8, 16, 24, 31, 32, 40, 64, 100, 128, 256, 1000])
def test_row_sum_of_a_bf16_row_equals_the_definition(n):
    """row_sum_bf16 (the VRAM row's bits widened inside 16-lane register loads) gives vec_sum_f32's
    bits on the widened row, NaN payload choices and signed zeros included; `row` and `acc` are
    scratch whose stale contents must not leak in."""
    rng = np.random.default_rng(RNG_SEED + 11 * n)
    specials = np.array([0x7FC0, 0xFFC1, 0x7FA0, 0x7F80, 0xFF80, 0x8000, 0x0001], dtype=np.uint16)
    for trial in range(300):
        x = (rng.standard_normal(n) * np.exp2(rng.integers(-30, 31, n))).astype(np.float32)
        bits = (x.view(np.uint32) >> 16).astype(np.uint16)
        for _ in range(trial % 4):
            bits[rng.integers(0, n)] = specials[rng.integers(0, len(specials))]
        if trial % 50 == 0:
            bits[:] = 0x8000
        row, acc = np.full(n, np.nan, np.float32), np.full(32, np.nan, np.float32)
        got = nx.row_sum_bf16(bits, n, row, acc)
        want = nx.vec_sum_f32((bits.astype(np.uint32) << 16).view(np.float32), 0, n)
        assert np.float32(got).view(np.uint32) == np.float32(want).view(np.uint32), (trial, bits)


def _reference_row_max(x):
    """V_RED_MAX's row max as the reference's vectorised max behaves: NaN if any lane is NaN,
    else the maximum, the later lane winning ties (+0 / -0)."""
    if np.isnan(x).any():
        return np.float32(np.nan)
    best = x[0]
    for v in x[1:]:
        if v >= best:
            best = v
    return best


@pytest.mark.parametrize("n", [1, 16, 64, 256])
def test_row_max_fast_path_equals_the_lane_by_lane_max(n):
    from emulator.core.vector import _row_max
    rng = np.random.default_rng(RNG_SEED + 11 * n)
    for trial in range(400):
        x = (rng.standard_normal(n) * np.exp2(rng.integers(-3, 4, n))).astype(np.float32)
        if trial % 4 == 1:
            x = -np.abs(x)
        if trial % 2 == 0:                             # zeros of both signs, often the maximum
            x[rng.integers(0, n, 3)] = np.float32(0.0) if trial % 8 else np.float32(-0.0)
            x[rng.integers(0, n, 2)] = np.float32(-0.0)
        if trial % 9 == 0:
            x[rng.integers(0, n)] = np.float32(np.inf) if trial % 2 else np.float32(np.nan)
        got, want = _row_max(x, n), _reference_row_max(x)
        if np.isnan(want):
            assert np.isnan(got)
        else:
            assert np.float32(got).view(np.uint32) == want.view(np.uint32), (trial, x)
