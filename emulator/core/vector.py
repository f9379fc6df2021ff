"""Vector machine: elementwise ops, reductions, shift, top-k (matrix-vector-machines.md §6).

All arithmetic is f32 with one bf16 rounding when the row is written.  Rows are computed one op per
loop with plain f32 arithmetic (SIMD), lanes with a NaN redone by the lane definitions; V_EXP_V
reads a table of its result for every bf16 input.  NaN results follow the
reference (verified-corrections A1, A5): for two operands the second operand's NaN wins, quieted;
the VF scalar counts as the second operand; V_MAX/MIN_VF return a NaN scalar as is and keep a NaN
lane bit for bit.  V_RED_SUM's order and NaN choice live in numerics.vec_sum_f32 (A3, D3);
numerics.row_sum_f32 runs it at SIMD speed.
"""

import math

import numpy as np

from .common import fail, note_vram_write, vram_row
from .jit import inline_jit, jit
from .numerics import (
    add_nan_second, bf16_bits_from_f32_bits, bf16_row_to_f32, bf16_to_f32, exp_f32, f32_bits, f32_from_bits, f32_row_to_bf16, f32_to_bf16_reg,
    fmax_num, quiet, row_sum_bf16, row_sum_f32,
)
from .state import (
    E_FP_REGISTER, E_FPSRAM_RANGE, E_INTSRAM_RANGE, E_MAP_WINDOW, E_TOPK_POLICY, P_HLEN, P_VLEN,
    P_VRAM_DEPTH, V_MASK, VRAM_ROWS_USED,
)
from .common import u32
from .simd import LANES, vadd, vany_nan, vload_bf16, vmul, vsplat, vstore, vsub
from ..tensors import f32_to_bf16_bits

# The instruction kernels (v_elementwise .. v_topk) are `inline_jit` for the reason given in
# matrix.py: compiled once, inside the run loop.

# Elementwise operation codes (internal to this module and the dispatcher).
EW_ADD, EW_SUB, EW_SUB_REV, EW_MUL, EW_MAX, EW_MIN, EW_EXP, EW_RECI = range(8)

EXP_CLAMP = np.float32(88.0)
FP_SRAM_SIZE = 1024
INT_SRAM_SIZE = 1024


@jit
def _binary(code, a, b):
    """One lane of a binary op, NaN rules spelled out (the definition; `_lanes` computes rows)."""
    if code == EW_MAX or code == EW_MIN:
        if math.isnan(b):
            return b
        if math.isnan(a):
            return a
        if code == EW_MAX:
            return b if a < b else a
        return b if a > b else a
    if math.isnan(b):
        r = quiet(b)
    elif math.isnan(a):
        r = quiet(a)
    elif code == EW_ADD:
        r = np.float32(a + b)
    elif code == EW_MUL:
        r = np.float32(a * b)
    else:
        r = np.float32(a - b)
    if code == EW_SUB_REV:  # scalar - tensor is computed as -(tensor - scalar): NaN signs flip too
        r = f32_from_bits(f32_bits(r) ^ 0x80000000)
    return r


@jit
def _unary(code, a):
    """One lane of V_EXP_V / V_RECI_V (the definition; V_EXP_V's rows use `EXP_OF_BF16`)."""
    if code == EW_EXP:
        if math.isnan(a):
            return quiet(a)
        c = min(max(a, -EXP_CLAMP), EXP_CLAMP)
        return exp_f32(c)
    # EW_RECI
    if math.isnan(a):
        return quiet(a)
    return np.float32(np.float32(1.0) / a)


