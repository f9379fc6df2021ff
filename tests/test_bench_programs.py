"""bench/programs.py builds valid programs with the instruction mixes bench/run.py claims."""

from __future__ import annotations

import sys
from collections import Counter

import pytest

from emulator import assemble, disassemble_word, load_settings, run
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import programs as P  # noqa: E402

CASES = {
    "linear": (lambda: P.linear(64, 4, rows=16, k_tiles=2, n_tiles=2, outer=2), {"H_PREFETCH_M", "M_MM", "M_MM_WO"}),
    "linear128": (lambda: P.linear(128, 16, rows=32, k_tiles=2, n_tiles=1, outer=1), {"H_PREFETCH_M", "M_MM"}),
    "ffn": (lambda: P.ffn(64, 4, rows=8, k_tiles=2, n_tiles=2, outer=1),
            {"H_PREFETCH_M", "M_MM", "V_EXP_V", "V_RECI_V", "V_MUL_VV"}),
    "moe": (lambda: P.moe_expert(64, 4, rows=8, k_tiles=2, n_tiles=2, outer=1), {"H_PREFETCH_M", "M_MM", "H_STORE_V"}),
    "flash": (lambda: P.flash_attention_gqa(64, 4, kv_tiles=2, outer=1),
              {"H_PREFETCH_M", "M_BTMM", "M_BMM_WO", "M_TMM", "V_RED_MAX", "V_RED_SUM", "V_EXP_V", "S_EXP_FP"}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bench_program_runs_with_its_mix(name):
    build, needed = CASES[name]
    bp = build()
    program = assemble(bp.asm)
    result = run(program, settings=load_settings(overrides=dict(bp.overrides, hbm_model="analytic")), hbm=bp.hbm,
                 vram=bp.vram, fp_sram=P.fp_sram_image())
    assert result.error is None, str(result.error)
    executed = Counter()
    for pc, count in enumerate(result.pc_count):
        executed[disassemble_word(int(program.words[pc])).split()[0]] += int(count)
    assert all(executed[m] > 0 for m in needed), {m: executed[m] for m in needed}
    assert result.hbm_bytes_read > 0


def test_outer_loop_scales_the_dynamic_count():
    one, two = (run(assemble(P.linear(64, 4, rows=16, k_tiles=2, n_tiles=1, outer=k).asm),
                    settings=load_settings(overrides={"MAX_LOOP_INSTRUCTIONS": P.BIG_LOOP, "hbm_model": "analytic"}))
                for k in (1, 2))
    assert two.instructions > one.instructions > 0
