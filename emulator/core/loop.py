"""The fetch/decode/execute loop: one jitted function over pre-decoded arrays.

Strictly in-order and blocking, like the reference: total cycles are the sum of per-instruction
durations; only DMA durations depend on state (the HBM timing model).  The loop runs until the
program ends, an abort, a full page pool (ST_NEED_PAGES, resumed by the façade) or `stop_after`
dynamic instructions (ST_CHUNK, so the façade can check budgets and report progress), or a
debugger stop (ST_STOP; armed through the D_STOP column, `dbg` and `conds`: emulator/core/stops.py).
With a non-empty `oplog` it also records, per dynamic instruction, the operand values the
overlapped timing model needs (state.py OPLOG_*); data and sequential timing are unaffected.
"""

import numpy as np

from .common import MASK32, fail, u32
from .control import count_instruction, loop_break, loop_end, loop_start, uncount_instruction
from .dma import h_prefetch, h_store, store_pages_needed
from .jit import jit, llvm_inline_jit, python_entry
from .matrix import m_bmm, m_bmm_wo, m_bmv, m_bmv_wo, m_btmm, m_mm, m_mm_wo, m_mv, m_mv_wo
from .scalar import FP_ADD, FP_EXP, FP_MAX, FP_MUL, FP_RECI, FP_SQRT, FP_SUB, s_fp, s_ld_st_fp, s_ld_st_int
from .state import (
    C_COUNT, C_CYCLES, C_HBM_READ, C_HBM_WRITTEN, D_COST, D_FUNCT1, D_HANDLER, D_IMM18, D_IMM22, D_RD,
    D_RS1, D_RS2, D_RS3, D_STOP, E_INVALID_OPCODE, HBM_PAGES_USED, HBM_READ, HBM_WRITTEN, INSTRUCTIONS,
    L_REG, LOOP_SP, NOW, OPLOG_AREG_RS2, OPLOG_PC, OPLOG_RD, OPLOG_RS1, OPLOG_RS2, OPLOG_SCALE,
    OPLOG_SEQ_CYCLES, OPLOG_STRIDE, OPLOG_TOP_LOOP_REG, P_MAX_LOOP, PC, SCALE, ST_CHUNK, ST_DONE, ST_ERROR,
    ST_NEED_PAGES, ST_STOP, STRIDE, TRACE_USED, V_MASK,
)
from .stops import STOP_WATCH, stop_before, sync_watches
from .vector import (
    EW_ADD, EW_EXP, EW_MAX, EW_MIN, EW_MUL, EW_RECI, EW_SUB, EW_SUB_REV, s_map_v_fp, v_elementwise,
    v_red_max, v_red_sum, v_shift, v_topk,
)

# Executor handler ids.  The decoder maps each opcode of isa_specs/opcodes.toml to the handler
# of the same mnemonic (emulator/decode.py); opcode numbers themselves live only in the spec.
HANDLERS = (
    "INVALID",
    "S_ADDI_INT", "S_ADD_INT", "S_SUB_INT", "S_MUL_INT", "S_LUI_INT", "S_LD_INT", "S_ST_INT",
    "C_LOOP_START", "C_LOOP_END", "C_BREAK", "C_SET_ADDR_REG", "C_SET_SCALE_REG", "C_SET_STRIDE_REG",
    "C_SET_V_MASK_REG",
    "H_PREFETCH_V", "H_PREFETCH_M", "H_STORE_V",
    "M_MM", "M_TMM", "M_BMM", "M_BTMM", "M_MV", "M_TMV", "M_BMV", "M_BTMV",
    "M_MM_WO", "M_MV_WO", "M_BMM_WO", "M_BMV_WO",
    "V_ADD_VV", "V_ADD_VF", "V_SUB_VV", "V_SUB_VF", "V_MUL_VV", "V_MUL_VF", "V_MAX_VF", "V_MIN_VF",
    "V_EXP_V", "V_RECI_V", "V_RED_SUM", "V_RED_MAX", "V_SHFT_V", "V_TOPK",
    "S_ADD_FP", "S_SUB_FP", "S_MAX_FP", "S_MUL_FP", "S_EXP_FP", "S_RECI_FP", "S_SQRT_FP",
    "S_LD_FP", "S_ST_FP", "S_MAP_V_FP",
)
(H_INVALID,
 H_S_ADDI_INT, H_S_ADD_INT, H_S_SUB_INT, H_S_MUL_INT, H_S_LUI_INT, H_S_LD_INT, H_S_ST_INT,
 H_C_LOOP_START, H_C_LOOP_END, H_C_BREAK, H_C_SET_ADDR_REG, H_C_SET_SCALE_REG, H_C_SET_STRIDE_REG,
 H_C_SET_V_MASK_REG,
 H_H_PREFETCH_V, H_H_PREFETCH_M, H_H_STORE_V,
 H_M_MM, H_M_TMM, H_M_BMM, H_M_BTMM, H_M_MV, H_M_TMV, H_M_BMV, H_M_BTMV,
 H_M_MM_WO, H_M_MV_WO, H_M_BMM_WO, H_M_BMV_WO,
 H_V_ADD_VV, H_V_ADD_VF, H_V_SUB_VV, H_V_SUB_VF, H_V_MUL_VV, H_V_MUL_VF, H_V_MAX_VF, H_V_MIN_VF,
 H_V_EXP_V, H_V_RECI_V, H_V_RED_SUM, H_V_RED_MAX, H_V_SHFT_V, H_V_TOPK,
 H_S_ADD_FP, H_S_SUB_FP, H_S_MAX_FP, H_S_MUL_FP, H_S_EXP_FP, H_S_RECI_FP, H_S_SQRT_FP,
 H_S_LD_FP, H_S_ST_FP, H_S_MAP_V_FP) = range(len(HANDLERS))

