"""Summation order of M_TMM / M_TMV / M_BTMV (emulator.core.matmul_order), checked without torch:

* recorded libtorch 2.13 / MKL 2024.2 results (tests/data/matmul_order_cases.npz, made by
  bench/gen_matmul_order_fixture.py; see its docstring for the MKL settings that stand in for
  the reference's AMD host);
* the reference's own sum-order probes: the pattern rows of the ops corpus, as literal vectors
  with the values the reference wrote, and, when the corpus is present, recomputed from the
  cases' inputs and compared with their VRAM dumps.
"""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.core.matmul_order import (
    GEMV, LANES4, PANELS, SEQUENTIAL, WORK_ROWS, accumulate_lane_dots, accumulate_products, btmv_dot, gemv_dot, ordered_out, tmm_dot, tmv_dot,
)
from emulator.core.numerics import add_nan_second
from tests.conftest import CONFORMANCE, needs_corpus

FIXTURE = Path(__file__).parent / "data" / "matmul_order_cases.npz"
F32 = np.float32
BIG = F32(2.0**24)


def _f32(bf16_bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bf16_bits).astype(np.uint32) << 16).view(np.float32)


def _bits(v) -> np.ndarray:
    return np.asarray(v, dtype=np.float32).view(np.uint32)


def _sequential(x: np.ndarray, t: np.ndarray) -> np.float32:
    acc = F32(0.0)
    for k in range(len(x)):
        acc = F32(acc + F32(x[k] * t[k]))
    return acc


@pytest.fixture(scope="module")
def cases() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as d:
        return {k: d[k] for k in d.files}


# ---------------------------------------------------------------- recorded libtorch results

@pytest.mark.parametrize("section", ["tmm_64", "tmm_32", "tmm_128"])
def test_tmm_matches_libtorch(cases, section):
    xs, ts, outs = _f32(cases[f"{section}_x"]), _f32(cases[f"{section}_t"]), cases[f"{section}_out"]
    n, b, m = xs.shape
    got = np.array([[[tmm_dot(xs[c, i], ts[c, j], m) for j in range(b)] for i in range(b)]
                    for c in range(n)], dtype=np.float32)
    assert np.array_equal(_bits(got), outs)


@pytest.mark.parametrize("section", ["tmv_64", "tmv_32", "tmv_128"])
def test_tmv_matches_libtorch(cases, section):
    xs, ts, outs = _f32(cases[f"{section}_x"]), _f32(cases[f"{section}_t"]), cases[f"{section}_out"]
    n, b, m = ts.shape
    got = np.array([[tmv_dot(xs[c], ts[c, j], m) for j in range(b)] for c in range(n)], dtype=np.float32)
    assert np.array_equal(_bits(got), outs)


