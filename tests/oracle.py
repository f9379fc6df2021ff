"""A deliberately simple plain-numpy model of the PLENA machine: the test oracle.

Written from the reference digests in /work/shared/reference (matrix-vector-machines.md,
scalar-control-timing-profilers.md §2-4, hbm-dma-mx-formats.md §1-2, verified-corrections.md),
not from `emulator/`: whole-row numpy float32 arithmetic, `ml_dtypes.bfloat16` for every bf16
rounding, one small function per opcode, and each opcode's closed-form cycle cost taken from the
digest tables (scalar-control §4.3, matrix-vector §10) rather than from isa_specs' latency strings.
Only the opcode numbers and field positions come from isa_specs (the project's one place for them).

Scope: data semantics.  The summation orders and NaN choices that the reference runs pin down
(verified-corrections A3-A5, D1-D3) are modelled here too, written out product by product in
plain Python: M_MM / M_TMM (`reference_dot`, by BLEN and K), V_RED_SUM (`reference_row_sum`),
the scalar FP ops and the accumulator updates.  M_MV, M_TMV, M_BMM, M_BTMM and M_BTMV use
numpy's matmul, so tests feed them data where order cannot matter (integer-valued inputs).
DMA cycles come from the HBM timing model and have no closed form; `cost()` returns None for them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import ml_dtypes
import numpy as np

from isa_specs import load_isa

MASK32 = 0xFFFFFFFF
SRAM_ENTRIES = 1024          # FP SRAM and INT SRAM entries
FP_REGISTERS = 8
MX_BLOCK = 8                 # elements per E8M0 scale (MXFP8)
HBM_BLOCK = 64               # the DMA reads scales one 64-byte block at a time
EXP_CLAMP = 88.0
BMM_SCALE = np.float32(0.25)  # the broadcast matmuls' fixed scale register
STORE_EPS = np.float32(1e-9)  # the store quantiser adds 1e-9 before each log2

F32 = np.float32
BF16 = ml_dtypes.bfloat16


class OracleAbort(Exception):
    """The program does something the reference aborts on; `kind` uses the emulator's names."""

    def __init__(self, kind: str, why: str = ""):
        super().__init__(f"{kind}: {why}")
        self.kind = kind


# =============================================================================== number formats

def bf16_bits(values) -> np.ndarray:
    """f32 -> bf16 bits, round to nearest even (what every VRAM write does for non-NaN values)."""
    return np.asarray(values, dtype=F32).astype(BF16).view(np.uint16)


def bf16_values(bits) -> np.ndarray:
    """bf16 bits -> exact f32 values."""
    return np.asarray(bits, dtype=np.uint16).view(BF16).astype(F32)


def reg_bf16_bits(value) -> int:
    """f32 -> bf16 bits for an FP register or FP SRAM entry (half::bf16::from_f32): RNE, and a NaN
    keeps its sign and top payload bits with the quiet bit set (scalar-control §2.3)."""
    x = F32(value)
    if np.isnan(x):
        return int(((int(np.array(x).view(np.uint32)) >> 16) | 0x0040) & 0xFFFF)
    return int(bf16_bits(x))


def f16_to_bf16_bits(values) -> np.ndarray:
    """FP SRAM preload: IEEE half -> f32 (exact) -> bf16 (RNE)."""
    return bf16_bits(np.asarray(values, dtype=np.float16).astype(F32))


def exp_f32(x) -> np.ndarray:
    """expf as the reference computes it: exp in f64, rounded once to f32 (verified-corrections B)."""
    return np.exp(np.asarray(x, dtype=F32).astype(np.float64)).astype(F32)


def exact_sum(x) -> np.float32:
    """The sum of f32 values, computed exactly and rounded once (equal to any order when exact)."""
    return F32(math.fsum(float(v) for v in np.asarray(x, dtype=F32)))


def e4m3_value(code: int) -> float:
    """E4M3 element -> value, as the emulator decodes it (hbm-dma §2.2): no FN variant, and the
    exponent-0 codes are (m/8)·2^-7 (half of IEEE's subnormal value)."""
    sign = -1.0 if code & 0x80 else 1.0
    e, m = (code >> 3) & 0xF, code & 0x7
    if e == 15:
        return sign * math.inf if m == 0 else math.nan
    if e == 0:
        return sign * (m / 8) * 2.0 ** -7
    return sign * (1 + m / 8) * 2.0 ** (e - 7)


def e8m0_value(code: int) -> float:
    """E8M0 scale -> value: 0 is 0.0 (not 2^-127), 255 is +inf, else 2^(code-127) (hbm-dma §2.3)."""
    if code == 0:
        return 0.0
    if code == 255:
        return math.inf
    return 2.0 ** (code - 127)


E4M3 = np.array([e4m3_value(c) for c in range(256)], dtype=F32)
E8M0 = np.array([e8m0_value(c) for c in range(256)], dtype=F32)


def dequantize(elements, scales) -> np.ndarray:
    """MXFP8 bytes -> f32: element × its block's scale, in f32."""
    elements = np.asarray(elements, dtype=np.uint8)
    scales = np.asarray(scales, dtype=np.uint8)
    block_scale = np.repeat(E8M0[scales], MX_BLOCK, axis=-1)[..., : elements.shape[-1]]
    with np.errstate(invalid="ignore", over="ignore"):
        return (E4M3[elements] * block_scale).astype(F32)


def u32_saturate(x: float) -> int:
    """Rust `f as u32`: NaN and negatives -> 0, too large -> u32::MAX, else truncation."""
    if math.isnan(x) or x <= 0:
        return 0
    if x >= MASK32:
        return MASK32
    return int(x)


def hw_round(x: float) -> int:
    """The store quantiser's HWROUND (hbm-dma §2.4): keep two fraction bits (truncating the rest),
    then round half to even on a u32 (so +1 on u32::MAX wraps to 0)."""
    if math.isnan(x) or math.isinf(x):
        whole, frac = x, math.nan             # no fraction to compare: the tie branch decides
    else:
        t = math.floor(x * 4) / 4
        whole = math.floor(t)
        frac = t - whole
    base = u32_saturate(whole)
    if frac > 0.5:
        return (base + 1) & MASK32
    if frac < 0.5:
        return base
    return base if base % 2 == 0 else (base + 1) & MASK32


