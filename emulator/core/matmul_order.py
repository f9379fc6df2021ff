"""f32 summation order and NaN choice of the reference's matrix ops: the one place for them.

The products are exact in f32 (bf16 x bf16, or bf16 x E4M3*2^k), so a dot product's bits are
decided by the association tree of its f32 additions and, when both operands of an addition are
NaN, by which operand's payload survives (x86 keeps the *first* source operand's NaN, quieted;
the library kernel decides which operand comes first).  The reference hands libtorch 2.13
(MKL 2024.2) one matmul per instruction, and MKL picks its kernel by shape, so the order depends
on BLEN and K (verified-corrections A4 and D1, which wins where they differ).

Orders are chosen once per machine, by `sgemm_orders(BLEN)` when the core's parameters are
built (emulator/runner.hardware_params -> params[P_MM_ORDER], params[P_TMM_ORDER]); the kernels
branch on that code once per instruction, never per product.

Two implementations of each order live here.  The per-output definitions (`ordered_out` and the
`*_out` kernels it picks) name, for every product and addition, which NaN it keeps.  The run uses
`accumulate_products`, which computes all outputs of an instruction side by side (the innermost
loop runs over independent outputs, so the compiler puts them in SIMD lanes) while each output
still adds its products in its own order; plain f32 adds give the same bits whenever the output is
finite, and the few NaN outputs are recomputed by the definitions.  bench/bench_matrix.py times
it against a limit kernel.

What is verified against the reference, and where:

| op | BLEN | order (below) | evidence |
|---|---|---|---|
| M_MM | 4, 8 | SEQUENTIAL: k order; NaN: earlier kept, a NaN product at k = 0 (mod 8) replaces it | A4 `mm_sum_order`; D1 `nan_payload_m_mm` at (M, B) = (32..256, 4/8) |
| M_TMM | 4, 8 | LANES4 (below); NaN: earlier in a lane, lanes l0 > l2 > l1 > l3 | A4 `tmm_sum_order`; D1 |
| M_MM, M_TMM | 16, 32 | PANELS: 128-wide k panels, each sequential from +0 with the later NaN winning; panel sums added left to right, the earlier panel's NaN winning | D1 `vlen256_mm_k_split`, `vlen256_tmm_k_split`, `vlen128_tmm_b16_order` at M = 64 (B 16), 128 and 256 (B 16, 32) |
| M_MV, M_BMM, M_BTMM | 4 | k order (finite) | A4 `bmm_btmm_sum_order` |
| M_TMV, M_BTMV | 4 | GEMV (below) (finite) | A4 `tmv_sum_order`, `btmv_sum_order` |

Modelled by analogy, not verified:

* M_MV, M_BMM and M_BTMM follow M_MM's order code at every BLEN (they are the same plain-k
  library calls): their NaN choice at any BLEN, and their finite order at BLEN >= 16 (which
  differs from k order only when K > 128, i.e. M_MV at MLEN 256).
* M_TMV and M_BTMV keep the GEMV order at every BLEN; their NaN choice follows M_TMM's lanes
  (earlier NaN in a lane, l0 > l2 > l1 > l3; the head and tail keep the earlier NaN).
* Two NaN factors in one product: the vector operand's NaN (MKL's operand order is unseen).
* The accumulator update `acc += result`: the result's NaN wins, as in the elementwise VV adds
  (A5).
* BLEN between 9 and 15 is treated like 16; K > 256 continues the 128-wide panels.

Below, p[k] is the k-th product. Every `+` is one f32 addition, and brackets give the order.

LANES4, M_TMM at BLEN <= 8: `X[B,M] @ T.t()[:, c:c+B]`, an sgemm. `tmm_dot` gives output
(i, j), the sum of p[k] = X[i][k] * T[c+j][k]:

    body = M - M % 4
    lane r (r = 0..3) = ((p[r] + p[r+4]) + p[r+8]) + ...  over the k < body with k % 4 == r
    s = (lane0 + lane2) + (lane1 + lane3)
    s = s + p[body] + ... + p[M-1]                        (tail, in k order)

GEMV, M_TMV: `x[1,M] @ T.t()[:, 0:B]`. M_BTMV: `q_a[1,H] @ T[:, ho:ho+H].t()`. MKL runs both
through its transposed matrix-vector kernel, and `gemv_dot` reproduces it. For K products and a matrix
view whose base address is `a` floats past a 16-byte boundary (a = 0 for M_TMV, and
a = ho % 4 for M_BTMV, because libtorch aligns storage to 64 bytes):

    R = K - a;  if R <= 4: plain k order over all K
    head = (R - 1) % 4 + 1
    h = p[0] + p[1] + ... + p[head-1]                    (k order)
    lane 0 = ((h + p[head]) + p[head+4]) + ...           k in [head, R), k = head (mod 4)
    lane r = (p[head+r] + p[head+r+4]) + ...             r = 1..3, k < R
    s = (lane0 + lane2) + (lane1 + lane3)
    s = s + p[R] + ... + p[K-1]                          (the last a products, in k order)

So for M = 64 (or any M that is a multiple of 4), M_TMV has head 4 and no tail. Lane 0 is
p0+p1+p2+p3+p4+p8+...+p60, and lanes 1..3 start at p5, p6, p7. M_BTMV with H = 16 is the same
with K = 16.

How the orders were found. The reference ran on an AMD EPYC, where MKL does not take its Intel
AVX2/AVX-512 paths. Setting MKL_ENABLE_INSTRUCTIONS to AVX2 or SSE4_2 there changed nothing
(verified-corrections A4). We only had Intel machines, so we probed libtorch 2.13.0+cpu
(MKL 2024.2) on one, under several MKL_ENABLE_INSTRUCTIONS / MKL_CBWR settings, with the
reference's exact calls and views. The 3 ops-corpus sum-order probes (tmm_sum_order 49/49/56/47,
tmv_sum_order 46/46/49/45, btmv_sum_order 2.5/2.5/3.25) pick out two settings:

* the gemv order matches Intel MKL with MKL_ENABLE_INSTRUCTIONS=SSE4_2;
* the sgemm order matches Intel MKL with MKL_CBWR=COMPATIBLE (MKL_CBWR=SSE2..SSE4_1 give the
  same probe values). Under MKL_ENABLE_INSTRUCTIONS=SSE4_2, rows 0 and 2 use an 8-lane order
  instead, which gives 56, not the reference's 49, for probe row 0.

No single setting matches all three probes. The MKL defaults on this Intel host (AVX-512, or
AVX2) give other values again.

Each tree was rebuilt exactly with cancellation probes: +2^60 at k = p, -2^60 at k = q, and 1.0
everywhere else. The result counts the 1.0s that lie outside the smallest subtree holding p and
q. All pairs (p, q) then fix the tree. Both trees are fixed: they do not depend on the data or
on the output row or column. They also hold for 2..128 threads. With a single thread, MKL's
sgemm for B=8, M=128 adds k 0..111 and 112..127 in two sequential runs instead. The reference
host has many cores, so the multi-threaded order is the one modelled here.

Bit-exact checks against libtorch, products of random wide-range bf16 x bf16 or bf16 x E4M3*2^k
values (the share of sequential order's results that differ is in brackets):

* M=64, B=4, H=16: 1000 cases per op; 16000 M_TMM outputs (43%), 4000 M_TMV (43%), 256000 M_BTMV
  (17%), no mismatch.
* M=32, B=4 and M=128, B=8, H=16: 300 cases each, no mismatch.
* `gemv_dot` for K = 5..128 (including odd K) and a = 0..3, with n >= 4 outputs (a multiple of
  4); `tmm_dot` for K = 2..128 with B = 4. No mismatch.

tests/data/matmul_order_cases.npz holds a recorded subset (bench/gen_matmul_order_fixture.py).

What was not verified, and the fallbacks used:

* Only M=64, B=4, H=16 is checked against the reference itself, and only through the 3 probes.
  Other shapes rely on the Intel stand-in settings above.
* M_TMM at B = 2 (MKL_CBWR=COMPATIBLE on Intel uses 8 lanes there) and B = 8 with M <= 16
  (plain k order there): both get the 4-lane order.  B = 8 at M >= 32 and B = 16 are settled
  by the reference itself (D1).
* M_TMV/M_BTMV with a number of outputs that is not a multiple of 4 (B % 4 != 0 for M_TMV). MKL
  computes the leftover columns of a group of 4 with an 8-lane variant, and 1..3 outputs split
  k differently again. Neither is modelled: `gemv_dot` applies the same rule to every column.
* M_TMM with M = 1, where libtorch returns the bare product (a -0.0 stays -0.0). We return +0.0.
* NaN payloads: the cancellation probes cannot see them; D1's NaN cases pin M_MM and M_TMM
  (table above), the rest is the analogy listed there.
"""