def _exp_of_bf16() -> np.ndarray:
    """V_EXP_V's f32 result for every bf16 input, indexed by the input's bits: `_unary(EW_EXP, x)`.

    V_EXP_V only ever sees bf16 values (it reads a VRAM row), so this table *is* the function, and
    a row becomes one table load per lane instead of one libm call.  It is built in Python with the
    same libm exp that numerics.exp_f32 calls (math.exp, ~1 ms at import: only the 8290 inputs
    with 2^-26 <= |x| <= 88 need it; smaller ones give 1.0, larger ones exp(+-88)), and
    tests/test_vector_kernels.py checks it against `_unary` on all 65536 inputs.
    """
    bits = np.arange(1 << 16, dtype=np.uint32)
    x = (bits << 16).view(np.float32)
    mag = bits & 0x7FFF
    smallest, clamp = 0x3280, 0x42B0            # bf16 bits of 2^-26 and of EXP_CLAMP (88.0)
    out = np.ones(1 << 16, dtype=np.float32)     # |x| < 2^-26: exp(x) rounds to 1.0 in f32
    mid = (mag >= smallest) & (mag <= clamp)
    out[mid] = np.array(list(map(math.exp, x[mid].tolist())), dtype=np.float64).astype(np.float32)
    big = (mag > clamp) & (mag <= 0x7F80)       # clamped to +-88, infinities included
    out[big] = np.where(x[big] > 0, np.float32(math.exp(88.0)), np.float32(math.exp(-88.0)))
    nan = mag > 0x7F80
    out.view(np.uint32)[nan] = (bits[nan] << 16) | 0x400000   # quieted, sign and payload kept
    return out


EXP_OF_BF16 = _exp_of_bf16()
# What V_EXP_V writes back for every bf16 input: the VRAM cast of the table above (the cast is a
# function of the f32 result alone), so an unmasked row is one table load per lane, bf16 to bf16.
# A global array: numba compiles it into the run loop as a constant.
EXP_BF16_OF_BF16 = f32_to_bf16_bits(EXP_OF_BF16)