PS_PER_CYCLE = 1000  # the reference's PERIOD: 1 ns per cycle, time kept in picoseconds


@jit
def _vector_code(h):
    if h == H_V_ADD_VV or h == H_V_ADD_VF:
        return EW_ADD
    if h == H_V_SUB_VV or h == H_V_SUB_VF:
        return EW_SUB
    if h == H_V_MUL_VV or h == H_V_MUL_VF:
        return EW_MUL
    if h == H_V_MAX_VF:
        return EW_MAX
    if h == H_V_MIN_VF:
        return EW_MIN
    if h == H_V_EXP_V:
        return EW_EXP
    return EW_RECI


@jit
def _fp_code(h):
    if h == H_S_ADD_FP:
        return FP_ADD
    if h == H_S_SUB_FP:
        return FP_SUB
    if h == H_S_MAX_FP:
        return FP_MAX
    if h == H_S_MUL_FP:
        return FP_MUL
    if h == H_S_EXP_FP:
        return FP_EXP
    if h == H_S_RECI_FP:
        return FP_RECI
    return FP_SQRT


@jit
def _log_operands(row, pc, rd, rs1, rs2, gp, areg, ctrl, loops):
    """One OPLOG row: the register values an instruction's resource footprint depends on, read
    before it executes (the overlapped timing model replays these; emulator/timing)."""
    row[OPLOG_PC] = pc
    row[OPLOG_RD] = gp[rd]
    row[OPLOG_RS1] = gp[rs1]
    row[OPLOG_RS2] = gp[rs2]
    row[OPLOG_AREG_RS2] = areg[rs2]
    row[OPLOG_SCALE] = ctrl[SCALE]
    row[OPLOG_STRIDE] = ctrl[STRIDE]
    sp = ctrl[LOOP_SP]
    row[OPLOG_TOP_LOOP_REG] = loops[sp - 1, L_REG] if sp > 0 else -1  # the register C_BREAK clears


# The matrix and the vector instructions each have a function of their own, inlined into the run
# loop by LLVM (a call measured 5-20% slower on matrix-heavy code) but not by numba, so that the
# first run on an empty cache can compile them in its helper process while it compiles the DMA
# kernels (emulator/_compile_helper.py): their kernels are `inline_jit` and would otherwise be typed
# and lowered as part of the loop.
@llvm_inline_jit
def _matrix_op(h, rd, rs1, rs2, imm18, gp, vram, mram, macc, vacc, hmacc, hvacc, params, ctrl, rows, vals,
               err, pc):
    if h == H_M_MM or h == H_M_TMM:
        # M_TMM names its operands the other way round.  The flag is a run-time bool: literal
        # True/False arguments would compile m_mm (and its summation kernels) twice.
        transposed = h == H_M_TMM
        m_reg, v_reg = (rs2, rs1) if transposed else (rs1, rs2)
        return m_mm(transposed, gp[m_reg], gp[v_reg], vram, mram, macc, params, rows, err, pc)
    if h == H_M_MM_WO:
        stride = 1 if rs1 == 0 else gp[rs1]
        return m_mm_wo(u32(gp[rd] + imm18), stride, vram, macc, params, ctrl, vals, err, pc)
    if h == H_M_MV or h == H_M_TMV:
        return m_mv(h == H_M_TMV, gp[rs1], gp[rs2], vram, mram, vacc, params, rows, err, pc)
    if h == H_M_MV_WO:
        return m_mv_wo(u32(gp[rd] + imm18), vram, vacc, params, ctrl, vals, err, pc)
    if h == H_M_BMM:
        return m_bmm(gp[rs1], gp[rs2], vram, mram, hmacc, params, rows, err, pc)
    if h == H_M_BTMM:
        return m_btmm(gp[rs1], gp[rs2], vram, mram, hmacc, params, rows, err, pc)
    if h == H_M_BMV or h == H_M_BTMV:
        return m_bmv(h == H_M_BTMV, u32(gp[rs1] + gp[rd]), gp[rs2], vram, mram, hvacc, params, rows, err, pc)
    if h == H_M_BMM_WO:
        return m_bmm_wo(u32(gp[rd] + imm18), vram, hmacc, params, ctrl, err, pc)
    return m_bmv_wo(u32(gp[rd] + imm18), vram, hvacc, params, ctrl, err, pc)   # H_M_BMV_WO


