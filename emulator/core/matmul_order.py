"""f32 summation order and NaN choice of the reference's matrix ops: the one place for them.

The products are exact in f32 (bf16 x bf16, or bf16 x E4M3*2^k), so a dot product's bits are
decided by the association tree of its f32 additions and, when both operands of an addition are
NaN, by which operand's payload survives (x86 keeps the *first* source operand's NaN, quieted;
the library kernel decides which operand comes first).  The reference hands libtorch 2.13
(MKL 2024.2) one matmul per instruction, and MKL picks its kernel by shape, so the order depends
on BLEN and K (verified-corrections A4 and D1, which wins where they differ).

Orders are chosen once per machine, by `sgemm_orders(BLEN)` when the core's parameters are
built (emulator/runner.hardware_params -> params[P_MM_ORDER], params[P_TMM_ORDER]); the kernels
branch on that code once per output, never per product.

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
from .numerics import add_nan_first, mul_nan_first

# Order codes of the plain (M_MM family) and transposed (M_TMM) sgemm calls; `sgemm_orders`
# picks them per machine, the kernels below implement them.
SEQUENTIAL, LANES4, PANELS = 0, 1, 2
PANEL_K = 128               # D1: at BLEN >= 16 MKL sums k in panels of 128
SMALL_KERNEL_MAX_BLEN = 8   # D1: BLEN <= 8 takes the small-matrix kernels


def sgemm_orders(blen: int) -> tuple[int, int]:
    """(order of M_MM / M_MV / M_BMM / M_BTMM, order of M_TMM) for a machine with this BLEN."""
    if blen > SMALL_KERNEL_MAX_BLEN:
        return PANELS, PANELS
    return SEQUENTIAL, LANES4


# Each dot product below reads x[xo + k*xs] and w[wo + k*ws], k < n (1-D views, so one kernel
# serves rows, columns and interleaved heads).  With `careful` False it adds plainly, which gives
# the exact bits whenever the result is finite (the tree is the same); a NaN result is then
# recomputed with `careful` True, which applies the order's NaN choice explicitly.


@jit
def _product(x, xo, xs, w, wo, ws, k, careful):
    if careful:
        return mul_nan_first(x[xo + k * xs], w[wo + k * ws])
    return x[xo + k * xs] * w[wo + k * ws]


@jit
def sequential_dot(x, xo, xs, w, wo, ws, n, careful):
    """SEQUENTIAL: k order from +0; the earlier NaN is kept, except that a NaN product at
    k = 0 (mod 8) replaces it (D1, M_MM at BLEN <= 8)."""
    acc = np.float32(0.0)
    for k in range(n):
        p = _product(x, xo, xs, w, wo, ws, k, careful)
        if not careful:
            acc = acc + p
        elif k % 8 == 0:
            acc = add_nan_first(p, acc)
        else:
            acc = add_nan_first(acc, p)
    return acc


@jit
def panels_dot(x, xo, xs, w, wo, ws, n, careful):
    """PANELS: k in panels of 128, each summed from +0 with the later NaN winning; the panel sums
    are added left to right, the earlier panel's NaN winning (D1, BLEN >= 16)."""
    total = np.float32(0.0)
    for k0 in range(0, n, PANEL_K):
        s = np.float32(0.0)
        for k in range(k0, min(k0 + PANEL_K, n)):
            p = _product(x, xo, xs, w, wo, ws, k, careful)
            s = add_nan_first(p, s) if careful else s + p
        if k0 == 0:
            total = s
        else:
            total = add_nan_first(total, s) if careful else total + s
    return total


@jit
def lanes4_dot(x, xo, xs, w, wo, ws, n, careful):
    """LANES4 (module docstring): four k-interleaved lanes over the first n - n % 4 products,
    combined as (l0 + l2) + (l1 + l3), then the leftover products in k order.  NaN: the earlier
    one inside a lane and in the tail, lanes by priority l0 > l2 > l1 > l3 (D1)."""
    body = n - n % 4
    l0 = np.float32(0.0)
    l1 = np.float32(0.0)
    l2 = np.float32(0.0)
    l3 = np.float32(0.0)
    if careful:
        for k in range(0, body, 4):
            l0 = add_nan_first(l0, _product(x, xo, xs, w, wo, ws, k, True))
            l1 = add_nan_first(l1, _product(x, xo, xs, w, wo, ws, k + 1, True))
            l2 = add_nan_first(l2, _product(x, xo, xs, w, wo, ws, k + 2, True))
            l3 = add_nan_first(l3, _product(x, xo, xs, w, wo, ws, k + 3, True))
        acc = add_nan_first(add_nan_first(l0, l2), add_nan_first(l1, l3))
        for k in range(body, n):
            acc = add_nan_first(acc, _product(x, xo, xs, w, wo, ws, k, True))
        return acc
    for k in range(0, body, 4):
        l0 = l0 + _product(x, xo, xs, w, wo, ws, k, False)
        l1 = l1 + _product(x, xo, xs, w, wo, ws, k + 1, False)
        l2 = l2 + _product(x, xo, xs, w, wo, ws, k + 2, False)
        l3 = l3 + _product(x, xo, xs, w, wo, ws, k + 3, False)
    acc = (l0 + l2) + (l1 + l3)
    for k in range(body, n):
        acc = acc + _product(x, xo, xs, w, wo, ws, k, False)
    return acc


