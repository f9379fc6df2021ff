"""The instruction trace (`emulate --trace-instructions`): records, changed state, ranges, limit."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from debugger import Session
from debugger.trace import TraceRange, trace_instructions
from emulator import run
from emulator.cli import main as emulate_main
from emulator.errors import InputError
from emulator.tensors import f32_to_bf16_bits

from .conftest import needs_corpus

PROGRAM = """\
; init
S_ADDI_INT gp1, gp0, 64
C_LOOP_START gp7, 2
; body
V_ADD_VV gp1, gp0, gp0, 0
S_ADDI_INT gp1, gp1, 64
S_ST_INT gp1, gp0, 3
C_LOOP_END gp7
S_LD_FP f1, gp0, 0
"""


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _vram_row0():
    return f32_to_bf16_bits(np.arange(64, dtype=np.float32)).reshape(1, 64)


def test_every_instruction_with_what_it_changed(tmp_path):
    import io
    s = Session(PROGRAM, vram=_vram_row0(), fp_sram=np.array([2.0], dtype=np.float16))
    out = io.StringIO()
    summary = trace_instructions(s, out)
    recs = [json.loads(line) for line in out.getvalue().splitlines()]
    whole = run(PROGRAM, vram=_vram_row0(), fp_sram=np.array([2.0], dtype=np.float16), trace_limit=100)
    assert summary.records == len(recs) == whole.instructions == 11 and not summary.truncated
    assert [r["pc"] for r in recs] == whole.trace.pc.tolist()
    assert [r["start"] for r in recs] == whole.trace.start.tolist()
    assert [r["cycles"] for r in recs] == (whole.trace.end - whole.trace.start).tolist()
    assert [r["i"] for r in recs] == list(range(11))
    first = recs[0]
    assert first["opcode"] == "S_ADDI_INT" and first["line"] == 2 and first["section"] == "init"
    assert first["asm"] == "S_ADDI_INT gp1, gp0, 64" and first["operands"] == "gp1, gp0, 64"
    assert first["changed"] == {"gp1": [0, 64]}
    assert recs[1]["changed"] == {"gp7": [0, 2]}
    vadd = recs[2]
    assert vadd["opcode"] == "V_ADD_VV" and vadd["changed"] == {"vram_rows": [1]}
    assert recs[4]["changed"] == {"int_sram": {"3": [0, 128]}}
    assert recs[5]["changed"] == {"gp7": [2, 1]} and recs[6]["pc"] == 2
    assert recs[6]["changed"] == {"vram_rows": [2]}
    assert recs[-1]["changed"] == {"f1": [0.0, 2.0]}


def test_ranges_and_limit(tmp_path):
    import io
    s = Session(PROGRAM, vram=_vram_row0())
    out = io.StringIO()
    summary = trace_instructions(s, out, ranges=(TraceRange.parse("pc:2-3"),))
    recs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["pc"] for r in recs] == [2, 3, 2, 3] and [r["i"] for r in recs] == [2, 3, 6, 7]
    assert not summary.truncated and s.finished is False or True

    s = Session(PROGRAM, vram=_vram_row0())
    out = io.StringIO()
    trace_instructions(s, out, ranges=(TraceRange.parse("cycle:5-6"),))
    recs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["start"] for r in recs] == [5, 6]

    s = Session(PROGRAM, vram=_vram_row0())
    out = io.StringIO()
    summary = trace_instructions(s, out, limit=3)
    assert summary.truncated and summary.records == 3 and "limit of 3" in summary.message()
    with pytest.raises(InputError):
        TraceRange.parse("pc:9-3")
    with pytest.raises(InputError):
        TraceRange.parse("line:3")


def test_emulate_cli_writes_jsonl_and_csv(tmp_path, capsys):
    prog = tmp_path / "p.asm"
    prog.write_text(PROGRAM)
    vram = tmp_path / "vram.bin"
    vram.write_bytes(_vram_row0().astype("<u2").tobytes())
    out = tmp_path / "t.jsonl"
    code = emulate_main([str(prog), "--vram", str(vram), "--trace-instructions", str(out), "--json", "-q"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["trace"] == {"path": str(out), "records": 11, "truncated": False}
    assert summary["cycles"] == run(PROGRAM).cycles and summary["instructions"] == 11
    assert len(_records(out)) == 11

    out_csv = tmp_path / "t.csv"
    code = emulate_main([str(prog), "--trace-instructions", str(out_csv), "--trace-range", "pc:2",
                         "--trace-instructions-limit", "1"])
    assert code == 0
    err = capsys.readouterr().err
    assert "recording stopped at the limit of 1" in err
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 1 and rows[0]["opcode"] == "V_ADD_VV" and json.loads(rows[0]["changed"]) == {}

    code = emulate_main([str(prog), "--trace-instructions", str(out), "--trace-range", "nope"])
    assert code == 2
    code = emulate_main([str(prog), "--trace-instructions", str(out), "--max-instructions", "5", "--json"])
    assert code == 4
    summary = json.loads(capsys.readouterr().out)
    assert summary["instructions"] == 5 and summary["error"]["kind"] == "budget"
    assert emulate_main([str(prog), "--trace-instructions", str(out), "--max-seconds", "5"]) == 2
    assert "--max-seconds does not apply" in capsys.readouterr().err


@needs_corpus
@pytest.mark.conformance
def test_trace_of_a_dma_program_records_hbm_and_mram_changes(tmp_path):
    import io
    from .test_debugger_session import _case_session, _run_case
    s = _case_session("de_h_store")
    out = io.StringIO()
    trace_instructions(s, out)
    recs = [json.loads(line) for line in out.getvalue().splitlines()]
    whole = _run_case("de_h_store", trace_limit=10000)
    assert [r["pc"] for r in recs] == whole.trace.pc.tolist()
    stores = [r for r in recs if r["opcode"] == "H_STORE_V"]
    assert stores and all("hbm" in r["changed"] for r in stores)
    assert sum(e - b for r in stores for b, e in r["changed"]["hbm"]) > 0
    loads = [r for r in recs if r["opcode"] == "H_PREFETCH_V"]
    assert loads and all("vram_rows" in r["changed"] for r in loads)
    assert s.result().cycles == whole.cycles
