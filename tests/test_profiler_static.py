"""Static estimate: loop expansion and closed-form costs equal a run; what is flagged as inexact."""

from __future__ import annotations

import numpy as np
import pytest

from emulator.asm import assemble
from emulator.runner import run
from emulator.settings import default_settings
from profiler.report import profile_to_dict
from profiler.static import estimate, static_profile

LOOPS = """\
S_ADDI_INT gp9, gp0, 1
C_LOOP_START gp1, 10
S_ADDI_INT gp2, gp2, 1
S_SUB_INT gp1, gp1, gp9
C_LOOP_END gp1
C_LOOP_START gp3, 3
C_LOOP_START gp4, 5
S_ADD_FP f1, f2, f3
S_ADD_FP f0, f2, f3
V_RED_SUM f0, gp0
C_LOOP_END gp4
C_LOOP_START gp3, 2
V_ADD_VV gp5, gp0, gp0, 0
C_LOOP_END gp3
C_LOOP_END gp3
C_LOOP_START gp6, 4
C_LOOP_START gp7, 9
C_BREAK
V_EXP_V gp5, gp0, 0
C_LOOP_END gp6
S_MAP_V_FP gp0, gp0, 0
V_TOPK gp10, gp0, gp11, 1
M_MM 0, gp0, gp0
M_MM_WO gp12, gp0, 0
"""

# The body sets the live counter to gp3 and decrements gp3: the loop runs INT_SRAM[2] times.
INT_SRAM_LOOP = """\
S_LD_INT gp3, gp0, 2
C_LOOP_START gp1, 1
V_MUL_VV gp5, gp0, gp0, 0
S_ADD_INT gp1, gp3, gp0
S_ADDI_INT gp9, gp0, 1
S_SUB_INT gp3, gp3, gp9
C_LOOP_END gp1
"""

DMA = """\
S_ADDI_INT gp1, gp0, 4096
C_SET_SCALE_REG gp1
S_ADDI_INT gp2, gp0, 128
C_SET_STRIDE_REG gp2
S_LUI_INT gp3, 16
C_SET_ADDR_REG a1, gp0, gp3
C_LOOP_START gp4, 3
H_PREFETCH_V gp5, gp6, a1, 1, 0
S_ADDI_INT gp5, gp5, 256
S_ADDI_INT gp6, gp6, 64
V_ADD_VV gp7, gp7, gp7, 0
C_LOOP_END gp4
H_PREFETCH_M gp0, gp0, a1, 1, 0
H_STORE_V gp0, gp6, a1, 0, 0
H_STORE_V gp0, gp6, a1, 1, 1
"""


def _same(program_text, settings=None, int_sram=None):
    program = assemble(program_text)
    settings = settings or default_settings()
    est = estimate(program, settings, int_sram=int_sram)
    result = run(program, settings=settings, int_sram=int_sram)
    assert result.error is None, result.error
    assert est.error is None
    assert est.counters.cycles == result.cycles
    assert est.counters.instructions == result.instructions
    np.testing.assert_array_equal(est.counters.pc_count, result.pc_count)
    np.testing.assert_array_equal(est.counters.pc_cycles, result.pc_cycles)
    np.testing.assert_array_equal(est.counters.pc_hbm_read, result.pc_hbm_read)
    np.testing.assert_array_equal(est.counters.pc_hbm_written, result.pc_hbm_written)
    return est, result


def test_loop_semantics_and_closed_form_costs_match_a_run():
    est, result = _same(LOOPS)
    assert est.exact and est.dma_instructions == 0
    s = default_settings()
    pc_cycles = est.counters.pc_cycles
    assert est.counters.pc_count[2] == 5                # counter decremented twice per pass: 5 passes
    assert pc_cycles[8] == 0 and pc_cycles[9] == 0       # f0 destinations are 0-cycle no-ops
    assert est.counters.pc_count[18] == 4                # C_BREAK pops the inner loop, the outer goes on
    assert pc_cycles[20] == 2 * s.VLEN                   # S_MAP_V_FP
    assert pc_cycles[21] == 128 * s.latency("VECTOR_MAX_CYCLES")   # V_TOPK policy 1