import math

import numpy as np

from .jit import jit
from .numerics import add_nan_first, add_nan_second, mul_nan_first
from .simd import (
    LANES, vadd, vany_nan, vlane, vload, vload_quads, vmul, vsplat, vsplat_at, vsplat_quad, vstore, vwith_lane, vzero,
)

# Order codes of the plain (M_MM family) and transposed (M_TMM) sgemm calls; `sgemm_orders`
# picks them per machine, the kernels below implement them.
SEQUENTIAL, LANES4, PANELS = 0, 1, 2
GEMV = 3                    # the transposed gemv of M_TMV / M_BTMV (it also needs `misalign`)
PANEL_K = 128               # D1: at BLEN >= 16 MKL sums k in panels of 128
SMALL_KERNEL_MAX_BLEN = 8   # D1: BLEN <= 8 takes the small-matrix kernels


def sgemm_orders(blen: int) -> tuple[int, int]:
    """(order of M_MM / M_MV / M_BMM / M_BTMM, order of M_TMM) for a machine with this BLEN."""
    if blen > SMALL_KERNEL_MAX_BLEN:
        return PANELS, PANELS
    return SEQUENTIAL, LANES4


# ------------------------------------------------------------------ one output, NaN choice explicit
#
# The definitions: one output is sum_k x[xo + k*xs] * w[wo + k*ws], k < K (1-D views, so one
# kernel serves rows, columns and interleaved heads).  Every addition and product names which NaN
# it keeps.  The run uses `accumulate_products` below and comes here only for NaN outputs.

