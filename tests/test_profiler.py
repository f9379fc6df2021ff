"""Profiler: sections, aggregation, JSON/CSV/table output (synthetic runs; no emulator run needed)."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from emulator.asm import assemble, parse_mem
from emulator.settings import default_settings
from isa_specs import UNITS
from profiler.aggregate import HBM_PEAK_BYTES_PER_CYCLE, Counters, build_profile, peak_macs, profile_run
from profiler.report import (
    ProfileFormatError, bar, load_profile, profile_from_dict, profile_to_csv, profile_to_dict, profile_to_json,
    render_text,
)
from profiler.sections import UNLABELLED, Normalization, SectionError, build_sections
from tests.test_profiler_support import synthetic_result

TEMPLATE_ASM = """\
; Preload Addr Reg Generation
S_ADDI_INT gp1, gp0, 0
C_SET_ADDR_REG a0, gp0, gp1
; Reset Registers [[1, 2, 3]]
S_ADDI_INT gp1, gp0, 0
S_ADDI_INT gp2, gp0, 0
; === FFN Gate ===
C_LOOP_START gp5, 3
M_MM 0, gp2, gp3
C_LOOP_END gp5
; Reset Registers [[1, 2, 3, 4]]
S_ADDI_INT gp1, gp0, 0
"""
# pc:                         0  1  2  3  4  5  6  7
TEMPLATE_EXECUTED = [0, 1, 2, 3, 4, 5, 6, 5, 6, 5, 6, 7]
TEMPLATE_COST = {5: 64}


def template_result():
    return synthetic_result(TEMPLATE_ASM, TEMPLATE_EXECUTED, TEMPLATE_COST, hbm={1: (64, 0)})


# ----------------------------------------------------------------------------------- sections

@pytest.mark.parametrize("raw, norm, expected", [
    ("; === Reset MRAM ===", "basic", "Reset MRAM"),
    (";   Preload  Activation   Generation ", "basic", "Preload Activation Generation"),
    ("; Reset Registers [[1, 2, 3]] ", "basic", "Reset Registers [[1, 2, 3]]"),
    ("; Reset Registers [[1, 2, 3]] ", "brackets", "Reset Registers"),
    ("; Reset Registers [[1, 2, 3, 4, 5, 6]]", "brackets", "Reset Registers"),
    ("; Reset FP SRAM [138, 202)", "brackets", "Reset FP SRAM"),
    ("; Load SubMatrix Col W_up_e0[:][0] -> MRAM[0]", "brackets", "Load SubMatrix Col W_up_e0 -> MRAM"),
    ("; Column block 12", "numbers", "Column block #"),
    ("; HBM[320] → VRAM[4096], shape=(4, 64)", "all", "HBM → VRAM, shape=(#, #)"),
])
def test_normalization(raw, norm, expected):
    assert Normalization.parse(norm).apply(raw) == expected


def test_normalization_rejects_unknown_steps():
    with pytest.raises(SectionError, match="brackets, numbers"):
        Normalization.parse("brackets,colours")
    assert Normalization.parse("numbers,brackets") == Normalization(brackets=True, numbers=True)
    assert Normalization.parse("all").describe() == "brackets,numbers"


def test_comment_sections_and_bracket_aggregation():
    program = assemble(TEMPLATE_ASM)
    smap = build_sections(program, "comments")
    assert smap.mode == "comments"
    assert [smap.path_of(pc) for pc in range(len(program))] == [
        ("Preload Addr Reg Generation",)] * 2 + [("Reset Registers [[1, 2, 3]]",)] * 2 + \
        [("FFN Gate",)] * 3 + [("Reset Registers [[1, 2, 3, 4]]",)]
    merged = build_sections(program, "comments", normalization=Normalization(brackets=True))
    assert merged.path_of(2) == merged.path_of(7) == ("Reset Registers",)
    assert len(merged.paths) == 3


def test_block_sections_take_the_first_line_of_a_comment_block():
    asm = """\
; FFN Upsize Linear Generation
; K-split inactive: num_k_tiles=1
S_ADDI_INT gp1, gp0, 1
; SILU Generation

; detail after a blank line
S_ADDI_INT gp1, gp0, 2
; @section outer
; Inner heading
; inner detail
S_ADDI_INT gp1, gp0, 3
; @end
"""
    program = assemble(asm)
    blocks = build_sections(program, "blocks")
    assert [blocks.path_of(pc) for pc in range(3)] == [
        ("FFN Upsize Linear Generation",), ("SILU Generation",), ("outer", "Inner heading")]
    comments = build_sections(program, "comments")
    assert comments.path_of(0) == ("K-split inactive: num_k_tiles=1",)
    default = build_sections(program)          # blocks is the default for ASM sources
    assert default.mode == "blocks" and default.path_of(0) == blocks.path_of(0)


def test_markers_build_a_hierarchy():
    asm = """\
