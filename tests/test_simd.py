"""emulator.core.simd: 16-lane f32 register values give the bits of the scalar f32 operations they
replace, lane by lane, at any offset; arrays they cannot address safely are refused when compiling."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit
from numba.core.errors import TypingError

from emulator.core.simd import LANES, vadd, vlane, vload, vload_quads, vmul, vsplat, vsplat_quad, vstore, vwith_lane, vzero

F32 = np.float32


@njit(cache=False)
def _mul_add_rows(acc, x, w, out, a_off, w_off, o_off, steps, start_zero):
    """out[o_off:+16] = (acc[a_off:+16] or +0) + x[k] * w[w_off + 16k : +16], k in order."""
    s = vzero() if start_zero else vload(acc, a_off)
    for k in range(steps):
        s = vadd(s, vmul(vsplat(x[k]), vload(w, w_off + k * LANES)))
    vstore(out, o_off, s)


def _scalar(acc, x, w, a_off, w_off, steps, start_zero):
    s = np.zeros(LANES, F32) if start_zero else acc[a_off:a_off + LANES].copy()
    for k in range(steps):
        s = (s + x[k] * w[w_off + k * LANES:w_off + (k + 1) * LANES]).astype(F32)
    return s


_SPECIAL = [0.0, -0.0, np.inf, -np.inf, 1e-45, -1e-45, 3.4e38, -3.4e38, 1.17e-38]


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 12), st.integers(0, 15), st.integers(0, 15), st.integers(0, 15),
       st.booleans(), st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10**6), st.sampled_from(_SPECIAL)),
                               max_size=4))
def test_register_arithmetic_is_the_scalar_arithmetic(seed, steps, a_off, w_off, o_off, start_zero, specials):
    rng = np.random.default_rng(seed)
    wide = lambda n: (rng.standard_normal(n) * np.exp2(rng.integers(-30, 31, n))).astype(F32)  # noqa: E731
    acc, x, w = wide(LANES + 16), wide(steps), wide(steps * LANES + 16)
    for where, pos, value in specials:
        target = (acc, x, w)[where]
        target[pos % target.size] = F32(value)
    out = np.full(LANES + 32, F32(7.0))
    with np.errstate(all="ignore"):
        want = _scalar(acc, x, w, a_off, w_off, steps, start_zero)
    _mul_add_rows(acc, x, w, out, a_off, w_off, o_off, steps, start_zero)
    got = out[o_off:o_off + LANES]
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)   # which NaN payload survives is not promised
    assert np.array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))
    untouched = np.ones(out.size, bool)
    untouched[o_off:o_off + LANES] = False
    assert np.all(out[untouched] == 7.0)        # exactly 16 lanes written


@njit(cache=False)
def _load_first(arr):
    return vload(arr, 0)


@pytest.mark.parametrize("arr", [np.zeros(32, np.float64), np.zeros((2, 16), F32), np.zeros(64, F32)[::2]],
                         ids=["float64", "2-D", "strided"])
def test_load_refuses_arrays_whose_lanes_are_not_16_contiguous_f32(arr):
    with pytest.raises(TypingError):
        _load_first(arr)


@njit(cache=False)
def _quads_times_quad(w, i0, i1, i2, i3, x, xi, out):
    v = vwith_lane(vmul(vsplat_quad(x, xi), vload_quads(w, i0, i1, i2, i3)), 15, np.float32(-1.5))
    for lane in range(LANES):
        out[lane] = vlane(v, lane)


def test_quad_loads_place_four_outputs_four_lanes_each():
    """vload_quads puts w[i_j + r] at lane 4j + r, vsplat_quad x[xi + r] at every lane 4j + r;
    vlane reads a lane and vwith_lane replaces one."""
    w = np.arange(100, dtype=F32)
    x = np.array([0, 0, 2, 3, 5, 7, 0], F32)
    out = np.zeros(LANES, F32)
    _quads_times_quad(w, 40, 3, 91, 3, x, 2, out)
    want = np.array([w[i + r] * x[2 + r] for i in (40, 3, 91, 3) for r in range(4)], F32)
    want[15] = -1.5
    assert out.tolist() == want.tolist()