@jit
def _p(x, xo, xs, w, wo, ws, k):
    return mul_nan_first(x[xo + k * xs], w[wo + k * ws])


@jit
def sequential_out(x, xo, xs, w, wo, ws, k_len):
    """SEQUENTIAL: k order from +0; the earlier NaN is kept, except that a NaN product at
    k = 0 (mod 8) replaces it (D1, M_MM at BLEN <= 8)."""
    acc = np.float32(0.0)
    for k in range(k_len):
        p = _p(x, xo, xs, w, wo, ws, k)
        acc = add_nan_first(p, acc) if k % 8 == 0 else add_nan_first(acc, p)
    return acc


@jit
def panels_out(x, xo, xs, w, wo, ws, k_len):
    """PANELS: k in panels of 128, each summed from +0 with the later NaN winning; the panel sums
    are added left to right, the earlier panel's NaN winning (D1, BLEN >= 16)."""
    total = np.float32(0.0)
    for k0 in range(0, k_len, PANEL_K):
        s = np.float32(0.0)
        for k in range(k0, min(k0 + PANEL_K, k_len)):
            s = add_nan_first(_p(x, xo, xs, w, wo, ws, k), s)
        total = s if k0 == 0 else add_nan_first(total, s)
    return total


@jit
def _four_lanes_out(x, xo, xs, w, wo, ws, l0, k0, k1):
    """Four k-interleaved lanes over k0 <= k < k1 (k1 - k0 a multiple of 4), lane 0 continuing
    from l0 and the others from +0, combined as (l0 + l2) + (l1 + l3).  NaN: the earlier one
    inside a lane, lanes by priority l0 > l2 > l1 > l3 (D1)."""
    l1 = l2 = l3 = np.float32(0.0)
    for k in range(k0, k1, 4):
        l0 = add_nan_first(l0, _p(x, xo, xs, w, wo, ws, k))
        l1 = add_nan_first(l1, _p(x, xo, xs, w, wo, ws, k + 1))
        l2 = add_nan_first(l2, _p(x, xo, xs, w, wo, ws, k + 2))
        l3 = add_nan_first(l3, _p(x, xo, xs, w, wo, ws, k + 3))
    return add_nan_first(add_nan_first(l0, l2), add_nan_first(l1, l3))


@jit
def lanes4_out(x, xo, xs, w, wo, ws, k_len):
    """LANES4: four k-interleaved lanes over the first K - K % 4 products, then the leftover
    products in k order, the earlier NaN kept (D1)."""
    body = k_len - k_len % 4
    acc = _four_lanes_out(x, xo, xs, w, wo, ws, np.float32(0.0), np.int64(0), body)
    for k in range(body, k_len):
        acc = add_nan_first(acc, _p(x, xo, xs, w, wo, ws, k))
    return acc


@jit
def gemv_out(x, xo, xs, w, wo, ws, k_len, misalign):
    """GEMV: one output of MKL's transposed gemv (module docstring); `misalign` is the matrix
    view's base address mod 16 bytes, in floats (0..3).  NaN choice by analogy with LANES4."""
    r_end = k_len - misalign
    if r_end <= 4:
        acc = np.float32(0.0)
        for k in range(k_len):
            acc = add_nan_first(acc, _p(x, xo, xs, w, wo, ws, k))
        return acc
    head = (r_end - 1) % 4 + 1       # r_end - head is a multiple of 4
    l0 = np.float32(0.0)
    for k in range(head):
        l0 = add_nan_first(l0, _p(x, xo, xs, w, wo, ws, k))
    acc = _four_lanes_out(x, xo, xs, w, wo, ws, l0, head, r_end)
    for k in range(r_end, k_len):
        acc = add_nan_first(acc, _p(x, xo, xs, w, wo, ws, k))
    return acc