@pytest.mark.parametrize("section", ["btmv_64", "btmv_32", "btmv_128"])
def test_btmv_matches_libtorch(cases, section):
    xs, cols, outs = _f32(cases[f"{section}_x"]), _f32(cases[f"{section}_t"]), cases[f"{section}_out"]
    n, m, h = cols.shape
    for c in range(n):
        ho = int(cases[f"{section}_ho"][c])
        tile = np.zeros((m, m), dtype=np.float32)   # the executor passes whole tile rows
        tile[:, ho:ho + h] = cols[c]
        got = np.array([[btmv_dot(xs[c], a * h, tile[row], ho, h) for row in range(m)]
                        for a in range(m // h)], dtype=np.float32)
        assert np.array_equal(_bits(got), outs[c]), f"case {c} (ho={ho})"


def test_generic_lengths_and_alignment(cases):
    """Odd lengths, and matrix views 1..3 floats past a 16-byte boundary."""
    for kind in ("gemv", "gemm"):
        xs, ts = _f32(cases[f"generic_{kind}_x"]), _f32(cases[f"generic_{kind}_t"])
        for c in range(len(xs)):
            k, a = int(cases[f"generic_{kind}_k"][c]), int(cases[f"generic_{kind}_a"][c])
            got = np.array([[gemv_dot(x, 0, t, 0, k, a) if kind == "gemv" else tmm_dot(x, t, k)
                             for t in ts[c]] for x in xs[c]], dtype=np.float32)
            assert np.array_equal(_bits(got), cases[f"generic_{kind}_out"][c]), f"{kind} case {c} K={k} a={a}"


def test_fixture_separates_orders(cases):
    """The recorded results must tell the kernels' orders from plain k order, or the tests above
    prove nothing: sequential order differs on a good share of them."""
    xs, ts, outs = _f32(cases["tmm_64_x"]), _f32(cases["tmm_64_t"]), cases["tmm_64_out"]
    seq = np.array([[[_sequential(xs[c, i], ts[c, j]) for j in range(4)] for i in range(4)]
                    for c in range(len(xs))], dtype=np.float32)
    assert (_bits(seq) != outs).mean() > 0.2
    xs, ts, outs = _f32(cases["tmv_64_x"]), _f32(cases["tmv_64_t"]), cases["tmv_64_out"]
    seq = np.array([[_sequential(xs[c], ts[c, j]) for j in range(4)] for c in range(len(xs))], dtype=np.float32)
    assert (_bits(seq) != outs).mean() > 0.2


# ---------------------------------------------------------------- the reference's probes

def _pattern_rows() -> dict[str, np.ndarray]:
    """The ops corpus's sum-order rows (vram_preload rows 0..3 of *_sum_order), 64 lanes:
    A mixes +2^24 / -2^24 at k = 0, 8, 16, ... with 1.0; B puts -2^24 / +2^24 at k = 3, 11, ...;
    C is 2^24, 62 ones, -2^24. The exact sums are 56, 56 and 62."""
    a = np.ones(64, F32)
    a[0::16], a[8::16] = BIG, -BIG
    b = np.ones(64, F32)
    b[3::16], b[11::16] = -BIG, BIG
    c = np.ones(64, F32)
    c[0], c[63] = BIG, -BIG
    return {"A": a, "B": b, "C": c}


# What the reference wrote for those rows against a tile of 1.0. All are small integers, so they
# are exact in bf16 and in f32: tmm_sum_order rows 200..203, tmv_sum_order row 200, and
# btmv_sum_order rows 200..211, divided by the 0.25 scale. The sequential values are those of
# verified-corrections A4.
REFERENCE_PROBES = {
    #      M_TMM  M_TMV  M_BTMV head sums   sequential M_TMM / M_TMV
    "A": (49.0, 46.0, (10.0, 10.0, 10.0, 10.0), 31.0, 31.0),
    "B": (56.0, 49.0, (13.0, 13.0, 13.0, 13.0), 56.0, 56.0),
    "C": (47.0, 45.0, (None, 16.0, 16.0, None), 0.0, 0.0),   # heads 0/3 round away in bf16
}


@pytest.mark.parametrize("row", sorted(REFERENCE_PROBES))
def test_reference_probe_values(row):
    x = _pattern_rows()[row]
    ones = np.ones(64, F32)
    tmm, tmv, heads, seq_tmm, seq_tmv = REFERENCE_PROBES[row]
    assert tmm_dot(x, ones, 64) == tmm
    assert tmv_dot(x, ones, 64) == tmv
    for a, want in enumerate(heads):
        if want is not None:
            assert btmv_dot(x, a * 16, ones, 0, 16) == want
    # ... where plain k order gives other values (A and C), or the same (B for M_TMM/M_TMV)
    assert _sequential(x, ones) == seq_tmm == seq_tmv


def test_btmv_probe_differs_from_sequential():
    """btmv_sum_order: the reference wrote 2.5 (= 0.25 * 10) where k order gives 1.75."""
    x = _pattern_rows()["A"][:16]
    ones = np.ones(16, F32)
    assert F32(btmv_dot(x, 0, ones, 0, 16) * F32(0.25)) == F32(2.5)
    assert F32(_sequential(x, ones) * F32(0.25)) == F32(1.75)


def test_well_conditioned_data_matches_sequential():
    """Integer products whose partial sums stay below 2^24 are exact in any order, so every
    kernel order must give the plain k-order (and exact) result."""
    rng = np.random.default_rng(7)
    for m in (16, 32, 64, 128):
        for _ in range(50):
            x = rng.integers(-16, 17, size=m).astype(F32)
            t = rng.integers(-16, 17, size=2 * m).astype(F32)
            exact = F32(np.dot(x.astype(np.int64), t[:m].astype(np.int64)))
            assert tmm_dot(x, t, m) == _sequential(x, t[:m]) == exact
            assert tmv_dot(x, t, m) == exact
            for ho in range(0, m, 4):   # every alignment class of the head offset
                h = min(16, m - ho)
                assert btmv_dot(x, 0, t, ho, h) == F32(np.dot(x[:h].astype(np.int64), t[ho:ho + h].astype(np.int64)))


def test_negative_zero_products_sum_to_positive_zero():
    """All products -0.0: libtorch's kernels start their accumulators at +0.0 (probed)."""
    x = -np.ones(64, F32)
    z = np.zeros(64, F32)
    assert _bits(tmm_dot(x, z, 64)) == 0
    assert _bits(tmv_dot(x, z, 64)) == 0
    assert _bits(btmv_dot(x, 16, z, 16, 16)) == 0


# ---------------------------------------------------------------- ops corpus, from case inputs

def _bf16_round(v) -> np.ndarray:
    return np.asarray(v, F32).astype(ml_dtypes.bfloat16).astype(F32)


def _case_inputs(name: str):
    d = CONFORMANCE / "ops" / name
    vram = _f32(np.fromfile(d / "vram_preload.bin", dtype="<u2")).reshape(-1, 64)
    # MRAM holds E4M3 * 2^k values (4 significant bits), so its bf16 dump is exact; these
    # programs load the tiles with H_PREFETCH_M only, which makes the dump equal to the input.
    tiles = _f32(np.load(d / "expected" / "mram_tiles.npy")).reshape(-1, 64, 64)
    out = _f32(np.load(d / "expected" / "vram_rows.npy"))
    return vram, tiles, out


def _tmm_block(vram, tile, row, c):
    return np.array([[tmm_dot(vram[row + i], tile[c + j], 64) for j in range(4)] for i in range(4)], F32)


def _tmv(vram, tile, row):
    return np.array([tmv_dot(vram[row], tile[j], 64) for j in range(4)], F32)


def _btmv(vram, tile, row, ho):
    return np.array([[btmv_dot(vram[row], a * 16, tile[n], ho, 16) * F32(0.25) for n in range(64)]
                     for a in range(4)], F32)


@needs_corpus
@pytest.mark.conformance
@pytest.mark.parametrize("name", ["tmm_sum_order", "tmm_tile1_random", "tmm_blocks"])
def test_ops_corpus_tmm(name):
    vram, tiles, out = _case_inputs(name)
    if name == "tmm_sum_order":      # rows 0..3; blocks c = 0 and 60 -> lanes 0..3 and 4..7 of rows 200..203
        checks = [(_tmm_block(vram, tiles[0], 0, 0), 0), (_tmm_block(vram, tiles[0], 0, 60), 4)]
    elif name == "tmm_blocks":       # rows 0..3; blocks c = 0, 4, 60 -> lanes 0, 4, 8
        checks = [(_tmm_block(vram, tiles[0], 0, c), lane) for c, lane in ((0, 0), (4, 4), (60, 8))]
    else:                            # rows 70..73, tile 1 block c = 8, accumulated twice
        r = _tmm_block(vram, tiles[1], 70, 8)
        checks = [((r + r).astype(F32), 0)]
    for acc, lane in checks:
        assert np.array_equal(_bits(out[200:204, lane:lane + 4]), _bits(_bf16_round(acc))), f"lanes {lane}.."


@needs_corpus
@pytest.mark.conformance
@pytest.mark.parametrize("name", ["tmv_sum_order", "tmv_tiles"])
def test_ops_corpus_tmv(name):
    vram, tiles, out = _case_inputs(name)
    if name == "tmv_sum_order":      # x = rows 0..3 -> lanes 0, 4, 8, 12 of row 200
        checks = [(_tmv(vram, tiles[0], r), 4 * r) for r in range(4)]
    else:                            # x = row 3 with tiles 0 and 1, x = row 90 with tile 1
        checks = [(_tmv(vram, tiles[0], 3), 0), (_tmv(vram, tiles[1], 3), 4), (_tmv(vram, tiles[1], 90), 8)]
    for acc, lane in checks:
        assert np.array_equal(_bits(out[200, lane:lane + 4]), _bits(_bf16_round(acc))), f"lanes {lane}.."


@needs_corpus
@pytest.mark.conformance
@pytest.mark.parametrize("name", ["btmv_sum_order", "btmv_rd_offset"])
def test_ops_corpus_btmv(name):
    vram, tiles, out = _case_inputs(name)
    if name == "btmv_sum_order":     # x = rows 0..3, tile 0, ho = 0 -> rows 200+4r .. 203+4r
        checks = [(_btmv(vram, tiles[0], r, 0), 200 + 4 * r) for r in range(4)]
    else:                            # x = row 100, tile 1, ho = 32 -> rows 200..203
        checks = [(_btmv(vram, tiles[1], 100, 32), 200)]
    for acc, first in checks:
        assert np.array_equal(_bits(out[first:first + 4]), _bits(_bf16_round(acc))), f"rows {first}.."


# ------------------------------------------------- whole-instruction kernel == per-output definitions

@st.composite
def block_case(draw):
    """Random operands for one instruction's worth of outputs, with NaNs and infinities planted
    in the operands and in the accumulator."""
    nb = draw(st.sampled_from([1, 2, 4, 5, 8, 16]))
    nn = draw(st.sampled_from([1, 3, 4, 8, 16, 20, 64]))
    k_len = draw(st.sampled_from([1, 3, 5, 16, 64, 130, 256, 300]))
    xs = draw(st.sampled_from([1, 4]))
    seed = draw(st.integers(0, 2**32 - 1))
    specials = draw(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10**6), st.sampled_from(
        [0x7FC00000, 0xFFC00001, 0x7FA00000, 0x7F800001, 0x7F800000, 0xFF800000, 0x80000000])), max_size=6))
    return nb, nn, k_len, xs, seed, specials


