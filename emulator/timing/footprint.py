"""Resource footprints: which architectural resources one dynamic instruction reads and writes.

The overlapped timing model (emulator/timing/overlap.py) tracks RAW/WAR/WAW hazards on these
resources at the granularity the machines really use: single gp/fp/address registers, the
scale/stride/mask registers, each of the four matrix accumulators, single INT/FP SRAM entries,
MRAM tiles, VRAM rows and (separately, emulator/timing/overlap.py) 64-byte HBM blocks.

Resources are rows of one table; `resource_bases(settings)` gives the first row of every space.
A footprint is computed from the decoded fields and the register values the instruction saw
before it ran (the run loop's operand log, emulator/core/state.py OPLOG_*), so it is exact for
every address the instruction touched.
"""

from __future__ import annotations

import numpy as np

from ..core.common import u32
from ..core.jit import inline_jit, jit
from ..core.loop import (
    H_C_BREAK, H_C_LOOP_END, H_C_LOOP_START, H_C_SET_ADDR_REG, H_C_SET_SCALE_REG, H_C_SET_STRIDE_REG,
    H_C_SET_V_MASK_REG, H_H_PREFETCH_M, H_H_PREFETCH_V, H_H_STORE_V, H_M_BMM, H_M_BMM_WO, H_M_BMV,
    H_M_BMV_WO, H_M_BTMM, H_M_BTMV, H_M_MM, H_M_MM_WO, H_M_MV, H_M_MV_WO, H_M_TMM, H_M_TMV, H_S_ADD_FP,
    H_S_ADD_INT, H_S_ADDI_INT, H_S_EXP_FP, H_S_LD_FP, H_S_LD_INT, H_S_LUI_INT, H_S_MAP_V_FP, H_S_MAX_FP,
    H_S_MUL_FP, H_S_MUL_INT, H_S_RECI_FP, H_S_SQRT_FP, H_S_ST_FP, H_S_ST_INT, H_S_SUB_FP, H_S_SUB_INT,
    H_V_ADD_VF, H_V_ADD_VV, H_V_EXP_V, H_V_MAX_VF, H_V_MIN_VF, H_V_MUL_VF, H_V_RECI_V, H_V_RED_MAX,
    H_V_RED_SUM, H_V_SHFT_V, H_V_SUB_VF, H_V_TOPK,
)
from ..core.state import (
    P_BLEN, P_BROADCAST, P_MLEN, P_PREFETCH_M_ROWS, P_PREFETCH_V_ROWS, P_VLEN, P_VRAM_DEPTH, P_WRITEBACK_ROWS,
)

# Resource spaces, in table order; "hbm" blocks live in a separate hash-indexed table.
SPACES = ("gp", "fp", "areg", "scale", "stride", "v_mask", "m_acc", "v_acc", "bm_acc", "bv_acc",
          "int_sram", "fp_sram", "mram_tile", "vram_row", "hbm_block")
(SP_GP, SP_FP, SP_AREG, SP_SCALE, SP_STRIDE, SP_VMASK, SP_MACC, SP_VACC, SP_BMACC, SP_BVACC,
 SP_INTSRAM, SP_FPSRAM, SP_MRAM, SP_VRAM, SP_HBM) = range(len(SPACES))
N_TABLE_SPACES = SP_HBM          # spaces held in the direct table
SRAM_ENTRIES = 1024


def resource_bases(mram_tiles: int, vram_rows: int) -> np.ndarray:
    """First table row of each space; the last entry is the table size."""
    sizes = [16, 16, 16, 1, 1, 1, 1, 1, 1, 1, SRAM_ENTRIES, SRAM_ENTRIES, mram_tiles, vram_rows]
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def max_footprint(mlen: int, vlen: int, broadcast: int, prefetch_v_rows: int, writeback_rows: int,
                  prefetch_m_rows: int) -> int:
    """An upper bound of table rows one instruction can touch (scratch size)."""
    return 16 + max(broadcast * mlen, mlen, vlen, prefetch_v_rows, writeback_rows, prefetch_m_rows, 128)


@inline_jit
def _add(fr, fw, n, row, write):
    fr[n] = row
    fw[n] = write
    return n + 1


@inline_jit
def _rw(fr, fw, n, row):
    """Read and write (accumulators, loop counters)."""
    n = _add(fr, fw, n, row, False)
    return _add(fr, fw, n, row, True)


@inline_jit
def _sram_load(fr, fw, n, addr_reg, cell, dest):
    """S_LD_*: the address register and the SRAM cell are read, the destination register written."""
    n = _add(fr, fw, n, addr_reg, False)
    n = _add(fr, fw, n, cell, False)
    return _add(fr, fw, n, dest, True)


@inline_jit
def _sram_store(fr, fw, n, src, addr_reg, cell):
    """S_ST_*: the source and address registers are read, the SRAM cell written."""
    n = _add(fr, fw, n, src, False)
    n = _add(fr, fw, n, addr_reg, False)
    return _add(fr, fw, n, cell, True)


