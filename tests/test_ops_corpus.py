"""The per-opcode micro-corpus (conformance/ops): 250 programs aimed at one opcode or abort path
each, with the reference's dumps (incl. HBM after stores), cycles and abort pcs."""

from __future__ import annotations

import json

import pytest

from emulator.errors import InputError
from tests.conftest import CONFORMANCE, needs_corpus, sub_corpus_cases
from tests.corpus_util import compare_dumps, reference_cycles, run_case

pytestmark = [needs_corpus, pytest.mark.conformance]

CASES = sub_corpus_cases("ops")


def _case(name: str) -> dict:
    return json.loads((CONFORMANCE / "ops" / name / "case.json").read_text())


@pytest.mark.parametrize("name", CASES)
def test_ops_case(name):
    d = CONFORMANCE / "ops" / name
    exp = _case(name)["expected"]
    err = exp.get("error")
    if err is not None and err["phase"] == "before_execution" and err["kind"] == "load":
        with pytest.raises(InputError):
            run_case(d)
        return
    result = run_case(d)
    logged = sorted(w.split("unknown opcode ")[1][:4].lower() for w in result.warnings if "unknown opcode" in w)
    assert logged == sorted(x.lower() for x in exp.get("decode_log_unknown_opcodes", []))
    if err is not None:
        assert result.error is not None, f"expected {err['kind']} at pc {err['pc']}: {err['message']}"
        assert result.error.kind == err["kind"], str(result.error)
        # For MAX_LOOP_INSTRUCTIONS the reference records the last completed pc; the abort happens
        # before `aborted_before_pc`, which is what we report.
        assert result.error.pc == err.get("aborted_before_pc", err["pc"]), str(result.error)
        if err.get("opcode") not in (None, "INVALID") and "aborted_before_pc" not in err:
            assert result.error.opcode == err["opcode"]
        return
    assert result.error is None, str(result.error)
    cmp = compare_dumps(result, d)
    assert cmp.identical, (f"VRAM rows {cmp.vram_rows[:10]} ({cmp.vram_lanes} lanes), MRAM tiles {cmp.mram_tiles[:5]}, "
                           f"FP SRAM {cmp.fpsram_entries[:10]}, INT SRAM {cmp.intsram_entries[:10]}, "
                           f"HBM bytes {cmp.hbm_bytes}")
    assert result.cycles in reference_cycles(exp)
    assert result.hbm_bytes_read == exp["hbm_bytes_read"]
    assert result.hbm_bytes_written == exp["hbm_bytes_written"]
