"""plena-profile and the profiling flags shared with `emulate`."""

from __future__ import annotations

import argparse
import csv
import io
import json

import pytest

from emulator.asm import assemble
from emulator.runner import run
from profiler.cli import add_profile_args, handle_profile, main, parse_clock, parse_size, profile_run_kwargs
from profiler.report import load_profile
from profiler.trace import validate_trace

ASM = """\
; @section kernel
; Preload Activation Generation
S_ADDI_INT gp1, gp0, 64
C_SET_STRIDE_REG gp1
H_PREFETCH_V gp0, gp0, a0, 1, 0
; Row loop
C_LOOP_START gp2, 4
V_EXP_V gp3, gp0, 0
V_RED_SUM f1, gp3
C_LOOP_END gp2
; @end
; router token scores
S_ADDI_INT gp4, gp0, 1
"""


@pytest.fixture
def asm_file(tmp_path):
    path = tmp_path / "kernel.asm"
    path.write_text(ASM)
    return path


def test_run_writes_every_output(asm_file, tmp_path):
    out = io.StringIO()
    files = {k: tmp_path / f for k, f in (("trace", "t.json"), ("json", "p.json"), ("csv", "p.csv"),
                                          ("stage", "s.json"))}
    rc = main(["run", str(asm_file), "--trace", str(files["trace"]), "--profile-json", str(files["json"]),
               "--profile-csv", str(files["csv"]), "--stage-profile-out", str(files["stage"]),
               "--clock", "500MHz"], out=out)
    assert rc == 0
    text = out.getvalue()
    assert "kernel" in text and "TOTAL" in text and "Row loop" in text
    result = run(assemble(ASM))
    saved = json.loads(files["json"].read_text())
    assert saved["totals"]["cycles"] == result.cycles and saved["clock_hz"] == 5e8
    inner = saved["sections"][0]["sections"]
    assert {s["name"] for s in inner} == {"Row loop", "Preload Activation Generation"}
    assert inner[0]["cycles"] >= inner[1]["cycles"]
    assert validate_trace(json.loads(files["trace"].read_text())) == []
    rows = list(csv.DictReader(files["csv"].open()))
    assert int(rows[0]["cycles"]) == result.cycles
    stage = json.loads(files["stage"].read_text())
    assert stage["total_instructions_executed"] == result.instructions
    assert stage["stages"]["router_topk"]["instructions"] == 1
    assert files["stage"].read_text().endswith("}\n")


def test_show_re_renders_a_saved_profile(asm_file, tmp_path):
    saved = tmp_path / "p.json"
    assert main(["run", str(asm_file), "--quiet", "--profile-json", str(saved)], out=io.StringIO()) == 0
    out = io.StringIO()
    assert main(["show", str(saved), "--profile-csv", str(tmp_path / "again.csv")], out=out) == 0
    assert "Row loop" in out.getvalue() and f"{load_profile(saved).totals.cycles:,}" in out.getvalue()
    assert (tmp_path / "again.csv").read_text().startswith("table,path,depth")


def test_static_on_machine_code(tmp_path):
    mem = tmp_path / "k.mem"
    mem.write_text(assemble(ASM).to_mem_text())
    out = io.StringIO()
    saved = tmp_path / "s.json"
    assert main(["static", str(mem), "--profile-json", str(saved)], out=out) == 0
    d = json.loads(saved.read_text())
    assert d["kind"] == "static" and d["sections_mode"] == "pc"
    assert d["totals"]["cycles"] == run(assemble(ASM)).cycles
    assert "static estimate" in out.getvalue()


def test_markers_only_and_normalisation_flags(asm_file, tmp_path):
    saved = tmp_path / "p.json"
    assert main(["static", str(asm_file), "--quiet", "--sections", "markers", "--profile-json", str(saved)],
                out=io.StringIO()) == 0
    assert sorted(s["name"] for s in json.loads(saved.read_text())["sections"]) == ["(unlabelled)", "kernel"]


def test_aborting_program_exits_1_and_still_profiles(tmp_path, capsys):
    prog = tmp_path / "bad.asm"
    prog.write_text("S_ADDI_INT gp1, gp0, 1\nC_LOOP_END gp3\n")
    saved = tmp_path / "p.json"
    assert main(["run", str(prog), "--quiet", "--profile-json", str(saved)], out=io.StringIO()) == 1
    assert json.loads(saved.read_text())["error"]["kind"] == "loop"
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["show", "/nonexistent/p.json"], ["run", "/nonexistent/p.asm"],
                                  ["static", "{asm}", "--section-normalize", "colour"]])
def test_bad_input_exits_2(argv, asm_file, capsys):
    argv = [a.replace("{asm}", str(asm_file)) for a in argv]
    assert main(argv, out=io.StringIO()) == 2
    assert "plena-profile: error:" in capsys.readouterr().err


def test_emulate_integration(asm_file, tmp_path):
    """What the `emulate` CLI does with the shared flags."""
    parser = argparse.ArgumentParser()
    parser.add_argument("program")
    add_profile_args(parser)
    args = parser.parse_args([str(asm_file), "--profile", "--trace", str(tmp_path / "t.json"),
                              "--stage-profile-out", str(tmp_path / "s.json"), "--trace-limit", "3"])
    program = assemble(ASM)
    kwargs = profile_run_kwargs(args, program)
    assert kwargs["trace_limit"] == 3 and len(kwargs["seconds_labels"]) == 3
    result = run(program, **kwargs)
    out = io.StringIO()
    profile = handle_profile(args, result, out)
    assert profile.totals.cycles == result.cycles and "TOTAL" in out.getvalue()
    trace = json.loads((tmp_path / "t.json").read_text())
    assert validate_trace(trace) == [] and trace["otherData"]["exact_instructions"] == 3
    assert json.loads((tmp_path / "s.json").read_text())["total_instructions_executed"] == result.instructions
    quiet = parser.parse_args([str(asm_file)])
    assert profile_run_kwargs(quiet, program) == {} and handle_profile(quiet, result) is None


@pytest.mark.parametrize("text, hz", [("1e9", 1e9), ("1GHz", 1e9), ("800MHz", 8e8), ("250 kHz", 2.5e5), ("2.5G", 2.5e9)])
def test_parse_clock(text, hz):
    assert parse_clock(text) == hz


@pytest.mark.parametrize("text", ["fast", "0", "-1GHz", "1THz"])
def test_parse_clock_rejects(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_clock(text)


@pytest.mark.parametrize("text, n", [("1048576", 1 << 20), ("1M", 1 << 20), ("16GiB", 16 << 30), ("4k", 4096)])
def test_parse_size(text, n):
    assert parse_size(text) == n