@llvm_inline_jit
def _vector_op(h, funct1, rd, rs1, rs2, rs3, vram, fpr, fpsram, intsram, gp, ctrl, params, rows, err, pc):
    if h <= H_V_RECI_V:
        is_vf = h == H_V_ADD_VF or h == H_V_SUB_VF or h == H_V_MUL_VF or h == H_V_MAX_VF or h == H_V_MIN_VF
        code = _vector_code(h)
        if h == H_V_SUB_VF and funct1 != 0:
            code = EW_SUB_REV
        return v_elementwise(code, rs3 != 0, rd, rs1, rs2, is_vf, vram, fpr, gp, ctrl, params, rows, err, pc)
    if h == H_V_RED_SUM:
        if rd == 0:  # writes to f0 are 0-cycle no-ops (the cost table says 0 too)
            return True
        return v_red_sum(rs3 != 0, rd, rs1, vram, fpr, gp, ctrl, params, rows, err, pc)
    if h == H_V_RED_MAX:
        if rd == 0:
            return True
        return v_red_max(rd, rs1, vram, fpr, gp, params, rows, err, pc)
    if h == H_V_SHFT_V:
        return v_shift(rd, rs1, rs2, vram, gp, ctrl, params, err, pc)
    return v_topk(rs3, rd, rs1, rs2, vram, fpsram, intsram, gp, params, rows, err, pc)   # H_V_TOPK


