"""Matrix machine: the systolic ops and their four f32 accumulators (matrix-vector-machines.md §4-5).

Products are exact in f32 (bf16 x bf16 or bf16 x E4M3*2^k), so only the summation order and the
NaN choice matter; both live in `matmul_order` (verified-corrections A4, D1), which says which
orders are verified at which shapes.  The order codes come in `params` (chosen by BLEN when the
machine is built).  Each op lays its operands out once per instruction in the f32 scratch (X rows
from VRAM; W[k, n] contiguous in n, a transposed tile copied so) and hands the whole instruction to
`matmul_order.accumulate_products`, which computes the independent outputs side by side (SIMD)
and each output in its own order.  M_TMM at BLEN <= 8, M_TMV and M_BTMV with HLEN >= 32 (lane
orders, each output's operand a tile row, each tile element used by at most B outputs or A heads) go to
`matmul_order.accumulate_lane_dots` instead, which reads the tile rows as they are and keeps
four outputs' four k-interleaved partial sums in one register.
"""

import numpy as np

from .common import fail, mram_tile, note_vram_write, u32, vram_row
from .jit import inline_jit, jit
from .matmul_order import GEMV, LANES4, WORK_ROWS, accumulate_lane_dots, accumulate_products
from .numerics import bf16_row_to_f32, f32_row_to_bf16
from .state import (
    E_BLOCK_ALIGN, E_BMV_SHAPE, E_BROADCAST_ASSERT, E_BWO_ALIGN, E_HEAD_ALIGN, E_MM_ROW_GRANULAR,
    E_MV_OFFSET_RANGE, E_NARROW, E_WO_ALIGN, P_BLEN, P_BROADCAST, P_HLEN, P_MLEN, P_MM_ORDER, P_MRAM_TILES,
    P_TMM_ORDER, P_VLEN, P_VRAM_DEPTH, VRAM_ROWS_USED,
)

# The instruction kernels below (m_mm .. m_bmv_wo) are `inline_jit`: numba inlines them into the
# run loop, which types and optimises each once, instead of each re-optimising every callee it
# links (accumulate_products and its helpers).  Measured on the whole first run of the example
# (bench/bench_compile.py, 2026-12-03), now that the loop passes m_mm's flag as a run-time value:
# 32.4 s of CPU inlined, 33.9 s as plain @jit kernels; the two are about even.
# Constant int arguments are passed as np.int64(...): numba compiles a callee once per literal
# argument value, and one compiled `accumulate_products` serves every op.
# M_BTMV with HLEN >= this reads its tile rows as they are (accumulate_lane_dots); shorter heads are
# transposed so that all M outputs run side by side (bench_matrix: at HLEN 16 the lane dots' per-output
# head and tail cost more than the transpose, at HLEN 64 the transpose costs twice the lane dots).
LANE_DOTS_MIN_K = 32
BMM_SCALE = np.float32(0.25)  # the reference's bmm_scale register: fixed, no instruction writes it
NO_SCALE = np.float32(1.0)    # x * 1 is exact (a NaN is quieted, as the accumulator update does anyway)


def scratch_shape(mlen: int, vlen: int) -> tuple[int, int]:
    """Rows x width of the f32 scratch the matrix and vector kernels share (the runner allocates
    it once per machine): operand rows X (up to M), a transposed matrix operand W (up to M rows)
    and `accumulate_products`' work rows.  The vector kernels use its first three rows
    (numerics.row_sum_f32 needs 32 lanes of one)."""
    return 2 * max(mlen, 3) + WORK_ROWS, max(mlen, vlen, 32)


@jit
def _load_rows(vram, addr, nrows, params, out, err, pc):
    """out[i] = f32 of VRAM row at addr + i*MLEN (the row stride of the matrix ops)."""
    m = params[P_MLEN]
    for i in range(nrows):
        r = vram_row(u32(addr + i * m), params[P_VLEN], params[P_VRAM_DEPTH], err, pc)
        if r < 0:
            return False
        bf16_row_to_f32(vram[r], out[i])
    return True


TRANSPOSE_BLOCK = 16   # outputs per block of `_transpose`


