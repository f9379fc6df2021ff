"""Static cycle estimate: expand loops by interpreting only what decides control flow and DMA.

No data is computed.  A small jitted interpreter follows the instructions that decide which
instructions run and which HBM blocks DMA touches: the scalar-integer ops (gp registers, INT SRAM
loads/stores), the loop instructions (C_LOOP_START/END, C_BREAK, with the reference's semantics:
countdown counter read live at C_LOOP_END, jump to start+1 while gp[rd] > 1, entries removed at
their stack position, MAX_LOOP_INSTRUCTIONS checked before every instruction) and the DMA
address registers (C_SET_ADDR/SCALE/STRIDE_REG).  Every other instruction is charged its closed
form cost: the isa_specs latency expression evaluated with the settings' knobs and the word's
decoded fields (so the f0 no-op and the V_TOPK policy are costed as in the run).  DMA
instructions are charged through the same HBM timing interface the executor uses
(`emulator.hbm.timing.read_batch` / `write_block`) with the block addresses computed from the
tracked registers, so the timing model sees the same sequence of accesses at the same cycles.

When the estimate equals the run exactly: always for programs without DMA that complete, and
also with DMA as long as the HBM timing model is deterministic for the access sequence (the
reference's Ramulator varies by a cycle on some back-to-back H_PREFETCH_M).  It is *not* exact
when a loop counter, an INT SRAM address or a DMA address register depends on data the estimator
does not compute (values V_TOPK writes to INT SRAM); such cases are flagged
(`estimate["exact"] = False`, with notes).  Aborts are detected for the control-flow checks
(invalid opcode, loop errors, MAX_LOOP_INSTRUCTIONS, INT SRAM range, V_TOPK policy and SRAM range)
and the DMA checks (prefetch alignment and tile range, store VRAM row range, writes beyond the HBM
capacity); aborts of the vector/matrix/FP-SRAM addressing checks are not modelled, so a program
that aborts there is estimated as if it completed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from emulator._jit_cache import announce_if_cold
from emulator.core.common import fail
from emulator.core.control import count_instruction, loop_break, loop_end, loop_start
from emulator.core.dma import BLOCK, h_prefetch, h_store
from emulator.core.jit import jit, python_entry
from emulator.core.state import (
    CTRL_SIZE, E_FPSRAM_RANGE, E_INTSRAM_RANGE, E_INVALID_OPCODE, E_TOPK_POLICY, HBM_READ, HBM_WRITTEN,
    L_REG, LOOP_SIZE, LOOP_SP, LOOP_STACK_CAP, NOW,
    P_HBM_CAPACITY, P_MAX_LOOP, SCALE, STRIDE,
)
from emulator.errors import InputError
from emulator.hbm.timing import new_timing_state
from emulator.runner import error_from_core, dma_block_capacity, hardware_params
from emulator.images import INT_SRAM_ENTRIES, FP_SRAM_ENTRIES, load_int_sram
from emulator.program import Program
from emulator.settings import Settings, load_settings
from isa_specs import eval_latency, load_isa

from .aggregate import Counters, Profile, build_profile

MASK32 = 0xFFFFFFFF
MX_BLOCK = 8  # MXFP8 block: the only HBM type the settings loader accepts (settings.check_supported)
DEFAULT_CHUNK = 5_000_000

# Actions of the interpreter, per pc.
(A_COST_ONLY, A_INVALID, A_ADDI, A_ADD, A_SUB, A_MUL, A_LUI, A_LD_INT, A_ST_INT, A_LOOP_START,
 A_LOOP_END, A_BREAK, A_SET_ADDR, A_SET_SCALE, A_SET_STRIDE, A_PREFETCH_V, A_PREFETCH_M, A_STORE_V,
 A_TOPK) = range(19)
ACTIONS = {
    "S_ADDI_INT": A_ADDI, "S_ADD_INT": A_ADD, "S_SUB_INT": A_SUB, "S_MUL_INT": A_MUL, "S_LUI_INT": A_LUI,
    "S_LD_INT": A_LD_INT, "S_ST_INT": A_ST_INT, "C_LOOP_START": A_LOOP_START, "C_LOOP_END": A_LOOP_END,
    "C_BREAK": A_BREAK, "C_SET_ADDR_REG": A_SET_ADDR, "C_SET_SCALE_REG": A_SET_SCALE,
    "C_SET_STRIDE_REG": A_SET_STRIDE, "H_PREFETCH_V": A_PREFETCH_V, "H_PREFETCH_M": A_PREFETCH_M,
    "H_STORE_V": A_STORE_V, "V_TOPK": A_TOPK,
}
# V_TOPK policies (rs3 field): (experts, k); matrix-vector-machines.md §6.11.
TOPK_K = (4, 8)

# Decoded columns.
F_ACTION, F_RD, F_RS1, F_RS2, F_RS3, F_IMM18, F_IMM22, F_COST = range(8)
N_FIELDS = 8
# Counter columns.
C_COUNT, C_CYCLES, C_READ, C_WRITTEN = range(4)
# st[] slots.
S_PC, S_NOW, S_INSTR, S_FLAGS, S_DMA_COUNT = range(5)
# Flags.
FLAG_DATA_LOOP = 1      # a loop decision or INT SRAM address depended on data the estimator lacks
FLAG_DATA_DMA = 2       # a DMA address depended on such data
# Status.
ST_DONE, ST_CHUNK, ST_ERROR, ST_BUDGET = range(4)



@python_entry
@jit
def _estimate(dec, counters, gp, gp_data, areg, areg_data, ctrl, ctrl_data, intsram, int_data, loops,
              p, ts, blk, one, dummies, st, err, stop_after, budget):
    """Run the control-flow interpreter from st[S_PC] until the end, an abort, `stop_after`
    dynamic instructions (ST_CHUNK) or the instruction budget (ST_BUDGET).

    *_data arrays flag values that derive from data the estimator does not compute.
    """
    n = dec.shape[0]
    pc = st[S_PC]
    now = st[S_NOW]
    max_loop = p[P_MAX_LOOP]
    status = ST_DONE
    while pc < n:
        if st[S_INSTR] >= stop_after:
            status = ST_CHUNK
            break
        if budget >= 0 and st[S_INSTR] >= budget:
            status = ST_BUDGET
            break
        if not count_instruction(loops, ctrl, max_loop, err, pc):
            status = ST_ERROR
            break
        action = dec[pc, F_ACTION]
        rd = dec[pc, F_RD]
        rs1 = dec[pc, F_RS1]
        rs2 = dec[pc, F_RS2]
        imm18 = dec[pc, F_IMM18]
        cost = dec[pc, F_COST]
        next_pc = pc + 1
        blocks_read = 0
        blocks_written = 0
        ok = True
        if action == A_COST_ONLY:
            pass
        elif action == A_ADDI:
            gp[rd] = (gp[rs1] + imm18) & MASK32
            gp_data[rd] = gp_data[rs1]
        elif action == A_ADD:
            gp[rd] = (gp[rs1] + gp[rs2]) & MASK32
            gp_data[rd] = gp_data[rs1] or gp_data[rs2]
        elif action == A_SUB:
            gp[rd] = (gp[rs1] - gp[rs2]) & MASK32
            gp_data[rd] = gp_data[rs1] or gp_data[rs2]
        elif action == A_MUL:
            gp[rd] = (gp[rs1] * gp[rs2]) & MASK32
            gp_data[rd] = gp_data[rs1] or gp_data[rs2]
        elif action == A_LUI:
            gp[rd] = (dec[pc, F_IMM22] << 12) & MASK32
            gp_data[rd] = False
        elif action == A_LD_INT or action == A_ST_INT:
            addr = (gp[rs1] + imm18) & MASK32
            if gp_data[rs1]:
                st[S_FLAGS] |= FLAG_DATA_LOOP
            if addr >= intsram.shape[0]:
                fail(err, E_INTSRAM_RANGE, pc, addr)
                ok = False
            elif action == A_LD_INT:
                gp[rd] = intsram[addr]
                gp_data[rd] = int_data[addr] or gp_data[rs1]
            else:
                intsram[addr] = gp[rd]
                int_data[addr] = gp_data[rd] or gp_data[rs1]
        elif action == A_LOOP_START:
            ok = loop_start(rd, dec[pc, F_IMM22], pc, gp, loops, ctrl, err)
            gp_data[rd] = False
        elif action == A_LOOP_END:
            if gp_data[rd]:
                st[S_FLAGS] |= FLAG_DATA_LOOP
            next_pc = loop_end(rd, pc, gp, loops, ctrl, err)
            ok = next_pc >= 0
            if ok and gp[rd] == 0:
                gp_data[rd] = False
        elif action == A_BREAK:
            sp = ctrl[LOOP_SP]
            if sp > 0:
                gp_data[loops[sp - 1, L_REG]] = False
            ok = loop_break(gp, loops, ctrl, err, pc)
        elif action == A_SET_ADDR:
            areg[rd] = (gp[rs1] << 32) | gp[rs2]
            areg_data[rd] = gp_data[rs1] or gp_data[rs2]
        elif action == A_SET_SCALE:
            ctrl[SCALE] = gp[rd]
            ctrl_data[SCALE] = gp_data[rd]
        elif action == A_SET_STRIDE:
            ctrl[STRIDE] = gp[rd]
            ctrl_data[STRIDE] = gp_data[rd]
        elif action == A_PREFETCH_V or action == A_PREFETCH_M or action == A_STORE_V:
            if (gp_data[rd] or gp_data[rs1] or areg_data[rs2] or ctrl_data[SCALE]
                    or ctrl_data[STRIDE]):
                st[S_FLAGS] |= FLAG_DATA_DMA
            st[S_DMA_COUNT] += 1
            rs3 = dec[pc, F_RS3]
            # The executor's own DMA kernels, in timing-only mode: same checks, blocks and timing.
            vram, mram, pt, pool, e4m3, e8m0, vals, ebuf, sbuf = dummies
            read0 = ctrl[HBM_READ]
            written0 = ctrl[HBM_WRITTEN]
            ctrl[NOW] = now
            if action == A_STORE_V:
                end = h_store(rd, rs1, rs2, rs3, gp, areg, ctrl, p, vram, pt, pool, ts, one, vals, ebuf, sbuf,
                              err, pc, np.bool_(False))
            else:
                end = h_prefetch(action == A_PREFETCH_M, rd, rs1, rs2, rs3, gp, areg, ctrl, p, vram, mram, pt,
                                 pool, ts, blk, e4m3, e8m0, vals, ebuf, sbuf, err, pc,
                                 np.bool_(False))  # run-time bool: one compile of the DMA kernels (core/loop.py)
            blocks_read = (ctrl[HBM_READ] - read0) // BLOCK
            blocks_written = (ctrl[HBM_WRITTEN] - written0) // BLOCK
            if end < 0:
                ok = False
            else:
                cost = end - now
        elif action == A_TOPK:
            policy = dec[pc, F_RS3]
            if policy > 1:
                fail(err, E_TOPK_POLICY, pc, policy)
                ok = False
            else:
                k = 4 if policy == 0 else 8
                int_base = gp[rs2]
                fp_base = gp[rd]
                for i in range(k):
                    if int_base + i >= intsram.shape[0]:
                        fail(err, E_INTSRAM_RANGE, pc, int_base + i)
                        ok = False
                        break
                    if fp_base + i >= FP_SRAM_ENTRIES:
                        fail(err, E_FPSRAM_RANGE, pc, fp_base + i)
                        ok = False
                        break
                    int_data[int_base + i] = True  # expert indices: data the estimator lacks
        else:
            fail(err, E_INVALID_OPCODE, pc)
            ok = False
        if not ok:
            status = ST_ERROR
            break
        now += cost
        st[S_INSTR] += 1
        counters[pc, C_COUNT] += 1
        counters[pc, C_CYCLES] += cost
        counters[pc, C_READ] += BLOCK * blocks_read
        counters[pc, C_WRITTEN] += BLOCK * blocks_written
        pc = next_pc
    st[S_PC] = pc
    st[S_NOW] = now
    return status


@dataclass
class StaticEstimate:
    """Per-pc counters of the estimate plus what is exact and what is not."""

    program: Program
    settings: Settings
    counters: Counters
    exact: bool
    dma_instructions: int
    hbm_model: str
    notes: list[str] = field(default_factory=list)
    error: dict | None = None
    wall_seconds: float = 0.0

    @property
    def cycles(self) -> int:
        return self.counters.cycles

    def estimate_info(self) -> dict:
        estimated = []
        if not self.exact:
            estimated = ["cycles", "instructions", "hbm_bytes_read", "hbm_bytes_written"]
        return {"exact": self.exact, "estimated": estimated, "dma_instructions": self.dma_instructions,
                "hbm_model": self.hbm_model, "notes": list(self.notes)}


def _decode(program: Program, settings: Settings) -> np.ndarray:
    spec = load_isa()
    words = program.words.astype(np.int64)
    n = len(words)
    dec = np.zeros((n, N_FIELDS), dtype=np.int64)
    fields = spec.fields
    for col, name in ((F_RD, "rd"), (F_RS1, "rs1"), (F_RS2, "rs2"), (F_RS3, "rs3"), (F_IMM18, "imm18"),
                      (F_IMM22, "imm22")):
        f = fields[name]
        dec[:, col] = (words >> f.lsb) & f.mask
    names = settings.cost_names()
    cache: dict[int, tuple[int, int]] = {}
    for pc, w in enumerate(program.words.tolist()):
        entry = cache.get(w)
        if entry is None:
            op = spec.by_opcode.get(fields["opcode"].extract(w))
            if op is None or not op.decodable:
                entry = (A_INVALID, 0)
            elif op.is_dma:
                entry = (ACTIONS[op.mnemonic], 0)
            else:
                entry = (ACTIONS.get(op.mnemonic, A_COST_ONLY),
                         eval_latency(op.latency, {**names, **spec.decode_fields(w)}))
            cache[w] = entry
        dec[pc, F_ACTION], dec[pc, F_COST] = entry
    return dec


def estimate(program: Program, settings: Settings | None = None, *, int_sram=None, hbm_size: int | None = None,
             hbm_model: str | None = None, max_instructions: int | None = None,
             max_wall_seconds: float | None = None, progress=None) -> StaticEstimate:
    """Static estimate of `program` (see the module docstring).

    `int_sram` is the INT SRAM preload (bytes, path or uint32 array) that S_LD_INT reads;
    `hbm_size` the HBM capacity (default settings.HBM_SIZE); `hbm_model` overrides the settings'.
    """
    settings = settings or load_settings()
    model = hbm_model or settings.hbm_model
    t0 = time.perf_counter()
    announce_if_cold(_estimate)
    n = len(program)
    dec = _decode(program, settings)
    counters = np.zeros((n, 4), dtype=np.int64)
    gp = np.zeros(16, dtype=np.int64)
    gp_data = np.zeros(16, dtype=np.bool_)
    areg = np.zeros(16, dtype=np.int64)
    areg_data = np.zeros(16, dtype=np.bool_)
    ctrl = np.zeros(CTRL_SIZE, dtype=np.int64)
    ctrl[STRIDE] = 1
    ctrl_data = np.zeros(CTRL_SIZE, dtype=np.bool_)
    if int_sram is None:
        intsram = np.zeros(INT_SRAM_ENTRIES, dtype=np.int64)
    elif isinstance(int_sram, np.ndarray):
        if int_sram.shape[0] > INT_SRAM_ENTRIES:
            raise InputError(f"INT SRAM preload has {int_sram.shape[0]} entries; INT SRAM has {INT_SRAM_ENTRIES}")
        intsram = np.zeros(INT_SRAM_ENTRIES, dtype=np.int64)
        intsram[:int_sram.shape[0]] = int_sram.astype(np.uint32)
    else:
        intsram = load_int_sram(int_sram).astype(np.int64)
    int_data = np.zeros(INT_SRAM_ENTRIES, dtype=np.bool_)
    loops = np.zeros((LOOP_STACK_CAP, LOOP_SIZE), dtype=np.int64)
    p = hardware_params(settings)
    if hbm_size is not None:
        p[P_HBM_CAPACITY] = int(hbm_size)
    ts = new_timing_state(model)
    blk = np.zeros(dma_block_capacity(settings), dtype=np.int64)
    one = np.zeros(1, dtype=np.int64)
    # Data arrays the DMA kernels take but do not touch in timing-only mode.
    width = max(settings.MLEN, settings.VLEN)
    dummies = (np.zeros((1, settings.VLEN), np.uint16), np.zeros((1, settings.MLEN ** 2), np.float32),
               np.full((2, 2), -1, np.int64), np.zeros((1, 1), np.uint8), np.zeros(256, np.float32),
               np.zeros(256, np.float32), np.zeros(width, np.float32), np.zeros(width, np.uint8),
               np.zeros(width // 8 + 1, np.uint8))
    st = np.zeros(8, dtype=np.int64)
    err = np.zeros(8, dtype=np.int64)
    budget = -1 if max_instructions is None else int(max_instructions)
    notes: list[str] = []
    while True:
        status = _estimate(dec, counters, gp, gp_data, areg, areg_data, ctrl, ctrl_data, intsram, int_data,
                           loops, p, ts, blk, one, dummies, st, err, st[S_INSTR] + DEFAULT_CHUNK, budget)
        if status != ST_CHUNK:
            break
        if progress is not None:
            progress(int(st[S_INSTR]), int(st[S_NOW]))
        if max_wall_seconds is not None and time.perf_counter() - t0 > max_wall_seconds:
            notes.append(f"stopped after {max_wall_seconds:g} s of wall time at {int(st[S_INSTR]):,} instructions")
            break
    error = None
    if status == ST_BUDGET:
        notes.append(f"stopped at the instruction budget ({budget:,} instructions): the program continues")
    elif status == ST_ERROR:
        exc = error_from_core(err, program, settings, int(st[S_NOW]))
        error = exc.to_dict()
        pc, message = exc.pc, exc.reason
        notes.append(f"the run would abort at pc {pc}: {message}; numbers cover the instructions before it")
    flags = int(st[S_FLAGS])
    dma_count = int(st[S_DMA_COUNT])
    exact = status == ST_DONE and not flags
    if flags & FLAG_DATA_LOOP:
        notes.append("a loop counter or INT SRAM address depends on values V_TOPK wrote (not computed): "
                     "loop trip counts may differ from the run")
    if flags & FLAG_DATA_DMA:
        notes.append("a DMA address depends on values V_TOPK wrote (not computed): HBM blocks and their "
                     "timing may differ from the run")
    if dma_count:
        notes.append(f"{dma_count:,} DMA instructions charged through the {model} HBM timing model with "
                     "addresses from the tracked registers" +
                     (" (an estimate: the analytic model is not cycle-exact)" if model == "analytic" else ""))
        if model == "analytic":
            exact = False
    notes.append("aborts of vector/matrix/FP-SRAM addressing checks are not modelled")
    c = Counters(counters[:, C_COUNT].copy(), counters[:, C_CYCLES].copy(), counters[:, C_READ].copy(),
                 counters[:, C_WRITTEN].copy(), cycles=int(st[S_NOW]), instructions=int(st[S_INSTR]),
                 hbm_bytes_read=int(counters[:, C_READ].sum()), hbm_bytes_written=int(counters[:, C_WRITTEN].sum()))
    return StaticEstimate(program, settings, c, exact=exact, dma_instructions=dma_count, hbm_model=model,
                          notes=notes, error=error, wall_seconds=time.perf_counter() - t0)


def static_profile(program: Program, settings: Settings | None = None, *, int_sram=None,
                   hbm_size: int | None = None, hbm_model: str | None = None,
                   max_instructions: int | None = None, max_wall_seconds: float | None = None,
                   **profile_kwargs) -> Profile:
    """`estimate` aggregated into a Profile of kind "static" (its `estimate` field says what is exact)."""
    est = estimate(program, settings, int_sram=int_sram, hbm_size=hbm_size, hbm_model=hbm_model,
                   max_instructions=max_instructions, max_wall_seconds=max_wall_seconds)
    return build_profile(program, est.settings, est.counters, kind="static", error=est.error,
                         estimate=est.estimate_info(), hbm_model=est.hbm_model,
                         wall_seconds=est.wall_seconds, **profile_kwargs)
