"""DMA unit: H_PREFETCH_M / H_PREFETCH_V / H_STORE_V (hbm-dma-mx-formats.md §1, hbm2-timing.md §9).

Data moves through the sparse HBM store; the instruction's cycles come from the HBM timing model
behind `emulator.hbm.timing` (read_batch / write_block), which the executor never looks inside.
Byte counters count 64 bytes per block access, like the reference.
"""

import math

import numpy as np

from ..hbm.timing import read_batch, write_block
from .common import MASK32, fail, note_vram_write, vram_row
from .hbm_store import missing_pages, read_bytes, write_bytes
from .jit import jit
from .numerics import bf16_row_to_f32, f32_row_to_bf16, mx_quantize_row
from .state import (
    E_HBM_WRITE_RANGE, E_MRAM_RANGE, E_VRAM_RANGE, E_PREFETCH_ALIGN, E_PREFETCH_TILE_RANGE, HBM_PAGES_USED, HBM_READ, HBM_WRITTEN,
    MRAM_TILES_USED, NOW, P_HBM_CAPACITY, P_MLEN, P_MRAM_TILES, P_MX_BLOCK, P_PREFETCH_M_ROWS,
    P_PREFETCH_V_ROWS, P_VLEN, P_VRAM_DEPTH, P_WRITEBACK_ROWS, SCALE, STRIDE, VRAM_ROWS_USED,
)

BLOCK = 64
ADDR_MASK = 0x7FFFFFFFFFFFFFFF  # timing sees addresses as non-negative int64 (bit 63 dropped)


@jit
def _row_addresses(k, index, scale_index, stride_used, stride_scale):
    """Element and scale byte addresses of row k (u64 bit patterns in int64).

    The element stride is a u32 product; the scale stride is an f32 product truncated to an integer.
    """
    ea = index + ((k * stride_used) & MASK32)
    sa = scale_index + np.int64(math.trunc(np.float32(np.float32(k) * stride_scale)))
    return ea, sa


@jit
def _region(gp, areg, ctrl, rs1, rs2, rs3, dim, mx_block):
    offset = gp[rs1]
    base = areg[rs2]
    index = base + offset
    scale_index = base + ctrl[SCALE] + offset // mx_block
    stride_used = ctrl[STRIDE] if rs3 == 1 else dim
    stride_scale = np.float32(np.float32(stride_used) / np.float32(mx_block))
    return index, scale_index, stride_used, stride_scale


@jit
def prefetch_blocks(is_matrix, rs1, rs2, rs3, gp, areg, ctrl, params, blk):
    """blk[:n] = the 64-byte HBM blocks an H_PREFETCH_M/V reads, in request order; returns n.

    Per row: every block of its elements, then the one block holding its first scale byte.
    """
    dim = params[P_MLEN] if is_matrix else params[P_VLEN]
    nrows = params[P_PREFETCH_M_ROWS] if is_matrix else params[P_PREFETCH_V_ROWS]
    index, scale_index, stride_used, stride_scale = _region(gp, areg, ctrl, rs1, rs2, rs3, dim, params[P_MX_BLOCK])
    nblk = 0
    for k in range(nrows):
        ea, sa = _row_addresses(k, index, scale_index, stride_used, stride_scale)
        b = ea & -BLOCK
        while b < ea + dim:
            blk[nblk] = b & ADDR_MASK
            nblk += 1
            b += BLOCK
        blk[nblk] = (sa & -BLOCK) & ADDR_MASK
        nblk += 1
    return nblk