def _block_operands(case):
    nb, nn, k_len, xs, seed, specials = case
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((nb, k_len * xs + 1)) * np.exp2(rng.integers(-20, 21, (nb, k_len * xs + 1)))).astype(F32)
    w = (rng.standard_normal((k_len, nn + 2)) * np.exp2(rng.integers(-20, 21, (k_len, nn + 2)))).astype(F32)
    acc = rng.standard_normal((nb, nn)).astype(F32)
    for where, pos, bits in specials:
        target = (x, w, acc)[where]
        target.reshape(-1)[pos % target.size] = np.uint32(bits).view(F32)
    return x, w.reshape(-1), acc


@settings(max_examples=200, deadline=None)
@given(block_case(), st.sampled_from([SEQUENTIAL, LANES4, PANELS, GEMV]), st.integers(0, 3),
       st.sampled_from([1.0, 0.25]))
def test_accumulate_products_equals_the_per_output_definitions(case, order, misalign, scale):
    """The SIMD kernel keeps every output's order, NaN choice and accumulator update.  X is read
    from lane 1 with stride xs, W from offset 1 with row stride nn + 2 (a window of a wider tile)."""
    x, w, acc = _block_operands(case)
    nb, nn, k_len, xs = case[:4]
    got = acc.copy()
    work = np.full((WORK_ROWS, nn + 3), np.nan, F32)   # stale scratch must not leak in
    accumulate_products(order, misalign, x, 1, xs, w, 1, nn + 2, k_len, nb, nn, got, F32(scale), work)
    for i in range(nb):
        for n in range(nn):
            dot = ordered_out(order, misalign, x[i], 1, xs, w, 1 + n, nn + 2, k_len)
            want = add_nan_second(acc[i, n], F32(dot * F32(scale)))
            assert _bits(got[i, n]) == _bits(want), (i, n)