@inline_jit
def footprint(h, rd, rs1, rs2, rs3, imm18, g_rd, g_rs1, g_rs2, top_loop_reg, params, base, fr, fw):
    """fr[:n], fw[:n] = table rows the instruction reads (fw False) and writes (fw True); returns n.

    g_* are gp[rd], gp[rs1], gp[rs2] before the instruction ran; top_loop_reg the counter register
    of the innermost active loop (C_BREAK clears it), -1 if none.  HBM blocks are not included.
    """
    gp = base[SP_GP]
    fp = base[SP_FP]
    vlen = params[P_VLEN]
    m = params[P_MLEN]
    vram = base[SP_VRAM]
    n = 0
    if h == H_S_ADDI_INT:
        n = _add(fr, fw, n, gp + rs1, False)
        n = _add(fr, fw, n, gp + rd, True)
    elif h == H_S_ADD_INT or h == H_S_SUB_INT or h == H_S_MUL_INT:
        n = _add(fr, fw, n, gp + rs1, False)
        n = _add(fr, fw, n, gp + rs2, False)
        n = _add(fr, fw, n, gp + rd, True)
    elif h == H_S_LUI_INT or h == H_C_LOOP_START:
        n = _add(fr, fw, n, gp + rd, True)
    elif h == H_S_LD_INT:
        n = _sram_load(fr, fw, n, gp + rs1, base[SP_INTSRAM] + u32(g_rs1 + imm18), gp + rd)
    elif h == H_S_ST_INT:
        n = _sram_store(fr, fw, n, gp + rd, gp + rs1, base[SP_INTSRAM] + u32(g_rs1 + imm18))
    elif h == H_C_LOOP_END:
        n = _rw(fr, fw, n, gp + rd)
    elif h == H_C_BREAK:
        if top_loop_reg >= 0:
            n = _add(fr, fw, n, gp + top_loop_reg, True)
    elif h == H_C_SET_ADDR_REG:
        n = _add(fr, fw, n, gp + rs1, False)
        n = _add(fr, fw, n, gp + rs2, False)
        n = _add(fr, fw, n, base[SP_AREG] + rd, True)
    elif h == H_C_SET_SCALE_REG or h == H_C_SET_STRIDE_REG or h == H_C_SET_V_MASK_REG:
        n = _add(fr, fw, n, gp + rd, False)
        space = SP_SCALE if h == H_C_SET_SCALE_REG else SP_STRIDE if h == H_C_SET_STRIDE_REG else SP_VMASK
        n = _add(fr, fw, n, base[space], True)
    elif h == H_H_PREFETCH_V or h == H_H_PREFETCH_M or h == H_H_STORE_V:
        n = _add(fr, fw, n, gp + rd, False)
        n = _add(fr, fw, n, gp + rs1, False)
        n = _add(fr, fw, n, base[SP_AREG] + rs2, False)
        n = _add(fr, fw, n, base[SP_SCALE], False)
        if rs3 == 1:
            n = _add(fr, fw, n, base[SP_STRIDE], False)
        if h == H_H_PREFETCH_M:
            first = g_rd // (m * m)
            for t in range(first, first + (params[P_PREFETCH_M_ROWS] - 1) // m + 1):
                n = _add(fr, fw, n, base[SP_MRAM] + t, True)
        elif h == H_H_PREFETCH_V:
            first = g_rd // vlen
            for r in range(first, min(first + params[P_PREFETCH_V_ROWS], params[P_VRAM_DEPTH])):
                n = _add(fr, fw, n, vram + r, True)
        else:
            first = g_rd // vlen
            for r in range(first, first + params[P_WRITEBACK_ROWS]):
                n = _add(fr, fw, n, vram + r, False)
    elif h == H_M_MM or h == H_M_TMM or h == H_M_MV or h == H_M_TMV or h == H_M_BMM or h == H_M_BTMM \
            or h == H_M_BMV or h == H_M_BTMV:
        n = _add(fr, fw, n, gp + rs1, False)
        n = _add(fr, fw, n, gp + rs2, False)
        m_addr = g_rs1
        v_addr = g_rs2
        if h == H_M_TMM:
            m_addr = g_rs2
            v_addr = g_rs1
        nrows = 1
        acc = SP_VACC
        if h == H_M_MM or h == H_M_TMM:
            nrows = params[P_BLEN]
            acc = SP_MACC
        elif h == H_M_BMM or h == H_M_BTMM:
            nrows = m
            acc = SP_BMACC
        elif h == H_M_BMV or h == H_M_BTMV:
            n = _add(fr, fw, n, gp + rd, False)
            m_addr = u32(g_rs1 + g_rd)
            acc = SP_BVACC
        n = _add(fr, fw, n, base[SP_MRAM] + m_addr // (m * m), False)
        for i in range(nrows):
            n = _add(fr, fw, n, vram + u32(v_addr + i * m) // vlen, False)
        n = _rw(fr, fw, n, base[acc])
    elif h == H_M_MM_WO or h == H_M_MV_WO or h == H_M_BMM_WO or h == H_M_BMV_WO:
        n = _add(fr, fw, n, gp + rd, False)
        dest = u32(g_rd + imm18)
        if h == H_M_MM_WO:
            stride = 1
            if rs1 != 0:
                n = _add(fr, fw, n, gp + rs1, False)
                stride = g_rs1
            n = _rw(fr, fw, n, base[SP_MACC])
            vbase = dest - dest % m
            for i in range(params[P_BLEN]):
                n = _add(fr, fw, n, vram + u32(vbase + i * m * stride) // vlen, True)
        elif h == H_M_MV_WO:
            n = _rw(fr, fw, n, base[SP_VACC])
            n = _add(fr, fw, n, vram + (dest - dest % m) // vlen, True)
        elif h == H_M_BMM_WO:
            n = _rw(fr, fw, n, base[SP_BMACC])
            for r in range(params[P_BROADCAST] * m):
                n = _add(fr, fw, n, vram + u32(dest + r * m) // vlen, True)
        else:
            n = _rw(fr, fw, n, base[SP_BVACC])
            for a in range(params[P_BROADCAST]):
                n = _add(fr, fw, n, vram + u32(dest + a * m) // vlen, True)
    elif h >= H_V_ADD_VV and h <= H_V_RECI_V:
        n = _add(fr, fw, n, gp + rs1, False)
        n = _add(fr, fw, n, vram + g_rs1 // vlen, False)
        if h == H_V_ADD_VF or h == H_V_SUB_VF or h == H_V_MUL_VF or h == H_V_MAX_VF or h == H_V_MIN_VF:
            n = _add(fr, fw, n, fp + rs2, False)
        elif h != H_V_EXP_V and h != H_V_RECI_V:
            n = _add(fr, fw, n, gp + rs2, False)
            n = _add(fr, fw, n, vram + g_rs2 // vlen, False)
        if rs3 != 0:
            n = _add(fr, fw, n, base[SP_VMASK], False)
        n = _add(fr, fw, n, gp + rd, False)
        n = _add(fr, fw, n, vram + g_rd // vlen, True)
    elif h == H_V_RED_SUM or h == H_V_RED_MAX:
        if rd != 0:  # f0 destinations make the instruction a no-op that reads nothing
            n = _add(fr, fw, n, gp + rs1, False)
            n = _add(fr, fw, n, vram + g_rs1 // vlen, False)
            if h == H_V_RED_SUM and rs3 != 0:
                n = _add(fr, fw, n, base[SP_VMASK], False)
            n = _rw(fr, fw, n, fp + rd)
    elif h == H_V_SHFT_V:
        n = _add(fr, fw, n, gp + rs1, False)
        n = _add(fr, fw, n, gp + rs2, False)
        n = _add(fr, fw, n, vram + g_rs1 // vlen, False)
        n = _add(fr, fw, n, gp + rd, False)
        n = _add(fr, fw, n, vram + g_rd // vlen, True)
    elif h == H_V_TOPK:
        n_exp = 32 if rs3 == 0 else 128
        k = 4 if rs3 == 0 else 8
        n = _add(fr, fw, n, gp + rd, False)
        n = _add(fr, fw, n, gp + rs1, False)
        n = _add(fr, fw, n, gp + rs2, False)
        for j in range((n_exp + vlen - 1) // vlen):
            n = _add(fr, fw, n, vram + u32(g_rs1 + j * vlen) // vlen, False)
        for slot in range(k):
            n = _add(fr, fw, n, base[SP_INTSRAM] + u32(g_rs2 + slot), True)
            n = _add(fr, fw, n, base[SP_FPSRAM] + u32(g_rd + slot), True)
    elif h == H_S_ADD_FP or h == H_S_SUB_FP or h == H_S_MAX_FP or h == H_S_MUL_FP:
        if rd != 0:
            n = _add(fr, fw, n, fp + rs1, False)
            n = _add(fr, fw, n, fp + rs2, False)
            n = _add(fr, fw, n, fp + rd, True)
    elif h == H_S_EXP_FP or h == H_S_RECI_FP or h == H_S_SQRT_FP:
        if rd != 0:
            n = _add(fr, fw, n, fp + rs1, False)
            n = _add(fr, fw, n, fp + rd, True)
    elif h == H_S_LD_FP:
        n = _sram_load(fr, fw, n, gp + rs1, base[SP_FPSRAM] + u32(g_rs1 + imm18), fp + rd)
    elif h == H_S_ST_FP:
        n = _sram_store(fr, fw, n, fp + rd, gp + rs1, base[SP_FPSRAM] + u32(g_rs1 + imm18))
    elif h == H_S_MAP_V_FP:
        start = u32(g_rs1 + imm18)
        n = _add(fr, fw, n, gp + rs1, False)
        for i in range(vlen):
            n = _add(fr, fw, n, base[SP_FPSRAM] + start + i, False)
        n = _add(fr, fw, n, gp + rd, False)
        n = _add(fr, fw, n, vram + g_rd // vlen, True)
    return n


@inline_jit
def space_of(row, base):
    """The space a table row belongs to."""
    for s in range(N_TABLE_SPACES - 1, -1, -1):
        if row >= base[s]:
            return s
    return 0