@python_entry
@jit
def run_loop(dec, counters, gp, fpr, areg, ctrl, loops, params, vram, mram, fpsram, intsram,
             macc, vacc, hmacc, hvacc, pt, pool, ts, e4m3, e8m0, rows, blk, seen, vals, ebuf, sbuf,
             trace, labels, label_secs, err, stop_after, dbg, conds, oplog):
    n = dec.shape[0]
    pc = ctrl[PC]
    now = ctrl[NOW]
    max_loop = params[P_MAX_LOOP]
    trace_cap = trace.shape[0]
    n_label_maps = labels.shape[0]
    one = blk[-1:]
    logging_ops = oplog.shape[0] > 0
    log_base = ctrl[INSTRUCTIONS]  # the caller sizes oplog for this call's instructions
    status = ST_DONE
    while pc < n:
        if ctrl[INSTRUCTIONS] >= stop_after:
            status = ST_CHUNK
            break
        stop = dec[pc, D_STOP]
        if stop != 0 and stop_before(stop, pc, gp, fpr, areg, ctrl, dbg, conds):
            status = ST_STOP
            break
        if not count_instruction(loops, ctrl, max_loop, err, pc):
            status = ST_ERROR
            break
        h = dec[pc, D_HANDLER]
        rd = dec[pc, D_RD]
        rs1 = dec[pc, D_RS1]
        rs2 = dec[pc, D_RS2]
        rs3 = dec[pc, D_RS3]
        imm18 = dec[pc, D_IMM18]
        cost = dec[pc, D_COST]
        if logging_ops:
            _log_operands(oplog[ctrl[INSTRUCTIONS] - log_base], pc, rd, rs1, rs2, gp, areg, ctrl, loops)
        next_pc = pc + 1
        read0 = ctrl[HBM_READ]
        written0 = ctrl[HBM_WRITTEN]
        ok = True
        if h == H_S_ADDI_INT:
            gp[rd] = (gp[rs1] + imm18) & MASK32
        elif h == H_S_ADD_INT:
            gp[rd] = (gp[rs1] + gp[rs2]) & MASK32
        elif h == H_S_SUB_INT:
            gp[rd] = (gp[rs1] - gp[rs2]) & MASK32
        elif h == H_S_MUL_INT:
            gp[rd] = (gp[rs1] * gp[rs2]) & MASK32
        elif h == H_S_LUI_INT:
            gp[rd] = (dec[pc, D_IMM22] << 12) & MASK32
        elif h == H_S_LD_INT or h == H_S_ST_INT:
            ok = s_ld_st_int(h == H_S_ST_INT, rd, rs1, imm18, gp, intsram, err, pc)
        elif h == H_C_LOOP_START:
            ok = loop_start(rd, dec[pc, D_IMM22], pc, gp, loops, ctrl, err)
        elif h == H_C_LOOP_END:
            next_pc = loop_end(rd, pc, gp, loops, ctrl, err)
            ok = next_pc >= 0
        elif h == H_C_BREAK:
            ok = loop_break(gp, loops, ctrl, err, pc)
        elif h == H_C_SET_ADDR_REG:
            areg[rd] = (gp[rs1] << 32) | gp[rs2]
        elif h == H_C_SET_SCALE_REG:
            ctrl[SCALE] = gp[rd]
        elif h == H_C_SET_STRIDE_REG:
            ctrl[STRIDE] = gp[rd]
        elif h == H_C_SET_V_MASK_REG:
            ctrl[V_MASK] = gp[rd]
        elif h == H_H_PREFETCH_V or h == H_H_PREFETCH_M:
            # move_data is a run-time bool (np.bool_), as in the overlapped scheduler and the static
            # estimator (which pass False): literal True/False would compile the DMA kernels twice.
            end = h_prefetch(h == H_H_PREFETCH_M, rd, rs1, rs2, rs3, gp, areg, ctrl, params, vram, mram,
                             pt, pool, ts, blk, e4m3, e8m0, vals, ebuf, sbuf, err, pc, np.bool_(True))
            ok = end >= 0
            cost = end - now
        elif h == H_H_STORE_V:
            needed = store_pages_needed(rd, rs1, rs2, rs3, gp, areg, ctrl, params, pt, seen)
            if ctrl[HBM_PAGES_USED] + needed > pool.shape[0]:
                uncount_instruction(loops, ctrl)  # the instruction will run again
                err[2] = needed
                status = ST_NEED_PAGES
                break
            end = h_store(rd, rs1, rs2, rs3, gp, areg, ctrl, params, vram, pt, pool, ts, one,
                          vals, ebuf, sbuf, err, pc, np.bool_(True))
            ok = end >= 0
            cost = end - now
        elif h >= H_M_MM and h <= H_M_BMV_WO:
            ok = _matrix_op(h, rd, rs1, rs2, imm18, gp, vram, mram, macc, vacc, hmacc, hvacc, params, ctrl, rows,
                            vals, err, pc)
        elif h >= H_V_ADD_VV and h <= H_V_TOPK:
            ok = _vector_op(h, dec[pc, D_FUNCT1], rd, rs1, rs2, rs3, vram, fpr, fpsram, intsram, gp, ctrl, params,
                            rows, err, pc)
        elif h >= H_S_ADD_FP and h <= H_S_SQRT_FP:
            if rd != 0:
                ok = s_fp(_fp_code(h), rd, rs1, rs2, fpr, err, pc)
        elif h == H_S_LD_FP or h == H_S_ST_FP:
            ok = s_ld_st_fp(h == H_S_ST_FP, rd, rs1, imm18, gp, fpr, fpsram, err, pc)
        elif h == H_S_MAP_V_FP:
            ok = s_map_v_fp(rd, rs1, imm18, vram, fpsram, gp, ctrl, params, err, pc)
        else:
            ok = fail(err, E_INVALID_OPCODE, pc)
        if not ok:
            status = ST_ERROR
            break
        start = now
        now = now + cost
        ctrl[NOW] = now
        ctrl[INSTRUCTIONS] += 1
        counters[pc, C_COUNT] += 1
        counters[pc, C_CYCLES] += cost
        counters[pc, C_HBM_READ] += ctrl[HBM_READ] - read0
        counters[pc, C_HBM_WRITTEN] += ctrl[HBM_WRITTEN] - written0
        if logging_ops:
            oplog[ctrl[INSTRUCTIONS] - 1 - log_base, OPLOG_SEQ_CYCLES] = cost
        t = ctrl[TRACE_USED]
        if t < trace_cap:
            trace[t, 0] = pc
            trace[t, 1] = start
            trace[t, 2] = now
            ctrl[TRACE_USED] = t + 1
        if n_label_maps > 0:
            secs = np.float64(now * PS_PER_CYCLE) / 1e12 - np.float64(start * PS_PER_CYCLE) / 1e12
            for m in range(n_label_maps):
                lab = labels[m, pc]
                if lab >= 0:
                    label_secs[m, lab] += secs
        if stop & STOP_WATCH and sync_watches(pc, dbg, vram, mram, fpsram, intsram, pt, pool, params, False):
            pc = next_pc
            status = ST_STOP
            break
        pc = next_pc
    ctrl[PC] = pc
    ctrl[NOW] = now
    return status