def test_dc_disabled_latencies():
    s = default_settings().with_overrides({"DC_EN": 0})
    est, _ = _same(LOOPS, settings=s)
    assert est.exact


def test_int_sram_values_drive_the_loop():
    int_sram = np.array([0, 0, 4], dtype=np.uint32).tobytes()
    est, result = _same(INT_SRAM_LOOP, int_sram=int_sram)
    assert est.counters.pc_count[2] == 4
    est0 = estimate(assemble(INT_SRAM_LOOP))
    assert est0.counters.pc_count[2] == 1


def test_dma_through_the_same_hbm_model():
    est, result = _same(DMA)
    assert est.dma_instructions == 6
    assert est.exact
    assert est.counters.hbm_bytes_read == result.hbm_bytes_read > 0
    assert est.counters.hbm_bytes_written == result.hbm_bytes_written > 0


def test_analytic_hbm_is_marked_as_an_estimate():
    est = estimate(assemble(DMA), default_settings(), hbm_model="analytic")
    assert not est.exact
    info = est.estimate_info()
    assert "cycles" in info["estimated"] and any("analytic" in n for n in info["notes"])


def test_data_dependent_loop_is_flagged():
    text = """\
V_TOPK gp0, gp0, gp0, 0
S_LD_INT gp3, gp0, 1
C_LOOP_START gp1, 2
S_ADD_INT gp1, gp3, gp0
C_LOOP_END gp1
"""
    est = estimate(assemble(text))
    assert not est.exact
    assert any("V_TOPK" in n for n in est.notes)


@pytest.mark.parametrize("text, overrides, kind", [
    ("S_ADDI_INT gp1, gp0, 1\nC_LOOP_END gp2\n", {}, "loop"),
    ("C_LOOP_START gp1, 5\nS_ADDI_INT gp2, gp0, 1\nS_ADDI_INT gp2, gp0, 1\nC_LOOP_END gp1\n",
     {"MAX_LOOP_INSTRUCTIONS": 2}, "max_loop"),
    ("C_BREAK\n", {}, "loop"),
    ("S_ADDI_INT gp1, gp0, 1024\nS_LD_INT gp2, gp1, 0\n", {}, "out_of_range"),
    ("S_ADDI_INT gp1, gp0, 1\nH_PREFETCH_V gp1, gp0, a0, 0, 0\n", {}, "alignment"),
])
def test_control_and_dma_aborts_match_a_run(text, overrides, kind):
    settings = default_settings().with_overrides(overrides) if overrides else default_settings()
    program = assemble(text)
    est = estimate(program, settings)
    result = run(program, settings=settings)
    assert result.error is not None and est.error is not None
    assert est.error["kind"] == result.error.kind == kind
    assert est.error["pc"] == result.error.pc
    assert est.counters.cycles == result.cycles
    assert not est.exact


def test_budget_stops_the_estimate():
    est = estimate(assemble("C_LOOP_START gp1, 1000\nS_ADDI_INT gp2, gp2, 1\nC_LOOP_END gp1\n"), max_instructions=50)
    assert est.counters.instructions == 50 and not est.exact
    assert any("budget" in n for n in est.notes)


def test_static_profile_says_what_it_is():
    p = static_profile(assemble(LOOPS))
    d = profile_to_dict(p)
    assert d["kind"] == "static"
    assert d["estimate"]["exact"] is True and d["estimate"]["estimated"] == []
    assert sum(s["cycles"] for s in d["sections"]) == d["totals"]["cycles"]


def test_unaligned_dma_with_narrow_rows():
    """MLEN = VLEN = 32 (the reference's built-in defaults): an unaligned 32-byte row spans two
    64-byte blocks, so a row can touch more blocks than MLEN/64 + 1."""
    from emulator.settings import load_settings
    from isa_specs import REFERENCE_BUILTIN_TOML

    settings = load_settings(REFERENCE_BUILTIN_TOML)
    est, result = _same("S_ADDI_INT gp1, gp0, 48\nH_PREFETCH_V gp0, gp1, a0, 0, 0\n"
                        "H_PREFETCH_M gp0, gp1, a0, 0, 0\nH_STORE_V gp0, gp1, a0, 0, 0\n", settings=settings)
    assert est.exact and result.hbm_bytes_read > 0
