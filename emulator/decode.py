"""Decoder: Program words -> the executor's pre-decoded int64 array (one row per instruction).

Field positions come from isa_specs; each opcode maps to the executor handler of the same
mnemonic.  Static costs are the spec's latency expressions evaluated once per distinct word with
the settings' knobs (DMA costs are decided at run time by the HBM timing model).  Decode-time
checks of the reference (M_BMM/M_BTMM with rd != 0) abort before anything runs, as there.
"""

from __future__ import annotations

import numpy as np

from isa_specs import IsaSpec, eval_latency, load_isa

from .core.loop import HANDLERS, H_INVALID
from .core.state import (
    D_COST, D_FUNCT1, D_HANDLER, D_IMM18, D_IMM22, D_RD, D_RS1, D_RS2, D_RS3, DEC_SIZE,
)
from .errors import EmulationError
from .program import Program
from .settings import Settings

_COLUMNS = {"rd": D_RD, "rs1": D_RS1, "rs2": D_RS2, "rs3": D_RS3, "funct1": D_FUNCT1,
            "imm22": D_IMM22, "imm18": D_IMM18}


def handler_table(spec: IsaSpec) -> np.ndarray:
    """handler id per opcode value (H_INVALID where the decoder rejects the opcode)."""
    size = spec.fields["opcode"].mask + 1
    table = np.full(size, H_INVALID, dtype=np.int64)
    for op in spec.ops:
        if op.decodable:
            table[op.opcode] = HANDLERS.index(op.mnemonic)
    return table


def unknown_opcodes(program: Program, spec: IsaSpec | None = None) -> list[tuple[int, int]]:
    """(pc, opcode) of words whose opcode the reference logs as unknown at decode (not 0x00)."""
    spec = spec or load_isa()
    ops = spec.fields["opcode"].extract(program.words.astype(np.int64))
    out = []
    for pc in np.nonzero(ops)[0]:
        op = spec.by_opcode.get(int(ops[pc]))
        if op is None or not op.decodable:
            out.append((int(pc), int(ops[pc])))
    return out


def decode(program: Program, settings: Settings, spec: IsaSpec | None = None) -> np.ndarray:
    spec = spec or load_isa()
    words = program.words.astype(np.int64)
    n = words.shape[0]
    dec = np.zeros((max(n, 1), DEC_SIZE), dtype=np.int64)[:n]
    opcodes = spec.fields["opcode"].extract(words)
    dec[:, D_HANDLER] = handler_table(spec)[opcodes]
    for name, col in _COLUMNS.items():
        dec[:, col] = spec.fields[name].extract(words)
    names = settings.cost_names()
    cost_of_word: dict[int, int] = {}
    for pc in range(n):
        op = spec.by_opcode.get(int(opcodes[pc]))
        if op is None or not op.decodable:
            continue
        for operand in op.operands:
            if operand.must_be_zero and dec[pc, _COLUMNS[operand.field]] != 0:
                raise EmulationError(
                    "decode",
                    f"{op.mnemonic} rd must be 0 (the reference asserts it while decoding the program, "
                    f"before any instruction runs); got {operand.field} = {dec[pc, _COLUMNS[operand.field]]}",
                    pc=pc, opcode=op.mnemonic, word=int(words[pc]), source=program.source_ref(pc))
        w = int(words[pc])
        cost = cost_of_word.get(w)
        if cost is None:
            if op.is_dma:
                cost = 0
            else:
                fields = {name: int(dec[pc, col]) for name, col in _COLUMNS.items()}
                cost = eval_latency(op.latency, {**names, **fields})
            cost_of_word[w] = cost
        dec[pc, D_COST] = cost
    return dec