@jit
def _transpose(tile, m, first, k_len, nn, flat, wo):
    """W[k, n] = tile[first + n*m + k] (k < k_len, n < nn) into flat[wo + k*nn + n]: the matrix
    operand packed with its outputs contiguous (row stride nn).  In blocks of 16 outputs, so that
    the block's tile rows stay in L1 while k runs: a column of all nn rows (1 KB apart at MLEN 256)
    falls into a few cache sets, and walking it for every k missed L1 on every element."""
    for n0 in range(0, nn, TRANSPOSE_BLOCK):
        n1 = min(n0 + TRANSPOSE_BLOCK, nn)
        for k in range(k_len):
            row = wo + k * nn
            src = first + k
            for n in range(n0, n1):
                flat[row + n] = tile[src + n * m]


@inline_jit  # returns a view: a jitted function without numba's runtime may only return its arguments
def _flat(scratch):
    """The scratch as one flat row (a transposed W goes in from row M on)."""
    return scratch.reshape((scratch.shape[0] * scratch.shape[1],))


@inline_jit  # returns a view: a jitted function without numba's runtime may only return its arguments
def _work(scratch, m):
    return scratch[2 * max(m, 3):]


@inline_jit
def m_mm(transposed, m_addr, v_addr, vram, mram, macc, params, scratch, err, pc):
    """M_MM: macc += X[B,M] @ T[:, c:c+B];  M_TMM: macc += X @ T[c:c+B, :]^T."""
    m = params[P_MLEN]
    b = params[P_BLEN]
    off = m_addr % (m * m)
    if off % m != 0:
        return fail(err, E_MM_ROW_GRANULAR, pc, m_addr, off, m)
    c = off // m
    if c % b != 0:
        return fail(err, E_BLOCK_ALIGN, pc, m_addr, c, b)
    t = mram_tile(m_addr - off, m, params[P_MRAM_TILES], err, pc)
    if t < 0:
        return False
    if not _load_rows(vram, v_addr, b, params, scratch, err, pc):
        return False
    zero, one = np.int64(0), np.int64(1)
    order = params[P_TMM_ORDER] if transposed else params[P_MM_ORDER]
    if transposed and order == LANES4:   # output j's operand T[c + j][0:M], a tile row
        accumulate_lane_dots(order, zero, scratch, zero, mram[t], c * m, m, m, b, b, macc, NO_SCALE,
                             _work(scratch, m))
        return True
    if transposed:   # W[k, j] = T[c + j][k]
        w, wo, ws = _flat(scratch), m * scratch.shape[1], b
        _transpose(mram[t], m, c * m, m, b, w, wo)
    else:            # W[k, j] = T[k][c + j]: the tile's rows as they are
        w, wo, ws = mram[t], c, m
    accumulate_products(order, zero, scratch, zero, one, w, wo, ws, m, b, b, macc, NO_SCALE, _work(scratch, m))
    return True


@inline_jit
def m_mv(transposed, m_addr, v_addr, vram, mram, vacc, params, scratch, err, pc):
    """M_MV: vacc += x @ T[:, c:c+B] (c element-granular);  M_TMV: vacc += x @ T[0:B, :]^T."""
    m = params[P_MLEN]
    b = params[P_BLEN]
    c = m_addr % (m * m)
    if c % b != 0:
        return fail(err, E_BLOCK_ALIGN, pc, m_addr, c, b)
    if transposed:
        t = mram_tile(m_addr, m, params[P_MRAM_TILES], err, pc)  # reads with the raw address
    else:
        if c >= m:
            return fail(err, E_MV_OFFSET_RANGE, pc, m_addr, c, m)
        t = mram_tile(m_addr - c, m, params[P_MRAM_TILES], err, pc)
    if t < 0:
        return False
    if not _load_rows(vram, v_addr, np.int64(1), params, scratch, err, pc):
        return False
    zero, one = np.int64(0), np.int64(1)
    if transposed:   # output j's operand T[j][0:M]; the gemv's matrix view starts at the tile base
        accumulate_lane_dots(np.int64(GEMV), zero, scratch, zero, mram[t], zero, m, m, one, b, vacc.reshape((1, b)),
                             NO_SCALE, _work(scratch, m))
        return True
    # W[k, j] = T[k][c + j]
    accumulate_products(params[P_MM_ORDER], zero, scratch, zero, one, mram[t], c, m, m, one, b,
                        vacc.reshape((1, b)), NO_SCALE, _work(scratch, m))
    return True


