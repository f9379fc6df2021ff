"""Which NaN survives, and the summation orders by shape (verified-corrections A3-A5, D1-D3).

Two kinds of test, both corpus-free:

* replays of the reference's own results (tests/data/nan_rules_cases.npz, recorded from the
  corpus by bench/gen_nan_rules_fixture.py) through whole programs: a swapped NaN rule in any of
  V_ADD/SUB/MUL_VV, S_ADD/SUB/MUL_FP, V_RED_SUM or M_MM/M_TMM (BLEN 4 and 16, K 64..256) fails here;
* hypothesis properties comparing the jitted kernels with the plain-Python oracle
  (tests/oracle.py) on random NaN positions and payloads.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.core import state as S
from emulator.core.matmul_order import LANES4, PANELS, SEQUENTIAL, sgemm_orders
from emulator.core.matrix import m_mm, scratch_shape
from emulator.core.scalar import FP_ADD, FP_MUL, FP_SUB, s_fp
from emulator.core.vector import v_red_sum
from emulator.runner import hardware_params, run
from emulator.settings import default_settings
from tests import oracle

FIXTURE = Path(__file__).parent / "data" / "nan_rules_cases.npz"
F32 = np.float32
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@lru_cache(maxsize=1)
def fixture() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as d:
        return {k: d[k] for k in d.files}


def _hex(bits) -> list[str]:
    return [f"{int(b):04X}" for b in np.asarray(bits).ravel()]


def _f16_bytes(values) -> bytes:
    return np.asarray(values, dtype="<u2").tobytes()


# ------------------------------------------------------------------ replays of reference results

@pytest.mark.parametrize("mnemonic", ["V_ADD_VV", "V_SUB_VV", "V_MUL_VV"])
def test_vv_nan_choice_replays_the_reference(mnemonic):
    a, b, a_op_b, b_op_a = fixture()[f"vv_{mnemonic}"]
    program = "\n".join([
        "S_ADDI_INT gp2, gp0, 64", "S_ADDI_INT gp3, gp0, 128", "S_ADDI_INT gp4, gp0, 192",
        f"{mnemonic} gp3, gp0, gp2, 0", f"{mnemonic} gp4, gp2, gp0, 0"])
    result = run(program, vram=np.stack([a, b]).astype("<u2").tobytes(), raise_on_error=True)
    assert _hex(result.state.vram[2]) == _hex(a_op_b)
    assert _hex(result.state.vram[3]) == _hex(b_op_a)


FP_MNEMONIC = {0: "S_ADD_FP", 1: "S_SUB_FP", 2: "S_MUL_FP"}


def test_scalar_two_nan_choice_replays_the_reference():
    d = fixture()
    lines = [f"S_LD_FP f{reg}, gp0, {entry}" for reg, entry in d["scalar_loads"]]
    checks = []
    for op, rd, rs1, rs2, expected in d["scalar_ops"]:
        lines.append(f"{FP_MNEMONIC[int(op)]} f{rd}, f{rs1}, f{rs2}")
        if expected >= 0:
            lines.append(f"S_ST_FP f{rd}, gp0, {100 + len(checks)}")
            checks.append(int(expected))
    result = run("\n".join(lines), fp_sram=_f16_bytes(d["scalar_f16_preload"]), raise_on_error=True)
    assert _hex(result.state.fp_sram[100:100 + len(checks)]) == _hex(checks)
    assert len(checks) == 11


def test_v_red_sum_nan_choice_replays_the_reference():
    d = fixture()
    lines = [f"S_LD_FP f{reg}, gp0, {entry}" for reg, entry in d["vredsum_loads"]]
    for i, reg in enumerate(d["vredsum_registers"]):
        lines += [f"S_ADDI_INT gp1, gp0, {64 * i}", f"V_RED_SUM f{reg}, gp1"]
    lines += [f"S_ST_FP f{reg}, gp0, {100 + i}" for i, reg in enumerate(d["vredsum_registers"])]
    result = run("\n".join(lines), vram=d["vredsum_rows"].astype("<u2").tobytes(),
                 fp_sram=_f16_bytes(d["vredsum_f16_preload"]), raise_on_error=True)
    n = len(d["vredsum_registers"])
    assert _hex(result.state.fp_sram[100:100 + n]) == _hex(d["vredsum_expected"])


MATRIX_CASES = sorted(json.loads(fixture()["meta_json"].tobytes()))


@pytest.mark.parametrize("case", MATRIX_CASES)
def test_matrix_order_and_nan_choice_replay_the_reference(case):
    """X against a tile of ones: every output is X[i]'s row sum in the library's order."""
    d = fixture()
    meta = json.loads(d["meta_json"].tobytes())[case]
    cfg = meta["config"]
    m, b = cfg["MLEN"], cfg["BLEN"]
    ones_tile = bytes([0x38]) * (m * m) + bytes([127]) * (m * m // 8)   # E4M3 1.0, E8M0 2^0
    out_row = 32
    program = "\n".join([
        "C_SET_ADDR_REG a0, gp0, gp0", f"S_ADDI_INT gp1, gp0, {m * m}", "C_SET_SCALE_REG gp1",
        f"S_ADDI_INT gp2, gp0, {m}", "C_SET_STRIDE_REG gp2", "H_PREFETCH_M gp0, gp0, a0, 1, 0",
        f"{meta['mnemonic']} 0, gp0, gp0", f"S_ADDI_INT gp3, gp0, {out_row * m}", "M_MM_WO gp3, gp0, 0"])
    result = run(program, settings=default_settings().with_overrides(cfg), hbm=ones_tile,
                 vram=d[f"mm_{case}_x"].astype("<u2").tobytes(), raise_on_error=True)
    got = result.state.vram[out_row:out_row + b, :b]
    assert _hex(got) == _hex(d[f"mm_{case}_out"])


def test_replays_distinguish_the_rules():
    """The recorded results must tell each rule from its obvious alternatives, or the replays
    above prove nothing: swap operand order / order family and the oracle disagrees."""
    d = fixture()
    ones = np.ones(256, F32)
    x = oracle.bf16_values(d["mm_nan_payload_m_mm_x"])
    want = d["mm_nan_payload_m_mm_out"][:, 0]
    rules = {
        "k = 0 (mod 8) rule": [oracle.reference_dot(r, ones[:64], 4, False) for r in x],
        "plain earlier-NaN": [_sequential_first(r) for r in x],
    }
    assert _hex([oracle.reg_bf16_bits(v) for v in rules["k = 0 (mod 8) rule"]]) == _hex(want)
    assert _hex([oracle.reg_bf16_bits(v) for v in rules["plain earlier-NaN"]]) != _hex(want)
    x = oracle.bf16_values(d["mm_vlen256_mm_k_split_x"])
    want = d["mm_vlen256_mm_k_split_out"][:, 0]
    panels = [oracle.reg_bf16_bits(oracle.reference_dot(r, ones, 16, False)) for r in x]
    small = [oracle.reg_bf16_bits(oracle.reference_dot(r, ones, 4, False)) for r in x]
    assert _hex(panels) == _hex(want) and _hex(small) != _hex(want)


def _sequential_first(row) -> np.float32:
    acc = F32(0)
    for v in row:
        acc = oracle.add_first(acc, v)
    return acc


# ------------------------------------------------------------------ order selection by shape

def test_orders_are_chosen_by_blen_when_the_machine_is_built():
    assert sgemm_orders(4) == sgemm_orders(8) == (SEQUENTIAL, LANES4)
    assert sgemm_orders(16) == sgemm_orders(32) == (PANELS, PANELS)
    for blen, mlen in ((4, 64), (16, 128), (32, 256)):
        p = hardware_params(default_settings().with_overrides({"MLEN": mlen, "VLEN": mlen, "BLEN": blen}))
        assert (p[S.P_MM_ORDER], p[S.P_TMM_ORDER]) == sgemm_orders(blen)


# ------------------------------------------------------------------ properties: kernel == oracle

def _bf16_nan(draw) -> int:
    return draw(st.sampled_from([0, 0x8000])) | 0x7F80 | draw(st.integers(1, 0x7F))


def _f32_nan(draw) -> int:
    return draw(st.sampled_from([0, 0x80000000])) | 0x7F800000 | draw(st.integers(1, 0x7FFFFF))


@st.composite
def matmul_case(draw, blen: int, k: int):
    """Random wide-range X[B,K] (bf16) and tile (f32), NaNs planted in X row i0 and in the tile
    entries of output column j0, plus an optional infinity pair (a generated NaN)."""
    seed = draw(st.integers(0, 2**32 - 1))
    i0, j0 = draw(st.integers(0, blen - 1)), draw(st.integers(0, blen - 1))
    position = st.one_of(st.integers(0, k - 1), st.integers(0, k // 8 - 1).map(lambda v: 8 * v),
                         st.integers(0, 3).map(lambda v: 128 + v if k > 128 else v))
    nans = draw(st.lists(st.tuples(position, st.booleans()), min_size=0, max_size=4))
    payloads = [(_bf16_nan(draw), _f32_nan(draw)) for _ in nans]
    infs = draw(st.one_of(st.none(), st.tuples(position, position)))
    acc_nan = draw(st.one_of(st.none(), st.just(_f32_nan(draw))))
    return seed, i0, j0, list(zip(nans, payloads)), infs, acc_nan


def _random_bf16(rng, shape) -> np.ndarray:
    sign = rng.integers(0, 2, shape) << 15
    exp = rng.integers(112, 144, shape) << 7        # 2^-15 .. 2^16: cancellation-prone sums
    return (sign | exp | rng.integers(0, 128, shape)).astype(np.uint16)


@pytest.mark.parametrize("k", [64, 128, 256])
@pytest.mark.parametrize("blen", [4, 8, 16, 32])
@pytest.mark.parametrize("transposed", [False, True], ids=["M_MM", "M_TMM"])
def test_matmul_kernel_matches_the_oracle(blen, k, transposed):
    params = hardware_params(default_settings().with_overrides(
        {"MLEN": k, "VLEN": k, "BLEN": blen, "HLEN": k // 4, "BROADCAST_AMOUNT": 4}))
    params[S.P_VRAM_DEPTH] = blen

    @PROPERTY
    @given(matmul_case(blen, k))
    def check(case):
        seed, i0, j0, nans, infs, acc_nan = case
        rng = np.random.default_rng(seed)
        vram = _random_bf16(rng, (blen, k))
        tile = oracle.bf16_values(_random_bf16(rng, (k, k)))   # tile[kk, j] (M_MM) / tile[j, kk] (M_TMM)
        c = blen * int(rng.integers(0, k // blen))              # column block c .. c+B

        def w_index(kk, j):
            return (c + j, kk) if transposed else (kk, c + j)

        for (kk, in_x), (x_nan, w_nan) in nans:
            if in_x:
                vram[i0, kk] = x_nan
            else:
                tile[w_index(kk, j0)] = oracle.f32_of_bits(w_nan)
        if infs is not None:
            vram[i0, infs[0]], vram[i0, infs[1]] = 0x7F80, 0xFF80
            tile[w_index(infs[0], j0)], tile[w_index(infs[1], j0)] = 1.0, 1.0
        macc = rng.standard_normal((blen, blen)).astype(F32)
        if acc_nan is not None:
            macc[i0, j0] = oracle.f32_of_bits(acc_nan)
        before = macc.copy()
        err = np.zeros(S.ERR_SIZE, dtype=np.int64)
        scratch = np.zeros(scratch_shape(k, k), dtype=F32)
        mram = tile.reshape(1, k * k).copy()
        assert m_mm(transposed, c * k, 0, vram, mram, macc, params, scratch, err, 0)
        x = oracle.bf16_values(vram)
        for i, j in {(i0, j0), (i0, (j0 + 1) % blen), ((i0 + 1) % blen, j0)}:
            w = tile[c + j, :] if transposed else tile[:, c + j]
            want = oracle.accumulate(before[i, j], oracle.reference_dot(x[i], w, blen, transposed))
            assert oracle.f32_bits_of(macc[i, j]) == oracle.f32_bits_of(want), (i, j)

    check()


@st.composite
def two_nans(draw):
    return _bf16_nan(draw), _bf16_nan(draw)


@PROPERTY
@given(two_nans(), st.sampled_from([FP_ADD, FP_SUB, FP_MUL]))
def test_scalar_two_nan_ops_match_the_oracle_in_both_orders(nans, code):
    a_bits, b_bits = nans
    rules = {FP_ADD: lambda a, b: oracle.add_first(b, a), FP_SUB: oracle.sub_first,
             FP_MUL: lambda a, b: oracle.mul_first(b, a)}
    for first, second in ((a_bits, b_bits), (b_bits, a_bits)):
        fpr = np.array([0, first, second, 0, 0, 0, 0, 0], dtype=np.uint16)
        assert s_fp(code, 3, 1, 2, fpr, np.zeros(S.ERR_SIZE, np.int64), 0)
        a, b = oracle.bf16_values(np.uint16(first))[()], oracle.bf16_values(np.uint16(second))[()]
        assert int(fpr[3]) == oracle.reg_bf16_bits(rules[code](a, b))


def _red_sum_kernel(row_bits, f_bits, masked=False, v_mask=0) -> int:
    s = default_settings()
    params = hardware_params(s)
    vram = np.asarray(row_bits, dtype=np.uint16).reshape(1, 64)
    fpr = np.array([0, f_bits, 0, 0, 0, 0, 0, 0], dtype=np.uint16)
    gp = np.zeros(16, dtype=np.int64)
    ctrl = np.zeros(S.CTRL_SIZE, dtype=np.int64)
    ctrl[S.V_MASK] = v_mask
    rows = np.zeros((3, 64), dtype=F32)
    assert v_red_sum(masked, 1, 0, vram, fpr, gp, ctrl, params, rows, np.zeros(S.ERR_SIZE, np.int64), 0)
    return int(fpr[1])


def _red_sum_oracle(row_bits, f_bits, masked=False, v_mask=0) -> int:
    m = oracle.Machine(default_settings(), vram_rows=1)
    m.vram[0] = row_bits
    m.fp[1] = f_bits
    m.v_mask = v_mask
    oracle.OPS["V_RED_SUM"](m, oracle.Fields(1, 0, 0, 1 if masked else 0, 0, 0, 0), 0)
    return m.fp[1]


def test_v_red_sum_two_nans_at_every_lane_distance():
    """Every pair of lanes (p, q), p < q, holding two NaNs of different payload."""
    rng = np.random.default_rng(16)
    row = _random_bf16(rng, 64)
    mismatches = []
    for p in range(64):
        for q in range(p + 1, 64):
            r = row.copy()
            r[p], r[q] = 0x7FE0, 0xFFD1
            got, want = _red_sum_kernel(r, 0), _red_sum_oracle(r, 0)
            if got != want:
                mismatches.append((p, q, hex(got), hex(want)))
    assert mismatches == []


@PROPERTY
@given(st.integers(0, 2**32 - 1), st.lists(st.tuples(st.integers(0, 63), st.integers(0, 2**16 - 1)), max_size=4),
       st.one_of(st.just(0), st.just(0x3F80), st.integers(0, 0x7F).map(lambda m: 0xFF81 | m)),
       st.booleans(), st.integers(0, 15))
def test_v_red_sum_kernel_matches_the_oracle(seed, nans, f_bits, masked, v_mask):
    row = _random_bf16(np.random.default_rng(seed), 64)
    for lane, r in nans:
        row[lane] = (r & 0x8000) | 0x7F80 | max(1, r & 0x7F)
    assert _red_sum_kernel(row, f_bits, masked, v_mask) == _red_sum_oracle(row, f_bits, masked, v_mask)
