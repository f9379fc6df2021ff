"""The vector machine's row kernels at SIMD speed give the bits of their lane-by-lane definitions.

* V_EXP_V's table (`vector.EXP_OF_BF16`) equals the definition `_unary(EW_EXP, x)` on every one
  of the 65536 bf16 inputs (V_EXP_V only ever sees bf16 values), NaN payloads included.
* `_lanes` (one plain-f32 loop per op, NaN lanes redone) equals `_binary` / `_unary` lane by lane
  on rows mixing ordinary values with NaN payloads of both signs, infinities, signed zeros and
  subnormals (hypothesis chooses the rows).
* `f32_row_to_bf16` (branch-free) equals the scalar VRAM cast on every sign, exponent and the
  mantissa patterns around each rounding decision, NaN payloads that carry out included.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from emulator.core import numerics as nx
from emulator.core import vector as V

SPECIALS = np.array([0x7FC00000, 0xFFC00000, 0x7FA00001, 0xFF812345, 0x7F800000, 0xFF800000, 0x00000000,
                     0x80000000, 0x00000001, 0x807FFFFF, 0x7F7FFFFF, 0xFF7FFFFF, 0x3F800000],
                    dtype=np.uint32).view(np.float32)


@njit(cache=False)
def _unary_lanes(code, x, out):
    for i in range(x.shape[0]):
        out[i] = V._unary(code, x[i])


@njit(cache=False)
def _binary_lanes(code, a, b, out):
    for i in range(a.shape[0]):
        out[i] = V._binary(code, a[i], b[i])


def _bits(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def test_exp_table_is_the_definition_on_every_bf16_input():
    x = (np.arange(1 << 16, dtype=np.uint32) << 16).view(np.float32)
    want = np.empty_like(x)
    _unary_lanes(V.EW_EXP, x, want)
    bad = np.nonzero(_bits(V.EXP_OF_BF16) != _bits(want))[0]
    assert bad.size == 0, [(hex(i), hex(_bits(V.EXP_OF_BF16)[i]), hex(_bits(want)[i])) for i in bad[:5]]


def test_exp_write_back_table_is_the_vram_cast_of_the_exp_table():
    """`EXP_BF16_OF_BF16` (what V_EXP_V writes for each bf16 input) is the core's VRAM cast of
    `EXP_OF_BF16` on all 65536 inputs."""
    want = np.empty(1 << 16, np.uint16)
    nx.f32_row_to_bf16(V.EXP_OF_BF16, want)
    assert V.EXP_BF16_OF_BF16.dtype == np.uint16 and np.array_equal(V.EXP_BF16_OF_BF16, want)


def _row(draw, n: int, rng: np.random.Generator) -> np.ndarray:
    with np.errstate(over="ignore"):             # the widest exponents round to +-inf: wanted
        row = (rng.standard_normal(n) * np.exp2(rng.integers(-140, 128, n))).astype(np.float32)
    for i in draw(st.lists(st.integers(0, n - 1), max_size=6)):
        row[i] = SPECIALS[rng.integers(0, len(SPECIALS))]
    return row


CODES = [V.EW_ADD, V.EW_SUB, V.EW_SUB_REV, V.EW_MUL, V.EW_MAX, V.EW_MIN, V.EW_RECI]   # V_EXP_V: `_exp_row`


@settings(max_examples=300, deadline=None)
@given(code=st.sampled_from(CODES), n=st.integers(1, 300), seed=st.integers(0, 2**32 - 1),
       scalar=st.booleans(), data=st.data())
def test_lanes_equal_the_lane_definitions(code, n, seed, scalar, data):
    rng = np.random.default_rng(seed)
    a = _row(data.draw, n, rng)
    b = np.full(n, _row(data.draw, 1, rng)[0], np.float32) if scalar else _row(data.draw, n, rng)
    want = np.empty(n, np.float32)
    if code == V.EW_RECI:
        _unary_lanes(code, a, want)
    else:
        _binary_lanes(code, a, b, want)
    got = np.full(n + 3, np.nan, np.float32)     # stale scratch past n must not matter
    V._lanes(code, a, b.copy(), got, n)
    assert (_bits(got[:n]) == _bits(want)).all(), (code, np.nonzero(_bits(got[:n]) != _bits(want))[0][:5])


def test_f32_row_to_bf16_equals_the_scalar_cast_around_every_rounding_decision():
    sign = np.arange(2, dtype=np.uint32)[:, None, None, None] << 31
    exponent = np.arange(256, dtype=np.uint32)[None, :, None, None] << 23
    keep = np.array([0, 1, 0x3F, 0x40, 0x7E, 0x7F], dtype=np.uint32)[None, None, :, None] << 16
    low = np.array([0, 1, 0x7FFF, 0x8000, 0x8001, 0xC000, 0xFFFF], dtype=np.uint32)[None, None, None, :]
    bits = (sign | exponent | keep | low).ravel()
    got = np.zeros(bits.size, np.uint16)
    nx.f32_row_to_bf16(bits.view(np.float32), got)
    want = np.array([int(nx.bf16_bits_from_f32_bits(int(u))) for u in bits], dtype=np.uint16)
    bad = np.nonzero(got != want)[0]
    assert bad.size == 0, [(hex(bits[i]), hex(got[i]), hex(want[i])) for i in bad[:5]]


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_v_exp_v_row_through_the_kernel(masked, in_place):
    """The whole V_EXP_V instruction on a row holding every interesting bf16 class: table lanes,
    and with a mask the unselected heads written back clamped (the reference's quirk); in place
    (vd = vs1) each lane is read before it is written."""
    from emulator.core import state as S
    vlen, h = 64, 16
    params = np.zeros(S.PARAMS_SIZE, np.int64)
    params[S.P_VLEN], params[S.P_HLEN], params[S.P_VRAM_DEPTH] = vlen, h, 4
    x = np.array([0x3F80, 0x7FC1, 0xFFA0, 0x7F80, 0xFF80, 0x42B1, 0xC2B1, 0x0001, 0x8000, 0x3280, 0x327F,
                  0x4100, 0xC100, 0x42B0, 0xC2B0, 0x0000] * 4, dtype=np.uint16)
    vram = np.zeros((4, vlen), np.uint16)
    vram[1] = x
    gp = np.zeros(16, np.int64)
    gp[1], gp[2] = vlen, vlen if in_place else 2 * vlen
    ctrl = np.zeros(S.CTRL_SIZE, np.int64)
    ctrl[S.V_MASK] = 0b0101
    rows = np.zeros((3, vlen), np.float32)
    err = np.zeros(S.ERR_SIZE, np.int64)
    fpr = np.zeros(8, np.uint16)
    assert V.v_elementwise(V.EW_EXP, masked, 2, 1, 0, False, vram, fpr, gp, ctrl, params, rows, err, 0)
    a = (x.astype(np.uint32) << 16).view(np.float32)
    want = np.empty(vlen, np.float32)
    _unary_lanes(V.EW_EXP, a, want)
    if masked:
        for head in (1, 3):
            sl = slice(head * h, head * h + h)
            want[sl] = np.where(np.isnan(a[sl]), a[sl], np.clip(a[sl], -88, 88))
    expected = np.zeros(vlen, np.uint16)
    for i, u in enumerate(_bits(want)):
        expected[i] = nx.bf16_bits_from_f32_bits(int(u))
    assert vram[1 if in_place else 2].tolist() == expected.tolist()


@pytest.mark.parametrize("shift", [0, 1, 5, 63, 64, 1000])
def test_v_shift_in_place_reads_each_lane_before_overwriting_it(shift):
    """V_SHFT_V with vd == vs1 (no copy of the row: lanes are written from the top down)."""
    from emulator.core import state as S
    vlen = 64
    params = np.zeros(S.PARAMS_SIZE, np.int64)
    params[S.P_VLEN], params[S.P_VRAM_DEPTH] = vlen, 2
    vram = np.zeros((2, vlen), np.uint16)
    vram[1] = np.arange(1, vlen + 1, dtype=np.uint16)
    gp = np.zeros(16, np.int64)
    gp[1], gp[2] = vlen, shift
    ctrl = np.zeros(S.CTRL_SIZE, np.int64)
    assert V.v_shift(1, 1, 2, vram, gp, ctrl, params, np.zeros(S.ERR_SIZE, np.int64), 0)
    src = np.arange(1, vlen + 1)
    want = [int(src[i - shift]) if i >= shift else 0 for i in range(vlen)]
    assert vram[1].tolist() == want


BF16_SPECIALS = np.array([0x7FC0, 0xFFC1, 0x7FA0, 0xFF81, 0x7F80, 0xFF80, 0x0000, 0x8000, 0x0001, 0x807F, 0x7F7F,
                          0xFF7F, 0x3F80], dtype=np.uint16)


@settings(max_examples=200, deadline=None)
@given(code=st.sampled_from([V.EW_ADD, V.EW_SUB, V.EW_MUL]), is_vf=st.booleans(), in_place=st.booleans(),
       vlen=st.sampled_from([16, 64, 256, 24]), seed=st.integers(0, 2**32 - 1),
       specials=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 255), st.integers(0, len(BF16_SPECIALS) - 1)),
                         max_size=3), two_nans=st.booleans())
def test_add_sub_mul_rows_through_the_kernel(code, is_vf, in_place, vlen, seed, specials, two_nans):
    """V_ADD/SUB/MUL (VV and VF) as the run loop calls them: the register path straight from the
    bf16 rows (`_lanes_bf16`) and its fall-back for NaN operands (or a VLEN that is not a multiple
    of 16) both write the VRAM cast of the lane definitions `_binary`, in place too (vd = vs1)."""
    from emulator.core import state as S
    rng = np.random.default_rng(seed)
    params = np.zeros(S.PARAMS_SIZE, np.int64)
    params[S.P_VLEN], params[S.P_HLEN], params[S.P_VRAM_DEPTH] = vlen, 8, 4
    with np.errstate(over="ignore"):
        rows = (rng.standard_normal((2, vlen)) * np.exp2(rng.integers(-130, 128, (2, vlen)))).astype(np.float32)
    vram = np.zeros((4, vlen), np.uint16)
    vram[1:3] = (rows.view(np.uint32) >> 16).astype(np.uint16)
    fpr = np.zeros(8, np.uint16)
    fpr[3] = vram[2, 0]
    for where, lane, which in specials:
        if where == 2:
            fpr[3] = BF16_SPECIALS[which]
        else:
            vram[1 + where, lane % vlen] = BF16_SPECIALS[which]
    if two_nans:   # a lane where both operands are NaN: x86 would keep the first one, the reference the second
        vram[1, 1], vram[2, 1], fpr[3] = 0x7FA1, 0xFFC3, 0xFF85
    a = (vram[1].astype(np.uint32) << 16).view(np.float32)
    b = np.full(vlen, (np.uint32(fpr[3]) << 16).view(np.float32)) if is_vf else \
        (vram[2].astype(np.uint32) << 16).view(np.float32)
    want = np.empty(vlen, np.float32)
    _binary_lanes(code, a, b, want)
    expected = [int(nx.bf16_bits_from_f32_bits(int(u))) for u in _bits(want)]
    gp = np.zeros(16, np.int64)
    gp[1], gp[2], gp[3] = vlen, 2 * vlen, vlen if in_place else 3 * vlen
    ctrl = np.zeros(S.CTRL_SIZE, np.int64)
    scratch = np.full((3, max(vlen, 32)), np.nan, np.float32)
    err = np.zeros(S.ERR_SIZE, np.int64)
    assert V.v_elementwise(code, False, 3, 1, 3 if is_vf else 2, is_vf, vram, fpr, gp, ctrl, params, scratch, err, 0)
    assert vram[1 if in_place else 3].tolist() == expected