@settings(max_examples=200, deadline=None)
@given(block_case(), st.sampled_from([LANES4, GEMV]), st.integers(0, 3), st.sampled_from([1.0, 0.25]))
def test_accumulate_lane_dots_equals_the_per_output_definitions(case, order, misalign, scale):
    """The lane-order kernel reading each output's operand contiguous in k (tile rows, no
    transposition) keeps every output's order, NaN choice and accumulator update.  X is read from
    lane 1; output n's operand starts at 1 + n * (k_len + 2) (rows of a wider tile)."""
    nb, nn, k_len, xs, seed, specials = case
    x, w, acc = _block_operands((nb, nn, k_len, 1, seed, specials))
    wn = k_len + 2
    w = np.resize(w, 1 + nn * wn)                  # the same values, laid out as nn rows of k
    got = acc.copy()
    work = np.full((WORK_ROWS, nn + 3), np.nan, F32)   # stale scratch must not leak in
    accumulate_lane_dots(order, misalign, x, 1, w, 1, wn, k_len, nb, nn, got, F32(scale), work)
    for i in range(nb):
        for n in range(nn):
            dot = ordered_out(order, misalign, x[i], 1, 1, w, 1 + n * wn, 1, k_len)
            want = add_nan_second(acc[i, n], F32(dot * F32(scale)))
            assert _bits(got[i, n]) == _bits(want), (i, n)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([(64, 16), (128, 32), (256, 64), (128, 64)]), st.integers(0, 3), st.integers(0, 2**32 - 1),
       st.booleans())