@jit
def ordered_dot(order, x, xo, xs, w, wo, ws, n, careful):
    if order == PANELS:
        return panels_dot(x, xo, xs, w, wo, ws, n, careful)
    if order == LANES4:
        return lanes4_dot(x, xo, xs, w, wo, ws, n, careful)
    return sequential_dot(x, xo, xs, w, wo, ws, n, careful)


@jit
def sgemm_dot(order, x, xo, xs, w, wo, ws, n):
    """One output of the sgemm family in the machine's `order`, NaN choice included."""
    r = ordered_dot(order, x, xo, xs, w, wo, ws, n, False)
    if math.isnan(r):
        r = ordered_dot(order, x, xo, xs, w, wo, ws, n, True)
    return r


@jit
def tmm_dot(x_row, t_row, m):
    """One M_TMM output at BLEN <= 8: sum_k x_row[k] * t_row[k] (t_row = tile[c + j]), LANES4."""
    return sgemm_dot(LANES4, x_row, 0, 1, t_row, 0, 1, m)


@jit
def _gemv(x_row, x_off, t_row, t_off, k_len, misalign, careful):
    r_end = k_len - misalign
    if r_end <= 4:
        acc = np.float32(0.0)
        for k in range(k_len):
            p = _product(x_row, x_off, 1, t_row, t_off, 1, k, careful)
            acc = add_nan_first(acc, p) if careful else acc + p
        return acc
    head = (r_end - 1) % 4 + 1
    l0 = np.float32(0.0)
    for k in range(head):
        p = _product(x_row, x_off, 1, t_row, t_off, 1, k, careful)
        l0 = add_nan_first(l0, p) if careful else l0 + p
    l1 = np.float32(0.0)
    l2 = np.float32(0.0)
    l3 = np.float32(0.0)
    for k in range(head, r_end, 4):   # r_end - head is a multiple of 4
        p0 = _product(x_row, x_off, 1, t_row, t_off, 1, k, careful)
        p1 = _product(x_row, x_off, 1, t_row, t_off, 1, k + 1, careful)
        p2 = _product(x_row, x_off, 1, t_row, t_off, 1, k + 2, careful)
        p3 = _product(x_row, x_off, 1, t_row, t_off, 1, k + 3, careful)
        if careful:
            l0 = add_nan_first(l0, p0)
            l1 = add_nan_first(l1, p1)
            l2 = add_nan_first(l2, p2)
            l3 = add_nan_first(l3, p3)
        else:
            l0 = l0 + p0
            l1 = l1 + p1
            l2 = l2 + p2
            l3 = l3 + p3
    if careful:
        acc = add_nan_first(add_nan_first(l0, l2), add_nan_first(l1, l3))
    else:
        acc = (l0 + l2) + (l1 + l3)
    for k in range(r_end, k_len):
        p = _product(x_row, x_off, 1, t_row, t_off, 1, k, careful)
        acc = add_nan_first(acc, p) if careful else acc + p
    return acc


@jit
def gemv_dot(x_row, x_off, t_row, t_off, k_len, misalign):
    """sum_k x_row[x_off + k] * t_row[t_off + k], k < k_len, in MKL's transposed gemv order.

    `misalign` is the matrix view's base address mod 16 bytes, in floats (0..3). The order
    (module docstring): a sequential head folded into lane 0, four k-interleaved lanes combined
    as (lane0 + lane2) + (lane1 + lane3), then `misalign` trailing products in k order.  NaN
    choice by analogy with LANES4 (unverified).
    """
    r = _gemv(x_row, x_off, t_row, t_off, k_len, misalign, False)
    if math.isnan(r):
        r = _gemv(x_row, x_off, t_row, t_off, k_len, misalign, True)
    return r


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