@jit
def ordered_out(order, misalign, x, xo, xs, w, wo, ws, k_len):
    """One output in `order` (SEQUENTIAL, LANES4, PANELS, or GEMV with `misalign`)."""
    if order == PANELS:
        return panels_out(x, xo, xs, w, wo, ws, k_len)
    if order == LANES4:
        return lanes4_out(x, xo, xs, w, wo, ws, k_len)
    if order == GEMV:
        return gemv_out(x, xo, xs, w, wo, ws, k_len, misalign)
    return sequential_out(x, xo, xs, w, wo, ws, k_len)


# Row-vector forms (the tests' and the fixture generator's view of the same definitions).

@jit
def tmm_dot(x_row, t_row, m):
    """One M_TMM output at BLEN <= 8: sum_k x_row[k] * t_row[k] (t_row = tile[c + j]), LANES4."""
    return lanes4_out(x_row, 0, 1, t_row, 0, 1, m)


@jit
def gemv_dot(x_row, x_off, t_row, t_off, k_len, misalign):
    """sum_k x_row[x_off + k] * t_row[t_off + k], k < k_len, in the GEMV order."""
    return gemv_out(x_row, x_off, 1, t_row, t_off, 1, k_len, misalign)


@jit
def tmv_dot(x_row, t_row, m):
    """One M_TMV output j: sum_k x_row[k] * t_row[k] (t_row = tile[j]), the view at the tile base."""
    return gemv_dot(x_row, 0, t_row, 0, m, 0)


@jit
def btmv_dot(x_row, x_off, t_row, ho, h):
    """One M_BTMV output (head a, n): sum_k x_row[x_off + k] * t_row[ho + k], k < h (unscaled).

    The matrix view `T[:, ho:ho+h].t()` starts ho floats into a 64-byte-aligned tile, so
    MKL's alignment-dependent split uses misalign = ho % 4.
    """
    return gemv_dot(x_row, x_off, t_row, ho, h, ho % 4)


# Fast path: every output of one instruction at once, accumulated.  The outputs are independent
# accumulators, so the innermost loop runs over them (n: contiguous in W and in the sums), which
# the compiler maps onto SIMD lanes, while each output still adds its own products in exactly the
# order above.  No fastmath: a vectorised `s + x * w` is the same separate f32 multiply and add
# (no FMA contraction, no reassociation), so the bits are those of the scalar definitions whenever
# an output is finite; a NaN output is recomputed by the definitions, which apply the NaN choice
# operand by operand.  Rows go eight at a time (each row of W is loaded once for eight of them) and
# are accumulated right away, so the working set stays in L1 whatever the instruction's size.
# Sixteen outputs' sums are one register (emulator/core/simd.py) that stays put for the whole k
# loop; eight rows give eight independent add chains even when an instruction has only 16 outputs
# (BLEN 16).  (Two registers per row, 32 outputs, measured ~15% faster on M_BTMM but cost ~2 s of
# first-run compile: not kept.)  bench_matrix, per instruction: M_MM at MLEN 128 / BLEN 16 3.2 -> 0.75 us, M_BTMM at
# MLEN 256 / BLEN 4 1.17 -> 0.3 ms (2026-12-03).  Outputs past the last multiple of 16 keep their
# sums in memory (4 x 4 in scalar registers at BLEN 4).
#
# Operands: X is 2-D, row i's k-th element at x[i, xo + k*xs]; W is flat, W[k, n] at
# w[wo + k*ws + n], so a tile's rows serve as W without a copy.

GROUP = 8           # rows computed together (the register kernels' 8 rows x 16 or 32 outputs)
WORK_ROWS = 5 * GROUP   # f32 scratch rows: a group's sums, then four lane / panel partial sums
STORE, CONTINUE = 0, 1   # a pass starts its sums from +0, or continues the sums already there