@jit
def _exp_row(src, dst, n, masked, h, vmask):
    """V_EXP_V from bf16 row `src` to bf16 row `dst` (may be the same row: each lane is read before
    it is written): `EXP_BF16_OF_BF16` per lane; masked, the unselected heads (and the lanes past the
    last whole head) take the clamped input instead, a reference quirk (`v_elementwise`)."""
    if not masked:
        for i in range(n):
            dst[i] = EXP_BF16_OF_BF16[src[i]]
        return
    heads = n // h
    for head in range((n + h - 1) // h):
        # the reference tests bit (head mod 32) of the 32-bit mask: its shift wraps
        selected = head < heads and ((vmask >> (head % 32)) & 1) == 1
        for i in range(head * h, min(head * h + h, n)):
            if selected:
                dst[i] = EXP_BF16_OF_BF16[src[i]]
            else:
                dst[i] = bf16_bits_from_f32_bits(f32_bits(_clamp_exp_input(bf16_to_f32(src[i]))))


@jit
def _clamp_exp_input(a):
    if math.isnan(a):
        return a
    return min(max(a, -EXP_CLAMP), EXP_CLAMP)


@jit
def _lanes(code, a, b, out, n):
    """out[i] = op(a[i], b[i]) (or op(a[i])) for i < n: one loop per op with plain f32 arithmetic,
    so the lanes run side by side (SIMD), then any lane with a NaN operand or result redone by the
    definitions `_binary` / `_unary`, which choose the NaN.  Lanes without NaN get the same bits
    either way: the same IEEE f32 operation.  (V_EXP_V has rows of its own: `_exp_row`.)"""
    if code == EW_ADD:
        for i in range(n):
            out[i] = a[i] + b[i]
    elif code == EW_SUB:
        for i in range(n):
            out[i] = a[i] - b[i]
    elif code == EW_SUB_REV:
        for i in range(n):
            out[i] = -(a[i] - b[i])
    elif code == EW_MUL:
        for i in range(n):
            out[i] = a[i] * b[i]
    elif code == EW_MAX:
        for i in range(n):
            out[i] = b[i] if a[i] < b[i] else a[i]
    elif code == EW_MIN:
        for i in range(n):
            out[i] = b[i] if a[i] > b[i] else a[i]
    else:   # EW_RECI: a NaN a gives a NaN out
        for i in range(n):
            out[i] = np.float32(1.0) / a[i]
        b = out
    nans = 0
    for i in range(n):      # a count, not an early exit, so that it vectorises
        nans += (a[i] != a[i]) + (b[i] != b[i]) + (out[i] != out[i])
    if nans == 0:
        return
    for i in range(n):
        if math.isnan(a[i]) or math.isnan(b[i]) or math.isnan(out[i]):
            out[i] = _unary(code, a[i]) if code == EW_RECI else _binary(code, a[i], b[i])


@jit
def _lanes_bf16(code, src_a, src_b, f, is_vf, out, n):
    """`_lanes` for V_ADD/SUB/MUL (VV, VF) straight from the bf16 rows, 16 lanes per register
    (simd.py): out[i] = a[i] op b[i] (b[i] = f for VF), one pass instead of `_lanes`' five.  Only
    when no operand is NaN, which it checks on the way (returns False, `out` then garbage, and the
    caller takes `_lanes`, whose definitions choose the NaN; the choice never rests on how the
    hardware propagates NaNs): every lane is then the plain f32 operation, as in `_lanes` (a NaN
    result of non-NaN operands is the operation's own default NaN there too).  n must be a
    multiple of 16."""
    if math.isnan(f):
        return False
    fv = vsplat(f)
    nan = False
    for i in range(0, n, LANES):
        a = vload_bf16(src_a, i)
        b = fv if is_vf else vload_bf16(src_b, i)
        nan = nan or vany_nan(a) or vany_nan(b)
        if code == EW_ADD:
            r = vadd(a, b)
        elif code == EW_SUB:
            r = vsub(a, b)
        else:
            r = vmul(a, b)
        vstore(out, i, r)
    return not nan


@jit
def fp_reg(fpr, idx, err, pc):
    """Read FP register idx as f32 (the register file has 8 entries; 8-15 abort)."""
    if idx >= 8:
        fail(err, E_FP_REGISTER, pc, idx)
        return np.float32(np.nan), False
    return bf16_to_f32(fpr[idx]), True


@inline_jit
def v_elementwise(code, masked, rd, rs1, rs2, is_vf, vram, fpr, gp, ctrl, params, rows, err, pc):
    """V_ADD/SUB/MUL (VV, VF), V_MAX/MIN_VF, V_EXP_V, V_RECI_V; masked heads when rmask != 0.

    Unmasked lanes of a masked op take vs1 (not the old vd); masked V_EXP_V writes the clamped
    input to the unmasked lanes (a reference quirk, `_exp_row`).
    """
    vlen = params[P_VLEN]
    depth = params[P_VRAM_DEPTH]
    a = rows[0]
    b = rows[1]
    out = rows[2]
    ra = vram_row(gp[rs1], vlen, depth, err, pc)
    if ra < 0:
        return False
    if code == EW_EXP:
        rdst = vram_row(gp[rd], vlen, depth, err, pc)
        if rdst < 0:
            return False
        _exp_row(vram[ra], vram[rdst], vlen, masked, params[P_HLEN], ctrl[V_MASK])
        note_vram_write(ctrl, rdst, VRAM_ROWS_USED)
        return True
    unary = code == EW_RECI
    f = np.float32(0.0)
    rb = ra
    if is_vf:
        f, ok = fp_reg(fpr, rs2, err, pc)
        if not ok:
            return False
    elif not unary:
        rb = vram_row(gp[rs2], vlen, depth, err, pc)
        if rb < 0:
            return False
    rdst = vram_row(gp[rd], vlen, depth, err, pc)
    if rdst < 0:
        return False
    if (not masked and vlen % LANES == 0 and (code == EW_ADD or code == EW_SUB or code == EW_MUL)
            and _lanes_bf16(code, vram[ra], vram[rb], f, is_vf, out, vlen)):
        f32_row_to_bf16(out[:vlen], vram[rdst])
        note_vram_write(ctrl, rdst, VRAM_ROWS_USED)
        return True
    bf16_row_to_f32(vram[ra], a)
    if is_vf:
        for i in range(vlen):
            b[i] = f
    elif not unary:
        bf16_row_to_f32(vram[rb], b)
    _lanes(code, a, b, out, vlen)
    if masked:   # unselected heads (and lanes past the last whole head) keep vs1
        h = params[P_HLEN]
        heads = vlen // h
        vmask = ctrl[V_MASK]
        for head in range((vlen + h - 1) // h):
            # the reference tests bit (head mod 32) of the 32-bit mask: its shift wraps
            if head < heads and ((vmask >> (head % 32)) & 1) == 1:
                continue
            for i in range(head * h, min(head * h + h, vlen)):
                out[i] = a[i]
    f32_row_to_bf16(out[:vlen], vram[rdst])
    note_vram_write(ctrl, rdst, VRAM_ROWS_USED)
    return True


@jit
def _reduction_operands(rd, rs1, fpr, gp, params, err, pc):
    """V_RED_*: fp[rd] (read before the VRAM row, as the reference) and vs1's VRAM row index, ok."""
    f, ok = fp_reg(fpr, rd, err, pc)
    if not ok:
        return f, -1, False
    r = vram_row(gp[rs1], params[P_VLEN], params[P_VRAM_DEPTH], err, pc)
    return f, r, r >= 0


@inline_jit
def v_red_sum(masked, rd, rs1, vram, fpr, gp, ctrl, params, rows, err, pc):
    """fp[rd] = bf16(fp[rd] + sum(vs1)); the masked form counts each masked head HLEN times."""
    f, r, ok = _reduction_operands(rd, rs1, fpr, gp, params, err, pc)
    if not ok:
        return False
    vlen = params[P_VLEN]
    a = rows[0]
    if masked:
        bf16_row_to_f32(vram[r], a)
        h = params[P_HLEN]
        heads = vlen // h
        vmask = ctrl[V_MASK]
        tmp = rows[1]
        for i in range(vlen):
            tmp[i] = a[i]
        for head in range(heads):
            if ((vmask >> (head % 32)) & 1) == 1:
                s = row_sum_f32(a, head * h, h, rows[2])
                for i in range(head * h, head * h + h):
                    tmp[i] = s
        val = row_sum_f32(tmp, np.int64(0), vlen, rows[2])
    else:
        val = row_sum_bf16(vram[r], vlen, a, rows[2])
    fpr[rd] = f32_to_bf16_reg(add_nan_second(f, val))  # f + sum keeps the sum's NaN (corrections D3)
    return True


@inline_jit
def v_red_max(rd, rs1, vram, fpr, gp, params, rows, err, pc):
    """fp[rd] = bf16(maxNum(max(vs1), fp[rd])); a row holding a NaN is ignored; the mask has no effect."""
    f, r, ok = _reduction_operands(rd, rs1, fpr, gp, params, err, pc)
    if not ok:
        return False
    bf16_row_to_f32(vram[r], rows[0])
    fpr[rd] = f32_to_bf16_reg(fmax_num(_row_max(rows[0], params[P_VLEN]), f))
    return True


@jit
def _row_max(a, n):
    """max(a[:n]) as the reference's vectorised max: a NaN lane makes it NaN (then maxNum ignores
    the row); on ties (+0/-0) the later lane wins.

    At SIMD speed, in one pass: the max is taken over integer keys that order floats like `<` does
    except that -0 < +0 (a vectorisable integer max), and the last zero lane's index is kept (an
    integer max too): a zero maximum takes that lane's sign, any other maximum is its own bits.
    """
    bits = a.view(np.int32)
    nans = 0
    top = np.int32(-2147483648)
    last_zero = -1
    for i in range(n):
        b = bits[i]
        nans += (b & 0x7FFFFFFF) > 0x7F800000
        top = max(top, b if b >= 0 else b ^ 0x7FFFFFFF)
        last_zero = max(last_zero, i if (b & 0x7FFFFFFF) == 0 else -1)
    if nans:
        return np.float32(np.nan)
    if top == 0 or top == -1:     # the keys of +0 and -0
        return a[last_zero]
    return f32_from_bits(top if top >= 0 else top ^ 0x7FFFFFFF)


@inline_jit
def v_shift(rd, rs1, rs2, vram, gp, ctrl, params, err, pc):
    """V_SHFT_V: vd[i] = vs1[i - s] for i >= s else +0, s = gp[rs2] (towards higher lanes).

    Lanes go from the top down, so vd may be vs1: lane i - s is read before it is overwritten."""
    vlen = params[P_VLEN]
    depth = params[P_VRAM_DEPTH]
    ra = vram_row(gp[rs1], vlen, depth, err, pc)
    if ra < 0:
        return False
    rdst = vram_row(gp[rd], vlen, depth, err, pc)
    if rdst < 0:
        return False
    s = gp[rs2]
    for i in range(vlen - 1, -1, -1):
        vram[rdst, i] = vram[ra, i - s] if i >= s else 0
    note_vram_write(ctrl, rdst, VRAM_ROWS_USED)
    return True


@inline_jit
def s_map_v_fp(rd, rs1, imm, vram, fpsram, gp, ctrl, params, err, pc):
    """S_MAP_V_FP: VRAM row gp[rd] <- FP_SRAM[gp[rs1]+imm .. +VLEN) (bf16, exact)."""
    vlen = params[P_VLEN]
    start = u32(gp[rs1] + imm)
    if start + vlen > FP_SRAM_SIZE:
        return fail(err, E_MAP_WINDOW, pc, start, start + vlen, FP_SRAM_SIZE)
    r = vram_row(gp[rd], vlen, params[P_VRAM_DEPTH], err, pc)
    if r < 0:
        return False
    for i in range(vlen):
        vram[r, i] = fpsram[start + i]
    note_vram_write(ctrl, r, VRAM_ROWS_USED)
    return True


@jit
def _total_order_key(x):
    """An integer that orders f32 values by IEEE totalOrder (so +0 ranks above -0)."""
    u = f32_bits(x)
    if u & 0x80000000:
        return -(u & 0x7FFFFFFF) - 1
    return u


@inline_jit
def v_topk(policy, rd, rs1, rs2, vram, fpsram, intsram, gp, params, rows, err, pc):
    """Routed-MoE router: top-K of E logits, softmax over the selected ones (sequential f32).

    Policy 0: E=32, K=4; policy 1: E=128, K=8.  NaN logits count as -inf; ties go to the lower
    index; weights are 0 when the denominator is not finite and positive.  Not masked.

    Without allocation: the logits, the selected ones and their exps live in `rows` past row 0
    (>= 26 rows of >= 32 lanes); a selected logit is marked by a NaN (no logit is NaN any more).
    The SRAM range checks come before the selection (which has no effects): the same aborts.
    """
    if policy == 0:
        n_exp, k = 32, 4
    elif policy == 1:
        n_exp, k = 128, 8
    else:
        return fail(err, E_TOPK_POLICY, pc, policy)
    vlen = params[P_VLEN]
    depth = params[P_VRAM_DEPTH]
    src = gp[rs1]
    width = rows.shape[1]
    flat = rows.reshape((rows.shape[0] * width,))
    logits = flat[width:width + 128]
    picked = flat[width + 128:width + 136]
    ex = flat[width + 136:width + 144]
    nrows = (n_exp + vlen - 1) // vlen
    a = rows[0]
    for j in range(nrows):
        r = vram_row(u32(src + j * vlen), vlen, depth, err, pc)
        if r < 0:
            return False
        bf16_row_to_f32(vram[r], a)
        for i in range(vlen):
            e = j * vlen + i
            if e < n_exp:
                logits[e] = -np.inf if math.isnan(a[i]) else a[i]
    fp_base = gp[rd]
    int_base = gp[rs2]
    for slot in range(k):
        if u32(int_base + slot) >= INT_SRAM_SIZE:
            return fail(err, E_INTSRAM_RANGE, pc, u32(int_base + slot), INT_SRAM_SIZE)
        if u32(fp_base + slot) >= FP_SRAM_SIZE:
            return fail(err, E_FPSRAM_RANGE, pc, u32(fp_base + slot), FP_SRAM_SIZE)
    for slot in range(k):
        best = -1
        best_key = np.int64(0)
        for e in range(n_exp):
            if math.isnan(logits[e]):
                continue
            key = _total_order_key(logits[e])
            if best < 0 or key > best_key:
                best = e
                best_key = key
        picked[slot] = logits[best]
        logits[best] = np.nan
        intsram[u32(int_base + slot)] = best
    mx = picked[0]
    for slot in range(k):
        mx = max(mx, picked[slot])
    d = np.float32(0.0)
    for slot in range(k):
        ex[slot] = exp_f32(np.float32(picked[slot] - mx))
        d = np.float32(d + ex[slot])
    for slot in range(k):
        w = np.float32(ex[slot] / d) if (math.isfinite(d) and d > 0) else np.float32(0.0)
        fpsram[u32(fp_base + slot)] = f32_to_bf16_reg(w)
    return True
