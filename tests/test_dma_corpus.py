"""The DMA timing corpus (conformance/dma) through the real executor and the HBM2 model.

For the 88 deterministic cases: program cycles, every static instruction's cycles and HBM bytes,
and (for loops) the end cycle of every iteration equal the reference.  The 3 cases whose reference
result varies from run to run must give the reference model's deterministic "tick first" values,
inside the spread the reference showed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import CONFORMANCE, needs_corpus, sub_corpus_cases
from tests.corpus_util import run_case

pytestmark = [needs_corpus, pytest.mark.conformance]

CASES = sub_corpus_cases("dma")


@pytest.mark.parametrize("name", CASES)
def test_dma_case(name):
    d = CONFORMANCE / "dma" / name
    case = json.loads((d / "case.json").read_text())
    result = run_case(d, trace_limit=1 << 16)
    assert result.error is None, str(result.error)
    stable = case["deterministic"]
    key = "cycles" if stable else "reference_model_cycles"
    assert result.cycles == case[key]
    if not stable:
        lo, hi = min(case["repeat_cycles"]), max(case["repeat_cycles"])
        assert lo <= result.cycles <= hi
    assert result.hbm_bytes_read == case["hbm_bytes_read"]
    assert result.hbm_bytes_written == case["hbm_bytes_written"]
    per_key = "cycles_total" if stable else "reference_model_cycles_total"
    for entry in case["per_instruction"]:
        pc = entry["pc"]
        assert result.pc_count[pc] == entry["executions"], f"pc {pc} {entry['asm']}"
        assert result.pc_cycles[pc] == entry[per_key], f"pc {pc} {entry['asm']}"
        assert result.pc_hbm_read[pc] == entry["hbm_bytes_read"], f"pc {pc} {entry['asm']}"
        assert result.pc_hbm_written[pc] == entry["hbm_bytes_written"], f"pc {pc} {entry['asm']}"
    ends_key = "loop_iteration_end_cycles" if stable else "reference_model_loop_iteration_end_cycles"
    if case.get(ends_key):
        # The loop is each program's tail: iteration i ends when its C_LOOP_END completes.
        loop_end_pc = max(e["pc"] for e in case["per_instruction"] if e["asm"].startswith("C_LOOP_END"))
        assert not result.trace.truncated
        ends = result.trace.end[result.trace.pc == loop_end_pc]
        np.testing.assert_array_equal(ends, np.asarray(case[ends_key]))
