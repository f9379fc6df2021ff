"""The ISA spec (isa_specs/opcodes.toml) loads, says what the reference digests say, and the loader
refuses inconsistent specs."""

from __future__ import annotations

import pytest

from isa_specs import (
    OPCODES_TOML,
    REGISTER_LIMITS,
    WORD_BITS,
    IsaSpecError,
    compile_latency,
    eval_latency,
    load_isa,
)

COMPILER_ONLY = {"V_PS_V", "C_HADAMARD_TRANSFORM"}  # in the compiler's opcode enum, Invalid in the decoder


def test_spec_loads_53_decodable_and_2_compiler_only_opcodes():
    isa = load_isa()
    assert len(isa.ops) == 55
    assert sum(op.decodable for op in isa.ops) == 53
    assert {op.mnemonic for op in isa.ops if not op.decodable} == COMPILER_ONLY


def test_no_opcode_or_mnemonic_duplicated_and_all_fit_the_opcode_field():
    isa = load_isa()
    opcodes = [op.opcode for op in isa.ops]
    assert len(set(opcodes)) == len(opcodes)
    assert len(isa.by_mnemonic) == len(isa.ops) == len(isa.by_opcode)
    # The digest's opcode table: 0x01..0x37 are all assigned, 0x00 and 0x38..0x3F are not.
    assert set(opcodes) == set(range(0x01, 0x38))
    assert all(op.opcode <= isa.fields["opcode"].mask for op in isa.ops)


def test_field_table_matches_the_decoder_layout():
    f = load_isa().fields
    assert [(f[n].lsb, f[n].width) for n in ("opcode", "rd", "rs1", "rs2", "rs3", "funct1")] == [
        (0, 6), (6, 4), (10, 4), (14, 4), (18, 4), (22, 4)]
    # The two immediates run to the top of the word, overlapping the register fields.
    assert (f["imm22"].lsb, f["imm22"].lsb + f["imm22"].width) == (10, WORD_BITS)
    assert (f["imm18"].lsb, f["imm18"].lsb + f["imm18"].width) == (14, WORD_BITS)


def test_every_op_encodes_exactly_its_groups_fields():
    # The assembler and disassembler rely on this: every field a group can carry belongs to one
    # operand, so every word of that group has a canonical ASM form.
    isa = load_isa()
    for op in isa.ops:
        assert sorted(o.field for o in op.operands) == sorted(isa.groups[op.group]), op.mnemonic


def test_register_limits_fit_their_fields():
    isa = load_isa()
    for op in isa.ops:
        for o in op.operands:
            if o.kind in REGISTER_LIMITS:
                assert REGISTER_LIMITS[o.kind] <= isa.fields[o.field].mask + 1, (op.mnemonic, o.name)


def test_compiler_placement_quirks_are_recorded():
    isa = load_isa()
    for mn in ("V_EXP_V", "V_RECI_V", "V_RED_MAX"):
        mask = isa.by_mnemonic[mn].operands[-1]
        assert isa.by_mnemonic[mn].group == "A"
        assert (mask.field, mask.ignored_bits, mask.decoder_field) == ("imm18", "rs2", "rs3")
    assert isa.by_mnemonic["V_RED_SUM"].group == "C"
    for mn in ("M_MV_WO", "M_BMM_WO", "M_BMV_WO"):
        imm = isa.by_mnemonic[mn].operands[-1]
        assert (imm.field, imm.ignored_bits, imm.decoder_field) == ("imm22", "rs1", "imm18")
    assert [o.must_be_zero for o in isa.by_mnemonic["M_BMM"].operands] == [True, False, False]