S_ADDI_INT gp1, gp0, 1
; Preload
S_ADDI_INT gp1, gp0, 2
; @section layer0
S_ADDI_INT gp1, gp0, 3
; FFN Gate
S_ADDI_INT gp1, gp0, 4
;   @section   inner part
; QKT
S_ADDI_INT gp1, gp0, 5
; @end inner part
S_ADDI_INT gp1, gp0, 6
; @end
S_ADDI_INT gp1, gp0, 7
"""
    program = assemble(asm)
    smap = build_sections(program)
    assert smap.has_markers
    assert [smap.path_of(pc) for pc in range(7)] == [
        (UNLABELLED,), ("Preload",), ("layer0",), ("layer0", "FFN Gate"), ("layer0", "inner part", "QKT"),
        ("layer0", "FFN Gate"), ("Preload",)]
    markers = build_sections(program, "markers")
    assert [markers.path_of(pc) for pc in range(7)] == [
        (UNLABELLED,), (UNLABELLED,), ("layer0",), ("layer0",), ("layer0", "inner part"), ("layer0",), (UNLABELLED,)]


@pytest.mark.parametrize("asm, message", [
    ("; @end\nS_ADDI_INT gp1, gp0, 1\n", "without an open"),
    ("; @section a\nS_ADDI_INT gp1, gp0, 1\n; @end b\n", "closes section 'a'"),
    ("; @section\nS_ADDI_INT gp1, gp0, 1\n", "needs a name"),
])
def test_bad_markers_are_reported_with_the_line(asm, message):
    with pytest.raises(SectionError, match=message) as info:
        build_sections(assemble(asm))
    assert "line " in str(info.value)


def test_unclosed_marker_is_a_warning():
    smap = build_sections(assemble("; @section open\nS_ADDI_INT gp1, gp0, 1\n"))
    assert smap.path_of(0) == ("open",)
    assert any("never closed" in w for w in smap.warnings)


def test_machine_code_profiles_per_pc():
    program = parse_mem("0x00004062\n0x00004062\n")  # two S_ADDI_INT words
    smap = build_sections(program)
    assert smap.mode == "pc"
    assert smap.paths == (("pc 0",), ("pc 1",))


# ----------------------------------------------------------------------------------- aggregation

def _check_sums(node_list, expect_cycles, expect_instr):
    assert sum(n.stats.cycles for n in node_list) == expect_cycles
    assert sum(n.stats.instructions for n in node_list) == expect_instr
    for n in node_list:
        assert sum(n.stats.unit_cycles.values()) == n.stats.cycles
        assert sum(r.cycles for r in n.by_opcode.values()) == n.stats.cycles
        assert sum(r.instructions for r in n.by_opcode.values()) == n.stats.instructions
        if n.children:
            assert n.self_stats.cycles + sum(c.stats.cycles for c in n.children) == n.stats.cycles
            _check_sums(n.children, n.stats.cycles - n.self_stats.cycles,
                        n.stats.instructions - n.self_stats.instructions)


def test_profile_tables_add_up_to_the_run():
    result = template_result()
    p = profile_run(result)
    assert p.totals.cycles == result.cycles == 3 * 64 + 9
    _check_sums(p.sections, result.cycles, result.instructions)
    assert [s.name for s in p.sections][0] == "FFN Gate"
    gate = p.find("FFN Gate")
    assert gate.stats.cycles == 3 * 64 + 1 + 3 and gate.stats.instructions == 7
    assert gate.by_opcode["M_MM"].instructions == 3 and gate.by_opcode["C_LOOP_END"].cycles == 3
    assert gate.stats.unit_cycles["matrix"] == 192 and gate.stats.unit_cycles["control"] == 4
    assert p.find("Preload Addr Reg Generation").stats.hbm_bytes_read == 64
    assert sum(r.cycles for r in p.by_opcode.values()) == result.cycles
    assert sum(p.totals.unit_cycles.values()) == result.cycles
    s = default_settings()
    assert p.totals.macs == 3 * s.BLEN * s.MLEN * s.BLEN
    assert p.hot_pcs[0].pc == 5 and p.hot_pcs[0].text == "M_MM 0, gp2, gp3" and p.hot_pcs[0].line == 9


def test_hierarchical_sums():
    asm = """\