@jit
def _pass_4x4(x, i0, xo, xs, w, wo, ws, out, o, k0, k1, kstep, mode):
    """`_pass` for 4 rows of 4 outputs (BLEN 4): the 16 sums stay in registers across k."""
    z = np.float32(0.0)
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = z
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = z
    if mode != STORE:
        s00, s01, s02, s03 = out[o, 0], out[o, 1], out[o, 2], out[o, 3]
        s10, s11, s12, s13 = out[o + 1, 0], out[o + 1, 1], out[o + 1, 2], out[o + 1, 3]
        s20, s21, s22, s23 = out[o + 2, 0], out[o + 2, 1], out[o + 2, 2], out[o + 2, 3]
        s30, s31, s32, s33 = out[o + 3, 0], out[o + 3, 1], out[o + 3, 2], out[o + 3, 3]
    for k in range(k0, k1, kstep):
        xk = xo + k * xs
        x0 = x[i0, xk]
        x1 = x[i0 + 1, xk]
        x2 = x[i0 + 2, xk]
        x3 = x[i0 + 3, xk]
        wk = wo + k * ws
        w0 = w[wk]
        w1 = w[wk + 1]
        w2 = w[wk + 2]
        w3 = w[wk + 3]
        s00 = s00 + x0 * w0
        s01 = s01 + x0 * w1
        s02 = s02 + x0 * w2
        s03 = s03 + x0 * w3
        s10 = s10 + x1 * w0
        s11 = s11 + x1 * w1
        s12 = s12 + x1 * w2
        s13 = s13 + x1 * w3
        s20 = s20 + x2 * w0
        s21 = s21 + x2 * w1
        s22 = s22 + x2 * w2
        s23 = s23 + x2 * w3
        s30 = s30 + x3 * w0
        s31 = s31 + x3 * w1
        s32 = s32 + x3 * w2
        s33 = s33 + x3 * w3
    out[o, 0], out[o, 1], out[o, 2], out[o, 3] = s00, s01, s02, s03
    out[o + 1, 0], out[o + 1, 1], out[o + 1, 2], out[o + 1, 3] = s10, s11, s12, s13
    out[o + 2, 0], out[o + 2, 1], out[o + 2, 2], out[o + 2, 3] = s20, s21, s22, s23
    out[o + 3, 0], out[o + 3, 1], out[o + 3, 2], out[o + 3, 3] = s30, s31, s32, s33


@jit
def _rows_simd(x, i0, xo, xs, w, wo, ws, out, o, eight, n0, k0, k1, kstep, mode):
    """The sums of four rows (eight when `eight`) for the outputs n0 .. n0 + 16, each row's one
    register across k.  Eight rows are eight independent add chains even when an instruction has
    only 16 outputs (BLEN 16), enough to keep the adders busy, and each W load serves them all.
    (LLVM compiles the loop once per value of the flag.)"""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = vzero()
    if mode != STORE:
        s0, s1, s2, s3 = vload(out[o], n0), vload(out[o + 1], n0), vload(out[o + 2], n0), vload(out[o + 3], n0)
        if eight:
            s4, s5, s6, s7 = vload(out[o + 4], n0), vload(out[o + 5], n0), vload(out[o + 6], n0), vload(out[o + 7], n0)
    x0_row, x1_row, x2_row, x3_row = x[i0], x[i0 + 1], x[i0 + 2], x[i0 + 3]
    x4_row, x5_row, x6_row, x7_row = x0_row, x0_row, x0_row, x0_row
    if eight:
        x4_row, x5_row, x6_row, x7_row = x[i0 + 4], x[i0 + 5], x[i0 + 6], x[i0 + 7]
    for k in range(k0, k1, kstep):
        xk = xo + k * xs
        wv = vload(w, wo + k * ws + n0)
        s0 = vadd(s0, vmul(vsplat_at(x0_row, xk), wv))
        s1 = vadd(s1, vmul(vsplat_at(x1_row, xk), wv))
        s2 = vadd(s2, vmul(vsplat_at(x2_row, xk), wv))
        s3 = vadd(s3, vmul(vsplat_at(x3_row, xk), wv))
        if eight:
            s4 = vadd(s4, vmul(vsplat_at(x4_row, xk), wv))
            s5 = vadd(s5, vmul(vsplat_at(x5_row, xk), wv))
            s6 = vadd(s6, vmul(vsplat_at(x6_row, xk), wv))
            s7 = vadd(s7, vmul(vsplat_at(x7_row, xk), wv))
    vstore(out[o], n0, s0)
    vstore(out[o + 1], n0, s1)
    vstore(out[o + 2], n0, s2)
    vstore(out[o + 3], n0, s3)
    if eight:
        vstore(out[o + 4], n0, s4)
        vstore(out[o + 5], n0, s5)
        vstore(out[o + 6], n0, s6)
        vstore(out[o + 7], n0, s7)


@jit
def _pass_simd(x, i0, xo, xs, w, wo, ws, out, o, g, nv, k0, k1, kstep, mode):
    """`_pass` for the outputs n < nv (a multiple of LANES): each 16 outputs' sums stay in one
    register across k (simd.py says why); eight (or four) rows at a time, so that each W load
    serves several registers."""
    r = 0
    while r < g:
        rows = 8 if g - r >= 8 else 4 if g - r >= 4 else 1
        for n0 in range(0, nv, LANES):
            if rows > 1:
                _rows_simd(x, i0 + r, xo, xs, w, wo, ws, out, o + r, rows == 8, n0, k0, k1, kstep, mode)
            else:
                s = vzero() if mode == STORE else vload(out[o + r], n0)
                x_row = x[i0 + r]
                for k in range(k0, k1, kstep):
                    s = vadd(s, vmul(vsplat_at(x_row, xo + k * xs), vload(w, wo + k * ws + n0)))
                vstore(out[o + r], n0, s)
        r += rows