def test_latency_expressions_evaluate():
    isa = load_isa()
    assert eval_latency(isa.by_mnemonic["V_TOPK"].latency, {"VECTOR_MAX_CYCLES": 2, "rs3": 0}) == 64
    assert eval_latency(isa.by_mnemonic["V_TOPK"].latency, {"VECTOR_MAX_CYCLES": 2, "rs3": 1}) == 256
    assert eval_latency(isa.by_mnemonic["S_ADD_FP"].latency, {"SCALAR_FP_BASIC_CYCLES": 3, "rd": 0}) == 0
    with pytest.raises(SyntaxError):
        compile_latency("__import__('os').system('true')")


# --------------------------------------------------------------------------- loader validation
def _replace_once(text: str, old: str, new: str) -> str:
    assert old in text, f"test fixture out of date: {old!r} not in opcodes.toml"
    return text.replace(old, new, 1)


BROKEN_SPECS = {
    "duplicate opcode": (('opcode = 0x02', 'opcode = 0x01'), "already used by M_MM"),
    "duplicate mnemonic": (('mnemonic = "M_TMM"', 'mnemonic = "M_MM"'), "defined twice"),
    "opcode too wide": (('opcode = 0x02', 'opcode = 0x40'), "does not fit the opcode field"),
    "unknown unit": (('unit = "matrix"', 'unit = "tensor"'), "unit 'tensor'"),
    "unknown group": (('group = "I"', 'group = "Z"'), "unknown encoding group Z"),
    "operand field outside its group": (('{ name = "vec", kind = "gp", field = "rs2" }',
                                         '{ name = "vec", kind = "gp", field = "rs3" }'), "does not encode"),
    "unknown operand kind": (('{ name = "mat", kind = "gp"', '{ name = "mat", kind = "gpr"'), "operand kind 'gpr'"),
    "unknown operand key": (('{ name = "mat", kind = "gp"', '{ colour = 1, name = "mat", kind = "gp"'),
                            "unknown operand keys"),
    "unknown op key": (('unit = "matrix"', 'unit = "matrix"\ncolour = "red"'), "op M_MM"),
    "required after optional": (('{ name = "order", kind = "lit", field = "funct1", optional = true }',
                                 '{ name = "order", kind = "lit", field = "funct1" }'),
                                "required operand follows an optional one"),
    "bad latency": (('latency = "SYSTOLIC_PROCESSING_OVERHEAD + MLEN"', 'latency = "open(MLEN)"'),
                    "bad latency expression"),
    "field past the word": (("imm18 = [14, 18]", "imm18 = [14, 19]"), "does not fit"),
    "opcode not at bit 0": (("opcode = [0, 6]", "opcode = [1, 6]"), "opcode` at bit 0"),
    "overlapping group fields": (('[groups.A]\nfields = ["rd", "rs1", "imm18"]',
                                  '[groups.A]\nfields = ["rd", "rs1", "rs2", "imm18"]'), "overlaps another field"),
    "group field over the opcode": (('[groups.D]\nfields = []', '[groups.D]\nfields = ["opcode"]'),
                                    "overlaps the opcode"),
    "group names unknown field": (('[groups.E]\nfields = ["rd"]', '[groups.E]\nfields = ["rx"]'),
                                  "unknown field rx"),
    "decoder_field unknown": (('decoder_field = "rs3"', 'decoder_field = "rs9"'), "unknown field rs9"),
    "ignored_bits unknown": (('ignored_bits = "rs2"', 'ignored_bits = "rs7"'), "unknown field rs7"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_SPECS))
def test_loader_rejects_broken_specs(case, tmp_path):
    (old, new), message = BROKEN_SPECS[case]
    broken = tmp_path / "opcodes.toml"
    broken.write_text(_replace_once(OPCODES_TOML.read_text(), old, new))
    with pytest.raises(IsaSpecError) as info:
        load_isa(str(broken))
    assert message in str(info.value)


def test_loader_accepts_an_unmodified_copy(tmp_path):
    copy = tmp_path / "opcodes.toml"
    copy.write_text(OPCODES_TOML.read_text())
    assert load_isa(str(copy)).opcode_constants() == load_isa().opcode_constants()
