"""Large synthetic PLENA programs for bench/run.py, with the instruction mixes of the programs the
PLENA test benches compile (written here from the ISA, not taken from any corpus):

* linear: weight tiles (MLEN x MLEN MXFP8) prefetched with H_PREFETCH_M every few hundred
  instructions, each followed by M_MM / M_MM_WO over row and column blocks;
* ffn: two such projections with a V_* elementwise gate (SiLU-like: V_EXP_V, V_ADD_VF,
  V_RECI_V, V_MUL_VV) in between;
* flash attention (GQA): M_BTMM + M_BMM_WO scores per KV tile, per-row softmax with V_RED_MAX,
  V_SUB_VF, V_EXP_V, V_RED_SUM and S_* bookkeeping, then M_TMM / M_MM_WO for P @ V;
* moe expert: gate and up projections, an elementwise gate, a down projection and H_STORE_V of
  the result.

Each builder returns a `BenchProgram`: ASM text with an outer repeat loop, settings overrides, and
the preloads (HBM image with MXFP8 weights, VRAM image with bf16 activations); bench/run.py picks
`outer` so the dynamic instruction count lands near its target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emulator.tensors import f32_to_bf16_bits, mx_tensor_bytes

BIG_LOOP = 1 << 30   # MAX_LOOP_INSTRUCTIONS for these programs: one outer iteration is large


@dataclass
class BenchProgram:
    name: str
    asm: str
    overrides: dict[str, int]
    hbm: bytes
    vram: bytes
    outer: int


class _Asm:
    """A tiny ASM writer: registers by name, loops, constants of any size."""

    def __init__(self):
        self.lines: list[str] = []
        self.depth = 0

    def emit(self, text: str) -> None:
        self.lines.append(text)

    def comment(self, text: str) -> None:
        self.lines.append(f"; {text}")

    def set(self, reg: str, value: int) -> None:
        """gp reg = value (S_LUI_INT + S_ADDI_INT when it does not fit the 18-bit immediate)."""
        if value < (1 << 17):
            self.emit(f"S_ADDI_INT {reg}, gp0, {value}")
        else:
            self.emit(f"S_LUI_INT {reg}, {value >> 12}")
            if value & 0xFFF:
                self.emit(f"S_ADDI_INT {reg}, {reg}, {value & 0xFFF}")

    def add(self, reg: str, value: int) -> None:
        assert 0 <= value < (1 << 17), value
        self.emit(f"S_ADDI_INT {reg}, {reg}, {value}")

    def loop(self, reg: str, count: int):
        asm = self

        class _Loop:
            def __enter__(self):
                asm.emit(f"C_LOOP_START {reg}, {count}")

            def __exit__(self, *exc):
                asm.emit(f"C_LOOP_END {reg}")
        return _Loop()

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _weights(rng: np.random.Generator, rows: int, cols: int) -> bytes:
    data, _ = mx_tensor_bytes(rng.standard_normal((rows, cols), dtype=np.float32) * 0.05)
    return data


def _vram_rows(rng: np.random.Generator, rows: int, vlen: int) -> bytes:
    return f32_to_bf16_bits(rng.standard_normal((rows, vlen), dtype=np.float32)).astype("<u2").tobytes()


def _add(a: _Asm, reg: str, value: int, tmp: str) -> None:
    """reg += value, through `tmp` when value does not fit the immediate."""
    if value < (1 << 17):
        a.add(reg, value)
    else:
        a.set(tmp, value)
        a.emit(f"S_ADD_INT {reg}, {reg}, {tmp}")


def _projection(a: _Asm, *, mlen: int, blen: int, rows: int, k_tiles: int, n_tiles: int, w_cols: int,
                x_row: int, y_row: int) -> None:
    """Y[rows, n_tiles*mlen] = X[rows, k_tiles*mlen] @ W (HBM through a1, K x w_cols MXFP8).

    X chunk k sits in VRAM rows x_row + k*rows ..; Y tile n in rows y_row + n*rows ..  Per output
    tile: k_tiles H_PREFETCH_M into MRAM tiles 0.., then (rows/B) x (M/B) blocks of k_tiles M_MM and
    one M_MM_WO.  Registers: gp1..gp2, gp4..gp15 (gp3 is the caller's).
    """
    m2 = mlen * mlen
    a.set("gp10", 0)                                   # HBM column offset of tile n (bytes)
    a.set("gp11", y_row * mlen)                         # VRAM element address of Y tile n
    with a.loop("gp12", n_tiles):
        a.set("gp1", 0)                                 # MRAM destination
        a.emit("S_ADDI_INT gp2, gp10, 0")               # HBM offset of tile (k, n)
        with a.loop("gp13", k_tiles):
            a.emit("H_PREFETCH_M gp1, gp2, a1, 1, 0")
            _add(a, "gp1", m2, "gp9")
            _add(a, "gp2", mlen * w_cols, "gp9")
        a.set("gp4", x_row * mlen)                      # X row block (chunk 0)
        a.emit("S_ADDI_INT gp5, gp11, 0")               # Y row block
        with a.loop("gp14", rows // blen):
            a.set("gp6", 0)                             # column block c of tile 0
            a.emit("S_ADDI_INT gp7, gp5, 0")            # Y lanes c..c+B of this row block
            with a.loop("gp15", mlen // blen):
                a.emit("S_ADDI_INT gp8, gp6, 0")
                a.emit("S_ADDI_INT gp9, gp4, 0")
                with a.loop("gp13", k_tiles):
                    a.emit("M_MM 0, gp8, gp9")
                    _add(a, "gp8", m2, "gp1")
                    _add(a, "gp9", rows * mlen, "gp1")
                a.emit("M_MM_WO gp7, gp0, 0")
                _add(a, "gp6", blen * mlen, "gp1")
                a.add("gp7", blen)
            _add(a, "gp4", blen * mlen, "gp1")
            _add(a, "gp5", blen * mlen, "gp1")
        a.add("gp10", mlen)
        _add(a, "gp11", rows * mlen, "gp1")


def _w_region(a: _Asm, base: int, k: int, cols: int) -> None:
    """a1 = base of a K x cols MXFP8 tensor; SCALE/STRIDE for its layout (element rows, then scales)."""
    a.set("gp1", base)
    a.emit("C_SET_ADDR_REG a1, gp0, gp1")
    a.set("gp1", k * cols)
    a.emit("C_SET_SCALE_REG gp1")
    a.set("gp1", cols)
    a.emit("C_SET_STRIDE_REG gp1")


def _elementwise_gate(a: _Asm, *, vlen: int, rows: int, src_row: int, other_row: int, scratch_row: int) -> None:
    """SiLU-like gate over `rows` VRAM rows: x <- x / (1 + exp(-x)) * other."""
    a.set("gp6", scratch_row * vlen)
    a.set("gp4", src_row * vlen)
    a.set("gp5", other_row * vlen)
    a.emit("S_LD_FP f1, gp0, 1")     # 1.0
    a.emit("S_LD_FP f2, gp0, 2")     # -1.0
    with a.loop("gp14", rows):
        a.emit("V_MUL_VF gp6, gp4, f2, 0")
        a.emit("V_EXP_V gp6, gp6")
        a.emit("V_ADD_VF gp6, gp6, f1, 0")
        a.emit("V_RECI_V gp6, gp6")
        a.emit("V_MUL_VV gp6, gp6, gp4, 0")
        a.emit("V_MUL_VV gp4, gp6, gp5, 0")
        a.add("gp4", vlen)
        a.add("gp5", vlen)


def linear(mlen: int, blen: int, *, rows: int, k_tiles: int, n_tiles: int, outer: int, seed: int = 0) -> BenchProgram:
    rng = np.random.default_rng(seed)
    cols = n_tiles * mlen
    a = _Asm()
    a.comment(f"linear: X[{rows}, {k_tiles * mlen}] @ W[{k_tiles * mlen}, {cols}], MLEN {mlen}, BLEN {blen}")
    _w_region(a, 0, k_tiles * mlen, cols)
    y_row = k_tiles * rows
    with a.loop("gp3", outer):
        _projection(a, mlen=mlen, blen=blen, rows=rows, k_tiles=k_tiles, n_tiles=n_tiles, w_cols=cols,
                    x_row=0, y_row=y_row)
    return BenchProgram(
        name=f"linear MLEN {mlen} BLEN {blen}", asm=a.text(),
        overrides={"MLEN": mlen, "VLEN": mlen, "BLEN": blen, "HLEN": mlen // 4, "MAX_LOOP_INSTRUCTIONS": BIG_LOOP},
        hbm=_weights(rng, k_tiles * mlen, cols), vram=_vram_rows(rng, k_tiles * rows, mlen), outer=outer)


def ffn(mlen: int, blen: int, *, rows: int, k_tiles: int, n_tiles: int, outer: int, seed: int = 1) -> BenchProgram:
    """up projection (K -> N), gate, down projection (N -> K) on the same weights' transpose shape."""
    rng = np.random.default_rng(seed)
    up_cols, down_cols = n_tiles * mlen, k_tiles * mlen
    w_up = _weights(rng, k_tiles * mlen, up_cols)
    down_base = -(-len(w_up) // 4096) * 4096
    w_down = _weights(rng, n_tiles * mlen, down_cols)
    hbm = w_up + bytes(down_base - len(w_up)) + w_down
    h_row = k_tiles * rows
    y_row = h_row + n_tiles * rows
    a = _Asm()
    a.comment(f"ffn: up {k_tiles * mlen}->{up_cols}, SiLU-like gate, down {up_cols}->{down_cols}; MLEN {mlen}")
    with a.loop("gp3", outer):
        _w_region(a, 0, k_tiles * mlen, up_cols)
        _projection(a, mlen=mlen, blen=blen, rows=rows, k_tiles=k_tiles, n_tiles=n_tiles, w_cols=up_cols,
                    x_row=0, y_row=h_row)
        _elementwise_gate(a, vlen=mlen, rows=n_tiles * rows, src_row=h_row, other_row=h_row,
                          scratch_row=y_row + k_tiles * rows)
        _w_region(a, down_base, n_tiles * mlen, down_cols)
        _projection(a, mlen=mlen, blen=blen, rows=rows, k_tiles=n_tiles, n_tiles=k_tiles, w_cols=down_cols,
                    x_row=h_row, y_row=y_row)
    return BenchProgram(
        name=f"ffn MLEN {mlen}", asm=a.text(),
        overrides={"MLEN": mlen, "VLEN": mlen, "BLEN": blen, "HLEN": mlen // 4, "MAX_LOOP_INSTRUCTIONS": BIG_LOOP},
        hbm=hbm, vram=_vram_rows(rng, k_tiles * rows, mlen), outer=outer)


def moe_expert(mlen: int, blen: int, *, rows: int, k_tiles: int, n_tiles: int, outer: int,
               seed: int = 2) -> BenchProgram:
    """gate and up projections, gate * up, down projection, H_STORE_V of the output rows."""
    rng = np.random.default_rng(seed)
    up_cols, down_cols = n_tiles * mlen, k_tiles * mlen
    w = [_weights(rng, k_tiles * mlen, up_cols), _weights(rng, k_tiles * mlen, up_cols),
         _weights(rng, n_tiles * mlen, down_cols)]
    bases, hbm = [], b""
    for part in w:
        bases.append(len(hbm))
        hbm += part + bytes(-len(part) % 4096)
    out_base = len(hbm) + 4096
    g_row = k_tiles * rows
    u_row = g_row + n_tiles * rows
    y_row = u_row + n_tiles * rows
    a = _Asm()
    a.comment(f"moe expert: gate/up {k_tiles * mlen}->{up_cols}, gate*up, down ->{down_cols}, store; MLEN {mlen}")
    with a.loop("gp3", outer):
        _w_region(a, bases[0], k_tiles * mlen, up_cols)
        _projection(a, mlen=mlen, blen=blen, rows=rows, k_tiles=k_tiles, n_tiles=n_tiles, w_cols=up_cols,
                    x_row=0, y_row=g_row)
        _w_region(a, bases[1], k_tiles * mlen, up_cols)
        _projection(a, mlen=mlen, blen=blen, rows=rows, k_tiles=k_tiles, n_tiles=n_tiles, w_cols=up_cols,
                    x_row=0, y_row=u_row)
        _elementwise_gate(a, vlen=mlen, rows=n_tiles * rows, src_row=g_row, other_row=u_row,
                          scratch_row=y_row + k_tiles * rows)
        _w_region(a, bases[2], n_tiles * mlen, down_cols)
        _projection(a, mlen=mlen, blen=blen, rows=rows, k_tiles=n_tiles, n_tiles=k_tiles, w_cols=down_cols,
                    x_row=g_row, y_row=y_row)
        # store Y (k_tiles chunks of `rows` rows) as MXFP8 rows of width MLEN
        a.set("gp1", out_base)
        a.emit("C_SET_ADDR_REG a2, gp0, gp1")
        a.set("gp1", k_tiles * rows * mlen)
        a.emit("C_SET_SCALE_REG gp1")
        a.set("gp1", mlen)
        a.emit("C_SET_STRIDE_REG gp1")
        a.set("gp4", y_row * mlen)
        a.set("gp5", 0)
        with a.loop("gp14", k_tiles * rows // 4):
            a.emit("H_STORE_V gp4, gp5, a2, 1, 0")
            a.add("gp4", 4 * mlen)
            a.add("gp5", 4 * mlen)
    return BenchProgram(
        name=f"moe expert MLEN {mlen}", asm=a.text(),
        overrides={"MLEN": mlen, "VLEN": mlen, "BLEN": blen, "HLEN": mlen // 4, "MAX_LOOP_INSTRUCTIONS": BIG_LOOP},
        hbm=hbm, vram=_vram_rows(rng, k_tiles * rows, mlen), outer=outer)


def flash_attention_gqa(mlen: int, blen: int, *, kv_tiles: int, outer: int, seed: int = 3) -> BenchProgram:
    """One MLEN-row query block (BROADCAST_AMOUNT heads sharing K/V, HLEN = MLEN / heads) against
    kv_tiles KV tiles: per tile H_PREFETCH_M of K and V, M_BTMM + M_BMM_WO for the scores, a
    per-row online softmax (V_RED_MAX, V_SUB_VF, V_EXP_V, V_RED_SUM, S_* updates, V_MUL_VF
    rescale), and M_TMM / M_MM_WO for P @ V."""
    rng = np.random.default_rng(seed)
    heads = 4
    hlen = mlen // heads
    m2 = mlen * mlen
    k_bytes = _weights(rng, kv_tiles * mlen, mlen)
    v_base = -(-len(k_bytes) // 4096) * 4096
    hbm = k_bytes + bytes(v_base - len(k_bytes)) + _weights(rng, kv_tiles * mlen, mlen)
    q_row, s_row = 0, mlen
    o_row = s_row + heads * mlen
    a = _Asm()
    a.comment(f"flash attention GQA: {heads} heads x HLEN {hlen}, {kv_tiles} KV tiles of {mlen}; MLEN {mlen}")
    a.emit("S_LD_FP f3, gp0, 3")   # softmax scale
    with a.loop("gp3", outer):
        a.set("gp10", 0)           # HBM offset of the KV tile
        with a.loop("gp12", kv_tiles):
            for which, base, tile in (("K", 0, 0), ("V", v_base, 1)):
                a.comment(f"prefetch {which} tile")
                _w_region(a, base, kv_tiles * mlen, mlen)
                a.set("gp1", tile * m2)
                a.emit("H_PREFETCH_M gp1, gp10, a1, 1, 0")
            a.comment("scores S_h = Q_h K^T for every head")
            a.set("gp1", 0)
            a.set("gp2", q_row * mlen)
            a.emit("M_BTMM 0, gp1, gp2")
            a.set("gp4", s_row * mlen)
            a.emit("M_BMM_WO gp4, 0")
            a.comment("online softmax per score row")
            with a.loop("gp14", heads * mlen // 8):
                for _ in range(8):
                    a.emit("V_RED_MAX f4, gp4")
                    a.emit("S_MAX_FP f5, f5, f4")
                    a.emit("V_SUB_VF gp4, gp4, f5, 0")
                    a.emit("V_MUL_VF gp4, gp4, f3, 0")
                    a.emit("V_EXP_V gp4, gp4")
                    a.emit("V_RED_SUM f6, gp4")
                    a.emit("S_SUB_FP f7, f4, f5")
                    a.emit("S_EXP_FP f7, f7")
                    a.emit("S_MUL_FP f6, f6, f7")
                    a.add("gp4", mlen)
            a.comment("O += P V (column blocks of the V tile)")
            a.set("gp6", m2)
            a.set("gp7", o_row * mlen)
            with a.loop("gp15", mlen // blen):
                a.set("gp8", s_row * mlen)
                a.emit("M_TMM 0, gp8, gp6")
                a.emit("M_MM_WO gp7, gp0, 0")
                a.add("gp6", blen * mlen)
                a.add("gp7", blen)
            _add(a, "gp10", m2, "gp1")
    return BenchProgram(
        name=f"flash attention GQA MLEN {mlen}", asm=a.text(),
        overrides={"MLEN": mlen, "VLEN": mlen, "BLEN": blen, "HLEN": hlen, "BROADCAST_AMOUNT": heads,
                   "MAX_LOOP_INSTRUCTIONS": BIG_LOOP},
        hbm=hbm, vram=_vram_rows(rng, mlen, mlen), outer=outer)


def fp_sram_image() -> bytes:
    """FP SRAM constants the programs load: [1] = 1.0, [2] = -1.0, [3] = 0.125 (softmax scale)."""
    return np.array([0.0, 1.0, -1.0, 0.125, 0.0, 0.0, 0.0, 0.0], dtype="<f2").tobytes()