@jit
def store_blocks(rs1, rs2, rs3, gp, areg, ctrl, params, blk):
    """blk[:n] = the 64-byte HBM blocks an H_STORE_V read-modify-writes, in order; returns n."""
    vlen = params[P_VLEN]
    mx_block = params[P_MX_BLOCK]
    index, scale_index, stride_used, stride_scale = _region(gp, areg, ctrl, rs1, rs2, rs3, vlen, mx_block)
    nblk = 0
    for k in range(params[P_WRITEBACK_ROWS]):
        ea, sa = _row_addresses(k, index, scale_index, stride_used, stride_scale)
        for lo, n in ((ea, vlen), (sa, vlen // mx_block)):
            b = lo & -BLOCK
            while b < lo + n:
                blk[nblk] = b & ADDR_MASK
                nblk += 1
                b += BLOCK
    return nblk


@jit
def h_prefetch(is_matrix, rd, rs1, rs2, rs3, gp, areg, ctrl, params, vram, mram, pt, pool, ts,
               blk, e4m3, e8m0, vals, ebuf, sbuf, err, pc, move_data):
    """Returns the instruction's end cycle, or -1 after recording an abort.

    With move_data False only the checks, the byte counters and the timing happen (the static
    estimator's use: same blocks, same HBM model calls, no data).
    """
    mlen = params[P_MLEN]
    vlen = params[P_VLEN]
    mx_block = params[P_MX_BLOCK]
    capacity = params[P_HBM_CAPACITY]
    dim = mlen if is_matrix else vlen
    nrows = params[P_PREFETCH_M_ROWS] if is_matrix else params[P_PREFETCH_V_ROWS]
    dst = gp[rd]
    align = mlen * mlen if is_matrix else vlen
    if dst % align != 0:
        fail(err, E_PREFETCH_ALIGN, pc, dst, align)
        return -1
    first_slot = dst // align
    depth = params[P_MRAM_TILES] if is_matrix else params[P_VRAM_DEPTH]
    if first_slot >= depth:  # the destination itself is bounds-checked; later rows are not
        fail(err, E_MRAM_RANGE if is_matrix else E_VRAM_RANGE, pc, dst, first_slot, depth)
        return -1
    if is_matrix:
        last_tile = first_slot + (nrows - 1) // mlen
        if last_tile >= params[P_MRAM_TILES]:
            fail(err, E_PREFETCH_TILE_RANGE, pc, last_tile, params[P_MRAM_TILES])
            return -1
    nblk = prefetch_blocks(is_matrix, rs1, rs2, rs3, gp, areg, ctrl, params, blk)
    if move_data:
        index, scale_index, stride_used, stride_scale = _region(gp, areg, ctrl, rs1, rs2, rs3, dim, mx_block)
        nscale = dim // mx_block
        for k in range(nrows):
            ea, sa = _row_addresses(k, index, scale_index, stride_used, stride_scale)
            read_bytes(pt, pool, capacity, ea, ebuf, dim)
            # Only the 64-byte block holding the first scale byte is fetched: a scale slice that
            # straddles a block boundary leaves its tail at 0 (scale 0.0), as in the reference.
            avail = min(nscale, BLOCK - (sa & (BLOCK - 1)))
            sbuf[:nscale] = 0
            read_bytes(pt, pool, capacity, sa, sbuf, avail)
            for c in range(dim):
                vals[c] = e4m3[ebuf[c]] * e8m0[sbuf[c // mx_block]]
            if is_matrix:
                tile = first_slot + k // mlen
                r = k % mlen
                for c in range(dim):
                    mram[tile, r * mlen + c] = vals[c]
                if tile + 1 > ctrl[MRAM_TILES_USED]:
                    ctrl[MRAM_TILES_USED] = tile + 1
            else:
                row = first_slot + k
                if row < params[P_VRAM_DEPTH]:  # rows past the depth are dropped silently
                    f32_row_to_bf16(vals[:dim], vram[row])
                    note_vram_write(ctrl, row, VRAM_ROWS_USED)
    ctrl[HBM_READ] += BLOCK * nblk
    return read_batch(ts, ctrl[NOW], blk, nblk)


@jit
def store_pages_needed(rd, rs1, rs2, rs3, gp, areg, ctrl, params, pt, seen):
    """Pool pages an H_STORE_V would allocate (checked before the instruction touches anything)."""
    vlen = params[P_VLEN]
    mx_block = params[P_MX_BLOCK]
    capacity = params[P_HBM_CAPACITY]
    index, scale_index, stride_used, stride_scale = _region(gp, areg, ctrl, rs1, rs2, rs3, vlen, mx_block)
    nseen = np.int64(0)  # not the literal 0: one compiled missing_pages
    for k in range(params[P_WRITEBACK_ROWS]):
        ea, sa = _row_addresses(k, index, scale_index, stride_used, stride_scale)
        nseen = missing_pages(pt, capacity, ea, vlen, seen, nseen)
        nseen = missing_pages(pt, capacity, sa, vlen // mx_block, seen, nseen)
    return nseen


@jit
def _rmw(addr, data, n, now, pt, pool, ctrl, params, ts, one, err, pc, move_data):
    """Read-modify-write of every 64-byte block [addr, addr+n) touches: read (awaited), then post
    the write.  Returns the cycle after the last write was accepted, or -1 on an abort."""
    capacity = params[P_HBM_CAPACITY]
    t = now
    b = addr & -BLOCK
    while b < addr + n:
        one[0] = b & ADDR_MASK
        t = read_batch(ts, t, one, one.shape[0])  # not the literal 1: one compiled read_batch
        ctrl[HBM_READ] += BLOCK
        lo = max(addr, b)
        hi = min(addr + n, b + BLOCK)
        if b < 0 or b + BLOCK > capacity:
            fail(err, E_HBM_WRITE_RANGE, pc, b, capacity)
            return -1
        if move_data:
            ctrl[HBM_PAGES_USED] = write_bytes(pt, pool, ctrl[HBM_PAGES_USED], lo, data[lo - addr:], hi - lo)
        t = write_block(ts, t, b & ADDR_MASK)
        ctrl[HBM_WRITTEN] += BLOCK
        b += BLOCK
    return t


@jit
def h_store(rd, rs1, rs2, rs3, gp, areg, ctrl, params, vram, pt, pool, ts, one,
            vals, ebuf, sbuf, err, pc, move_data):
    """H_STORE_V: quantise VRAM rows to MXFP8 and write them row by row (strictly sequential).

    Returns the end cycle or -1; move_data False: checks, counters and timing only.
    """
    vlen = params[P_VLEN]
    mx_block = params[P_MX_BLOCK]
    src = gp[rd]
    first_row = vram_row(src, vlen, params[P_VRAM_DEPTH], err, pc)
    if first_row < 0:
        return -1
    index, scale_index, stride_used, stride_scale = _region(gp, areg, ctrl, rs1, rs2, rs3, vlen, mx_block)
    t = ctrl[NOW]
    nscale = vlen // mx_block
    for k in range(params[P_WRITEBACK_ROWS]):
        row = vram_row(src + k * vlen, vlen, params[P_VRAM_DEPTH], err, pc)
        if row < 0:
            return -1
        if move_data:
            bf16_row_to_f32(vram[row], vals[:vlen])
            mx_quantize_row(vals[:vlen], ebuf, sbuf, mx_block)
        ea, sa = _row_addresses(k, index, scale_index, stride_used, stride_scale)
        t = _rmw(ea, ebuf, vlen, t, pt, pool, ctrl, params, ts, one, err, pc, move_data)
        if t < 0:
            return -1
        t = _rmw(sa, sbuf, nscale, t, pt, pool, ctrl, params, ts, one, err, pc, move_data)
        if t < 0:
            return -1
    return t