@jit
def _pass_rows4(x, i0, xo, xs, w, wo, ws, out, o, n_lo, nn, k0, k1, kstep, mode):
    """`_pass` for four rows and the outputs n_lo <= n < nn with the sums in memory: the loop over
    outputs innermost (LLVM vectorises it), each W element loaded once for the four rows."""
    o0 = out[o]            # 1-D rows: the vectoriser then checks their overlap once per loop
    o1 = out[o + 1]
    o2 = out[o + 2]
    o3 = out[o + 3]
    if mode == STORE:
        for n in range(n_lo, nn):
            o0[n] = 0.0
            o1[n] = 0.0
            o2[n] = 0.0
            o3[n] = 0.0
    for k in range(k0, k1, kstep):
        xk = xo + k * xs
        x0 = x[i0, xk]
        x1 = x[i0 + 1, xk]
        x2 = x[i0 + 2, xk]
        x3 = x[i0 + 3, xk]
        wk = w[wo + k * ws:wo + k * ws + nn]
        for n in range(n_lo, nn):
            wv = wk[n]
            o0[n] = o0[n] + x0 * wv
            o1[n] = o1[n] + x1 * wv
            o2[n] = o2[n] + x2 * wv
            o3[n] = o3[n] + x3 * wv


@jit
def _pass_rows(x, i0, xo, xs, w, wo, ws, out, o, r_lo, r_hi, n_lo, nn, k0, k1, kstep, mode):
    """`_pass` for the rows r_lo <= r < r_hi and outputs n_lo <= n < nn, one row at a time."""
    for r in range(r_lo, r_hi):
        orow = out[o + r]
        if mode == STORE:
            for n in range(n_lo, nn):
                orow[n] = 0.0
        for k in range(k0, k1, kstep):
            xv = x[i0 + r, xo + k * xs]
            wk = wo + k * ws
            for n in range(n_lo, nn):
                orow[n] = orow[n] + xv * w[wk + n]


@jit
def _pass(x, i0, xo, xs, w, wo, ws, out, o, g, nn, k0, k1, kstep, mode):
    """out[o + r, n] (r < g, n < nn) from +0 (STORE) or from its value (CONTINUE), plus
    X[i0 + r, k] * W[k, n] for k = k0, k0 + kstep, ... < k1, in that order."""
    four = g - g % 4       # the rows in blocks of four
    zero = np.int64(0)
    if nn == 4:            # BLEN 4: 4 x 4 sums in scalar registers
        for r in range(0, four, 4):
            _pass_4x4(x, i0 + r, xo, xs, w, wo, ws, out, o + r, k0, k1, kstep, mode)
        _pass_rows(x, i0, xo, xs, w, wo, ws, out, o, four, g, zero, nn, k0, k1, kstep, mode)
        return
    n_lo = nn - nn % LANES
    if n_lo > 0:
        _pass_simd(x, i0, xo, xs, w, wo, ws, out, o, g, n_lo, k0, k1, kstep, mode)
    if n_lo < nn:          # the last nn % LANES outputs: the sums in memory
        for r in range(0, four, 4):
            _pass_rows4(x, i0 + r, xo, xs, w, wo, ws, out, o + r, n_lo, nn, k0, k1, kstep, mode)
        _pass_rows(x, i0, xo, xs, w, wo, ws, out, o, four, g, n_lo, nn, k0, k1, kstep, mode)


