"""The conformance corpus: 30 real PLENA programs with the reference emulator's dumps and cycles.

Bit-exact target: VRAM rows, MRAM tiles, FP SRAM and INT SRAM dumps identical to expected/, cycles
and HBM byte counts equal to case.json; the three stale programs abort at the recorded pc.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import CONFORMANCE, corpus_cases, needs_corpus
from tests.corpus_util import compare_dumps, reference_cycles, run_case

pytestmark = [needs_corpus, pytest.mark.conformance]

CASES = corpus_cases()


def _expected(name: str) -> dict:
    return json.loads((CONFORMANCE / name / "case.json").read_text())["expected"]


@pytest.mark.parametrize("name", [n for n in CASES if "error" not in _expected(n)])
def test_corpus_case_bit_exact(name):
    exp = _expected(name)
    result = run_case(CONFORMANCE / name)
    assert result.error is None, str(result.error)
    cmp = compare_dumps(result, CONFORMANCE / name)
    assert cmp.identical, f"{name}: differing VRAM rows {cmp.vram_rows[:10]} ({cmp.vram_lanes} lanes), " \
                          f"MRAM tiles {cmp.mram_tiles[:10]}, FP SRAM {cmp.fpsram_entries[:10]}, " \
                          f"INT SRAM {cmp.intsram_entries[:10]}"
    assert result.cycles in reference_cycles(exp)
    assert result.hbm_bytes_read == exp["hbm_bytes_read"]
    assert result.hbm_bytes_written == exp["hbm_bytes_written"]
    assert int(result.pc_cycles.sum()) == result.cycles
    assert int(result.pc_count.sum()) == result.instructions


@pytest.mark.parametrize("name", [n for n in CASES if "error" in _expected(n)])
def test_corpus_error_case_aborts_at_recorded_pc(name):
    exp = _expected(name)["error"]
    result = run_case(CONFORMANCE / name)
    err = result.error
    assert err is not None
    assert err.pc == exp["pc"]
    assert err.opcode == exp["opcode"]
    assert err.kind == "alignment"
    text = str(err)
    assert f"pc {exp['pc']}" in text and exp["opcode"] in text and "row-granular" in text


@pytest.mark.parametrize("name", ["aten_linear", "de_flashattn_decode"])
def test_corpus_case_from_asm_matches_mem(name):
    """Running the ASM source gives the same result as the machine code, with a source map."""
    from emulator.asm import assemble
    from emulator.runner import run
    from tests.corpus_util import case_settings

    d = CONFORMANCE / name
    program = assemble((d / "program.asm").read_text(), name=name)
    result = run(program, settings=case_settings(d), hbm=d / "hbm.bin", fp_sram=d / "fp_sram.bin",
                 int_sram=d / "int_sram.bin" if (d / "int_sram.bin").exists() else None)
    assert compare_dumps(result, d).identical
    assert result.cycles == _expected(name)["cycles"]
    assert program.source is not None and len(program.source) == len(program)


def test_analytic_model_reports_itself(corpus):
    """The analytic HBM model is selectable and the run result says which model produced cycles."""
    d = corpus / "aten_linear"
    exact = run_case(d)
    quick = run_case(d, hbm_model="analytic")
    assert exact.hbm_model == "hbm2" and quick.hbm_model == "analytic"
    assert compare_dumps(quick, d).identical            # data never depends on timing
    assert quick.hbm_bytes_read == exact.hbm_bytes_read
    assert quick.cycles != exact.cycles