def floor_log2_f32(t) -> int:
    """floor(log2_f32(t)) cast like Rust's saturating `as i32` (the digest's recipe: a correctly
    rounded f32 log2, here computed in f64 and rounded to f32)."""
    t = float(t)
    if math.isnan(t):
        return 0
    if t == math.inf:
        return 2**31 - 1
    if t <= 0:
        return -(2**31)
    return math.floor(F32(math.log2(t)))


def e4m3_encode(y) -> int:
    """One element of the store quantiser (Rust minifloat_ieee_quantize_hardware, E4M3, bias 7):
    the mantissa saturates at 7 instead of carrying into the exponent."""
    y = F32(y)
    if y == 0:
        return 0x00
    sign = 0x80 if y < 0 else 0x00
    a = abs(y)
    e = floor_log2_f32(F32(a + STORE_EPS))
    overflow = e > 7
    e = min(max(e, -7), 7)
    mant = F32(a / F32(2.0 ** e))
    if e != -7:
        q = hw_round(float(F32((mant - F32(1)) * F32(8))))
    else:
        q = hw_round(float(F32(mant * F32(8))))
    q = min(max(q, 0), 7)
    if overflow:
        q = 7
    return sign | ((e + 7) << 3) | q


def mx_quantize_row(values, block: int = MX_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """H_STORE_V's quantiser (hbm-dma §2.4) for one row: (element bytes, scale bytes)."""
    values = np.asarray(values, dtype=F32)
    n_blocks = len(values) // block
    elements = np.zeros(n_blocks * block, dtype=np.uint8)
    scales = np.zeros(n_blocks, dtype=np.uint8)
    for b in range(n_blocks):
        chunk = values[b * block:(b + 1) * block]
        finite_abs = [abs(float(v)) for v in chunk if not math.isnan(v)]   # f32::max skips NaN
        max_abs = max(finite_abs, default=0.0)
        if max_abs == 0.0:
            continue                       # scale 0, elements 0
        e = min(max(floor_log2_f32(F32(F32(max_abs) + STORE_EPS)), -127), 127)
        scales[b] = e + 127
        for i, x in enumerate(chunk):
            y = F32(0) if x == 0 else F32(x / F32(2.0 ** e))
            elements[b * block + i] = e4m3_encode(y)
    return elements, scales


# =============================================================================== NaN choice

def f32_bits_of(x) -> int:
    return int(np.array(x, dtype=F32).view(np.uint32))


def f32_of_bits(u: int) -> np.float32:
    return np.array(u & MASK32, dtype=np.uint32).view(F32)[()]


def quieted(x) -> np.float32:
    """The NaN x86 returns for a NaN operand: same sign and payload, quiet bit set."""
    return f32_of_bits(f32_bits_of(x) | 0x400000)


def first_nan(a, b, fn) -> np.float32:
    """fn(a, b) in f32 where a NaN operand comes out quieted, the first one if both are NaN
    (x86's rule for its first source operand; which operand is first is each kernel's choice)."""
    a, b = F32(a), F32(b)
    if np.isnan(a):
        return quieted(a)
    if np.isnan(b):
        return quieted(b)
    with np.errstate(all="ignore"):
        return F32(fn(a, b))


def add_first(a, b) -> np.float32:
    return first_nan(a, b, lambda x, y: x + y)


def mul_first(a, b) -> np.float32:
    return first_nan(a, b, lambda x, y: x * y)


def sub_first(a, b) -> np.float32:
    return first_nan(a, b, lambda x, y: x - y)


def accumulate(acc: np.ndarray, new) -> np.ndarray:
    """acc + new elementwise where the new value's NaN wins (A5's VV rule; the matrix
    accumulators are modelled the same way)."""
    acc = np.asarray(acc, dtype=F32)
    new = np.broadcast_to(np.asarray(new, dtype=F32), acc.shape)
    return np.array([add_first(n, a) for a, n in zip(acc.ravel(), new.ravel())], dtype=F32).reshape(acc.shape)


# =============================================================================== summation orders

def reference_row_sum(x) -> np.float32:
    """torch.sum's order for 64- and 16-lane rows (verified-corrections A3), with D3's NaN choice.

    64 lanes: acc_j = (0 + x[8j:8j+8]) + x[32+8j:32+8j+8] for j = 0..3 (8-lane vectors), then
    s = ((acc_0 + acc_1) + acc_2) + acc_3 lane by lane, then ((0 + s_0) + s_1) + ... + s_7.
    16 lanes: s = (0 + x[0:8]) + x[8:16], then the same sequential sum over the 8 lanes.
    NaN (D3): the left (accumulated) operand wins in every vertical add and in the accumulator
    combination; in the final lane sum the later lane wins.
    """
    x = [F32(v) for v in np.asarray(x, dtype=F32)]
    if len(x) not in (64, 16):
        raise ValueError("A3 pins the order for 64- and 16-lane rows only")
    vectors = [x[8 * v:8 * v + 8] for v in range(len(x) // 8)]
    accs = [[F32(0)] * 8 for _ in range(4)]
    for v, vec in enumerate(vectors):
        accs[v % 4] = [add_first(a, b) for a, b in zip(accs[v % 4], vec)]
    lanes = [add_first(add_first(add_first(accs[0][i], accs[1][i]), accs[2][i]), accs[3][i]) for i in range(8)]
    total = F32(0)
    for lane in lanes:
        total = add_first(lane, total)          # the later lane's NaN wins
    return total


def reference_dot(x, w, blen: int, transposed: bool) -> np.float32:
    """One output of M_MM (transposed=False) or M_TMM (True): sum_k x[k] * w[k], K = len(x),
    in the order the reference's library uses at this BLEN (verified-corrections D1), NaN
    choice included.  Products: the vector operand's NaN first (unverified when both are NaN).

    BLEN >= 16: panels of 128 k's, each summed from +0 with the later NaN winning, then the
    panel sums added left to right with the earlier panel's NaN winning.
    BLEN <= 8, M_MM: k order from +0, the earlier NaN winning except against a NaN product at
    k = 0 (mod 8).  BLEN <= 8, M_TMM: four k-interleaved lanes (the earlier NaN in a lane),
    combined (l0 + l2) + (l1 + l3) with the left NaN winning, then the K % 4 leftovers in k order.
    """
    p = [mul_first(a, b) for a, b in zip(np.asarray(x, dtype=F32), np.asarray(w, dtype=F32))]
    if blen >= 16:
        sums = []
        for k0 in range(0, len(p), 128):
            s = F32(0)
            for q in p[k0:k0 + 128]:
                s = add_first(q, s)
            sums.append(s)
        total = sums[0]
        for s in sums[1:]:
            total = add_first(total, s)
        return total
    if not transposed:
        acc = F32(0)
        for k, q in enumerate(p):
            acc = add_first(q, acc) if k % 8 == 0 else add_first(acc, q)
        return acc
    body = len(p) - len(p) % 4
    lanes = []
    for r in range(4):
        lane = F32(0)
        for q in p[r:body:4]:
            lane = add_first(lane, q)
        lanes.append(lane)
    acc = add_first(add_first(lanes[0], lanes[2]), add_first(lanes[1], lanes[3]))
    for q in p[body:]:
        acc = add_first(acc, q)
    return acc


# =============================================================================== decoding

@dataclass(frozen=True)
class Fields:
    """Every decoder field of one word (each op uses some of them)."""

    rd: int
    rs1: int
    rs2: int
    rs3: int
    funct1: int
    imm18: int
    imm22: int


FIELD_NAMES = ("rd", "rs1", "rs2", "rs3", "funct1", "imm18", "imm22")


def decode_word(word: int) -> tuple[str, Fields]:
    """(mnemonic or "INVALID", fields) of one instruction word."""
    isa = load_isa()
    op = isa.by_opcode.get(isa.fields["opcode"].extract(int(word)))
    mnemonic = op.mnemonic if op is not None and op.decodable else "INVALID"
    return mnemonic, Fields(**{n: isa.fields[n].extract(int(word)) for n in FIELD_NAMES})


# =============================================================================== machine state

class Machine:
    """Architectural state.  VRAM and HBM are small windows of the real memories (the tests only
    touch their first rows/bytes); everything else has its real size."""

    def __init__(self, settings, vram_rows: int = 512, hbm_bytes: int = 1 << 16):
        s = settings
        self.s = s
        self.M, self.V, self.B, self.H, self.A = s.MLEN, s.VLEN, s.BLEN, s.HLEN, s.BROADCAST_AMOUNT
        self.vram = np.zeros((vram_rows, self.V), dtype=np.uint16)          # bf16 bits
        self.mram = np.zeros((s.MATRIX_SRAM_SIZE // self.M, self.M * self.M), dtype=F32)
        self.fp_sram = np.zeros(SRAM_ENTRIES, dtype=np.uint16)              # bf16 bits
        self.int_sram = np.zeros(SRAM_ENTRIES, dtype=np.uint32)
        self.hbm = np.zeros(hbm_bytes, dtype=np.uint8)
        self.gp = [0] * 16
        self.fp = [0] * FP_REGISTERS                                         # bf16 bits
        self.a = [0] * 16
        self.scale, self.stride, self.v_mask = 0, 1, 0
        self.m_acc = np.zeros((self.B, self.B), dtype=F32)
        self.v_acc = np.zeros(self.B, dtype=F32)
        self.hm_acc = np.zeros((self.A, self.M, self.M), dtype=F32)
        self.hv_acc = np.zeros((self.A, self.M), dtype=F32)
        self.loops: list[dict] = []     # {"start": pc, "reg": gp index, "count": instructions this iteration}
        self.instructions = 0
        self.cycles = 0                 # closed-form cycles (DMA instructions excluded)
        self.pc_count: np.ndarray | None = None
        self.pc_cycles: np.ndarray | None = None   # -1 marks a DMA pc (cost not closed-form)
        self.abort: tuple[str, int] | None = None   # (kind, pc) when the program aborted

    # ---------------------------------------------------------------- VRAM / MRAM
    def row_index(self, addr: int) -> int:
        if addr % self.V:
            raise OracleAbort("alignment", f"VRAM address {addr} is not a multiple of VLEN")
        if addr // self.V >= self.s.VECTOR_SRAM_SIZE:
            raise OracleAbort("out_of_range", f"VRAM address {addr} is past the last row")
        if addr // self.V >= len(self.vram):
            raise ValueError(f"the test used VRAM row {addr // self.V}, outside the oracle's {len(self.vram)} rows")
        return addr // self.V

    def read_row(self, addr: int) -> np.ndarray:
        return bf16_values(self.vram[self.row_index(addr)])

    def write_row(self, addr: int, values) -> None:
        self.vram[self.row_index(addr)] = bf16_bits(values)

    def tile(self, addr: int) -> np.ndarray:
        """MRAM tile at element address `addr` as an M×M (row-major) view."""
        if addr % (self.M * self.M):
            raise OracleAbort("alignment", f"MRAM address {addr} is not tile-aligned")
        t = addr // (self.M * self.M)
        if t >= len(self.mram):
            raise OracleAbort("out_of_range", f"MRAM tile {t} does not exist")
        return self.mram[t].reshape(self.M, self.M)

    def selected_lanes(self) -> np.ndarray:
        """Lanes of the heads whose V_MASK bit is set (bit h <-> lanes h*HLEN .. h*HLEN+HLEN-1)."""
        heads = self.V // self.H
        lanes = np.zeros(self.V, dtype=bool)
        for h in range(heads):
            if (self.v_mask >> (h % 32)) & 1:
                lanes[h * self.H:(h + 1) * self.H] = True
        return lanes

    # ---------------------------------------------------------------- registers and SRAMs
    def fp_value(self, i: int) -> np.float32:
        if i >= FP_REGISTERS:
            raise OracleAbort("fp_register", f"f{i} does not exist")
        return bf16_values(self.fp[i])[()]

    def set_fp(self, i: int, value) -> None:
        if i >= FP_REGISTERS:
            raise OracleAbort("fp_register", f"f{i} does not exist")
        self.fp[i] = reg_bf16_bits(value)

    def sram_index(self, f: Fields, what: str) -> int:
        idx = (self.gp[f.rs1] + f.imm18) & MASK32
        if idx >= SRAM_ENTRIES:
            raise OracleAbort("out_of_range", f"{what} SRAM index {idx}")
        return idx

    # ---------------------------------------------------------------- HBM
    def hbm_read(self, addr: int, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.uint8)
        lo, hi = min(addr, len(self.hbm)), min(addr + n, len(self.hbm))
        out[: hi - lo] = self.hbm[lo:hi]
        return out

    def hbm_write(self, addr: int, data: np.ndarray) -> None:
        if addr + len(data) > len(self.hbm):
            raise ValueError("the test wrote HBM outside the oracle's window")
        self.hbm[addr:addr + len(data)] = data


# =============================================================================== opcodes

OPS: dict[str, Callable[[Machine, Fields, int], int | None]] = {}


def op(*mnemonics: str):
    """Register a semantic function (machine, fields, pc) -> next pc or None (= pc + 1)."""
    def register(fn):
        for mn in mnemonics:
            OPS[mn] = fn
        return fn
    return register


# ------------------------------------------------------------------------- vector

def _vector_op(m: Machine, f: Fields, compute, unmasked_lanes=None) -> None:
    """vd = compute(vs1); with rmask != 0 only the V_MASK heads are computed and the other lanes
    take vs1 (not the old vd), or `unmasked_lanes(vs1)` where the op says so."""
    a = m.read_row(m.gp[f.rs1])
    with np.errstate(all="ignore"):
        out = compute(a)
        if f.rs3 != 0:
            keep = a if unmasked_lanes is None else unmasked_lanes(a)
            out = np.where(m.selected_lanes(), out, keep)
    m.write_row(m.gp[f.rd], out)


def _vv(m: Machine, f: Fields, fn) -> None:
    b = m.read_row(m.gp[f.rs2])
    _vector_op(m, f, lambda a: fn(a, b))


def _vf(m: Machine, f: Fields, fn) -> None:
    x = m.fp_value(f.rs2)
    _vector_op(m, f, lambda a: fn(a, x))


@op("V_ADD_VV")
def v_add_vv(m, f, pc):
    _vv(m, f, lambda a, b: a + b)


@op("V_SUB_VV")
def v_sub_vv(m, f, pc):
    _vv(m, f, lambda a, b: a - b)            # vs1 - vs2


@op("V_MUL_VV")
def v_mul_vv(m, f, pc):
    _vv(m, f, lambda a, b: a * b)


@op("V_ADD_VF")
def v_add_vf(m, f, pc):
    _vf(m, f, lambda a, x: a + x)


@op("V_SUB_VF")
def v_sub_vf(m, f, pc):
    if f.funct1 == 0:
        _vf(m, f, lambda a, x: a - x)
    else:                                     # reverse order is computed as -(a - f): -0 on ties
        _vf(m, f, lambda a, x: -(a - x))


@op("V_MUL_VF")
def v_mul_vf(m, f, pc):
    _vf(m, f, lambda a, x: a * x)


@op("V_MAX_VF")
def v_max_vf(m, f, pc):
    _vf(m, f, lambda a, x: np.where(a < x, x, a))   # ties keep the lane


@op("V_MIN_VF")
def v_min_vf(m, f, pc):
    _vf(m, f, lambda a, x: np.where(a > x, x, a))


def _clamp_exp_input(a):
    return np.clip(a, F32(-EXP_CLAMP), F32(EXP_CLAMP))


@op("V_EXP_V")
def v_exp_v(m, f, pc):
    # masked quirk: the unselected lanes are written back clamped to [-88, 88]
    _vector_op(m, f, lambda a: exp_f32(_clamp_exp_input(a)), unmasked_lanes=_clamp_exp_input)


@op("V_RECI_V")
def v_reci_v(m, f, pc):
    _vector_op(m, f, lambda a: F32(1) / a)


def _row_sum(x) -> np.float32:
    """The reference's order where A3 pins it (16 and 64 lanes); elsewhere the exact sum, so
    tests at other lengths must use data where the order cannot matter."""
    return reference_row_sum(x) if len(x) in (16, 64) else exact_sum(x)


@op("V_RED_SUM")
def v_red_sum(m, f, pc):
    if f.rd == 0:                             # a write to f0 is a no-op that reads nothing
        return
    acc = m.fp_value(f.rd)
    a = m.read_row(m.gp[f.rs1])
    if f.rs3 != 0:                            # masked quirk: each selected head counts HLEN times
        lanes = m.selected_lanes()
        a = a.copy()
        for h in range(m.V // m.H):
            head = slice(h * m.H, (h + 1) * m.H)
            if lanes[head].all():
                a[head] = _row_sum(a[head])
    m.set_fp(f.rd, add_first(_row_sum(a), acc))   # f + sum keeps the sum's NaN (D3)


@op("V_RED_MAX")
def v_red_max(m, f, pc):
    if f.rd == 0:
        return
    acc = m.fp_value(f.rd)
    a = m.read_row(m.gp[f.rs1])                # the mask cannot change the maximum
    row_max = a.max()
    if np.isnan(row_max):                     # maxNum ignores the NaN
        result = acc
    elif np.isnan(acc):
        result = row_max
    else:
        result = row_max if row_max >= acc else acc
    m.set_fp(f.rd, result)


@op("V_SHFT_V")
def v_shft_v(m, f, pc):
    src = m.vram[m.row_index(m.gp[f.rs1])].copy()
    shift = m.gp[f.rs2]
    out = np.zeros(m.V, dtype=np.uint16)       # +0 enters at lane 0
    if shift < m.V:
        out[shift:] = src[: m.V - shift]
    m.vram[m.row_index(m.gp[f.rd])] = out


@op("V_TOPK")
def v_topk(m, f, pc):
    if f.rs3 not in (0, 1):
        raise OracleAbort("topk_policy", f"policy {f.rs3}")
    experts, k = (32, 4) if f.rs3 == 0 else (128, 8)
    n_rows = -(-experts // m.V)
    logits = np.concatenate([m.read_row((m.gp[f.rs1] + j * m.V) & MASK32) for j in range(n_rows)])[:experts]
    logits = np.where(np.isnan(logits), F32(-np.inf), logits)
    # descending by value, +0 above -0, then the lower index first
    ranked = sorted(range(experts), key=lambda i: (-float(logits[i]), bool(np.signbit(logits[i])), i))[:k]
    top = logits[ranked]
    e = exp_f32(top - top.max())
    d = F32(0)
    for x in e:                                # sequential f32 sum in rank order
        d = F32(d + x)
    weights = e / d if (np.isfinite(d) and d > 0) else np.zeros(k, dtype=F32)
    fp_base, int_base = m.gp[f.rd], m.gp[f.rs2]
    if int_base + k > SRAM_ENTRIES or fp_base + k > SRAM_ENTRIES:
        raise OracleAbort("out_of_range", "V_TOPK writes past the scalar SRAMs")
    for i in range(k):
        m.int_sram[int_base + i] = ranked[i]
        m.fp_sram[fp_base + i] = reg_bf16_bits(weights[i])


@op("S_MAP_V_FP")
def s_map_v_fp(m, f, pc):
    start = (m.gp[f.rs1] + f.imm18) & MASK32
    if start + m.V > SRAM_ENTRIES:
        raise OracleAbort("out_of_range", "S_MAP_V_FP window runs past FP SRAM")
    m.vram[m.row_index(m.gp[f.rd])] = m.fp_sram[start:start + m.V]


# ------------------------------------------------------------------------- matrix

def _rows(m: Machine, addr: int, n: int) -> np.ndarray:
    """n VRAM rows starting at `addr`, MLEN elements apart (the matrix ops' row stride)."""
    return np.stack([m.read_row((addr + i * m.M) & MASK32) for i in range(n)])


def _column_block(m: Machine, m_addr: int) -> tuple[np.ndarray, int]:
    """(tile, c) of M_MM / M_TMM: the in-tile offset must be whole rows; c = offset / MLEN."""
    t_base, off = m_addr - m_addr % (m.M * m.M), m_addr % (m.M * m.M)
    if off % m.M or (off // m.M) % m.B:
        raise OracleAbort("alignment", f"matrix address {m_addr}")
    return m.tile(t_base), off // m.M


def _block_product(m: Machine, x: np.ndarray, w: np.ndarray, transposed: bool) -> np.ndarray:
    """X[B,K] @ W[K,B] output by output, each in the reference's order (`reference_dot`)."""
    return np.array([[reference_dot(x[i], w[:, j], m.B, transposed) for j in range(m.B)]
                     for i in range(m.B)], dtype=F32)


@op("M_MM")
def m_mm(m, f, pc):
    tile, c = _column_block(m, m.gp[f.rs1])
    x = _rows(m, m.gp[f.rs2], m.B)
    m.m_acc = accumulate(m.m_acc, _block_product(m, x, tile[:, c:c + m.B], transposed=False))


@op("M_TMM")
def m_tmm(m, f, pc):
    tile, c = _column_block(m, m.gp[f.rs2])   # rs1 = vector, rs2 = matrix
    x = _rows(m, m.gp[f.rs1], m.B)
    m.m_acc = accumulate(m.m_acc, _block_product(m, x, tile[c:c + m.B, :].T, transposed=True))


@op("M_MV")
def m_mv(m, f, pc):
    m_addr = m.gp[f.rs1]
    c = m_addr % (m.M * m.M)                  # element-granular column
    if c % m.B or c >= m.M:
        raise OracleAbort("alignment", f"matrix address {m_addr}")
    tile = m.tile(m_addr - c)
    x = m.read_row(m.gp[f.rs2])
    m.v_acc += x @ tile[:, c:c + m.B]


@op("M_TMV")
def m_tmv(m, f, pc):
    tile = m.tile(m.gp[f.rs1])                # only tile-aligned addresses: rows 0..BLEN
    x = m.read_row(m.gp[f.rs2])
    m.v_acc += x @ tile[: m.B, :].T


def _broadcast_check(m: Machine) -> None:
    if m.A * m.H != m.M:
        raise OracleAbort("assert", "BROADCAST_AMOUNT * HLEN != MLEN")


def _head_offset(m: Machine, m_addr: int, split: int) -> tuple[np.ndarray, int]:
    """(tile, head offset) of the broadcast ops; the address is split modulo `split`."""
    r = m_addr % split
    mo, ho = (r // m.M) * m.M, r % m.M
    if mo % m.B or ho % m.H:
        raise OracleAbort("alignment", f"matrix address {m_addr}")
    tile = m.tile(m_addr - r)
    if mo != 0:
        raise OracleAbort("narrow", f"matrix address {m_addr}: row block {mo} past the tile")
    return tile, ho


@op("M_BMM")
def m_bmm(m, f, pc):
    _broadcast_check(m)
    tile, ho = _head_offset(m, m.gp[f.rs1], m.M * m.B)
    x = _rows(m, m.gp[f.rs2], m.M)
    for a in range(m.A):
        xa = x[:, a::m.A]                     # head a = lanes k*A + a (interleaved)
        m.hm_acc[a] += (xa @ tile[ho:ho + m.H, :]) * BMM_SCALE


@op("M_BTMM")
def m_btmm(m, f, pc):
    _broadcast_check(m)
    tile, ho = _head_offset(m, m.gp[f.rs1], m.M * m.M)
    x = _rows(m, m.gp[f.rs2], m.M)
    for a in range(m.A):
        qa = x[:, a * m.H:(a + 1) * m.H]      # head a = lanes a*H + k (contiguous)
        m.hm_acc[a] += (qa @ tile[:, ho:ho + m.H].T) * BMM_SCALE


@op("M_BMV")
def m_bmv(m, f, pc):
    _broadcast_check(m)
    _head_offset(m, (m.gp[f.rs1] + m.gp[f.rd]) & MASK32, m.M * m.B)
    m.read_row(m.gp[f.rs2])
    raise OracleAbort("shape", "M_BMV's product never fits its accumulator in the reference")


@op("M_BTMV")
def m_btmv(m, f, pc):
    _broadcast_check(m)
    tile, ho = _head_offset(m, (m.gp[f.rs1] + m.gp[f.rd]) & MASK32, m.M * m.M)
    x = m.read_row(m.gp[f.rs2])
    for a in range(m.A):
        m.hv_acc[a] += (x[a * m.H:(a + 1) * m.H] @ tile[:, ho:ho + m.H].T) * BMM_SCALE


def _write_slot(m: Machine, row_addr: int, lane: int, values) -> None:
    row = m.read_row(row_addr)
    row[lane:lane + m.B] = values
    m.write_row(row_addr, row)


@op("M_MM_WO")
def m_mm_wo(m, f, pc):
    dest = (m.gp[f.rd] + f.imm18) & MASK32
    stride = 1 if f.rs1 == 0 else m.gp[f.rs1]   # the rs1 field names the stride register
    base, lane = dest - dest % m.M, dest % m.M
    if lane % m.B:
        raise OracleAbort("alignment", f"write-out address {dest}")
    for i in range(m.B):
        _write_slot(m, (base + i * m.M * stride) & MASK32, lane, m.m_acc[i])
    m.m_acc[:] = 0


@op("M_MV_WO")
def m_mv_wo(m, f, pc):
    dest = (m.gp[f.rd] + f.imm18) & MASK32
    if (dest % m.M) % m.B:
        raise OracleAbort("alignment", f"write-out address {dest}")
    _write_slot(m, dest - dest % m.M, dest % m.M, m.v_acc)
    m.v_acc[:] = 0


@op("M_BMM_WO")
def m_bmm_wo(m, f, pc):
    dest = (m.gp[f.rd] + f.imm18) & MASK32
    if dest % m.M:
        raise OracleAbort("alignment", f"write-out address {dest}")
    for a in range(m.A):
        for i in range(m.M):
            m.write_row((dest + (a * m.M + i) * m.M) & MASK32, m.hm_acc[a, i])
    m.hm_acc[:] = 0


@op("M_BMV_WO")
def m_bmv_wo(m, f, pc):
    dest = (m.gp[f.rd] + f.imm18) & MASK32
    if dest % m.M:
        raise OracleAbort("alignment", f"write-out address {dest}")
    for a in range(m.A):
        m.write_row((dest + a * m.M) & MASK32, m.hv_acc[a])
    m.hv_acc[:] = 0


# ------------------------------------------------------------------------- scalar FP

def _fp_result(m: Machine, f: Fields, compute) -> None:
    if f.rd == 0:                             # a write to f0 is a no-op that reads nothing
        return
    with np.errstate(all="ignore"):
        m.set_fp(f.rd, compute())


# The reference computes rs2 + rs1 and rs2 * rs1 but rs1 - rs2 (verified-corrections D2): with two
# NaN operands ADD/MUL keep rs2's NaN and SUB keeps rs1's.

@op("S_ADD_FP")
def s_add_fp(m, f, pc):
    _fp_result(m, f, lambda: add_first(m.fp_value(f.rs2), m.fp_value(f.rs1)))


@op("S_SUB_FP")
def s_sub_fp(m, f, pc):
    _fp_result(m, f, lambda: sub_first(m.fp_value(f.rs1), m.fp_value(f.rs2)))


@op("S_MUL_FP")
def s_mul_fp(m, f, pc):
    _fp_result(m, f, lambda: mul_first(m.fp_value(f.rs2), m.fp_value(f.rs1)))


@op("S_MAX_FP")
def s_max_fp(m, f, pc):
    if f.rd == 0:
        return
    a, b = m.fp_value(f.rs1), m.fp_value(f.rs2)
    m.fp[f.rd] = m.fp[f.rs2] if b > a else m.fp[f.rs1]   # half::bf16::max: ties return rs1


@op("S_EXP_FP")
def s_exp_fp(m, f, pc):
    _fp_result(m, f, lambda: exp_f32(_clamp_exp_input(m.fp_value(f.rs1))))


@op("S_RECI_FP")
def s_reci_fp(m, f, pc):
    _fp_result(m, f, lambda: F32(1) / m.fp_value(f.rs1))


@op("S_SQRT_FP")
def s_sqrt_fp(m, f, pc):
    _fp_result(m, f, lambda: np.sqrt(m.fp_value(f.rs1)))


@op("S_LD_FP")
def s_ld_fp(m, f, pc):
    idx = m.sram_index(f, "FP")
    if f.rd >= FP_REGISTERS:
        raise OracleAbort("fp_register", f"f{f.rd}")
    m.fp[f.rd] = int(m.fp_sram[idx])          # writes f0 too


@op("S_ST_FP")
def s_st_fp(m, f, pc):
    idx = m.sram_index(f, "FP")
    if f.rd >= FP_REGISTERS:
        raise OracleAbort("fp_register", f"f{f.rd}")
    m.fp_sram[idx] = m.fp[f.rd]


# ------------------------------------------------------------------------- scalar INT

@op("S_ADD_INT")
def s_add_int(m, f, pc):
    m.gp[f.rd] = (m.gp[f.rs1] + m.gp[f.rs2]) & MASK32


@op("S_SUB_INT")
def s_sub_int(m, f, pc):
    m.gp[f.rd] = (m.gp[f.rs1] - m.gp[f.rs2]) & MASK32


@op("S_MUL_INT")
def s_mul_int(m, f, pc):
    m.gp[f.rd] = (m.gp[f.rs1] * m.gp[f.rs2]) & MASK32


@op("S_ADDI_INT")
def s_addi_int(m, f, pc):
    m.gp[f.rd] = (m.gp[f.rs1] + f.imm18) & MASK32


@op("S_LUI_INT")
def s_lui_int(m, f, pc):
    m.gp[f.rd] = (f.imm22 << 12) & MASK32       # not OR-ed with the old value


@op("S_LD_INT")
def s_ld_int(m, f, pc):
    m.gp[f.rd] = int(m.int_sram[m.sram_index(f, "INT")])


@op("S_ST_INT")
def s_st_int(m, f, pc):
    m.int_sram[m.sram_index(f, "INT")] = m.gp[f.rd]


# ------------------------------------------------------------------------- control

@op("C_SET_ADDR_REG")
def c_set_addr_reg(m, f, pc):
    m.a[f.rd] = (m.gp[f.rs1] << 32) | m.gp[f.rs2]   # rs1 is the high word


@op("C_SET_SCALE_REG")
def c_set_scale_reg(m, f, pc):
    m.scale = m.gp[f.rd]


@op("C_SET_STRIDE_REG")
def c_set_stride_reg(m, f, pc):
    m.stride = m.gp[f.rd]


@op("C_SET_V_MASK_REG")
def c_set_v_mask_reg(m, f, pc):
    m.v_mask = m.gp[f.rd]


@op("C_LOOP_START")
def c_loop_start(m, f, pc):
    if f.imm22 == 0:
        raise OracleAbort("loop", "a loop must run at least once")
    m.gp[f.rd] = f.imm22
    m.loops.append({"start": pc, "reg": f.rd, "count": 0})


@op("C_LOOP_END")
def c_loop_end(m, f, pc):
    matching = [i for i, e in enumerate(m.loops) if e["reg"] == f.rd]
    if not matching:
        raise OracleAbort("loop", f"C_LOOP_END gp{f.rd} without a loop on that register")
    entry = m.loops[matching[-1]]
    counter = m.gp[f.rd]                       # the live register value decides
    if counter > 1:
        m.gp[f.rd] = counter - 1
        entry["count"] = 0
        return entry["start"] + 1
    m.gp[f.rd] = 0
    del m.loops[matching[-1]]                  # removed where it is; entries above it stay
    return None


@op("C_BREAK")
def c_break(m, f, pc):
    if not m.loops:
        raise OracleAbort("loop", "C_BREAK without an active loop")
    entry = m.loops.pop()                      # no jump: execution goes on at pc + 1
    m.gp[entry["reg"]] = 0


# ------------------------------------------------------------------------- DMA

def _mx_row_addresses(m: Machine, f: Fields, dim: int, n_rows: int):
    """(element address, scale address) of each row an H_* instruction moves (hbm-dma §1.4):
    the element stride is a u32 product, the scale stride an f32 product truncated to an int."""
    offset, base = m.gp[f.rs1], m.a[f.rs2]
    index = base + offset
    scale_index = base + m.scale + offset // MX_BLOCK
    stride = m.stride if f.rs3 == 1 else dim
    scale_stride = F32(stride) / F32(MX_BLOCK)
    for k in range(n_rows):
        yield index + ((k * stride) & MASK32), scale_index + int(F32(k) * scale_stride)


def _fetch_row(m: Machine, elem_addr: int, scale_addr: int, dim: int) -> np.ndarray:
    """One row of dequantised values.  Scales come from the one 64-byte block holding the first
    scale byte; any scale past that block reads as 0."""
    n_scales = dim // MX_BLOCK
    scales = np.zeros(n_scales, dtype=np.uint8)
    available = min(n_scales, HBM_BLOCK - scale_addr % HBM_BLOCK)
    scales[:available] = m.hbm_read(scale_addr, available)
    return dequantize(m.hbm_read(elem_addr, dim), scales)


def prefetch_m_rows(settings) -> int:
    """HBM_M_Prefetch_Amount as the reference uses it: at least MLEN, rounded up to whole tiles."""
    amount, mlen = settings.HBM_M_Prefetch_Amount, settings.MLEN
    return mlen if amount < mlen else math.ceil(amount / mlen) * mlen


@op("H_PREFETCH_V")
def h_prefetch_v(m, f, pc):
    dst = m.gp[f.rd]
    first = m.row_index(dst)
    for k, (ea, sa) in enumerate(_mx_row_addresses(m, f, m.V, m.s.HBM_V_Prefetch_Amount)):
        if first + k < m.s.VECTOR_SRAM_SIZE:     # rows past the last one are dropped
            m.vram[first + k] = bf16_bits(_fetch_row(m, ea, sa, m.V))


@op("H_PREFETCH_M")
def h_prefetch_m(m, f, pc):
    dst = m.gp[f.rd]
    m.tile(dst)
    n_rows = prefetch_m_rows(m.s)
    first_tile = dst // (m.M * m.M)
    if first_tile + (n_rows - 1) // m.M >= len(m.mram):
        raise OracleAbort("out_of_range", "H_PREFETCH_M fills tiles past the last one")
    for k, (ea, sa) in enumerate(_mx_row_addresses(m, f, m.M, n_rows)):
        tile, r = first_tile + k // m.M, k % m.M
        m.mram[tile, r * m.M:(r + 1) * m.M] = _fetch_row(m, ea, sa, m.M)   # f32, not rounded


@op("H_STORE_V")
def h_store_v(m, f, pc):
    src = m.gp[f.rd]
    for k, (ea, sa) in enumerate(_mx_row_addresses(m, f, m.V, m.s.HBM_V_Writeback_Amount)):
        elements, scales = mx_quantize_row(m.read_row(src + k * m.V))
        m.hbm_write(ea, elements)
        m.hbm_write(sa, scales)


# =============================================================================== cycle costs

def knob(settings, name: str) -> int:
    """A LATENCY knob's cycles: dc_lib_en when DC_EN != 0, else dc_lib_dis."""
    enabled, disabled = settings.latency_table[name]
    return enabled if settings.DC_EN != 0 else disabled


def _f0_free(name: str):
    return lambda s, f: 0 if f.rd == 0 else knob(s, name)


_COSTS: dict[str, Callable] = {
    # matrix (SPO = SYSTOLIC_PROCESSING_OVERHEAD)
    **{mn: (lambda s, f: knob(s, "SYSTOLIC_PROCESSING_OVERHEAD") + s.MLEN)
       for mn in ("M_MM", "M_TMM", "M_BMM", "M_BTMM")},
    "M_MV": lambda s, f: s.MLEN,
    "M_TMV": lambda s, f: s.MLEN,
    "M_BMV": lambda s, f: knob(s, "SYSTOLIC_PROCESSING_OVERHEAD") + 1,
    "M_BTMV": lambda s, f: knob(s, "SYSTOLIC_PROCESSING_OVERHEAD") + 1,
    **{mn: (lambda s, f: 1) for mn in ("M_MM_WO", "M_MV_WO", "M_BMM_WO", "M_BMV_WO")},
    # vector
    **{mn: (lambda s, f: knob(s, "VECTOR_ADD_CYCLES")) for mn in ("V_ADD_VV", "V_ADD_VF", "V_SUB_VV", "V_SUB_VF")},
    **{mn: (lambda s, f: knob(s, "VECTOR_MUL_CYCLES")) for mn in ("V_MUL_VV", "V_MUL_VF", "V_SHFT_V")},
    "V_EXP_V": lambda s, f: knob(s, "VECTOR_EXP_CYCLES"),
    "V_RECI_V": lambda s, f: knob(s, "VECTOR_RECI_CYCLES"),
    "V_MAX_VF": lambda s, f: knob(s, "VECTOR_MAX_CYCLES"),
    "V_MIN_VF": lambda s, f: knob(s, "VECTOR_MAX_CYCLES"),
    "V_RED_SUM": _f0_free("VECTOR_SUM_CYCLES"),
    "V_RED_MAX": _f0_free("VECTOR_MAX_CYCLES"),
    "V_TOPK": lambda s, f: knob(s, "VECTOR_MAX_CYCLES") * (32 if f.rs3 == 0 else 128),
    "S_MAP_V_FP": lambda s, f: 2 * s.VLEN,
    # scalar FP
    **{mn: _f0_free("SCALAR_FP_BASIC_CYCLES") for mn in ("S_ADD_FP", "S_SUB_FP", "S_MAX_FP", "S_MUL_FP")},
    "S_EXP_FP": _f0_free("SCALAR_FP_EXP_CYCLES"),
    "S_RECI_FP": _f0_free("SCALAR_FP_RECI_CYCLES"),
    "S_SQRT_FP": _f0_free("SCALAR_FP_SQRT_CYCLES"),
    "S_LD_FP": lambda s, f: 1,
    "S_ST_FP": lambda s, f: 1,
    # scalar INT
    **{mn: (lambda s, f: knob(s, "SCALAR_INT_BASIC_CYCLES"))
       for mn in ("S_ADD_INT", "S_ADDI_INT", "S_SUB_INT", "S_MUL_INT", "S_LUI_INT", "S_LD_INT", "S_ST_INT")},
    # control
    **{mn: (lambda s, f: 1) for mn in ("C_SET_ADDR_REG", "C_SET_SCALE_REG", "C_SET_STRIDE_REG",
                                       "C_SET_V_MASK_REG", "C_LOOP_START", "C_LOOP_END", "C_BREAK")},
    # DMA: decided by the HBM timing model
    **{mn: (lambda s, f: None) for mn in ("H_PREFETCH_M", "H_PREFETCH_V", "H_STORE_V")},
}


def cost(settings, mnemonic: str, f: Fields) -> int | None:
    """Cycles of one instruction (None for the DMA ops, whose time the HBM model decides)."""
    return _COSTS[mnemonic](settings, f)


# =============================================================================== executor

def execute(words: Sequence[int], settings, *, vram=None, fp_sram=None, int_sram=None, hbm=None,
            vram_rows: int = 512, hbm_bytes: int = 1 << 16, max_instructions: int = 1_000_000) -> Machine:
    """Run a program on the oracle.  Preloads: `vram` uint16 [rows, VLEN] bf16 bits, `fp_sram`
    bf16 bits, `int_sram` u32, `hbm` bytes from address 0.  An abort ends the run with
    `machine.abort = (kind, pc)` and the state as it was before the aborting instruction."""
    m = Machine(settings, vram_rows, max(hbm_bytes, len(hbm) if hbm is not None else 0))
    if vram is not None:
        m.vram[: len(vram)] = vram
    if fp_sram is not None:
        m.fp_sram[: len(fp_sram)] = fp_sram
    if int_sram is not None:
        m.int_sram[: len(int_sram)] = int_sram
    if hbm is not None:
        m.hbm[: len(hbm)] = np.frombuffer(bytes(hbm), dtype=np.uint8)
    program = [decode_word(w) for w in words]
    m.pc_count = np.zeros(len(program), dtype=np.int64)
    m.pc_cycles = np.zeros(len(program), dtype=np.int64)
    # The whole program is decoded before anything runs: M_BMM/M_BTMM with rd != 0 abort here.
    for pc, (mn, f) in enumerate(program):
        if mn in ("M_BMM", "M_BTMM") and f.rd != 0:
            m.abort = ("decode", pc)
            return m
    pc = 0
    while pc < len(program):
        if m.instructions >= max_instructions:
            raise RuntimeError("oracle instruction limit reached (the test program does not end)")
        mn, f = program[pc]
        over = False
        for entry in m.loops:                  # MAX_LOOP_INSTRUCTIONS counts before dispatch
            entry["count"] += 1
            over = over or entry["count"] > settings.MAX_LOOP_INSTRUCTIONS
        try:
            if over:
                raise OracleAbort("max_loop", "a loop iteration ran too many instructions")
            if mn == "INVALID":
                raise OracleAbort("invalid_opcode", "the decoder rejects this word")
            next_pc = OPS[mn](m, f, pc)
        except OracleAbort as abort:
            m.abort = (abort.kind, pc)
            return m
        c = cost(settings, mn, f)
        m.pc_count[pc] += 1
        if c is None:
            m.pc_cycles[pc] = -1
        else:
            m.pc_cycles[pc] += c
            m.cycles += c
        m.instructions += 1
        pc = pc + 1 if next_pc is None else next_pc
    return m