; @section outer
S_ADDI_INT gp1, gp0, 1
; part A
V_ADD_VV gp1, gp1, gp1, 0
; @section inner
M_MM 0, gp2, gp3
; @end
; @end
; tail
S_ADDI_INT gp1, gp0, 1
"""
    result = synthetic_result(asm, [0, 1, 2, 1, 2, 3], {2: 64, 1: 3})
    p = profile_run(result)
    outer = p.find("outer")
    assert outer.stats.cycles == 1 + 2 * 3 + 2 * 64
    assert outer.self_stats.cycles == 1
    assert p.find("outer", "part A").stats.cycles == 6
    assert p.find("outer", "inner").stats.cycles == 128
    _check_sums(p.sections, result.cycles, result.instructions)
    d = profile_to_dict(p)
    top = {s["name"]: s for s in d["sections"]}
    assert top["outer"]["self"]["cycles"] == 1
    assert sum(c["cycles"] for c in top["outer"]["sections"]) + top["outer"]["self"]["cycles"] == top["outer"]["cycles"]


def test_counters_must_match_the_program():
    program = assemble(TEMPLATE_ASM)
    z = np.zeros(3, dtype=np.int64)
    with pytest.raises(ValueError, match="8-word program"):
        build_profile(program, default_settings(), Counters(z, z, z, z, 0, 0, 0, 0))


def test_inconsistent_counters_become_a_warning():
    result = template_result()
    result.cycles += 5
    p = profile_run(result)
    assert any("per-pc cycles sum to" in w for w in p.warnings)


def test_peaks_follow_the_settings():
    s = default_settings()
    peak, definition = peak_macs(s)
    assert peak == s.MLEN * s.MLEN
    assert "M_BMM" in definition and "M_BTMM" in definition
    slow = s.with_overrides({"SYSTOLIC_PROCESSING_OVERHEAD": 64})
    peak2, _ = peak_macs(slow)
    assert peak2 == s.MLEN ** 3 / (2 * s.MLEN)
    p = profile_run(template_result(), peak_macs_per_cycle=16, peak_hbm_bytes_per_cycle=64)
    d = profile_to_dict(p)
    assert d["matrix"]["peak_macs_per_cycle"] == 16.0 and d["hbm"]["peak_bytes_per_cycle"] == 64.0
    assert d["matrix"]["utilisation"] == pytest.approx(d["matrix"]["macs_per_cycle"] / 16)
    assert profile_to_dict(profile_run(template_result()))["hbm"]["peak_bytes_per_cycle"] == HBM_PEAK_BYTES_PER_CYCLE


# ----------------------------------------------------------------------------------- outputs

def test_json_schema_and_round_trip(tmp_path):
    p = profile_run(template_result(), clock_hz=5e8)
    d = profile_to_dict(p)
    assert list(d)[:6] == ["schema", "schema_version", "kind", "program", "settings", "clock_hz"]
    assert d["schema"] == "plena-profile" and d["schema_version"] == 2 and d["kind"] == "dynamic"
    assert d["totals"]["seconds"] == pytest.approx(p.totals.cycles / 5e8)
    assert sum(s["cycles"] for s in d["sections"]) == d["totals"]["cycles"]
    for s in d["sections"]:
        for key in ("name", "cycles", "instructions", "hbm_bytes_read", "hbm_bytes_written", "by_opcode", "sections"):
            assert key in s
    assert set(d["units"]) == set(UNITS)
    assert sum(u["busy_cycles"] for u in d["units"].values()) == d["totals"]["cycles"]
    path = tmp_path / "p.json"
    path.write_text(profile_to_json(p))
    again = load_profile(path)
    assert profile_to_json(again) == profile_to_json(p)


@pytest.mark.parametrize("doc, message", [
    ({"x": 1}, "not a plena-profile"),
    ({"schema": "plena-profile", "schema_version": 99}, "schema_version 99"),
])
def test_loader_rejects_foreign_documents(doc, message):
    with pytest.raises(ProfileFormatError, match=message):
        profile_from_dict(doc)


def test_loader_names_missing_and_mistyped_keys(tmp_path):
    d = profile_to_dict(profile_run(template_result()))
    del d["sections"][0]["cycles"]
    with pytest.raises(ProfileFormatError, match="missing key 'cycles'"):
        profile_from_dict(d)
    d = profile_to_dict(profile_run(template_result()))
    d["totals"]["cycles"] = "many"
    with pytest.raises(ProfileFormatError, match="totals.cycles: expected int"):
        profile_from_dict(d)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ProfileFormatError, match="not valid JSON"):
        load_profile(bad)


def test_csv_rows_add_up():
    p = profile_run(template_result())
    rows = list(csv.DictReader(io.StringIO(profile_to_csv(p))))
    total = [r for r in rows if r["table"] == "total"][0]
    assert int(total["cycles"]) == p.totals.cycles
    top = [r for r in rows if r["table"] == "section" and r["depth"] == "1"]
    assert sum(int(r["cycles"]) for r in top) == p.totals.cycles
    ops = [r for r in rows if r["table"] == "opcode"]
    assert sum(int(r["cycles"]) for r in ops) == p.totals.cycles
    assert sum(int(total[f"{u}_cycles"]) for u in UNITS) == p.totals.cycles


def test_terminal_table_lists_sections_by_cycles():
    p = profile_run(template_result())
    text = render_text(p, width=160)
    assert "TOTAL" in text and f"{p.totals.cycles:,}" in text
    assert text.index("FFN Gate") < text.index("Reset Registers [[1, 2, 3]]")
    few = render_text(p, max_sections=1, width=160)
    assert "3 more rows" in few and "TOTAL" in few


def test_bar():
    assert bar(0.0, 8) == " " * 8
    assert bar(1.0, 8) == "█" * 8
    assert bar(0.5, 8) == "████    "
    assert bar(1 / 64, 8) == "▏       "


def test_json_is_plain_json():
    text = profile_to_json(profile_run(template_result()))
    json.loads(text)
