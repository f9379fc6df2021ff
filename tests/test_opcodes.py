"""Per-opcode tests: tiny programs run on the emulator and on tests/oracle.py, compared in full.

Every case below is a small ASM program plus random preloads (fixed seeds).  The emulator runs it
(`emulator.runner.run`), the plain-numpy oracle runs the same words, and `assert_same_state`
compares everything observable: VRAM rows (bf16 bits), MRAM tiles (f32 bits), FP/INT SRAM, gp/fp/
address registers, SCALE/STRIDE/V_MASK, the HBM window, the dynamic instruction counts and the
cycles of every non-DMA instruction (DMA cycles come from the HBM timing model, which the dma
corpus tests).  Comparisons are bit-exact: elementwise ops are IEEE f32 then one bf16 rounding,
and matmul / reduction inputs are small integers, so the summation order cannot matter.

Every case runs under four settings: the shipped defaults, DC_EN = 0 (the dc_lib_dis latencies),
distinct prime latencies (a knob mapped to the wrong opcode shows up), and MLEN = VLEN = 32 with
BROADCAST_AMOUNT = 2.  Then: abort kinds (EmulationError kind / pc / opcode / source line),
budgets, and the MXFP8 prefetch/store round trip.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import ml_dtypes
import numpy as np
import pytest

from emulator.asm import assemble
from emulator.errors import AssemblerError, BudgetExceeded, EmulationError
from emulator.runner import run
from emulator.settings import Settings, default_settings
from emulator.tensors import place_tensor, quantize_mxfp8
from isa_specs import load_isa
from tests import oracle

ISA = load_isa()
DEFAULT = default_settings()
# Distinct primes for every latency knob (the unused VECTOR_SHIFT / PREFIX_SCAN ones too), so an
# opcode charged with the wrong knob cannot agree with the oracle by accident.
PRIME_LATENCIES = {
    "SYSTOLIC_PROCESSING_OVERHEAD": 3, "VECTOR_ADD_CYCLES": 5, "VECTOR_MUL_CYCLES": 7,
    "VECTOR_EXP_CYCLES": 11, "VECTOR_RECI_CYCLES": 13, "VECTOR_MAX_CYCLES": 17, "VECTOR_SUM_CYCLES": 19,
    "SCALAR_FP_BASIC_CYCLES": 23, "SCALAR_FP_EXP_CYCLES": 29, "SCALAR_FP_SQRT_CYCLES": 31,
    "SCALAR_FP_RECI_CYCLES": 37, "SCALAR_INT_BASIC_CYCLES": 41, "VECTOR_SHIFT_CYCLES": 43,
    "VECTOR_PREFIX_SCAN_CYCLES": 47,
}
SETTINGS: dict[str, Settings] = {
    "default": DEFAULT,
    "dc_disabled": DEFAULT.with_overrides({"DC_EN": 0}),
    "prime_latencies": DEFAULT.with_overrides({f"LATENCY.{k}.dc_lib_en": v for k, v in PRIME_LATENCIES.items()}),
    "mlen32": DEFAULT.with_overrides({"MLEN": 32, "VLEN": 32, "BROADCAST_AMOUNT": 2}),
}
ORACLE_VRAM_ROWS = 512
ORACLE_HBM_BYTES = 1 << 16


# ====================================================================================== helpers

def li(reg: int, value: int) -> list[str]:
    """Load a 32-bit constant into gp<reg> (the compiler's load_large_int)."""
    if value < 1 << 18:
        return [f"S_ADDI_INT gp{reg}, gp0, {value}"]
    lines = [f"S_LUI_INT gp{reg}, {value >> 12}"]
    if value & 0xFFF:
        lines.append(f"S_ADDI_INT gp{reg}, gp{reg}, {value & 0xFFF}")
    return lines


def word(mnemonic: str, **fields: int) -> str:
    """A raw `.word` with the given decoder fields (opcode and field positions from the spec) --
    for encodings the assembler cannot express (masks the compiler's placement drops, f8+ registers,
    M_BMM with rd != 0)."""
    w = ISA.by_mnemonic[mnemonic].opcode << ISA.fields["opcode"].lsb
    for name, value in fields.items():
        assert 0 <= value <= ISA.fields[name].mask, (name, value)
        w |= value << ISA.fields[name].lsb
    return f".word 0x{w:08X}"


def bf16(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)


def random_bf16(rng: np.random.Generator, shape, max_exp: int = 8) -> np.ndarray:
    """Finite non-zero bf16 values (bits), both signs, exponents in [-max_exp, max_exp]."""
    mant = 1 + rng.integers(0, 128, shape) / 128
    sign = rng.choice([-1.0, 1.0], shape)
    return bf16(sign * mant * np.exp2(rng.integers(-max_exp, max_exp + 1, shape).astype(np.float64)))


def random_int_bf16(rng: np.random.Generator, shape, lo: int = -7, hi: int = 7) -> np.ndarray:
    return bf16(rng.integers(lo, hi + 1, shape))


def fp_sram_values(rng: np.random.Generator, n: int, max_exp: int = 6) -> np.ndarray:
    """FP SRAM preload values (float16) that bf16 represents exactly (7-bit mantissas)."""
    mant = 1 + rng.integers(0, 128, n) / 128
    sign = rng.choice([-1.0, 1.0], n)
    return (sign * mant * np.exp2(rng.integers(-max_exp, max_exp + 1, n).astype(np.float64))).astype(np.float16)


def hbm_image(rng: np.random.Generator, tensors, noise: bool = True) -> tuple[bytes, list[dict]]:
    """A 64 KiB HBM image: random bytes (so read-modify-writes must keep their neighbours) with
    MXFP8 tensors placed by the image writer; returns (bytes, layouts)."""
    if noise:
        hbm = bytearray(rng.integers(0, 256, ORACLE_HBM_BYTES, dtype=np.uint8).tobytes())
    else:
        hbm = bytearray(ORACLE_HBM_BYTES)
    layouts = [place_tensor(hbm, x, base) for x, base in tensors]
    return bytes(hbm), layouts


@dataclass
class Case:
    asm: str
    vram: np.ndarray | None = None       # uint16 [rows, VLEN] bf16 bits
    fp_sram: np.ndarray | None = None    # float16 values (the reference's --fpsram format)
    int_sram: np.ndarray | None = None   # uint32
    hbm: bytes | None = None


CaseBuilder = Callable[[Settings, np.random.Generator], Case]
CASES: dict[str, CaseBuilder] = {}


def case(name: str):
    def register(fn: CaseBuilder) -> CaseBuilder:
        CASES[name] = fn
        return fn
    return register


def program_text(lines: list[str]) -> str:
    # A header comment and a blank line, so ASM line numbers differ from pcs.
    return "; generated by tests/test_opcodes.py\n\n" + "\n".join(lines) + "\n"


def run_both(c: Case, s: Settings):
    prog = assemble(c.asm)
    res = run(
        prog, settings=s,
        vram=c.vram.astype("<u2").tobytes() if c.vram is not None else None,
        fp_sram=c.fp_sram.astype("<f2").tobytes() if c.fp_sram is not None else None,
        int_sram=c.int_sram.astype("<u4").tobytes() if c.int_sram is not None else None,
        hbm=c.hbm, raise_on_error=False)
    ora = oracle.execute(
        prog.words, s, vram=c.vram,
        fp_sram=oracle.f16_to_bf16_bits(c.fp_sram) if c.fp_sram is not None else None,
        int_sram=c.int_sram, hbm=c.hbm, vram_rows=ORACLE_VRAM_ROWS, hbm_bytes=ORACLE_HBM_BYTES)
    return prog, res, ora


def _first_differences(got: np.ndarray, want: np.ndarray, n: int = 6) -> str:
    idx = np.argwhere(got != want)[:n]
    return ", ".join(f"{tuple(int(i) for i in ix)}: emulator {int(got[tuple(ix)]):#x} oracle {int(want[tuple(ix)]):#x}"
                     for ix in idx)


def assert_same_state(res, ora, prog) -> None:
    st = res.state
    rows = ora.vram.shape[0]
    assert st.vram_rows_used <= rows, f"the emulator wrote VRAM row {st.vram_rows_used - 1}, outside the test's rows"
    assert np.array_equal(st.vram[:rows], ora.vram), "VRAM " + _first_differences(st.vram[:rows], ora.vram)
    got_mram, want_mram = st.mram.view(np.uint32), ora.mram.view(np.uint32)
    assert np.array_equal(got_mram, want_mram), "MRAM " + _first_differences(got_mram, want_mram)
    assert np.array_equal(st.fp_sram, ora.fp_sram), "FP SRAM " + _first_differences(st.fp_sram, ora.fp_sram)
    assert np.array_equal(st.int_sram, ora.int_sram), "INT SRAM " + _first_differences(st.int_sram, ora.int_sram)
    assert st.gp.tolist() == ora.gp, "gp registers"
    assert st.fp.tolist() == ora.fp, "fp registers"
    assert st.addr.tolist() == ora.a, "address registers"
    assert (st.scale, st.stride, st.v_mask) == (ora.scale, ora.stride, ora.v_mask), "SCALE/STRIDE/V_MASK"
    hbm = np.frombuffer(st.hbm.read(0, len(ora.hbm)), dtype=np.uint8)
    assert np.array_equal(hbm, ora.hbm), "HBM " + _first_differences(hbm, ora.hbm)
    # counts and cycles
    assert res.instructions == ora.instructions
    assert res.pc_count.tolist() == ora.pc_count.tolist()
    dma = ora.pc_cycles < 0
    mismatched = [(pc, prog.source[pc].text, int(res.pc_cycles[pc]), int(ora.pc_cycles[pc]))
                  for pc in np.nonzero(~dma & (res.pc_cycles != ora.pc_cycles))[0]]
    assert not mismatched, f"cycles per pc (pc, line, emulator, oracle): {mismatched[:5]}"
    assert (res.pc_cycles[dma & (ora.pc_count > 0)] > 0).all(), "a DMA instruction took no time"
    assert res.cycles == int(res.pc_cycles.sum())
    assert res.cycles - int(res.pc_cycles[dma].sum()) == ora.cycles


# ====================================================================================== vector cases

VV_OPS = ("V_ADD_VV", "V_SUB_VV", "V_MUL_VV")
VF_OPS = ("V_ADD_VF", "V_SUB_VF", "V_MUL_VF", "V_MAX_VF", "V_MIN_VF")
UNARY_OPS = ("V_EXP_V", "V_RECI_V")


def _mask_setup(s: Settings, rng: np.random.Generator) -> tuple[list[str], int]:
    """V_MASK with some (not all) heads selected, plus bits past the last head (ignored); and a
    random non-zero rmask literal (it is a flag)."""
    heads = s.VLEN // s.HLEN
    pattern = int(rng.integers(1, 2**heads - 1)) | (1 << 20)
    return li(4, pattern) + ["C_SET_V_MASK_REG gp4"], int(rng.integers(1, 16))


def elementwise_case(mnemonic: str, masked: bool, s: Settings, rng: np.random.Generator) -> Case:
    v = s.VLEN
    if mnemonic == "V_EXP_V":
        vram = bf16(rng.uniform(-100, 100, (8, v)))          # some lanes beyond the ±88 clamp
    else:
        vram = random_bf16(rng, (8, v))
    fp = fp_sram_values(rng, 8)
    vram[1, rng.choice(v, 8, replace=False)] = bf16(fp[3])   # ties for MAX/MIN, zeros for SUB
    lines = li(1, 1 * v) + li(2, 2 * v) + li(3, 5 * v) + ["S_LD_FP f2, gp0, 3"]
    mask = 0
    if masked:
        setup, mask = _mask_setup(s, rng)
        lines += setup
    if mnemonic in VV_OPS:
        lines += [f"{mnemonic} gp3, gp1, gp2, {mask}", f"{mnemonic} gp1, gp1, gp2, {mask}"]   # then in place
    elif mnemonic in VF_OPS:
        order = ", 0" if mnemonic == "V_SUB_VF" else ""
        lines += [f"{mnemonic} gp3, gp1, f2, {mask}{order}", f"{mnemonic} gp1, gp1, f0, {mask}{order}"]
    else:
        # The compiler's placement puts this op's mask in rs2, which the hardware ignores: a masked
        # form needs the word written out (rmask in rs3).
        lines.append(word(mnemonic, rd=3, rs1=1, rs3=mask) if masked else f"{mnemonic} gp3, gp1, 0")
        lines.append(f"{mnemonic} gp1, gp1, 0")
    return Case(program_text(lines), vram=vram, fp_sram=fp)


for _mn in VV_OPS + VF_OPS + UNARY_OPS:
    for _masked in (False, True):
        CASES[f"{_mn}{' masked' if _masked else ''}"] = (
            lambda s, rng, mn=_mn, masked=_masked: elementwise_case(mn, masked, s, rng))


@case("V_SUB_VF reverse order")
def _sub_vf_reverse(s, rng):
    v = s.VLEN
    vram = random_bf16(rng, (4, v))
    fp = fp_sram_values(rng, 8)
    vram[1, rng.choice(v, 8, replace=False)] = bf16(fp[3])   # equal operands give -0 in reverse order
    setup, mask = _mask_setup(s, rng)
    order = int(rng.integers(1, 16))                          # any non-zero funct1 means reverse
    lines = li(1, v) + li(3, 2 * v) + li(5, 3 * v) + ["S_LD_FP f2, gp0, 3"] + setup + [
        f"V_SUB_VF gp3, gp1, f2, 0, {order}",
        f"V_SUB_VF gp5, gp1, f2, {mask}, 1",
    ]
    return Case(program_text(lines), vram=vram, fp_sram=fp)


@case("V_MAX_VF/V_MIN_VF signed-zero ties")
def _max_min_zero_ties(s, rng):
    v = s.VLEN
    vram = random_bf16(rng, (4, v))
    vram[1, : v // 2] = np.where(rng.random(v // 2) < 0.5, 0x0000, 0x8000)   # ±0 lanes
    fp = np.array([-0.0, 0.0], dtype=np.float16)
    lines = li(1, v) + ["S_LD_FP f1, gp0, 0"] + li(3, 2 * v) + li(4, 3 * v) + li(5, 4 * v) + li(6, 5 * v) + [
        "V_MAX_VF gp3, gp1, f0, 0",     # f0 = +0
        "V_MAX_VF gp4, gp1, f1, 0",     # f1 = -0
        "V_MIN_VF gp5, gp1, f0, 0",
        "V_MIN_VF gp6, gp1, f1, 0",
    ]
    return Case(program_text(lines), vram=vram, fp_sram=fp)


def red_sum_case(masked: bool, s, rng) -> Case:
    v = s.VLEN
    vram = random_int_bf16(rng, (4, v), -50, 50)   # integer lanes: every sum is exact
    fp = np.zeros(8, dtype=np.float16)
    fp[5] = rng.integers(-20, 21)
    lines = li(1, v) + li(2, 2 * v) + ["S_LD_FP f3, gp0, 5"]
    if masked:
        setup, mask = _mask_setup(s, rng)
        # the compiler's assembler drops V_RED_SUM's mask; the hardware reads it from rs3
        lines += setup + [word("V_RED_SUM", rd=3, rs1=1, rs3=mask), word("V_RED_SUM", rd=3, rs1=2, rs3=mask)]
    else:
        lines += ["V_RED_SUM f3, gp1", "V_RED_SUM f3, gp2", "V_RED_SUM f7, gp2"]
    return Case(program_text(lines), vram=vram, fp_sram=fp)


CASES["V_RED_SUM"] = lambda s, rng: red_sum_case(False, s, rng)
CASES["V_RED_SUM masked"] = lambda s, rng: red_sum_case(True, s, rng)


@case("V_RED_MAX")
def _red_max(s, rng):
    v = s.VLEN
    vram = random_bf16(rng, (4, v))
    vram[3] = bf16(-np.abs(oracle.bf16_values(vram[3])))       # a row below the register value
    fp = fp_sram_values(rng, 8)
    fp[6] = 1000.0
    setup, mask = _mask_setup(s, rng)
    lines = li(1, v) + li(2, 2 * v) + li(3, 3 * v) + ["S_LD_FP f3, gp0, 5", "S_LD_FP f4, gp0, 6"] + setup + [
        "V_RED_MAX f3, gp1, 0",
        "V_RED_MAX f3, gp2, 0",
        word("V_RED_MAX", rd=5, rs1=2, rs3=mask),                # the mask cannot change a maximum
        "V_RED_MAX f4, gp3, 0",
    ]
    return Case(program_text(lines), vram=vram, fp_sram=fp)


@case("f0 writes are no-ops")
def _f0_noops(s, rng):
    v = s.VLEN
    fp = fp_sram_values(rng, 8)
    lines = li(1, 1) + ["S_LD_FP f1, gp0, 0", "S_LD_FP f2, gp0, 1"] + [
        # rd = f0: nothing is read (gp1 = 1 is a misaligned VRAM address, f9/f15 do not exist)
        "V_RED_SUM f0, gp1",
        "V_RED_MAX f0, gp1, 0",
        word("V_RED_SUM", rd=0, rs1=1, rs3=1),
        "S_ADD_FP f0, f1, f2", "S_SUB_FP f0, f1, f2", "S_MAX_FP f0, f1, f2", "S_MUL_FP f0, f1, f2",
        "S_EXP_FP f0, f1", "S_RECI_FP f0, f1", "S_SQRT_FP f0, f1",
        word("S_ADD_FP", rd=0, rs1=9, rs2=15),
        word("S_SQRT_FP", rd=0, rs1=12),
        "S_LD_FP f0, gp0, 2",           # ...but S_LD_FP does write f0
    ] + li(3, v) + ["V_ADD_VF gp3, gp3, f0, 0"]
    return Case(program_text(lines), vram=random_bf16(rng, (2, v)), fp_sram=fp)


@case("V_SHFT_V")
def _shift(s, rng):
    v = s.VLEN
    vram = random_bf16(rng, (2, v))
    lines = li(1, v)
    for i, amount in enumerate([0, 1, int(rng.integers(2, v - 1)), v - 1, v, 0xFFFFF000]):
        lines += li(5, amount) + li(6, (4 + i) * v) + ["V_SHFT_V gp6, gp1, gp5"]
    lines += li(5, 3) + ["V_SHFT_V gp1, gp1, gp5"]                # in place
    return Case(program_text(lines), vram=vram)


def topk_case(ties: bool, s, rng) -> Case:
    v = s.VLEN
    vram = bf16(np.full((12, v), 100.0))           # lanes past the experts must be ignored
    if ties:
        p0 = rng.integers(-2, 1, 32).astype(np.float32)       # the top 4 are all zeros, of both signs
        p1 = rng.integers(-3, 4, 128).astype(np.float32)
    else:
        p0 = (rng.permutation(64)[:32] - 32) / 8.0
        p1 = (rng.permutation(256)[:128] - 128) / 16.0
    p0_bits, p1_bits = bf16(p0), bf16(p1)
    if ties:
        zeros = np.nonzero(p0_bits == 0)[0]
        p0_bits[zeros[::2]] = 0x8000                           # -0 first, so +0 must overtake it
    vram[1, :32] = p0_bits
    vram[4:4 + 128 // v] = p1_bits.reshape(-1, v)
    lines = li(1, v) + li(2, 4 * v) + li(6, 100) + li(7, 200) + li(8, 300) + li(9, 400) + [
        "V_TOPK gp6, gp1, gp7, 0",
        "V_TOPK gp8, gp2, gp9, 1",
    ]
    return Case(program_text(lines), vram=vram)


CASES["V_TOPK"] = lambda s, rng: topk_case(False, s, rng)
CASES["V_TOPK ties and signed zeros"] = lambda s, rng: topk_case(True, s, rng)


@case("S_MAP_V_FP")
def _map_v_fp(s, rng):
    v = s.VLEN
    fp = fp_sram_values(rng, 1024)
    base = int(rng.integers(0, 1024 - v - 17))
    lines = li(1, 3 * v) + li(2, base) + ["S_MAP_V_FP gp1, gp2, 17"] + \
        li(3, 1024 - v) + li(4, 5 * v) + ["S_MAP_V_FP gp4, gp3, 0"]   # a window ending at the last entry
    return Case(program_text(lines), fp_sram=fp)


@case("FP SRAM preload rounding + S_MAP_V_FP")
def _fp_sram_preload(s, rng):
    v = s.VLEN
    bits = rng.integers(0, 1 << 16, 1024, dtype=np.uint32).astype(np.uint16)
    bits[(bits & 0x7C00) == 0x7C00] &= 0xFC00      # no NaNs (their payload rule is images.py's); ±inf stay
    lines = []
    for i in range(4):
        lines += li(1, (2 + i) * v) + li(2, int(rng.integers(0, 1024 - v))) + ["S_MAP_V_FP gp1, gp2, 0"]
    lines += [f"S_LD_FP f{i}, gp0, {int(rng.integers(0, 1024))}" for i in range(8)]
    return Case(program_text(lines), fp_sram=bits.view(np.float16))


# ====================================================================================== scalar cases

@case("scalar FP")
def _scalar_fp(s, rng):
    fp = fp_sram_values(rng, 16)
    fp[2] = abs(fp[2])                  # sqrt input
    fp[6] = 100.0                       # exp input past the clamp
    fp[7], fp[8] = -0.0, 0.0
    lines = ["S_LD_FP f1, gp0, 0", "S_LD_FP f2, gp0, 1"] + li(1, 2) + [
        "S_LD_FP f4, gp1, 0", "S_LD_FP f5, gp0, 6", "S_LD_FP f6, gp0, 7", "S_LD_FP f7, gp0, 8"]
    ops = ["S_ADD_FP f3, f1, f2", "S_SUB_FP f3, f1, f2", "S_SUB_FP f3, f2, f1", "S_MUL_FP f3, f1, f2",
           "S_MAX_FP f3, f1, f2", "S_MAX_FP f3, f2, f1",
           "S_MAX_FP f3, f6, f7", "S_MAX_FP f3, f7, f6",        # ±0 compare equal: rs1 is returned
           "S_EXP_FP f3, f1", "S_EXP_FP f3, f5", "S_RECI_FP f3, f1", "S_RECI_FP f3, f6",
           "S_SQRT_FP f3, f4", "S_ADD_FP f1, f1, f1"]
    for i, line in enumerate(ops):
        lines += [line, f"S_ST_FP f3, gp1, {100 + i}"]
    return Case(program_text(lines), fp_sram=fp)


@case("scalar INT")
def _scalar_int(s, rng):
    isram = rng.integers(0, 2**32, 16, dtype=np.uint64).astype(np.uint32)
    lines = ["S_LD_INT gp1, gp0, 0", "S_LD_INT gp2, gp0, 1"] + li(3, 5) + [
        "S_LD_INT gp4, gp3, 2",
        "S_ADD_INT gp5, gp1, gp2", "S_SUB_INT gp6, gp1, gp2", "S_SUB_INT gp7, gp2, gp1",
        "S_MUL_INT gp8, gp1, gp2", "S_ADDI_INT gp9, gp1, 262143",
        "S_LUI_INT gp10, 4194303",                     # imm22 << 12 loses the top 2 bits
        f"S_LUI_INT gp11, {int(rng.integers(0, 1 << 22))}",
        "S_LUI_INT gp4, 1",                            # overwrites, no OR with the old value
        "S_ST_INT gp5, gp0, 100", "S_ST_INT gp8, gp3, 200",
        "S_ADDI_INT gp0, gp0, 7",                      # gp0 is an ordinary register
        "S_ADD_INT gp12, gp0, gp0", "S_MUL_INT gp1, gp1, gp1",
    ]
    return Case(program_text(lines), int_sram=isram)


@case("C_SET_* registers")
def _control_registers(s, rng):
    isram = rng.integers(0, 2**32, 8, dtype=np.uint64).astype(np.uint32)
    lines = [f"S_LD_INT gp{i}, gp0, {i - 1}" for i in range(1, 6)] + [
        "C_SET_ADDR_REG a3, gp1, gp2",                 # rs1 is the high word, rs2 the low word
        "C_SET_ADDR_REG a7, gp0, gp3",
        "C_SET_ADDR_REG a0, gp4, gp0",
        "C_SET_SCALE_REG gp3", "C_SET_STRIDE_REG gp4", "C_SET_V_MASK_REG gp5",
    ]
    return Case(program_text(lines), int_sram=isram)


# ====================================================================================== loops

@case("nested loops count down")
def _nested_loops(s, rng):
    outer, inner = int(rng.integers(2, 6)), int(rng.integers(2, 6))
    lines = [
        f"C_LOOP_START gp1, {outer}",
        "S_ADDI_INT gp5, gp5, 1",
        f"C_LOOP_START gp2, {inner}",
        "S_ADD_INT gp6, gp6, gp2",     # the inner counter: inner, inner-1, ..., 1
        "S_ADD_INT gp7, gp7, gp1",     # the outer counter
        "C_LOOP_END gp2",
        "C_LOOP_END gp1",
        "S_ADD_INT gp8, gp1, gp2",     # both counters end at 0
    ]
    return Case(program_text(lines))


@case("loop over VRAM rows")
def _loop_rows(s, rng):
    v = s.VLEN
    lines = li(1, v) + li(3, 10 * v) + ["S_LD_FP f1, gp0, 0", "C_LOOP_START gp2, 4",
                                        "V_ADD_VF gp3, gp1, f1, 0",
                                        f"S_ADDI_INT gp1, gp1, {v}",
                                        f"S_ADDI_INT gp3, gp3, {v}",
                                        "C_LOOP_END gp2"]
    return Case(program_text(lines), vram=random_bf16(rng, (6, v)), fp_sram=fp_sram_values(rng, 2))


@case("loop counters: live edits, shared register, open loop")
def _loop_counters(s, rng):
    lines = li(9, 1) + [
        "C_LOOP_START gp1, 10",        # the body takes one more off the live counter: 5 iterations
        "S_ADDI_INT gp5, gp5, 1",
        "S_SUB_INT gp1, gp1, gp9",
        "C_LOOP_END gp1",
        "C_LOOP_START gp2, 3",         # same register nested: the outer END sees 0 and exits
        "S_ADDI_INT gp6, gp6, 1",
        "C_LOOP_START gp2, 4",
        "S_ADDI_INT gp7, gp7, 1",
        "C_LOOP_END gp2",
        "C_LOOP_END gp2",
        "C_LOOP_START gp3, 2",         # no C_LOOP_END: the body runs once and the program ends
        "S_ADDI_INT gp8, gp8, 1",
    ]
    return Case(program_text(lines))


@case("mismatched loop nesting")
def _mismatched_loops(s, rng):
    # END gp1 matches the outer entry below the inner one: the jump re-runs the inner START (a
    # third entry); the outer entry is later removed in place, leaving the gp2 entries, and the
    # next END gp1 finds no loop on gp1 and aborts.
    lines = ["C_LOOP_START gp1, 2", "C_LOOP_START gp2, 3", "S_ADDI_INT gp5, gp5, 1", "C_LOOP_END gp1",
             "C_LOOP_END gp2"]
    return Case(program_text(lines))


@case("C_BREAK")
def _break(s, rng):
    lines = [
        f"C_LOOP_START gp1, {int(rng.integers(2, 6))}",
        "S_ADDI_INT gp3, gp3, 1",
        "C_LOOP_START gp2, 10",
        "S_ADDI_INT gp4, gp4, 1",
        "C_BREAK",                     # pops the inner loop and zeroes gp2; no jump
        "C_LOOP_END gp1",              # the outer loop keeps iterating around it
        "C_LOOP_START gp5, 3",
        "C_BREAK",
        "S_ADDI_INT gp6, gp6, 1",      # runs once: the loop is gone
        "C_LOOP_START gp7, 2",
        "C_BREAK",                     # as the last instruction: harmless
    ]
    return Case(program_text(lines))


# ====================================================================================== DMA

def _dma_registers(layout: dict, base: int, areg: int, scratch: int = 13) -> list[str]:
    return (li(scratch, base) + [f"C_SET_ADDR_REG a{areg}, gp0, gp{scratch}"]
            + li(scratch, layout["SCALE"]) + [f"C_SET_SCALE_REG gp{scratch}"]
            + li(scratch, layout["STRIDE"]) + [f"C_SET_STRIDE_REG gp{scratch}"])


def random_tensor(rng, shape) -> np.ndarray:
    return (rng.standard_normal(shape) * np.exp2(rng.integers(-4, 5, shape))).astype(np.float32)


@case("H_PREFETCH_V")
def _prefetch_v(s, rng):
    v = s.VLEN
    x = random_tensor(rng, (8, 2 * v))
    hbm, (layout,) = hbm_image(rng, [(x, 1024)])
    lines = _dma_registers(layout, 1024, 1) + li(4, 2 * v) + li(5, v) + [
        "H_PREFETCH_V gp4, gp5, a1, 1, 0",          # rows 0..3, second column block (STRIDE pitch)
    ] + li(6, 8 * v) + li(7, 4 * 2 * v) + [
        "H_PREFETCH_V gp6, gp7, a1, 1, 1",          # rows 4..7, KV precision (same format)
    ] + li(8, 16 * v) + [
        "H_PREFETCH_V gp8, gp0, a1, 0, 0",          # rstride 0: contiguous VLEN-byte rows
        "H_PREFETCH_V gp8, gp0, a1, 2, 0",          # any rstride but 1 is contiguous
    ]
    return Case(program_text(lines), hbm=hbm)


@case("H_PREFETCH_M")
def _prefetch_m(s, rng):
    m = s.MLEN
    rows = oracle.prefetch_m_rows(s)
    w1 = random_tensor(rng, (rows, m))
    w2 = random_tensor(rng, (rows // 2, 2 * m))
    hbm, (l1, l2) = hbm_image(rng, [(w1, 0), (w2, 16384)])
    lines = _dma_registers(l1, 0, 1) + li(4, m * m) + [
        "H_PREFETCH_M gp4, gp0, a1, 1, 0",          # tile 1: the [rows, MLEN] tensor
    ] + _dma_registers(l2, 16384, 2) + li(5, 8 * m * m) + [
        "H_PREFETCH_M gp5, gp0, a2, 0, 1",          # rstride 0: MLEN-byte rows of the wider tensor
    ]
    return Case(program_text(lines), hbm=hbm)


@case("H_STORE_V")
def _store_v(s, rng):
    v = s.VLEN
    vram = random_bf16(rng, (8, v))
    vram[2, :8] = 0                                 # an all-zero block: scale byte 0
    hbm, _ = hbm_image(rng, [])                     # random bytes: read-modify-write keeps neighbours
    lines = li(1, 4096) + ["C_SET_ADDR_REG a2, gp0, gp1"] + li(2, 1000) + ["C_SET_SCALE_REG gp2"] + \
        li(3, 3 * v) + ["C_SET_STRIDE_REG gp3"] + li(4, v) + li(5, 24) + [
            "H_STORE_V gp4, gp5, a2, 1, 0",          # unaligned offset, STRIDE pitch
        ] + li(6, 4 * v) + li(7, 8192) + [
            "H_STORE_V gp6, gp7, a2, 0, 1",          # contiguous rows, KV precision
        ]
    return Case(program_text(lines), vram=vram, hbm=hbm)


def round_trip_case(s: Settings, rng: np.random.Generator) -> tuple[Case, np.ndarray, int]:
    """Prefetch an MXFP8 tensor into VRAM, store it to a second place, read the copy back into
    VRAM and both copies into MRAM.  Returns (case, tensor, copy base)."""
    m, v = s.MLEN, s.VLEN
    rows = oracle.prefetch_m_rows(s)
    per_prefetch, per_store = s.HBM_V_Prefetch_Amount, s.HBM_V_Writeback_Amount
    x = random_tensor(rng, (rows, m))
    copy_base = 16384
    hbm, (layout,) = hbm_image(rng, [(x, 0)], noise=False)
    lines = _dma_registers(layout, copy_base, 1) + [
        "; the tensor into VRAM rows 0..rows-1",
        "S_ADDI_INT gp4, gp0, 0", "S_ADDI_INT gp5, gp0, 0",
        f"C_LOOP_START gp6, {rows // per_prefetch}",
        "H_PREFETCH_V gp4, gp5, a0, 1, 0",
        f"S_ADDI_INT gp4, gp4, {per_prefetch * v}",
        f"S_ADDI_INT gp5, gp5, {per_prefetch * m}",
        "C_LOOP_END gp6",
        "; stored to the copy",
        "S_ADDI_INT gp4, gp0, 0", "S_ADDI_INT gp5, gp0, 0",
        f"C_LOOP_START gp6, {rows // per_store}",
        "H_STORE_V gp4, gp5, a1, 1, 0",
        f"S_ADDI_INT gp4, gp4, {per_store * v}",
        f"S_ADDI_INT gp5, gp5, {per_store * m}",
        "C_LOOP_END gp6",
        "; the copy back into VRAM rows rows..2*rows-1",
    ] + li(4, rows * v) + [
        "S_ADDI_INT gp5, gp0, 0",
        f"C_LOOP_START gp6, {rows // per_prefetch}",
        "H_PREFETCH_V gp4, gp5, a1, 1, 0",
        f"S_ADDI_INT gp4, gp4, {per_prefetch * v}",
        f"S_ADDI_INT gp5, gp5, {per_prefetch * m}",
        "C_LOOP_END gp6",
        "; both copies into MRAM",
        "H_PREFETCH_M gp0, gp0, a0, 1, 0",
    ] + li(7, (rows // m) * m * m) + ["H_PREFETCH_M gp7, gp0, a1, 1, 0"]
    return Case(program_text(lines), hbm=hbm), x, copy_base


CASES["H_PREFETCH_V/H_STORE_V/H_PREFETCH_M round trip"] = lambda s, rng: round_trip_case(s, rng)[0]


# ====================================================================================== matrix

def matrix_case(s: Settings, rng: np.random.Generator, body: Callable[[Settings, np.random.Generator, int], list[str]],
                vram_rows: int = 80) -> Case:
    """A [prefetch_rows, MLEN] integer weight prefetched into MRAM tile 2 (and the next ones),
    integer VRAM rows, then `body(s, rng, tile_addr)` (gp3 holds tile_addr)."""
    m, v = s.MLEN, s.VLEN
    rows = oracle.prefetch_m_rows(s)
    w = rng.integers(-7, 8, (rows, m)).astype(np.float32)
    hbm, (layout,) = hbm_image(rng, [(w, 0)])
    tile_addr = 2 * m * m
    lines = _dma_registers(layout, 0, 0) + li(3, tile_addr) + ["H_PREFETCH_M gp3, gp0, a0, 1, 0"]
    lines += body(s, rng, tile_addr)
    return Case(program_text(lines), vram=random_int_bf16(rng, (vram_rows, v)), hbm=hbm)


def _block(s, rng) -> int:
    return s.BLEN * int(rng.integers(0, s.MLEN // s.BLEN))


def _head(s, rng) -> int:
    return s.HLEN * int(rng.integers(0, s.MLEN // s.HLEN))


def _mm_body(transposed: bool):
    def body(s, rng, tile_addr):
        m, v = s.MLEN, s.VLEN
        op = "M_TMM 0, gp{vec}, gp{mat}" if transposed else "M_MM 0, gp{mat}, gp{vec}"
        return (li(4, 8 * v) + li(5, tile_addr + _block(s, rng) * m) + [op.format(mat=5, vec=4)]
                + li(6, 16 * v) + li(7, tile_addr + _block(s, rng) * m) + [op.format(mat=7, vec=6)]   # accumulates
                + li(8, 40 * v + _block(s, rng)) + ["M_MM_WO gp8, gp0, 0"]
                + li(10, 60 * v) + ["M_MM_WO gp10, gp0, 0"])                                         # cleared: zeros
    return body


CASES["M_MM + M_MM_WO"] = lambda s, rng: matrix_case(s, rng, _mm_body(False))
CASES["M_TMM + M_MM_WO"] = lambda s, rng: matrix_case(s, rng, _mm_body(True))


@case("M_MM_WO stride register and immediate")
def _mm_wo_stride(s, rng):
    def body(s, rng, tile_addr):
        v = s.VLEN
        return (li(4, 8 * v) + li(5, tile_addr + _block(s, rng) * s.MLEN) + ["M_MM 0, gp5, gp4"]
                + li(8, 20 * v + _block(s, rng)) + li(9, 3)
                + [f"M_MM_WO gp8, gp9, {2 * v + s.BLEN}"]         # rows base + i*MLEN*gp9, imm added
                + ["M_MM 0, gp5, gp4"] + li(10, 50 * v + _block(s, rng))
                + ["M_MM_WO gp10, gp12, 0"])                       # gp12 = 0: all BLEN rows hit one row
    return matrix_case(s, rng, body)


@case("M_MV + M_TMV + M_MV_WO")
def _mv(s, rng):
    def body(s, rng, tile_addr):
        v = s.VLEN
        return (li(4, 8 * v) + li(5, tile_addr + _block(s, rng)) + ["M_MV 0, gp5, gp4"]   # element-granular column
                + li(6, 9 * v) + ["M_TMV 0, gp3, gp6"]                                # shares the accumulator
                + li(8, 40 * v + _block(s, rng)) + ["M_MV_WO gp8, 0"]
                + ["M_TMV 0, gp3, gp4"] + li(9, 44 * v)
                + ["M_MV_WO gp9, 64"])      # placed at bit 10: the hardware reads imm18 = 64 >> 4 = 4
    return matrix_case(s, rng, body)


@case("M_BMM + M_BMM_WO")
def _bmm(s, rng):
    def body(s, rng, tile_addr):
        return (li(4, 0) + li(5, tile_addr + _head(s, rng)) + ["M_BMM 0, gp5, gp4", "M_BMM 0, gp5, gp4"]
                + li(9, 128 * s.VLEN) + ["M_BMM_WO gp9, 0"])
    return matrix_case(s, rng, body)


@case("M_BTMM + M_BMM_WO")
def _btmm(s, rng):
    def body(s, rng, tile_addr):
        return (li(4, 0) + li(5, tile_addr + _head(s, rng)) + li(6, tile_addr + _head(s, rng))
                + ["M_BTMM 0, gp5, gp4", "M_BTMM 0, gp6, gp4"]
                + li(9, 128 * s.VLEN) + ["M_BMM_WO gp9, 0"])
    return matrix_case(s, rng, body)


@case("M_BTMV + M_BMV_WO")
def _btmv(s, rng):
    def body(s, rng, tile_addr):
        v = s.VLEN
        return (li(10, _head(s, rng)) + li(4, 8 * v) + ["M_BTMV gp10, gp3, gp4"]   # matrix = gp3 + gp10
                + li(5, tile_addr + _head(s, rng)) + li(6, 9 * v) + ["M_BTMV gp0, gp5, gp6"]
                + li(11, 100 * v) + ["M_BMV_WO gp11, 0"])
    return matrix_case(s, rng, body)


@case("M_BMV aborts")
def _bmv(s, rng):
    def body(s, rng, tile_addr):
        return li(10, _head(s, rng)) + li(4, 8 * s.VLEN) + ["M_BMV gp10, gp3, gp4", "S_ADDI_INT gp1, gp0, 1"]
    return matrix_case(s, rng, body)


# ====================================================================================== the oracle comparison

def case_seed(name: str) -> int:
    return zlib.crc32(name.encode())


def test_every_decodable_opcode_is_in_some_case():
    executed = set()
    for name, build in CASES.items():
        prog = assemble(build(DEFAULT, np.random.default_rng(case_seed(name))).asm)
        executed |= {oracle.decode_word(w)[0] for w in prog.words}
    decodable = {op.mnemonic for op in ISA.ops if op.decodable}
    assert decodable - executed == set()


@pytest.mark.parametrize("settings_name", list(SETTINGS))
@pytest.mark.parametrize("case_name", list(CASES))
def test_case_matches_the_oracle(case_name, settings_name):
    s = SETTINGS[settings_name]
    c = CASES[case_name](s, np.random.default_rng(case_seed(case_name)))
    prog, res, ora = run_both(c, s)
    if ora.abort is None:
        assert res.error is None, res.error
    else:
        assert res.error is not None, f"the oracle aborts with {ora.abort}, the emulator ran to the end"
        assert (res.error.kind, res.error.pc) == ora.abort
    assert_same_state(res, ora, prog)


# ====================================================================================== focused checks

def test_f0_writes_cost_nothing_and_read_nothing():
    s = DEFAULT
    c = CASES["f0 writes are no-ops"](s, np.random.default_rng(1))
    prog, res, _ = run_both(c, s)
    assert res.error is None
    for pc, line in enumerate(prog.source):
        is_f0_write = (" f0," in line.text and not line.text.startswith(("S_LD_FP", "V_ADD_VF"))) or \
            line.text.startswith(".word")
        if is_f0_write:
            assert res.pc_cycles[pc] == 0 and res.pc_count[pc] == 1, line.text
    assert res.state.fp[0] == oracle.f16_to_bf16_bits(c.fp_sram[2])


@pytest.mark.parametrize("settings_name", ["default", "mlen32"])
def test_prefetch_store_round_trip_returns_the_mxfp8_quantised_values(settings_name):
    s = SETTINGS[settings_name]
    c, x, copy_base = round_trip_case(s, np.random.default_rng(7))
    res = run(c.asm, settings=s, hbm=c.hbm, raise_on_error=True)
    rows, m = x.shape
    elements, scales = quantize_mxfp8(x)
    quantised = oracle.dequantize(elements, scales)            # what the MXFP8 image holds
    vram = res.state.vram
    assert np.array_equal(vram[:rows], bf16(quantised))        # the prefetched tensor
    assert np.array_equal(vram[rows:2 * rows], vram[:rows])    # the stored copy, read back
    stored = np.frombuffer(res.state.hbm.read(copy_base, rows * m + scales.size), dtype=np.uint8)
    assert np.array_equal(stored[: rows * m], elements.reshape(-1))       # the same bytes as the writer's
    assert np.array_equal(stored[rows * m:], scales.reshape(-1))
    tiles = rows // m
    original = res.state.mram[:tiles].reshape(rows, m)
    copy = res.state.mram[tiles:2 * tiles].reshape(rows, m)
    assert np.array_equal(original.view(np.uint32), quantised.view(np.uint32))   # MRAM keeps f32
    assert np.array_equal(copy.view(np.uint32), quantised.view(np.uint32))


def test_mask_bit_test_wraps_at_32_heads():
    # HLEN = 1 gives 64 one-lane heads; the reference tests V_MASK bit (head mod 32), so bit h
    # also selects head h + 32 (verified-corrections B, vmask_hlen1_shift_alias).
    s = DEFAULT.with_overrides({"HLEN": 1})
    rng = np.random.default_rng(11)
    lines = li(4, 0b101 | (1 << 31)) + ["C_SET_V_MASK_REG gp4"] + li(1, s.VLEN) + li(2, 2 * s.VLEN) + \
        li(3, 3 * s.VLEN) + ["V_ADD_VV gp3, gp1, gp2, 1"]
    c = Case(program_text(lines), vram=random_bf16(rng, (4, s.VLEN)))
    prog, res, ora = run_both(c, s)
    assert res.error is None
    assert_same_state(res, ora, prog)
    a, b = oracle.bf16_values(c.vram[1]), oracle.bf16_values(c.vram[2])
    expected = c.vram[1].copy()
    selected = [0, 2, 31, 32, 34, 63]
    expected[selected] = bf16(a[selected] + b[selected])
    assert np.array_equal(res.state.vram[3], expected)


# ====================================================================================== aborts

def expected_abort_position(asm: str) -> tuple[int, int]:
    """(pc, line number) of the instruction marked `; ABORT`, counted from the text."""
    pc = 0
    for line_no, raw in enumerate(asm.split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith((";", "//", "#")):
            continue
        if "ABORT" in line:
            return pc, line_no
        pc += 1
    raise AssertionError("no line is marked ABORT")


def check_abort(lines: list[str], kind: str, mnemonic: str, s: Settings) -> EmulationError:
    """Run with raise_on_error=True and check the error against the marked line; the oracle must
    abort the same way."""
    asm = program_text(lines)
    pc, line_no = expected_abort_position(asm)
    prog = assemble(asm)
    with pytest.raises(EmulationError) as info:
        run(prog, settings=s, raise_on_error=True)
    err = info.value
    assert (err.kind, err.pc, err.opcode) == (kind, pc, mnemonic), err
    assert err.source is not None and err.source.line_no == line_no, err.source
    assert "ABORT" in err.source.text
    assert err.word == int(prog.words[pc])
    assert oracle.execute(prog.words, s).abort == (kind, pc)
    return err


def abort_programs(s: Settings) -> list[tuple[str, list[str], str, str]]:
    v, m, b, h = s.VLEN, s.MLEN, s.BLEN, s.HLEN
    return [
        ("vram address misaligned", li(1, v + 1) + ["V_ADD_VV gp2, gp1, gp0, 0 ; ABORT"], "alignment", "V_ADD_VV"),
        ("M_TMV needs a tile-aligned address", li(1, b) + ["M_TMV 0, gp1, gp0 ; ABORT"], "alignment", "M_TMV"),
        ("M_MM offset not whole rows", li(1, b) + ["M_MM 0, gp1, gp0 ; ABORT"], "alignment", "M_MM"),
        ("M_MM column block misaligned", li(1, (b // 2) * m) + ["M_MM 0, gp1, gp0 ; ABORT"], "alignment", "M_MM"),
        ("M_BMM head misaligned", li(1, h // 2) + ["M_BMM 0, gp1, gp0 ; ABORT"], "alignment", "M_BMM"),
        ("M_MM_WO lane misaligned", li(1, b // 2) + ["M_MM_WO gp1, gp0, 0 ; ABORT"], "alignment", "M_MM_WO"),
        ("M_BMM_WO not row-aligned", li(1, b) + ["M_BMM_WO gp1, 0 ; ABORT"], "alignment", "M_BMM_WO"),
        ("H_PREFETCH_V destination misaligned", li(1, 3) + ["H_PREFETCH_V gp1, gp0, a0, 0, 0 ; ABORT"],
         "alignment", "H_PREFETCH_V"),
        ("VRAM row past the depth", li(1, s.VECTOR_SRAM_SIZE * v) + ["V_EXP_V gp2, gp1, 0 ; ABORT"],
         "out_of_range", "V_EXP_V"),
        ("INT SRAM index 1024", ["S_LD_INT gp1, gp0, 1024 ; ABORT"], "out_of_range", "S_LD_INT"),
        ("FP SRAM index 1024", li(1, 1000) + ["S_ST_FP f1, gp1, 24 ; ABORT"], "out_of_range", "S_ST_FP"),
        ("S_MAP_V_FP window past FP SRAM", li(1, 1024 - v + 1) + ["S_MAP_V_FP gp0, gp1, 0 ; ABORT"],
         "out_of_range", "S_MAP_V_FP"),
        ("MRAM tile past the last", li(1, (s.MATRIX_SRAM_SIZE // m) * m * m) + ["M_MM 0, gp1, gp0 ; ABORT"],
         "out_of_range", "M_MM"),
        ("V_ADD_VF reads f9", [word("V_ADD_VF", rd=1, rs1=0, rs2=9) + " ; ABORT"], "fp_register", "V_ADD_VF"),
        ("S_MUL_FP reads f12", [word("S_MUL_FP", rd=1, rs1=2, rs2=12) + " ; ABORT"], "fp_register", "S_MUL_FP"),
        ("V_RED_SUM into f8", [word("V_RED_SUM", rd=8, rs1=0) + " ; ABORT"], "fp_register", "V_RED_SUM"),
        ("V_TOPK policy 2", ["V_TOPK gp1, gp0, gp2, 2 ; ABORT"], "topk_policy", "V_TOPK"),
        ("C_LOOP_END without a loop", li(1, 3) + ["C_LOOP_END gp1 ; ABORT"], "loop", "C_LOOP_END"),
        ("C_LOOP_START count 0", ["C_LOOP_START gp1, 0 ; ABORT"], "loop", "C_LOOP_START"),
        ("C_BREAK without a loop", ["C_BREAK ; ABORT"], "loop", "C_BREAK"),
        ("C_LOOP_END after C_BREAK", ["C_LOOP_START gp1, 3", "C_BREAK", "C_LOOP_END gp1 ; ABORT"],
         "loop", "C_LOOP_END"),
        ("M_BMV always", ["M_BMV gp0, gp0, gp0 ; ABORT"], "shape", "M_BMV"),
        ("M_BMM row block past the tile", li(1, m) + ["M_BMM 0, gp1, gp0 ; ABORT"], "narrow", "M_BMM"),
        ("M_BTMM row block past the tile", li(1, m) + ["M_BTMM 0, gp1, gp0 ; ABORT"], "narrow", "M_BTMM"),
        ("M_BTMV row block past the tile", li(1, m) + ["M_BTMV gp0, gp1, gp0 ; ABORT"], "narrow", "M_BTMV"),
    ]


ABORT_IDS = [p[0] for p in abort_programs(DEFAULT)]


@pytest.mark.parametrize("settings_name", ["default", "mlen32"])
@pytest.mark.parametrize("index", range(len(ABORT_IDS)), ids=ABORT_IDS)
def test_abort(index, settings_name):
    s = SETTINGS[settings_name]
    _, lines, kind, mnemonic = abort_programs(s)[index]
    check_abort(lines, kind, mnemonic, s)


def test_abort_keeps_the_state_before_the_aborting_instruction():
    prog = assemble(program_text(["S_ADDI_INT gp1, gp0, 5", "S_LD_INT gp2, gp0, 1024 ; ABORT",
                                  "S_ADDI_INT gp3, gp0, 7"]))
    res = run(prog)
    assert res.error is not None and res.error.kind == "out_of_range"
    assert res.state.gp[1] == 5 and res.state.gp[3] == 0
    assert res.instructions == 1 and res.pc_count.tolist() == [1, 0, 0]


def _invalid_opcodes() -> list[int]:
    opcode_values = range(ISA.fields["opcode"].mask + 1)
    return [o for o in opcode_values if o not in ISA.by_opcode or not ISA.by_opcode[o].decodable]


@pytest.mark.parametrize("opcode", _invalid_opcodes(), ids=lambda o: f"{o:#04x}")
def test_invalid_opcode_aborts_when_reached(opcode):
    w = (opcode << ISA.fields["opcode"].lsb) | (5 << ISA.fields["rd"].lsb)
    err = check_abort(["S_ADDI_INT gp1, gp0, 1", f".word 0x{w:08X} ; ABORT", "S_ADDI_INT gp2, gp0, 2"],
                      "invalid_opcode", "INVALID", DEFAULT)
    assert err.word == w


@pytest.mark.parametrize("mnemonic", ["M_BMM", "M_BTMM"])
def test_broadcast_matmul_with_nonzero_rd_aborts_at_decode(mnemonic):
    with pytest.raises(AssemblerError):
        assemble(f"{mnemonic} 1, gp1, gp2")
    invalid = _invalid_opcodes()[-1] << ISA.fields["opcode"].lsb
    lines = ["S_ADDI_INT gp1, gp0, 1",
             f".word 0x{invalid:08X}",                       # an earlier invalid word: decode still wins
             word(mnemonic, rd=3, rs1=1, rs2=2) + " ; ABORT"]
    check_abort(lines, "decode", mnemonic, DEFAULT)
    res = run(assemble(program_text(lines)))
    assert res.error.kind == "decode" and res.instructions == 0 and res.state.gp[1] == 0


@pytest.mark.parametrize("body, fails", [(8, True), (7, False)])
def test_max_loop_instructions(body, fails):
    s = DEFAULT.with_overrides({"MAX_LOOP_INSTRUCTIONS": 8})
    lines = ["C_LOOP_START gp1, 3"] + ["S_ADDI_INT gp2, gp2, 1"] * body + [
        "C_LOOP_END gp1" + (" ; ABORT" if fails else "")]
    if fails:
        # an iteration counts its body and its C_LOOP_END; the abort comes before the 9th
        check_abort(lines, "max_loop", "C_LOOP_END", s)
        res = run(assemble(program_text(lines)), settings=s)
        assert res.state.gp[2] == body
    else:
        res = run(assemble(program_text(lines)), settings=s, raise_on_error=True)
        assert res.state.gp[2] == 3 * body


@pytest.mark.parametrize("limit, fails", [(8, False), (7, True)])
def test_max_loop_counts_everything_an_outer_iteration_runs(limit, fails):
    # outer iteration = inner START + 3 x (body + inner END) + outer END = 8 instructions
    s = DEFAULT.with_overrides({"MAX_LOOP_INSTRUCTIONS": limit})
    lines = ["C_LOOP_START gp1, 2", "C_LOOP_START gp2, 3", "S_ADDI_INT gp3, gp3, 1", "C_LOOP_END gp2",
             "C_LOOP_END gp1" + (" ; ABORT" if fails else "")]
    if fails:
        check_abort(lines, "max_loop", "C_LOOP_END", s)
    else:
        assert run(assemble(program_text(lines)), settings=s, raise_on_error=True).state.gp[3] == 6


@pytest.mark.parametrize("line", ["M_BMM 0, gp0, gp0", "M_BTMM 0, gp0, gp0", "M_BMV gp0, gp0, gp0",
                                  "M_BTMV gp0, gp0, gp0"])
def test_broadcast_ops_assert_broadcast_amount_times_hlen_is_mlen(line):
    s = DEFAULT.with_overrides({"BROADCAST_AMOUNT": 2})
    check_abort(["S_ADDI_INT gp1, gp0, 1", line + " ; ABORT"], "assert", line.split()[0], s)


# ====================================================================================== budgets

ENDLESS = program_text(["C_LOOP_START gp1, 4194303", "S_ADDI_INT gp2, gp2, 1", "C_LOOP_END gp1"])


def test_instruction_budget_stops_a_long_loop():
    with pytest.raises(BudgetExceeded) as info:
        run(ENDLESS, max_instructions=1000, raise_on_error=True)
    assert info.value.kind == "budget"
    res = run(ENDLESS, max_instructions=1000)
    assert isinstance(res.error, BudgetExceeded) and res.error.kind == "budget"
    assert res.instructions == 1000
    assert res.state.gp[2] == 500            # START, then 500 x ADDI and 499 x END
    assert res.error.pc == 2 and res.error.source.line_no == 5


def test_wall_time_budget_stops_a_long_loop():
    with pytest.raises(BudgetExceeded) as info:
        run(ENDLESS, max_wall_seconds=0.001, raise_on_error=True)
    assert info.value.kind == "budget"
    res = run(ENDLESS, max_wall_seconds=0.001)
    assert res.error.kind == "budget"
    assert 0 < res.instructions < 1 + 2 * 4194303