def test_m_btmv_instruction_equals_the_per_output_definitions(shape, head, seed, with_nan):
    """The whole M_BTMV as the run loop calls it, on both of its paths (HLEN >= 32: each output's
    tile row read as it is; shorter heads: the tile transposed), against `btmv_dot` per head and
    output, scaled by 0.25 and added to the accumulator; the head offset ho = head * HLEN sets the
    gemv's misalignment."""
    from emulator.core import matrix as mx
    from emulator.core import state as S
    mlen, hlen = shape
    nb = mlen // hlen
    ho = (head % nb) * hlen
    rng = np.random.default_rng(seed)
    params = np.zeros(S.PARAMS_SIZE, np.int64)
    params[S.P_MLEN] = params[S.P_VLEN] = mlen
    params[S.P_BLEN], params[S.P_HLEN], params[S.P_BROADCAST] = 4, hlen, nb
    params[S.P_VRAM_DEPTH], params[S.P_MRAM_TILES] = 2, 2
    x = (rng.standard_normal(mlen) * np.exp2(rng.integers(-10, 11, mlen))).astype(F32)
    if with_nan:
        x[rng.integers(0, mlen)] = np.uint32(0x7FC00123).view(F32)
    vram = np.zeros((2, mlen), np.uint16)
    vram[1] = (x.view(np.uint32) >> 16).astype(np.uint16)
    tile = (rng.standard_normal((mlen, mlen)) * np.exp2(rng.integers(-10, 11, (mlen, mlen)))).astype(F32)
    mram = np.stack([np.zeros(mlen * mlen, F32), tile.reshape(-1)])
    acc = rng.standard_normal((nb, mlen)).astype(F32)
    got = acc.copy()
    scratch = np.full(mx.scratch_shape(mlen, mlen), np.nan, F32)   # stale scratch must not leak in
    err = np.zeros(S.ERR_SIZE, np.int64)
    assert mx.m_bmv(True, mlen * mlen + ho, mlen, vram, mram, got, params, scratch, err, 0), err
    xb = (vram[1].astype(np.uint32) << 16).view(F32)
    for a in range(nb):
        for n in range(mlen):
            dot = btmv_dot(xb, a * hlen, tile[n], ho, hlen)
            want = add_nan_second(acc[a, n], F32(dot * F32(0.25)))
            assert _bits(got[a, n]) == _bits(want), (a, n)