@jit
def _group_sums(order, misalign, x, i0, xo, xs, w, wo, ws, k_len, g, nn, work):
    """work[r, n] = the sum for X row i0 + r, output n, in `order` (plain f32 adds); rows
    GROUP.. of `work` hold lane / panel partial sums (lane l from row GROUP * (l + 1))."""
    # run-time ints, not literals: numba compiles a callee once per literal argument value
    zero, one, four = np.int64(0), np.int64(1), np.int64(4)
    store, cont, lane = np.int64(STORE), np.int64(CONTINUE), np.int64(GROUP)
    if order == PANELS:
        _pass(x, i0, xo, xs, w, wo, ws, work, zero, g, nn, zero, min(PANEL_K, k_len), one, store)
        for k0 in range(PANEL_K, k_len, PANEL_K):       # panel sums added left to right
            _pass(x, i0, xo, xs, w, wo, ws, work, lane, g, nn, k0, min(k0 + PANEL_K, k_len), one, store)
            for r in range(g):
                for n in range(nn):
                    work[r, n] = work[r, n] + work[lane + r, n]
        return
    if order == SEQUENTIAL or (order == GEMV and k_len - misalign <= 4):   # plain k order
        _pass(x, i0, xo, xs, w, wo, ws, work, zero, g, nn, zero, k_len, one, store)
        return
    if order == LANES4:
        tail = k_len - k_len % 4
        for l in range(4):
            _pass(x, i0, xo, xs, w, wo, ws, work, lane * (l + 1), g, nn, l, tail, four, store)
    else:               # GEMV: a k-order head folded into lane 0, then the four lanes
        tail = k_len - misalign
        head = (tail - 1) % 4 + 1
        _pass(x, i0, xo, xs, w, wo, ws, work, lane, g, nn, zero, head, one, store)
        _pass(x, i0, xo, xs, w, wo, ws, work, lane, g, nn, head, tail, four, cont)
        for l in range(1, 4):
            _pass(x, i0, xo, xs, w, wo, ws, work, lane * (l + 1), g, nn, head + l, tail, four, store)
    for r in range(g):              # (lane0 + lane2) + (lane1 + lane3), then the tail in k order
        for n in range(nn):
            work[r, n] = ((work[lane + r, n] + work[3 * lane + r, n])
                          + (work[2 * lane + r, n] + work[4 * lane + r, n]))
    _pass(x, i0, xo, xs, w, wo, ws, work, zero, g, nn, tail, k_len, one, cont)


@jit
def _accumulate_row(order, misalign, x_row, xo, xs, w, wo, ws, wn, k_len, nn, sums, acc_row, scale):
    """acc_row[n] = acc_row[n] + sums[n] * scale for n < nn, the update keeping the new value's NaN
    (`add_nan_second`, as A5's elementwise adds; unverified for the accumulators).  A NaN sum is
    recomputed by the definition (`ordered_out`, output n's operand W[k, n] = w[wo + n*wn + k*ws])."""
    nans = 0
    for n in range(nn):      # a count, not an early exit, so that it vectorises
        nans += (sums[n] != sums[n]) + (acc_row[n] != acc_row[n])
    if nans == 0:
        for n in range(nn):
            acc_row[n] = acc_row[n] + sums[n] * scale
        return
    for n in range(nn):
        v = sums[n]
        if math.isnan(v):
            v = ordered_out(order, misalign, x_row, xo, xs, w, wo + n * wn, ws, k_len)
        acc_row[n] = add_nan_second(acc_row[n], v * scale)


@jit
def _update_if_finite(sums, acc, i0, g, nn, scale):
    """acc[i0 + r, n] += sums[r, n] * scale for r < g, n < nn when no sum and no accumulator is
    NaN (then the update is plain f32 arithmetic; True), else nothing (False): the rows' NaN check
    and update in one call, sixteen lanes at a time (LLVM's own vectorised loop takes 32 at a
    time, so BLEN 16's rows of 16 ran one lane at a time)."""
    nv = nn - nn % LANES
    for r in range(g):
        s_row = sums[r]
        a_row = acc[i0 + r]
        for n in range(0, nv, LANES):
            if vany_nan(vload(s_row, n)) or vany_nan(vload(a_row, n)):
                return False
        for n in range(nv, nn):
            if math.isnan(s_row[n]) or math.isnan(a_row[n]):
                return False
    factor = vsplat(scale)
    for r in range(g):
        s_row = sums[r]
        a_row = acc[i0 + r]
        for n in range(0, nv, LANES):
            vstore(a_row, n, vadd(vload(a_row, n), vmul(vload(s_row, n), factor)))
        for n in range(nv, nn):
            a_row[n] = a_row[n] + s_row[n] * scale
    return True


@jit
def accumulate_products(order, misalign, x, xo, xs, w, wo, ws, k_len, nb, nn, acc, scale, work):
    """acc[i, n] = acc[i, n] + (sum_k X[i, k] * W[k, n]) * scale for i < nb, n < nn: every
    output of one instruction, each sum in `order` (k < k_len) with its NaN choice (`_accumulate_row`).
    `work` is f32 scratch of WORK_ROWS rows of at least nn."""
    one = np.int64(1)
    for i0 in range(0, nb, GROUP):
        g = min(GROUP, nb - i0)
        _group_sums(order, misalign, x, i0, xo, xs, w, wo, ws, k_len, g, nn, work)
        if _update_if_finite(work, acc, i0, g, nn, scale):
            continue
        for r in range(g):
            _accumulate_row(order, misalign, x[i0 + r], xo, xs, w, wo, ws, one, k_len, nn, work[r], acc[i0 + r], scale)