@jit
def _broadcast_head(m_addr, split, params, err, pc):
    """Tile and head offset of a broadcast op's matrix address, or (-1, 0) after an abort.

    The address splits into base + r with r = m_addr mod `split` (M*B for M_BMM/M_BMV, M^2 for the
    transposed ops); r gives a row block mo and a head offset ho.  Checks in the reference's order:
    A*H == M, mo % B, ho % H, the MRAM read of the base, then the narrow (mo must be 0).
    """
    m = params[P_MLEN]
    b = params[P_BLEN]
    h = params[P_HLEN]
    if params[P_BROADCAST] * h != m:
        fail(err, E_BROADCAST_ASSERT, pc, params[P_BROADCAST], h, m)
        return -1, 0
    r = m_addr % split
    mo = (r // m) * m
    ho = r % m
    if mo % b != 0:
        fail(err, E_BLOCK_ALIGN, pc, m_addr, mo, b)
        return -1, 0
    if ho % h != 0:
        fail(err, E_HEAD_ALIGN, pc, m_addr, ho, h)
        return -1, 0
    t = mram_tile(m_addr - r, m, params[P_MRAM_TILES], err, pc)
    if t < 0:
        return -1, 0
    if mo != 0:
        fail(err, E_NARROW, pc, m_addr, mo, m)
        return -1, 0
    return t, ho


@inline_jit
def m_bmm(m_addr, v_addr, vram, mram, hmacc, params, scratch, err, pc):
    """M_BMM: hmacc[a] += 0.25 * X_a[M,H] @ T[ho:ho+H, :], X_a = lanes k*A + a (interleaved heads).

    The matrix address is split modulo M*B (not M^2): only tile_base + head*H offsets work, and
    the same H tile rows serve every head.
    """
    m = params[P_MLEN]
    t, ho = _broadcast_head(m_addr, m * params[P_BLEN], params, err, pc)
    if t < 0:
        return False
    if not _load_rows(vram, v_addr, m, params, scratch, err, pc):
        return False
    h = params[P_HLEN]
    nb = params[P_BROADCAST]
    work = _work(scratch, m)
    for a in range(nb):   # head a: lanes k*A + a of X; W[k, n] = T[ho + k][n], the tile's rows
        accumulate_products(params[P_MM_ORDER], np.int64(0), scratch, a, nb, mram[t], ho * m, m, h, m, m, hmacc[a],
                            BMM_SCALE, work)
    return True


@inline_jit
def m_btmm(m_addr, v_addr, vram, mram, hmacc, params, scratch, err, pc):
    """M_BTMM: hmacc[a] += 0.25 * Q_a[M,H] @ T[:, ho:ho+H]^T, Q_a = lanes a*H + k (contiguous heads)."""
    m = params[P_MLEN]
    t, ho = _broadcast_head(m_addr, m * m, params, err, pc)
    if t < 0:
        return False
    if not _load_rows(vram, v_addr, m, params, scratch, err, pc):
        return False
    h = params[P_HLEN]
    w, wo, ws = _flat(scratch), m * scratch.shape[1], m
    _transpose(mram[t], m, ho, h, m, w, wo)                   # W[k, n] = T[n][ho + k]
    work = _work(scratch, m)
    for a in range(params[P_BROADCAST]):                     # head a: lanes a*H + k of X
        accumulate_products(params[P_MM_ORDER], np.int64(0), scratch, a * h, np.int64(1), w, wo, ws, h, m, m,
                            hmacc[a], BMM_SCALE, work)
    return True


@inline_jit
def m_bmv(transposed, m_addr, v_addr, vram, mram, hvacc, params, scratch, err, pc):
    """M_BTMV: hvacc[a][n] += 0.25 * sum_k x[a*H+k] * T[n][ho+k].  M_BMV always aborts (shape bug)."""
    m = params[P_MLEN]
    t, ho = _broadcast_head(m_addr, m * m if transposed else m * params[P_BLEN], params, err, pc)
    if t < 0:
        return False
    if not _load_rows(vram, v_addr, np.int64(1), params, scratch, err, pc):
        return False
    nb = params[P_BROADCAST]
    if not transposed:
        return fail(err, E_BMV_SHAPE, pc, nb, m)
    h = params[P_HLEN]
    heads = scratch[0, :nb * h].reshape((nb, h))             # head a = lanes a*H .. a*H + H
    # the gemv's matrix view starts ho floats into the 64-byte-aligned tile: misalign ho % 4
    if h >= LANE_DOTS_MIN_K:   # output n's operand T[n][ho : ho + H], a tile row as it is
        accumulate_lane_dots(np.int64(GEMV), ho % 4, heads, np.int64(0), mram[t], ho, m, h, nb, m, hvacc, BMM_SCALE,
                             _work(scratch, m))
        return True
    w, wo, ws = _flat(scratch), m * scratch.shape[1], m
    _transpose(mram[t], m, ho, h, m, w, wo)                   # W[k, n] = T[n][ho + k]
    accumulate_products(np.int64(GEMV), ho % 4, heads, np.int64(0), np.int64(1), w, wo, ws, h, nb, m, hvacc,
                        BMM_SCALE, _work(scratch, m))
    return True


@jit
def _write_slot(vram, addr, voff, values, nvals, params, ctrl, rowbuf, err, pc):
    """Read-modify-write of lanes voff..voff+n of the VRAM row at addr (whole row re-rounded)."""
    r = vram_row(addr, params[P_VLEN], params[P_VRAM_DEPTH], err, pc)
    if r < 0:
        return False
    bf16_row_to_f32(vram[r], rowbuf)
    for j in range(nvals):
        rowbuf[voff + j] = values[j]
    f32_row_to_bf16(rowbuf, vram[r])
    note_vram_write(ctrl, r, VRAM_ROWS_USED)
    return True


@inline_jit
def m_mm_wo(dest, stride, vram, macc, params, ctrl, rowbuf, err, pc):
    """M_MM_WO: rows (d - d%M) + i*M*stride, lanes d%M .. +B <- macc[i]; clear."""
    m = params[P_MLEN]
    b = params[P_BLEN]
    voff = dest % m
    vbase = dest - voff
    if voff % b != 0:
        return fail(err, E_WO_ALIGN, pc, dest, voff, b)
    if voff + b > params[P_VLEN]:
        return fail(err, E_NARROW, pc, dest, voff, params[P_VLEN])
    for i in range(b):
        if not _write_slot(vram, u32(vbase + i * m * stride), voff, macc[i], b, params, ctrl, rowbuf, err, pc):
            return False
    macc[:, :] = 0.0
    return True


@inline_jit
def m_mv_wo(dest, vram, vacc, params, ctrl, rowbuf, err, pc):
    """M_MV_WO: row d - d%M, lanes d%M .. +B <- vacc; clear."""
    m = params[P_MLEN]
    b = params[P_BLEN]
    voff = dest % m
    if voff % b != 0:
        return fail(err, E_WO_ALIGN, pc, dest, voff, b)
    if voff + b > params[P_VLEN]:
        return fail(err, E_NARROW, pc, dest, voff, params[P_VLEN])
    if not _write_slot(vram, dest - voff, voff, vacc, b, params, ctrl, rowbuf, err, pc):
        return False
    vacc[:] = 0.0
    return True


@inline_jit
def m_bmm_wo(dest, vram, hmacc, params, ctrl, err, pc):
    """M_BMM_WO: VRAM rows dest/M + a*M + i <- hmacc[a][i] (whole rows); clear."""
    m = params[P_MLEN]
    if dest % m != 0:
        return fail(err, E_BWO_ALIGN, pc, dest, m)
    nb = params[P_BROADCAST]
    for a in range(nb):
        for i in range(m):
            r = vram_row(u32(dest + (a * m + i) * m), params[P_VLEN], params[P_VRAM_DEPTH], err, pc)
            if r < 0:
                return False
            f32_row_to_bf16(hmacc[a, i], vram[r])
            note_vram_write(ctrl, r, VRAM_ROWS_USED)
    hmacc[:, :, :] = 0.0
    return True


@inline_jit
def m_bmv_wo(dest, vram, hvacc, params, ctrl, err, pc):
    """M_BMV_WO: VRAM rows dest/M + a <- hvacc[a]; clear."""
    m = params[P_MLEN]
    if dest % m != 0:
        return fail(err, E_BWO_ALIGN, pc, dest, m)
    for a in range(params[P_BROADCAST]):
        r = vram_row(u32(dest + a * m), params[P_VLEN], params[P_VRAM_DEPTH], err, pc)
        if r < 0:
            return False
        f32_row_to_bf16(hvacc[a], vram[r])
        note_vram_write(ctrl, r, VRAM_ROWS_USED)
    hvacc[:, :] = 0.0
    return True
