"""Scalar units: integer ALU, bf16 FP ALU and the scalar SRAM loads/stores (scalar-control §2).

Integer registers hold u32 values in int64 slots (wrap-around arithmetic).  FP registers hold bf16
bits; every FP op computes in f32 and rounds with half::bf16::from_f32.  With two NaN operands
ADD/MUL keep rs2's NaN and SUB rs1's (verified-corrections D2).  Writes to f0 make the
arithmetic ops no-ops (the dispatcher skips them before they get here).
"""

import math

import numpy as np

from .common import MASK32, fail, u32
from .jit import jit
from .numerics import add_nan_first, bf16_to_f32, exp_f32, f32_to_bf16_reg, mul_nan_first, quiet, sub_nan_first
from .state import E_FP_REGISTER, E_FPSRAM_RANGE, E_INTSRAM_RANGE

FP_REGS = 8
SRAM_ENTRIES = 1024
EXP_CLAMP = np.float32(88.0)

# FP operation codes (internal).
FP_ADD, FP_SUB, FP_MUL, FP_MAX, FP_EXP, FP_RECI, FP_SQRT = range(7)


@jit
def s_fp(code, rd, rs1, rs2, fpr, err, pc):
    if rd >= FP_REGS or rs1 >= FP_REGS or (code <= FP_MAX and rs2 >= FP_REGS):
        bad = rd if rd >= FP_REGS else (rs1 if rs1 >= FP_REGS else rs2)
        return fail(err, E_FP_REGISTER, pc, bad)
    if code == FP_MAX:
        # half::bf16::max on the bf16 values: b if (b > a and b is not NaN) else a (bits kept).
        a = bf16_to_f32(fpr[rs1])
        b = bf16_to_f32(fpr[rs2])
        fpr[rd] = fpr[rs2] if (not math.isnan(b) and b > a) else fpr[rs1]
        return True
    a = bf16_to_f32(fpr[rs1])
    if code == FP_EXP:
        r = quiet(a) if math.isnan(a) else exp_f32(min(max(a, -EXP_CLAMP), EXP_CLAMP))
    elif code == FP_RECI:
        r = quiet(a) if math.isnan(a) else np.float32(np.float32(1.0) / a)
    elif code == FP_SQRT:
        r = quiet(a) if math.isnan(a) else np.float32(np.sqrt(a))
    else:
        b = bf16_to_f32(fpr[rs2])
        # verified-corrections D2: the reference computes rs2 + rs1 and rs2 * rs1 but rs1 - rs2,
        # and x86 keeps the first operand's NaN, so ADD/MUL return rs2's NaN and SUB rs1's.
        if code == FP_ADD:
            r = add_nan_first(b, a)
        elif code == FP_SUB:
            r = sub_nan_first(a, b)
        else:
            r = mul_nan_first(b, a)
    fpr[rd] = f32_to_bf16_reg(r)
    return True


@jit
def s_ld_st_fp(store, rd, rs1, imm, gp, fpr, fpsram, err, pc):
    idx = u32(gp[rs1] + imm)
    if idx >= SRAM_ENTRIES:
        return fail(err, E_FPSRAM_RANGE, pc, idx, SRAM_ENTRIES)
    if rd >= FP_REGS:
        return fail(err, E_FP_REGISTER, pc, rd)
    if store:
        fpsram[idx] = fpr[rd]
    else:
        fpr[rd] = fpsram[idx]
    return True


@jit
def s_ld_st_int(store, rd, rs1, imm, gp, intsram, err, pc):
    idx = u32(gp[rs1] + imm)
    if idx >= SRAM_ENTRIES:
        return fail(err, E_INTSRAM_RANGE, pc, idx, SRAM_ENTRIES)
    if store:
        intsram[idx] = gp[rd]
    else:
        gp[rd] = np.int64(intsram[idx]) & MASK32
    return True
