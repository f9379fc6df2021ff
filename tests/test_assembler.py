"""Assembler, disassembler and .mem reader: per-opcode encodings, the compiler's placement quirks
and their warnings, error messages, the conformance corpus (byte identity, library and CLI), and
property tests (round trips, malformed input never escapes as anything but AssemblerError)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.asm import assemble, disassemble, disassemble_word, load_program, parse_mem
from emulator.asm_cli import asm_main, disasm_main
from emulator.errors import AssemblerError, InputError, MemFileError
from isa_specs import REGISTER_LIMITS, REGISTER_PREFIX, load_isa

from .conftest import REPO, corpus_cases, needs_corpus, sub_corpus_cases

ISA = load_isa()

# Expected words computed independently of isa_specs, by a throwaway encoder written from the
# digest's opcode table and the compiler's encoding groups (scalar-control-timing-profilers.md
# §1.2, §1.4); that encoder also reproduced all 47712 words of the conformance corpus.
# `V_EXP_V gp2, gp1, 1` -> 0x00004493 is the digest's own example.
ENCODINGS = [
    ("M_MM 0, gp2, gp1", 0x00004801),
    ("M_MM 5, gp15, gp7", 0x0001FD41),
    ("M_TMM 0, gp3, gp4", 0x00010C02),
    ("M_BMM 0, gp6, gp9", 0x00025803),
    ("M_BTMM 0, gp10, gp11", 0x0002E804),
    ("M_BMM_WO gp2, 0", 0x00000085),
    ("M_BMM_WO gp12, 4194303", 0xFFFFFF05),
    ("M_MM_WO gp3, gp0, 0", 0x000000C6),
    ("M_MM_WO gp9, gp5, 262143", 0xFFFFD646),
    ("M_MV 0, gp1, gp2", 0x00008407),
    ("M_TMV 0, gp13, gp14", 0x0003B408),
    ("M_BMV gp1, gp2, gp3", 0x0000C849),
    ("M_BTMV 0, gp0, gp1", 0x0000400A),
    ("M_BTMV gp4, gp8, gp12", 0x0003210A),
    ("M_MV_WO gp3, gp0, 0", 0x000000CB),
    ("M_MV_WO gp7, 16", 0x000041CB),
    ("M_BMV_WO gp1, 0", 0x0000004C),
    ("M_BMV_WO gp15, 48", 0x0000C3CC),
    ("V_ADD_VV gp1, gp2, gp3, 0", 0x0000C84D),
    ("V_ADD_VV gp4, gp5, gp6, 1", 0x0005950D),
    ("V_ADD_VF gp1, gp2, f3, 0", 0x0000C84E),
    ("V_ADD_VF gp15, gp14, f7, 15", 0x003DFBCE),
    ("V_SUB_VV gp8, gp9, gp10, 1", 0x0006A60F),
    ("V_SUB_VF gp1, gp2, f3, 0, 0", 0x0000C850),
    ("V_SUB_VF gp4, gp5, f6, 1, 1", 0x00459510),
    ("V_MUL_VV gp11, gp12, gp13, 0", 0x000372D1),
    ("V_MUL_VF gp2, gp3, f4, 1", 0x00050C92),
    ("V_EXP_V gp2, gp1, 1", 0x00004493),
    ("V_EXP_V gp5, gp5, 0", 0x00001553),
    ("V_RECI_V gp5, gp5, 0", 0x00001554),
    ("V_RECI_V gp6, gp7, 1", 0x00005D94),
    ("V_RED_SUM f3, gp1", 0x000004D5),
    ("V_RED_SUM f4, gp1, 0, 0", 0x00000515),
    ("V_RED_MAX f2, gp1, 0", 0x00000496),
    ("V_RED_MAX f6, gp9, 1", 0x00006596),
    ("V_PS_V gp1, gp2, gp3", 0x0000C871),
    ("V_SHFT_V gp1, gp2, gp3", 0x0000C872),
    ("V_MAX_VF gp3, gp4, f5, 0", 0x000150F5),
    ("V_MIN_VF gp6, gp7, f1, 1", 0x00045DB6),
    ("V_TOPK gp1, gp2, gp3, 1", 0x0004C877),
    ("S_ADD_FP f1, f2, f3", 0x0000C857),
    ("S_SUB_FP f4, f5, f6", 0x00019518),
    ("S_MAX_FP f7, f0, f1", 0x000041D9),
    ("S_MUL_FP f2, f3, f4", 0x00010C9A),
    ("S_EXP_FP f2, f2, 0", 0x0000089B),
    ("S_EXP_FP f1, f7", 0x00001C5B),
    ("S_RECI_FP f3, f3, 0", 0x00000CDC),
    ("S_SQRT_FP f5, f6", 0x0000195D),
    ("S_LD_FP f1, gp0, 3", 0x0000C05E),
    ("S_ST_FP f1, gp2, 0", 0x0000085F),
    ("S_MAP_V_FP gp4, gp5, 1000", 0x00FA1520),
    ("S_ADD_INT gp1, gp2, gp3", 0x0000C861),
    ("S_ADDI_INT gp1, gp0, 128", 0x00200062),
    ("S_ADDI_INT gp15, gp15, 262143", 0xFFFFFFE2),
    ("S_SUB_INT gp4, gp5, gp6", 0x00019523),
    ("S_MUL_INT gp7, gp8, gp9", 0x000261E4),
    ("S_LUI_INT gp1, 100", 0x00019065),
    ("S_LUI_INT gp2, 4194303", 0xFFFFFCA5),
    ("S_LD_INT gp3, gp4, 17", 0x000450E6),
    ("S_ST_INT gp5, gp6, 1023", 0x00FFD967),
    ("H_PREFETCH_M gp2, gp3, a1, 1, 0", 0x00044CA8),
    ("H_PREFETCH_V gp3, gp2, a0, 1, 0", 0x000408E9),
    ("H_PREFETCH_V gp3, gp1, a0, 0, 0, 0", 0x000004E9),
    ("H_STORE_V gp4, gp5, a7, 1, 1", 0x0045D52A),
    ("C_SET_ADDR_REG a1, gp0, gp1", 0x0000406B),
    ("C_SET_SCALE_REG gp1", 0x0000006C),
    ("C_SET_STRIDE_REG gp2", 0x000000AD),
    ("C_SET_V_MASK_REG gp3", 0x000000EE),
    ("C_LOOP_START gp4, 8", 0x0000212F),
    ("C_LOOP_START gp5, 4194303", 0xFFFFFD6F),
    ("C_LOOP_END gp4", 0x00000130),
    ("C_HADAMARD_TRANSFORM gp1, gp2, gp3", 0x0000C873),
    ("C_BREAK", 0x00000034),
]


# --------------------------------------------------------------------------- per-opcode encodings
@pytest.mark.parametrize("line, word", ENCODINGS, ids=[line for line, _ in ENCODINGS])
def test_encoding(line, word):
    program = assemble(line)
    assert program.words.tolist() == [word]
    # The canonical disassembly assembles back to the same word.
    assert assemble(disassemble_word(word)).words.tolist() == [word]


def test_encoding_table_covers_every_mnemonic():
    assert {line.split()[0] for line, _ in ENCODINGS} == set(ISA.by_mnemonic)


def test_disassembly_is_canonical():
    assert disassemble_word(0x00004801) == "M_MM 0, gp2, gp1"
    assert disassemble_word(0x00000034) == "C_BREAK"
    assert disassemble_word(0x0040C029).startswith("H_PREFETCH_V gp0, gp0, a3, 0, 1")
    assert disassemble_word(0x00000D22) == "S_ADDI_INT gp4, gp3, 0"


def test_mnemonics_and_registers_are_case_insensitive():
    assert assemble("s_addi_int GP1, gp0, 0x80").words.tolist() == assemble("S_ADDI_INT gp1, gp0, 128").words.tolist()
    assert assemble("v_add_vf gp1, gp2, F3, 1").words.tolist() == assemble("V_ADD_VF gp1, gp2, f3, 1").words.tolist()


def test_hex_immediates_and_spacing():
    assert assemble("S_ADDI_INT gp1,gp0,0x10").words.tolist() == assemble("S_ADDI_INT  gp1 , gp0 ,  16").words.tolist()
    assert assemble("C_LOOP_START gp1, 0X3FFFFF").words.tolist() == assemble("C_LOOP_START gp1, 4194303").words.tolist()


def test_optional_operands_default_to_zero():
    assert assemble("V_ADD_VV gp1, gp2, gp3").words.tolist() == assemble("V_ADD_VV gp1, gp2, gp3, 0").words.tolist()
    assert assemble("V_SUB_VF gp1, gp2, f3").words.tolist() == assemble("V_SUB_VF gp1, gp2, f3, 0, 0").words.tolist()
    assert assemble("V_EXP_V gp1, gp2").words.tolist() == assemble("V_EXP_V gp1, gp2, 0").words.tolist()
    assert assemble("V_RED_MAX f1, gp2").words.tolist() == assemble("V_RED_MAX f1, gp2, 0").words.tolist()


def test_word_directive():
    program = assemble("S_ADDI_INT gp1, gp0, 1\n.word 0x00000031 ; V_PS_V\n.WORD 56\n")
    assert program.words.tolist() == [0x00004062, 0x31, 56]
    assert disassemble_word(0x38).startswith(".word 0x00000038  ; unknown opcode 0x38")
    assert disassemble_word(0).startswith(".word 0x00000000  ; unknown opcode 0x00")


# --------------------------------------------------------------------------- comments and source map
def test_comments_and_source_map():
    text = "\n".join([
        "; Section one",             # 1
        "S_ADDI_INT gp1, gp0, 5 ; inline",   # 2
        "",                          # 3
        "// full-line slash comment",  # 4
        "   # full-line hash comment",  # 5
        "  ;  Section two  ",        # 6
        "S_ADDI_INT gp2, gp0, 6 // inline slash",  # 7
        "S_ADDI_INT gp3, gp0, 7 # inline hash",    # 8
        "C_BREAK;",                  # 9
    ])
    program = assemble(text, name="demo")
    assert program.words.tolist() == [0x00014062, 0x000180A2, 0x0001C0E2, 0x34]
    assert [(s.line_no, s.comment) for s in program.source] == [
        (2, "Section one"), (7, "Section two"), (8, "Section two"), (9, "Section two")]
    assert program.source[0].text == "S_ADDI_INT gp1, gp0, 5 ; inline"
    assert program.asm_text == text and program.name == "demo" and program.warnings == ()
    assert assemble("S_ADDI_INT gp1, gp0, 5").source[0].comment is None
    assert len(assemble("; only comments\n\n").words) == 0


# --------------------------------------------------------------------------- placement quirks -> warnings
QUIRK_WARNINGS = [
    # (line, expected substrings of the single warning)
    ("V_EXP_V gp2, gp1, 1", ["rs2", "reads mask from rs3 and sees 0, not 1"]),
    ("V_RECI_V gp2, gp1, 3", ["rs2", "sees 0, not 3"]),
    ("V_RED_MAX f1, gp1, 16", ["sees 1, not 16"]),
    ("M_MV_WO gp1, 5", ["rs1", "reads imm from imm18 and sees 0, not 5"]),
    ("M_BMM_WO gp1, 16", ["sees 1, not 16"]),
    ("M_BMV_WO gp1, 33", ["sees 2, not 33"]),
    ("M_MV_WO gp3, gp2, 0", ["operand 2 ('gp2')", "rs1 field", "group B"]),
    ("S_EXP_FP f2, f2, 3", ["operand 3 ('3')", "immediate slot", "group C"]),
    ("V_RED_SUM f3, gp1, 1", ["operand 3 ('1')", "group C"]),
    ("V_RED_SUM f3, gp1, 0, 1", ["operand 4 ('1')", "rs3"]),
    ("V_EXP_V gp1, gp1, 0, 2", ["operand 4 ('2')", "group A"]),
    ("H_PREFETCH_V gp3, gp1, a0, 0, 0, 1", ["operand 6 ('1')", "funct2"]),
    ("M_MV_WO gp1, 5, 0", ["operand 2 ('5')", "operand 3 overwrites it"]),
    ("C_LOOP_END gp1, gp2", ["operand 2 ('gp2')", "group E"]),
]


@pytest.mark.parametrize("line, parts", QUIRK_WARNINGS, ids=[line for line, _ in QUIRK_WARNINGS])
def test_placement_quirks_warn(line, parts):
    program = assemble("S_ADDI_INT gp0, gp0, 0\n" + line)
    assert len(program.warnings) == 1
    w = program.warnings[0]
    assert (w.line_no, w.line) == (2, line)
    for part in parts:
        assert part in w.message
    assert f"line 2: warning: {w.message}" in str(w)


@pytest.mark.parametrize("line", [
    "V_EXP_V gp2, gp1, 0", "V_RED_MAX f2, gp1, 0", "M_MV_WO gp3, gp0, 0", "M_BMM_WO gp2, 0",
    "S_EXP_FP f2, f2, 0", "V_RED_SUM f4, gp1, 0, 0", "H_PREFETCH_V gp3, gp1, a0, 0, 0, 0",
    "M_MV_WO gp1, 0, 0", "V_ADD_VV gp1, gp2, gp3, 1",
])
def test_harmless_quirks_are_silent(line):
    assert assemble(line).warnings == ()


def test_dropped_operands_keep_the_compilers_word():
    # The dropped operand changes nothing: the compiler's word is the one without it.
    assert assemble("M_MV_WO gp3, gp2, 0").words.tolist() == assemble("M_MV_WO gp3, 0").words.tolist()
    assert assemble("S_EXP_FP f2, f1, 3").words.tolist() == assemble("S_EXP_FP f2, f1").words.tolist()
    assert assemble("V_RED_SUM f3, gp1, 1, 1").words.tolist() == assemble("V_RED_SUM f3, gp1").words.tolist()


# --------------------------------------------------------------------------- errors
ERRORS = [
    ("V_ADD_VF gp1, gp2, gp2", "operand 3 of V_ADD_VF must be an FP register f0-f7, got 'gp2'"),
    ("S_ADDI_INT gp16, gp0, 1", "operand 1 of S_ADDI_INT must be a GP register gp0-gp15, got 'gp16'"),
    ("S_LD_FP f8, gp0, 0", "must be an FP register f0-f7, got 'f8'"),
    ("H_PREFETCH_V gp1, gp2, a8, 0, 0", "operand 3 of H_PREFETCH_V must be an address register a0-a7, got 'a8'"),
    ("S_ADDI_INT gp1, gp0, 262144", "operand 3 of S_ADDI_INT must be an immediate 0-262143"),
    ("S_LUI_INT gp1, 4194304", "operand 2 of S_LUI_INT must be an immediate 0-4194303"),
    ("V_ADD_VV gp1, gp2, gp3, 16", "operand 4 of V_ADD_VV must be a literal 0-15, got '16'"),
    ("H_STORE_V gp1, gp2, a1, 1, 0x10", "operand 5 of H_STORE_V must be a literal 0-15"),
    ("S_ADDI_INT gp1, gp0, -1", "got '-1' (PLENA has no signed immediates)"),
    ("S_ADDI_INT gp1, gp0, 1.5", "must be an immediate 0-262143 (imm18), got '1.5'"),
    ("S_ADDI_INT gp1, gp0, gp2", "operand 3 of S_ADDI_INT must be an immediate"),
    ("M_MV_WO gp3, gp0", "operand 2 of M_MV_WO must be an immediate"),
    ("M_MM gp0, gp1, gp2", "operand 1 of M_MM must be a literal 0-15, got 'gp0'"),
    ("M_BTMV f1, gp1, gp2", "GP register gp0-gp15 (or its bare number 0-15)"),
    ("V_EXP_V gp1, gp2, gp3", "operand 3 of V_EXP_V must be an immediate"),
    ("C_LOOP_START gp1", "C_LOOP_START needs 2 operands, got 1; usage: C_LOOP_START <counter:gpN>, <count:0-4194303>"),
    ("V_ADD_VV gp1, gp2", "V_ADD_VV needs 3 operands (more are optional), got 2"),
    ("S_RECI_FP", "S_RECI_FP needs 2 operands, got 0"),
    ("H_PREFETCH_V gp3, gp1, a0, 0, 0, 0, 0", "at most"),
    ("V_ADD_V gp1, gp2, gp3", "unknown mnemonic 'V_ADD_V' (did you mean V_ADD_VV"),
    ("S_ADDI gp1, gp0, 1", "did you mean S_ADDI_INT"),
    ("INVALID_OPCODE", "unknown mnemonic 'INVALID_OPCODE'"),
    ("ZZZZ gp1", ".word 0xXXXXXXXX"),
    ("S_ADDI_INT,gp1, gp0, 1", "expected a space between the mnemonic 'S_ADDI_INT' and its operands"),
    ("M_BMM 1, gp1, gp2", "operand 1 of M_BMM must be 0, got '1': the hardware aborts at decode"),
    ("M_BTMM 15, gp1, gp2", "the hardware aborts at decode"),
    ("loop: S_ADDI_INT gp1, gp0, 1", "labels are not supported ('loop:')"),
    ("L1:", "labels are not supported"),
    (".word 0x100000000", ".word needs exactly one value"),
    (".word gp1", ".word needs exactly one value"),
    (".word", ".word needs exactly one value"),
    (".data 1", "unknown directive '.data'"),
    ("V_ADD_VV gp1,, gp3", "operand 2 of V_ADD_VV is empty"),
    ("V_ADD_VV gp1, gp2, gp3,", "operand 4 of V_ADD_VV is empty"),
    ("V_ADD_VV gp1 gp2 gp3", "operands are separated by ','"),
    ("S_EXP_FP f1, f2, gp99", "'gp99' is not a GP register"),
    ("S_EXP_FP f1, f2, 0x", "cannot parse '0x'"),
    ("S_EXP_FP f1, f2, -3", "is negative"),
]


@pytest.mark.parametrize("line, message", ERRORS, ids=[line for line, _ in ERRORS])
def test_errors_name_the_line_and_what_was_expected(line, message):
    text = "S_ADDI_INT gp1, gp0, 1\n\n; comment\n  " + line + "  \nC_BREAK\n"
    with pytest.raises(AssemblerError) as info:
        assemble(text)
    err = info.value
    assert (err.line_no, err.line) == (4, line)
    assert message in err.reason
    assert str(err).startswith("line 4: ") and str(err).endswith("\n    " + line)


# --------------------------------------------------------------------------- .mem files
def test_parse_mem_token_formats():
    text = "0x00004062 0x0x000080A2\n\t000000c0e2  \n0x10122\n\n0000067 0x0x0x000040a7\r\n+1f\t0x+22"
    assert parse_mem(text).words.tolist() == [0x4062, 0x80A2, 0xC0E2, 0x10122, 0x67, 0x40A7, 0x1F, 0x22]
    assert parse_mem("").words.tolist() == []
    assert parse_mem("0xFFFFFFFF 000000001").words.tolist() == [0xFFFFFFFF, 1]


@pytest.mark.parametrize("text, token, index, line_no", [
    ("0x00004062\n0X00004062\n", "0X00004062", 1, 2),
    ("0x1 0x", "0x", 1, 1),
    ("0x1 0x0x", "0x0x", 1, 1),
    ("\n\n0x1 0x2 0x100000000", "0x100000000", 2, 3),
    ("0x1\n-1", "-1", 1, 2),
    ("g1", "g1", 0, 1),
    ("0x1,0x2", "0x1,0x2", 0, 1),
    ("+0x1", "+0x1", 0, 1),
    ("0x1_0", "0x1_0", 0, 1),
])
def test_parse_mem_bad_tokens(text, token, index, line_no):
    with pytest.raises(MemFileError) as info:
        parse_mem(text)
    err = info.value
    assert (err.token, err.index, err.line_no) == (token, index, line_no)
    assert repr(token) in str(err) and f"token {index}" in str(err) and f"line {line_no}" in str(err)


def test_load_program(tmp_path):
    (tmp_path / "p.asm").write_text("S_ADDI_INT gp1, gp0, 1\n")
    (tmp_path / "p.mem").write_text("0x00004062\n")
    (tmp_path / "p.hex").write_text("00004062")
    for name in ("p.asm", "p.mem", "p.hex"):
        program = load_program(tmp_path / name)
        assert program.words.tolist() == [0x4062] and program.name == "p"
    assert load_program(tmp_path / "p.asm").source is not None
    assert load_program(tmp_path / "p.mem").source is None
    with pytest.raises(InputError, match="cannot read program"):
        load_program(tmp_path / "missing.asm")
    with pytest.raises(InputError, match="cannot read program"):
        load_program(tmp_path)
    (tmp_path / "bin.asm").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InputError, match="not UTF-8"):
        load_program(tmp_path / "bin.asm")


# --------------------------------------------------------------------------- conformance corpus
@needs_corpus
@pytest.mark.conformance
@pytest.mark.parametrize("case", corpus_cases())
def test_corpus_byte_identical(case, corpus):
    asm_text = (corpus / case / "program.asm").read_text()
    mem_text = (corpus / case / "program.mem").read_text()
    program = assemble(asm_text, name=case)
    assert program.to_mem_text() == mem_text
    assert program.warnings == ()
    # The source map points every pc at the line that produced it.
    lines = asm_text.split("\n")
    for pc, src in enumerate(program.source):
        assert lines[src.line_no - 1].strip() == src.text
        assert src.text.split()[0] == disassemble_word(int(program.words[pc])).split()[0]
    # Disassembly round-trips the reference machine code.
    reference = parse_mem(mem_text)
    assert np.array_equal(assemble(disassemble(reference)).words, reference.words)


@needs_corpus
@pytest.mark.conformance
def test_cli_corpus_byte_identical(corpus, tmp_path, capsys):
    for case in corpus_cases():
        out = tmp_path / f"{case}.mem"
        assert asm_main([str(corpus / case / "program.asm"), "-o", str(out)]) == 0
        assert out.read_bytes() == (corpus / case / "program.mem").read_bytes(), case
    assert capsys.readouterr().err == ""


@needs_corpus
@pytest.mark.conformance
def test_cli_subprocess_stdout(corpus):
    case = corpus_cases()[0]
    run = subprocess.run([sys.executable, "-m", "emulator.asm_cli", str(corpus / case / "program.asm")],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout == (corpus / case / "program.mem").read_text()


@needs_corpus
@pytest.mark.conformance
def test_ops_corpus_machine_code_round_trips(corpus):
    """Every word of the per-opcode corpus (invalid opcodes, f8-f15, rd != 0 on M_BMM included)
    disassembles to a line that assembles back to it."""
    cases = sub_corpus_cases("ops")
    assert cases
    parsed = 0
    for case in cases:
        text = (corpus / "ops" / case / "program.mem").read_text()
        try:
            words = parse_mem(text).words
        except MemFileError:
            assert case == "err_mem_bad_token"
            continue
        parsed += 1
        assert np.array_equal(assemble(disassemble(words)).words, words), case
    assert parsed == len(cases) - 1


@needs_corpus
@pytest.mark.conformance
def test_ops_corpus_mem_token_cases(corpus):
    good = parse_mem((corpus / "ops" / "mem_token_formats" / "program.mem").read_text())
    listed = assemble((corpus / "ops" / "mem_token_formats" / "program.asm").read_text())
    assert np.array_equal(good.words, listed.words)
    with pytest.raises(MemFileError) as info:
        parse_mem((corpus / "ops" / "err_mem_bad_token" / "program.mem").read_text())
    assert (info.value.token, info.value.index, info.value.line_no) == ("0X00004062", 1, 2)


@needs_corpus
@pytest.mark.conformance
def test_dma_corpus_assembles(corpus):
    """The DMA corpus is written in compiler syntax except for a two-operand `M_MM gpA, gpB`
    shorthand, which the compiler (and we) reject; everything else is byte-identical, and all its
    machine code round-trips through the disassembler."""
    identical = 0
    for case in sub_corpus_cases("dma"):
        directory = corpus / "dma" / case
        reference = parse_mem((directory / "program.mem").read_text())
        assert np.array_equal(assemble(disassemble(reference)).words, reference.words), case
        try:
            program = assemble((directory / "program.asm").read_text())
        except AssemblerError as exc:
            assert exc.line.startswith("M_MM ") and len(exc.line.split(",")) == 2, (case, str(exc))
            continue
        assert program.to_mem_text() == (directory / "program.mem").read_text(), case
        identical += 1
    assert identical >= 80


# --------------------------------------------------------------------------- CLI
def test_cli_warnings_errors_and_disasm(tmp_path, capsys):
    src = tmp_path / "p.asm"
    src.write_text("V_EXP_V gp2, gp1, 1\nC_BREAK\n")
    assert asm_main([str(src)]) == 0
    out, err = capsys.readouterr()
    assert out == "0x00004493\n0x00000034\n"
    assert "line 1: warning:" in err and "sees 0" in err
    assert asm_main([str(src), "-q"]) == 0
    assert capsys.readouterr().err == ""
    assert asm_main([str(src), "--werror"]) == 2
    capsys.readouterr()

    bad = tmp_path / "bad.asm"
    bad.write_text("S_ADDI_INT gp1, gp0, 1\nS_ADDI_INT gp1, gp0\n")
    assert asm_main([str(bad), "-o", str(tmp_path / "bad.mem")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "line 2: S_ADDI_INT needs 3 operands" in err
    assert not (tmp_path / "bad.mem").exists()
    assert asm_main([str(tmp_path / "missing.asm")]) == 2
    assert "cannot read" in capsys.readouterr().err

    mem = tmp_path / "p.mem"
    mem.write_text("0x00004493\n0x0000003F\n0x00004801\n")
    assert disasm_main([str(mem)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("V_EXP_V gp2, gp1, 1  ; ")
    assert out[1].startswith(".word 0x0000003F  ; unknown opcode 0x3F")
    assert out[2] == "M_MM 0, gp2, gp1"
    assert disasm_main([str(src), "-o", str(tmp_path / "canon.asm")]) == 0
    assert assemble((tmp_path / "canon.asm").read_text()).words.tolist() == [0x4493, 0x34]
    mem.write_text("0X1\n")
    assert disasm_main([str(mem)]) == 2
    assert "'0X1'" in capsys.readouterr().err


# --------------------------------------------------------------------------- properties
def random_valid_words(n: int, seed: int) -> np.ndarray:
    """n words of known opcodes (V_PS_V and C_HADAMARD_TRANSFORM included) with only their group's
    fields set, registers within the register files, and rd = 0 where the decoder requires it."""
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(ISA.ops), n)
    words = np.zeros(n, dtype=np.uint64)
    for k, op in enumerate(ISA.ops):
        idx = np.flatnonzero(which == k)
        w = np.full(idx.size, op.opcode << ISA.fields["opcode"].lsb, dtype=np.uint64)
        for o in op.operands:
            f = ISA.fields[o.field]
            top = 1 if o.must_be_zero else REGISTER_LIMITS.get(o.kind, f.mask + 1)
            w |= rng.integers(0, top, idx.size).astype(np.uint64) << np.uint64(f.lsb)
        words[idx] = w
    return words.astype(np.uint32)


def test_100k_random_valid_words_round_trip():
    words = random_valid_words(100_000, seed=20240611)
    text = disassemble(words)
    assert ".word" not in text
    assert np.array_equal(assemble(text).words, words)


def test_any_word_round_trips_even_when_undecodable():
    words = np.random.default_rng(7).integers(0, 1 << 32, 20_000, dtype=np.uint64).astype(np.uint32)
    assert np.array_equal(assemble(disassemble(words)).words, words)


@st.composite
def valid_words(draw):
    op = draw(st.sampled_from(ISA.ops))
    word = op.opcode << ISA.fields["opcode"].lsb
    for o in op.operands:
        f = ISA.fields[o.field]
        top = 1 if o.must_be_zero else REGISTER_LIMITS.get(o.kind, f.mask + 1)
        word |= draw(st.integers(0, top - 1)) << f.lsb
    return word


@settings(max_examples=300, deadline=None)
@given(valid_words())
def test_valid_word_round_trips(word):
    line = disassemble_word(word)
    assert not line.startswith(".word")
    assert assemble(line).words.tolist() == [word]


# Malformed lines: each corruption of a valid canonical line is an error by construction.
GARBAGE = ["", "gp", "0x", "1.5", "$1", "gp1x", "0xZZ", "f-1", "(gp1)", "gp+1", "a", "1e3", "--1", "0b101"]
OTHER_PREFIX = {"gp": ["f", "a"], "fp": ["gp", "a"], "areg": ["gp", "f"]}


def _corrupt(rng: np.random.Generator, op, operands: list[str]) -> str | None:
    kind = int(rng.integers(0, 14))
    specs = op.operands
    regs = [i for i, o in enumerate(specs) if o.kind in REGISTER_LIMITS]
    nums = [i for i, o in enumerate(specs) if o.kind not in REGISTER_LIMITS]
    ops = list(operands)

    def pick(indices):
        return int(indices[rng.integers(0, len(indices))])

    def line(mn=op.mnemonic, sep=", "):
        return mn + (" " + sep.join(ops) if ops else "")

    if kind == 0:                                   # unknown mnemonic
        return line(mn=op.mnemonic + "_Q")
    if kind == 1 and regs:                          # register number out of range
        i = pick(regs)
        o = specs[i]
        prefix = REGISTER_PREFIX[o.kind]
        ops[i] = f"{prefix}{REGISTER_LIMITS[o.kind] + int(rng.integers(0, 100))}"
        return line()
    if kind == 2 and regs:                          # wrong register file
        i = pick(regs)
        ops[i] = f"{OTHER_PREFIX[specs[i].kind][int(rng.integers(0, 2))]}{int(rng.integers(0, 8))}"
        return line()
    if kind == 3 and [i for i in regs if not specs[i].bare]:   # a number where a register goes
        i = pick([i for i in regs if not specs[i].bare])
        ops[i] = str(int(rng.integers(0, 16)))
        return line()
    if kind == 4 and nums:                          # a register where a number goes
        ops[pick(nums)] = f"gp{int(rng.integers(0, 16))}"
        return line()
    if kind == 5 and nums:                          # number too wide for its field
        i = pick(nums)
        ops[i] = str(ISA.fields[specs[i].field].mask + 1 + int(rng.integers(0, 1000)))
        return line()
    if kind == 6 and nums:                          # negative number
        ops[pick(nums)] = f"-{int(rng.integers(1, 1000))}"
        return line()
    required = sum(not o.optional for o in specs)
    if kind == 7 and required:                      # too few operands
        ops = ops[: int(rng.integers(0, required))]
        return line()
    if kind == 8:                                   # too many operands
        ops = ops + ["0"] * (7 - len(ops) + int(rng.integers(0, 3)))
        return line()
    if kind == 9 and ops:                           # unparseable operand
        ops[int(rng.integers(0, len(ops)))] = GARBAGE[int(rng.integers(0, len(GARBAGE)))]
        return line()
    if kind == 10:                                  # label
        return f"label{int(rng.integers(0, 99))}: " + line()
    if kind == 11 and len(ops) >= 2:                # missing commas
        return line(sep=" ")
    if kind == 12 and any(o.must_be_zero for o in specs):   # rd != 0 on M_BMM / M_BTMM
        i = next(i for i, o in enumerate(specs) if o.must_be_zero)
        ops[i] = str(int(rng.integers(1, 16)))
        return line()
    if kind == 13:                                  # bad directive
        return [".word 0x1FFFFFFFF", ".word", ".org 4", ".word gp1", ".word -1"][int(rng.integers(0, 5))]
    return None


def test_10k_malformed_lines_raise_assembler_error_naming_the_line():
    rng = np.random.default_rng(99)
    words = random_valid_words(30_000, seed=5)
    checked = 0
    for word in words.tolist():
        canonical = disassemble_word(word).split(";")[0].strip()   # drop a "; hardware ..." note
        mnemonic, _, rest = canonical.partition(" ")
        op = ISA.by_mnemonic[mnemonic]
        bad = _corrupt(rng, op, [t.strip() for t in rest.split(",")] if rest else [])
        if bad is None:
            continue
        before = int(rng.integers(0, 3))
        text = "S_ADDI_INT gp1, gp0, 1\n" * before + bad + "\nC_BREAK\n"
        try:
            assemble(text)
        except AssemblerError as exc:
            assert (exc.line_no, exc.line) == (before + 1, bad.strip()), (bad, str(exc))
            assert exc.reason
        else:
            pytest.fail(f"no error for malformed line {bad!r}")
        checked += 1
        if checked == 10_000:
            break
    assert checked == 10_000


ASM_PIECES = ["S_ADDI_INT", "V_ADD_VF", "M_MM", "C_BREAK", "H_PREFETCH_V", "V_EXP_V", ".word", "gp1", "f3",
              "a2", "gp16", "0", "15", "0x10", "-1", ",", ", ", " ", ";", "//", "#", ":", "\t", "\n", "0X", "+"]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(ASM_PIECES), st.characters()), max_size=12).map("".join))
def test_arbitrary_text_assembles_or_raises_assembler_error(text):
    try:
        program = assemble(text)
    except AssemblerError as exc:
        assert exc.line_no is not None and exc.line is not None
    else:
        assert len(program.source) == len(program.words)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789abcdefABCDEFxX+- \n\t\r", max_size=40))
def test_arbitrary_mem_text_parses_or_raises_mem_file_error(text):
    try:
        parse_mem(text)
    except MemFileError as exc:
        assert exc.token in text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, (1 << 32) - 1), max_size=20),
       st.sampled_from(["0x%08X", "%x", "0x0x%X", "%08x"]), st.sampled_from(["\n", " ", "\t", "\r\n"]))
def test_mem_formats_round_trip(words, fmt, sep):
    assert parse_mem(sep.join(fmt % w for w in words)).words.tolist() == words
