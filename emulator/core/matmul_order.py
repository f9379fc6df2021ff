"""f32 summation order of the reference's transposed matrix ops: M_TMM, M_TMV, M_BTMV.

The products are exact in f32 (bf16 x bf16, or bf16 x E4M3*2^k), so a dot product's bits are
decided by the association tree of its f32 additions alone. M_MM, M_MV, M_BMM and M_BTMM add in
plain k order (verified-corrections A4). The three transposed ops do not: the reference hands
libtorch 2.13 (MKL 2024.2) a transposed, narrowed view of the MRAM tile, and MKL runs SIMD
kernels. Their orders are below. Every accumulator starts at +0.0, so all -0.0 products sum to
+0.0, as in MKL.

Below, p[k] is the k-th product. Every `+` is one f32 addition, and brackets give the order.

M_TMM: `X[B,M] @ T.t()[:, c:c+B]`, an sgemm. `tmm_dot` gives output (i, j), the sum of
p[k] = X[i][k] * T[c+j][k]:

    body = M - M % 4
    lane r (r = 0..3) = ((p[r] + p[r+4]) + p[r+8]) + ...  over the k < body with k % 4 == r
    s = (lane0 + lane2) + (lane1 + lane3)
    s = s + p[body] + ... + p[M-1]                        (tail, in k order)

M_TMV: `x[1,M] @ T.t()[:, 0:B]`. M_BTMV: `q_a[1,H] @ T[:, ho:ho+H].t()`. MKL runs both through
its transposed matrix-vector kernel, and `gemv_dot` reproduces it. For K products and a matrix
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
* M_TMM with B != 4. Under MKL_CBWR=COMPATIBLE, MKL picks its sgemm kernel by size: B=8 uses
  the 4-lane order for M >= 17, while B=8 with M <= 16 and B=16 use plain k order, and B=2 uses
  8 lanes. We do not know which kernel the reference host picks, so `tmm_dot` always uses the
  4-lane order above.
* M_TMV/M_BTMV with a number of outputs that is not a multiple of 4 (B % 4 != 0 for M_TMV). MKL
  computes the leftover columns of a group of 4 with an 8-lane variant, and 1..3 outputs split
  k differently again. Neither is modelled: `gemv_dot` applies the same rule to every column.
* M_TMM with M = 1, where libtorch returns the bare product (a -0.0 stays -0.0). We return +0.0.
* NaN payloads. When two NaNs meet, which payload survives depends on each addition's operand
  order inside MKL, which these probes cannot see.
"""

import numpy as np

from .jit import jit


@jit
def tmm_dot(x_row, t_row, m):
    """One M_TMM output: sum_k x_row[k] * t_row[k] (t_row = tile[c + j]) in MKL's sgemm order.

    Four k-interleaved lanes over the first m - m % 4 products, combined as
    (lane0 + lane2) + (lane1 + lane3), then the m % 4 leftover products in k order.
    """
    body = m - m % 4
    l0 = np.float32(0.0)
    l1 = np.float32(0.0)
    l2 = np.float32(0.0)
    l3 = np.float32(0.0)
    for k in range(0, body, 4):
        l0 = l0 + x_row[k] * t_row[k]
        l1 = l1 + x_row[k + 1] * t_row[k + 1]
        l2 = l2 + x_row[k + 2] * t_row[k + 2]
        l3 = l3 + x_row[k + 3] * t_row[k + 3]
    acc = (l0 + l2) + (l1 + l3)
    for k in range(body, m):
        acc = acc + x_row[k] * t_row[k]
    return acc


@jit
def gemv_dot(x_row, x_off, t_row, t_off, k_len, misalign):
    """sum_k x_row[x_off + k] * t_row[t_off + k], k < k_len, in MKL's transposed gemv order.

    `misalign` is the matrix view's base address mod 16 bytes, in floats (0..3). The order
    (module docstring): a sequential head folded into lane 0, four k-interleaved lanes combined
    as (lane0 + lane2) + (lane1 + lane3), then `misalign` trailing products in k order.
    """
    r_end = k_len - misalign
    if r_end <= 4:
        acc = np.float32(0.0)
        for k in range(k_len):
            acc = acc + x_row[x_off + k] * t_row[t_off + k]
        return acc
    head = (r_end - 1) % 4 + 1
    l0 = np.float32(0.0)
    for k in range(head):
        l0 = l0 + x_row[x_off + k] * t_row[t_off + k]
    l1 = np.float32(0.0)
    l2 = np.float32(0.0)
    l3 = np.float32(0.0)
    for k in range(head, r_end, 4):   # r_end - head is a multiple of 4
        l0 = l0 + x_row[x_off + k] * t_row[t_off + k]
        l1 = l1 + x_row[x_off + k + 1] * t_row[t_off + k + 1]
        l2 = l2 + x_row[x_off + k + 2] * t_row[t_off + k + 2]
        l3 = l3 + x_row[x_off + k + 3] * t_row[t_off + k + 3]
    acc = (l0 + l2) + (l1 + l3)
    for k in range(r_end, k_len):
        acc = acc + x_row[x_off + k] * t_row[t_off + k]
    return acc


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
