"""Control unit: hardware loops and C_BREAK (scalar-control-timing-profilers.md §3).

Loop state is a stack of entries {start_pc, count, current, instruction_count, loop_reg}; its
depth is ctrl[LOOP_SP].  Shared by the executor and the static estimator, so both follow the
reference's semantics exactly: the counter counts down, C_LOOP_END reads the live register and
jumps to start_pc + 1 while it is > 1, an ended entry is removed at its stack position, and
MAX_LOOP_INSTRUCTIONS is checked before every instruction against every active entry.
"""

from .common import fail
from .jit import jit
from .state import (
    E_BREAK_EMPTY, E_LOOP_NO_MATCH, E_LOOP_STACK, E_LOOP_ZERO, E_MAX_LOOP, L_COUNT, L_CURRENT,
    L_INSTR_COUNT, L_REG, L_START_PC, LOOP_SP,
)


@jit
def count_instruction(loops, ctrl, max_loop, err, pc):
    """Charge the instruction about to run at pc to every active loop; False if one exceeds the limit."""
    ok = True
    for e in range(ctrl[LOOP_SP]):
        loops[e, L_INSTR_COUNT] += 1
        if loops[e, L_INSTR_COUNT] > max_loop and ok:
            ok = fail(err, E_MAX_LOOP, pc, loops[e, L_START_PC], loops[e, L_CURRENT], loops[e, L_INSTR_COUNT])
    return ok


@jit
def uncount_instruction(loops, ctrl):
    """Undo count_instruction (the executor re-runs an instruction after growing the HBM pool)."""
    for e in range(ctrl[LOOP_SP]):
        loops[e, L_INSTR_COUNT] -= 1


@jit
def loop_start(rd, count, pc, gp, loops, ctrl, err):
    """C_LOOP_START: gp[rd] = count and push an entry; False on count 0 or a full stack."""
    if count == 0:
        return fail(err, E_LOOP_ZERO, pc)
    e = ctrl[LOOP_SP]
    if e >= loops.shape[0]:
        return fail(err, E_LOOP_STACK, pc, loops.shape[0])
    gp[rd] = count
    loops[e, L_START_PC] = pc
    loops[e, L_COUNT] = count
    loops[e, L_CURRENT] = count
    loops[e, L_INSTR_COUNT] = 0
    loops[e, L_REG] = rd
    ctrl[LOOP_SP] = e + 1
    return True


@jit
def loop_end(rd, pc, gp, loops, ctrl, err):
    """C_LOOP_END: the next pc, or -1 after an abort (no active loop uses register rd)."""
    sp = ctrl[LOOP_SP]
    e = sp - 1
    while e >= 0 and loops[e, L_REG] != rd:
        e -= 1
    if e < 0:
        fail(err, E_LOOP_NO_MATCH, pc, rd)
        return -1
    v = gp[rd]
    if v > 1:
        gp[rd] = v - 1
        loops[e, L_CURRENT] = v - 1
        loops[e, L_INSTR_COUNT] = 0
        return loops[e, L_START_PC] + 1
    gp[rd] = 0
    for j in range(e, sp - 1):  # remove the entry at its position; entries above it stay
        for c in range(loops.shape[1]):  # element loops, not slice copies: see jit.py
            loops[j, c] = loops[j + 1, c]
    ctrl[LOOP_SP] = sp - 1
    return pc + 1


@jit
def loop_break(gp, loops, ctrl, err, pc):
    """C_BREAK: pop the innermost entry and zero its counter (no jump); False with no active loop.

    Returns the register it zeroed through gp; the caller continues at pc + 1.
    """
    sp = ctrl[LOOP_SP]
    if sp == 0:
        return fail(err, E_BREAK_EMPTY, pc)
    ctrl[LOOP_SP] = sp - 1
    gp[loops[sp - 1, L_REG]] = 0
    return True
