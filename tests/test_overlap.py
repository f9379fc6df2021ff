"""The overlapped timing model (emulator/timing): hand-computed programs, properties on random
programs (hypothesis), settings and errors.  The corpus runs are in test_overlap_corpus.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings as hsettings
from hypothesis import strategies as st

from emulator.runner import run
from emulator.settings import SettingsError, default_settings

OVERLAPPED = {"timing": "overlapped"}
SHARED_UNIT = {"timing": "overlapped", "OVERLAP.decoupled": False}


def _settings(overrides=None):
    return default_settings().with_overrides(overrides) if overrides else default_settings()


def _run(asm, overrides=None, **kw):
    r = run(asm, settings=_settings(overrides), trace_limit=1 << 16, **kw)
    assert r.error is None, str(r.error)
    return r


def _starts(r):
    o = r.overlap
    return {int(pc): (int(s), int(e)) for pc, s, e in zip(o.trace_pc, o.trace_start, o.trace_end)}


def _assert_same_data(a, b):
    sa, sb = a.state, b.state
    n = max(sa.vram_rows_used, sb.vram_rows_used)
    assert np.array_equal(sa.vram[:n], sb.vram[:n])
    assert np.array_equal(sa.mram, sb.mram)
    assert np.array_equal(sa.fp_sram, sb.fp_sram)
    assert np.array_equal(sa.int_sram, sb.int_sram)
    assert np.array_equal(sa.gp, sb.gp) and np.array_equal(sa.fp, sb.fp)
    end = max(sa.hbm.last_nonzero_end(), sb.hbm.last_nonzero_end())
    assert sa.hbm.read(0, end) == sb.hbm.read(0, end)
    assert a.cycles == b.cycles  # the sequential figures never change
    assert np.array_equal(a.pc_cycles, b.pc_cycles)


# H_PREFETCH_V of 4 contiguous 64-wide rows from cold HBM takes 32 cycles (hbm2-timing.md); M_MM 64.
PREFETCH_THEN_MATMUL = """
S_ADDI_INT gp1, gp0, 0
S_ADDI_INT gp2, gp0, 4096
C_SET_ADDR_REG a1, gp0, gp0
H_PREFETCH_V gp2, gp1, a1, 0, 0
S_ADDI_INT gp3, gp0, {vec}
M_MM 0, gp1, gp3
S_ADDI_INT gp4, gp0, 128
"""


def test_sequential_is_the_default_and_records_no_overlap():
    r = _run(PREFETCH_THEN_MATMUL.format(vec=0))
    assert r.timing == "sequential" and r.overlap is None
    assert r.cycles == 1 + 1 + 1 + 32 + 1 + 64 + 1


def test_independent_dma_and_matmul_overlap_exactly():
    # M_MM reads VRAM rows 0-3; the prefetch writes rows 64-67: one issue per cycle, so M_MM
    # issues and starts at cycle 5 while the DMA (cycles 3-35) is still running.
    seq = _run(PREFETCH_THEN_MATMUL.format(vec=0))
    r = _run(PREFETCH_THEN_MATMUL.format(vec=0), OVERLAPPED)
    _assert_same_data(seq, r)
    starts = _starts(r)
    assert starts[3] == (3, 35)
    assert starts[5] == (5, 69)
    assert starts[6] == (6, 7)
    assert r.overlap.cycles == 69
    assert seq.cycles == 101
    units = {u.name: u for u in r.overlap.units}
    assert units["matrix"].busy == 64 and units["dma-load"].busy == 32
    assert units["matrix"].stalled == 0
    assert int(r.overlap.pc_critical.sum()) == 69
    assert r.overlap.pc_critical[5] == 64


def test_matmul_on_prefetched_rows_waits_for_the_dma():
    # Now M_MM reads rows 64-67, which the prefetch writes: RAW, it starts when the DMA ends (35).
    r = _run(PREFETCH_THEN_MATMUL.format(vec=4096), OVERLAPPED)
    starts = _starts(r)
    assert starts[5] == (35, 99)
    assert r.overlap.cycles == 99
    units = {u.name: u for u in r.overlap.units}
    assert units["matrix"].stalled == 30  # free and issued at 5, waiting until 35
    top = r.overlap.stalls[0]
    assert (top.unit, top.cause, top.resource, top.blocker_pc, top.cycles) == ("matrix", "RAW", "vram_row", 3, 30)
    assert r.overlap.pc_stall[5] == 30
    assert r.overlap.dependency_bound <= r.overlap.cycles


STRICT_CHAIN = """
S_ADDI_INT gp1, gp0, 64
S_MAP_V_FP gp1, gp0, 0
V_EXP_V gp1, gp1, 0
V_RED_SUM f1, gp1
S_ADD_FP f2, f1, f1
S_EXP_FP f3, f2
S_ST_FP f3, gp0, 5
S_LD_FP f4, gp0, 5
S_ADD_FP f5, f4, f4
"""


def test_fully_dependent_chain_gives_the_sequential_total():
    # every instruction reads what the previous one wrote (gp1, VRAM row 1, f1, f2, f3, FP SRAM[5], f4)
    seq = _run(STRICT_CHAIN)
    r = _run(STRICT_CHAIN, OVERLAPPED)
    _assert_same_data(seq, r)
    assert r.overlap.cycles == seq.cycles
    assert r.overlap.dependency_bound == seq.cycles
    assert int(r.overlap.pc_critical.sum()) == seq.cycles


ONE_ROW_RAW = """
S_ADDI_INT gp1, gp0, 0
C_SET_ADDR_REG a1, gp0, gp0
S_ADDI_INT gp2, gp0, 256
H_PREFETCH_V gp2, gp1, a1, 0, 0
S_ADDI_INT gp3, gp0, 0
V_ADD_VV gp3, gp3, gp3, 0
V_EXP_V gp2, gp2, 0
S_ADDI_INT gp5, gp0, 7
S_ADDI_INT gp6, gp0, 8
"""


def test_raw_on_one_vram_row_serialises_only_that_row():
    # The prefetch writes rows 4-7 (cycles 3-35).  V_ADD_VV on row 0 runs at once; V_EXP_V on
    # row 4 waits for the DMA; the scalar ops after it are not held up.
    seq = _run(ONE_ROW_RAW)
    r = _run(ONE_ROW_RAW, OVERLAPPED)
    _assert_same_data(seq, r)
    starts = _starts(r)
    assert starts[3] == (3, 35)
    assert starts[5] == (5, 6)
    assert starts[6] == (35, 36)
    assert starts[7] == (7, 8) and starts[8] == (8, 9)
    assert r.overlap.cycles == 36
    assert r.overlap.pc_stall.tolist() == [0, 0, 0, 0, 0, 0, 29, 0, 0]
    (stall,) = r.overlap.stalls
    assert (stall.unit, stall.cause, stall.resource, stall.blocker_pc) == ("vector", "RAW", "vram_row", 3)


def test_full_unit_queue_stalls_the_front_end():
    # Two matrix ops back to back: the second waits in the matrix queue (depth 1); the third
    # must wait for the second to start before it can issue, and so must everything after it.
    asm = "M_MM 0, gp0, gp0\nM_MM 0, gp0, gp0\nM_MM 0, gp0, gp0\nS_ADDI_INT gp1, gp0, 1\n"
    r = _run(asm, OVERLAPPED)
    starts = _starts(r)
    assert starts[0] == (0, 64) and starts[1] == (64, 128) and starts[2] == (128, 192)
    assert starts[3] == (65, 66)  # pc 2 issued at 64 (when pc 1 left the queue), pc 3 the cycle after
    assert r.overlap.front_end_stall == 64 - 2
    unit_full = [s for s in r.overlap.stalls if s.cause == "unit_full"]
    assert unit_full[0].unit == "matrix" and unit_full[0].blocker_pc == 1
    deeper = _run(asm, {**OVERLAPPED, "OVERLAP.UNITS.matrix.queue_depth": 2})
    assert _starts(deeper)[3] == (3, 4)


def test_initiation_interval_pipelines_a_unit():
    asm = "M_MM 0, gp0, gp0\nM_MV 0, gp0, gp0\n"
    r = _run(asm, {**OVERLAPPED, "OVERLAP.UNITS.matrix.initiation_interval": 4})
    assert _starts(r)[1] == (4, 68)  # different accumulators: only the unit held it (4 cycles)
    units = {u.name: u for u in r.overlap.units}
    assert units["matrix"].busy == 8


def test_zero_cycle_instructions_take_no_issue_slot():
    asm = "S_ADD_FP f0, f1, f2\nS_ADD_FP f0, f1, f2\nS_ADDI_INT gp1, gp0, 1\n"
    r = _run(asm, OVERLAPPED)
    assert _starts(r)[2] == (0, 1)
    assert r.overlap.cycles == 1


def test_timing_mode_errors_are_clear():
    with pytest.raises(SettingsError, match="timing"):
        _settings({"timing": "parallel"})
    with pytest.raises(SettingsError, match="queue_depth"):
        _settings({"OVERLAP.UNITS.matrix.queue_depth": 0})
    with pytest.raises(SettingsError, match="unknown unit"):
        _settings({"OVERLAP.UNITS.tensor.queue_depth": 2})
    with pytest.raises(SettingsError, match="M_FOO"):
        _settings({"OVERLAP.OCCUPANCY.M_FOO": 2})


def test_settings_round_trip_keeps_the_overlap_table():
    s = _settings({**OVERLAPPED, "OVERLAP.issue_width": 2})
    again = s.with_overrides({"MLEN": 64})
    assert again.timing == "overlapped" and again.overlap.issue_width == 2


# ------------------------------------------------------------------------------ properties

ROW_REGS = (8, 9, 10, 11)        # VRAM addresses 0, 256, 1024, 4096 (rows 0, 4, 16, 64)
ROW_ADDRS = (0, 256, 1024, 4096)
PROLOGUE = "".join(f"S_ADDI_INT gp{r}, gp0, {a}\n" for r, a in zip(ROW_REGS, ROW_ADDRS)) + \
    "S_ADDI_INT gp12, gp0, 8192\nC_SET_ADDR_REG a1, gp0, gp0\nS_ADDI_INT gp15, gp0, 0\n"

row = st.sampled_from(ROW_REGS)
scratch = st.integers(1, 7)
freg = st.integers(0, 7)


def _instruction():
    return st.one_of(
        st.builds(lambda d, s, i: f"S_ADDI_INT gp{d}, gp{s}, {i}", scratch, scratch, st.integers(0, 100)),
        st.builds(lambda d, a, b: f"S_ADD_INT gp{d}, gp{a}, gp{b}", scratch, scratch, scratch),
        st.builds(lambda d, s, i: f"S_ST_INT gp{d}, gp0, {i}", scratch, scratch, st.integers(0, 15)),
        st.builds(lambda d, i: f"S_LD_INT gp{d}, gp0, {i}", scratch, st.integers(0, 15)),
        st.builds(lambda f, i: f"S_LD_FP f{f}, gp0, {i}", freg, st.integers(0, 15)),
        st.builds(lambda f, i: f"S_ST_FP f{f}, gp0, {i}", freg, st.integers(0, 15)),
        st.builds(lambda d, a, b: f"S_ADD_FP f{d}, f{a}, f{b}", freg, freg, freg),
        st.builds(lambda d, a: f"S_EXP_FP f{d}, f{a}", freg, freg),
        st.builds(lambda d, a, b: f"V_ADD_VV gp{d}, gp{a}, gp{b}, 0", row, row, row),
        st.builds(lambda d, a, f: f"V_MUL_VF gp{d}, gp{a}, f{f}, 0", row, row, st.integers(0, 7)),
        st.builds(lambda d, a: f"V_EXP_V gp{d}, gp{a}, 0", row, row),
        st.builds(lambda f, a: f"V_RED_SUM f{f}, gp{a}", freg, row),
        st.builds(lambda d, i: f"S_MAP_V_FP gp{d}, gp0, {i}", row, st.integers(0, 64)),
        st.builds(lambda v: f"M_MM 0, gp15, gp{v}", row),
        st.builds(lambda v: f"M_MV 0, gp15, gp{v}", row),
        st.builds(lambda d: f"M_MM_WO gp{d}, gp0, 0", row),
        st.builds(lambda d: f"M_MV_WO gp{d}, 0", row),
        st.builds(lambda d: f"H_PREFETCH_V gp{d}, gp12, a1, 0, 0", row),
        st.builds(lambda d: f"H_STORE_V gp{d}, gp12, a1, 0, 0", row),
        st.just("H_PREFETCH_M gp15, gp12, a1, 0, 0"),
    )


@st.composite
def programs(draw):
    lines = [PROLOGUE]
    for _ in range(draw(st.integers(1, 4))):
        body = draw(st.lists(_instruction(), min_size=1, max_size=8))
        if draw(st.booleans()):
            inner = draw(st.lists(_instruction(), min_size=1, max_size=4))
            if draw(st.booleans()):
                body = body + [f"C_LOOP_START gp14, {draw(st.integers(1, 3))}"] + inner + ["C_LOOP_END gp14"]
            lines.append(f"C_LOOP_START gp13, {draw(st.integers(1, 3))}\n" + "\n".join(body) + "\nC_LOOP_END gp13\n")
        else:
            lines.append("\n".join(body) + "\n")
    return "".join(lines)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), st.sampled_from(["hbm2", "analytic"]))
def test_overlapped_bounds_on_random_programs(asm, hbm_model):
    seq = _run(asm, {"hbm_model": hbm_model})
    r = _run(asm, {**OVERLAPPED, "hbm_model": hbm_model})
    _assert_same_data(seq, r)
    o = r.overlap
    assert o.instructions == seq.instructions
    # Starting a DMA at another time can make it longer in the cycle-exact HBM2 model (a store's
    # posted writes still draining); the analytic model's durations do not depend on the start.
    assert o.cycles <= seq.cycles + o.dma_extra
    if hbm_model == "analytic":
        assert o.dma_extra == 0 and o.cycles <= seq.cycles
    assert o.cycles >= o.busiest_unit_busy
    assert o.cycles >= o.dependency_bound
    assert int(o.pc_critical.sum()) == o.cycles
    for u in o.units:
        assert u.busy + u.stalled + u.idle == o.cycles and u.idle >= 0
    shared = _run(asm, {**SHARED_UNIT, "hbm_model": hbm_model})
    _assert_same_data(seq, shared)
    assert shared.overlap.cycles == seq.cycles
    assert np.array_equal(shared.overlap.pc_cycles, seq.pc_cycles)