# Lane orders (LANES4, GEMV) straight from the rows: each output's four k-interleaved partial sums
# are four consecutive k, so four outputs' lanes are one register of four 4-float loads, and no
# operand is transposed (each element of a transposed gemv's matrix is used once, M_TMM's by B <= 8
# outputs and M_BTMV's by its heads: transposing cost as much as the products).  bench_matrix: M_TMV
# and M_TMM at BLEN 4 went from 2.1-4.9x the limit kernel to 0.4-1.9x (16 scalar sums), and to
# 0.3-1.6x in registers; M_BTMV at MLEN 256 / HLEN 64 from 9-12x (transposed) to 2.4-3.0x
# (matrix.LANE_DOTS_MIN_K: shorter heads stay transposed).

@jit
def lane_split(order, misalign, k_len):
    """(head, r_end, lanes) of a lane order: products k < head summed in k order into lane 0,
    k in [head, r_end) over four k-interleaved lanes combined as (l0 + l2) + (l1 + l3) when `lanes`,
    then k in [r_end, k_len) added in k order (module docstring: LANES4, GEMV)."""
    if order == LANES4:
        return np.int64(0), k_len - k_len % 4, True
    r_end = k_len - misalign
    if r_end <= 4:                       # plain k order over all K
        return k_len, k_len, False
    return (r_end - 1) % 4 + 1, r_end, True


@jit
def _dots8(x, xo, w, wo, wn, n0, g, head, r_end, k_len, lanes, sums):
    """sums[n0 + j] (j < g <= 8) = sum_k x[xo + k] * w[wo + (n0 + j)*wn + k] in a lane order
    (`lane_split`).  The four k-interleaved lanes of four outputs are one register (simd.py:
    `vload_quads`, lane 4j + r = output j's lane r), two registers for eight outputs, so that two
    add chains are in flight; the k-order head (into lane 0) and tail are scalar.  Outputs past g
    repeat the last one (not stored)."""
    o0 = wo + n0 * wn
    o1 = wo + (n0 + min(1, g - 1)) * wn
    o2 = wo + (n0 + min(2, g - 1)) * wn
    o3 = wo + (n0 + min(3, g - 1)) * wn
    o4 = wo + (n0 + min(4, g - 1)) * wn
    o5 = wo + (n0 + min(5, g - 1)) * wn
    o6 = wo + (n0 + min(6, g - 1)) * wn
    o7 = wo + (n0 + min(7, g - 1)) * wn
    h0 = h1 = h2 = h3 = h4 = h5 = h6 = h7 = np.float32(0.0)
    for k in range(head):          # GEMV's head, in k order, into each output's lane 0
        xv = x[xo + k]
        h0 = h0 + xv * w[o0 + k]
        h1 = h1 + xv * w[o1 + k]
        h2 = h2 + xv * w[o2 + k]
        h3 = h3 + xv * w[o3 + k]
        h4 = h4 + xv * w[o4 + k]
        h5 = h5 + xv * w[o5 + k]
        h6 = h6 + xv * w[o6 + k]
        h7 = h7 + xv * w[o7 + k]
    low = vwith_lane(vwith_lane(vwith_lane(vwith_lane(vzero(), 0, h0), 4, h1), 8, h2), 12, h3)
    high = vwith_lane(vwith_lane(vwith_lane(vwith_lane(vzero(), 0, h4), 4, h5), 8, h6), 12, h7)
    for k in range(head, r_end, 4):
        xq = vsplat_quad(x, xo + k)
        low = vadd(low, vmul(xq, vload_quads(w, o0 + k, o1 + k, o2 + k, o3 + k)))
        high = vadd(high, vmul(xq, vload_quads(w, o4 + k, o5 + k, o6 + k, o7 + k)))
    for j in range(g):
        v = low if j < 4 else high
        b = 4 * (j % 4)
        s = vlane(v, b)
        if lanes:
            s = (s + vlane(v, b + 2)) + (vlane(v, b + 1) + vlane(v, b + 3))
        oj = wo + (n0 + j) * wn
        for k in range(r_end, k_len):
            s = s + x[xo + k] * w[oj + k]
        sums[n0 + j] = s


@jit
def accumulate_lane_dots(order, misalign, x, xo, w, wo, wn, k_len, nb, nn, acc, scale, work):
    """`accumulate_products` for the lane orders (LANES4, GEMV) with X rows and each output's matrix
    operand contiguous in k: acc[i, n] += (sum_k x[i, xo + k] * w[wo + n*wn + k]) * scale."""
    head, r_end, lanes = lane_split(order, misalign, k_len)
    sums = work[0]
    one = np.int64(1)
    for i in range(nb):
        x_row = x[i]
        for n0 in range(0, nn, 8):
            _dots8(x_row, xo, w, wo, wn, n0, min(8, nn - n0), head, r_end, k_len, lanes, sums)
        _accumulate_row(order, misalign, x_row, xo, one, w, wo, one, wn, k_len, nn, sums, acc[i], scale)
