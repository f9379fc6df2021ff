"""Helpers shared by the unit kernels: error recording and SRAM address checks."""

import numpy as np

from .jit import inline_jit, jit
from .state import E_MRAM_ALIGN, E_MRAM_RANGE, E_VRAM_ALIGN, E_VRAM_RANGE

MASK32 = 0xFFFFFFFF


@inline_jit
def fail(err, kind, pc, a=0, b=0, c=0):
    """Record an abort; the op returns right after and the run loop stops."""
    err[0] = kind
    err[1] = pc
    err[2] = a
    err[3] = b
    err[4] = c
    return False


@jit
def vram_row(addr, vlen, depth, err, pc):
    """Row index of VRAM element address `addr`, or -1 after recording the reference's assert."""
    if addr % vlen != 0:
        fail(err, E_VRAM_ALIGN, pc, addr, vlen)
        return -1
    row = addr // vlen
    if row >= depth:
        fail(err, E_VRAM_RANGE, pc, addr, row, depth)
        return -1
    return row


@jit
def mram_tile(addr, mlen, n_tiles, err, pc):
    """Tile index of an MRAM read/write at `addr` (must be tile-aligned and in range), or -1."""
    tile_elems = mlen * mlen
    if addr % tile_elems != 0:
        fail(err, E_MRAM_ALIGN, pc, addr, tile_elems)
        return -1
    t = addr // tile_elems
    if t >= n_tiles:
        fail(err, E_MRAM_RANGE, pc, addr, t, n_tiles)
        return -1
    return t


@jit
def note_vram_write(ctrl, row, slot):
    if row + 1 > ctrl[slot]:
        ctrl[slot] = row + 1


@jit
def u32(x):
    return np.int64(x) & MASK32
