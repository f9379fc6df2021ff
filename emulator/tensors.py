"""Tensors in and out of PLENA memories: MXFP8 quantisation and HBM placement, E4M3/E8M0 decode,
bf16 conversions and the golden-check re-ordering of VRAM rows.

Everything here is vectorised numpy.  Two quantisers exist in PLENA and they differ in details:

* the Python image writer (``plena_quant`` ``_mx_fp_quantize_hardware``, hbm-dma-mx-formats.md
  §2.5), which built every corpus ``hbm.bin``.  ``quantize_mxfp8`` reproduces it byte for byte,
  including its float32-or-bfloat16 arithmetic (the test benches quantise some tensors as
  ``torch.bfloat16``; the corpus records that as ``stored_dtype``);
* the Rust H_STORE_V quantiser (§2.4), which is not in this module.

HBM layout of an MXFP8 tensor [R, C] at base B (§4.3): element (r, c) at ``B + r*C + c``, then the
scale rows, scale of (r, c) at ``B + R*C + r*ceil(C/8) + c//8``.  A program loads it with
``SCALE = R*C`` and (row-strided) ``STRIDE = C``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from emulator.core.numerics import e4m3_decode_table, e8m0_decode_table

from emulator.errors import ImageError, InputError

MX_BLOCK = 8                 # elements sharing one E8M0 scale
E4M3_BIAS = 7
E4M3_MAX_EXP = 7             # largest unbiased element exponent the writer produces
E4M3_MIN_EXP = -7            # exponent field 0 ("subnormal" in the writer's convention)
E8M0_BIAS = 127
WRITER_EPS = np.float32(1e-9)  # the image writer adds 1e-9 before every log2 and sign

Arithmetic = Literal["float32", "bfloat16"]
ARITHMETICS: tuple[str, ...] = ("float32", "bfloat16")

_F32_QNAN_BIT = np.uint32(0x00400000)
_X86_DEFAULT_NAN = np.uint32(0xFFC00000)   # what x86 returns for 0*inf (negative quiet NaN)


# --------------------------------------------------------------------------------------------
# bf16 <-> f32 / f16
# --------------------------------------------------------------------------------------------

def _f32_bits(x) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32)).view(np.uint32)


def f32_to_bf16_bits(x) -> np.ndarray:
    """f32 -> bf16 bits as the reference's VRAM/MRAM cast does (matrix-vector-machines.md §2.1).

    Round-to-nearest-even on the magnitude; for NaNs the payload is rounded like a mantissa and a
    carry out of it saturates the exponent, so 0x7FFFFFFF and 0x7F800001 become +Inf.  No quieting.
    """
    u = _f32_bits(x).astype(np.uint64)
    sign = (u >> 31) << 15
    mag = u & 0x7FFFFFFF
    rounded = (mag + 0x7FFF + ((mag >> 16) & 1)) >> 16
    # Only a NaN can carry past the all-ones exponent; the reference saturates it to Inf.
    rounded = np.where(rounded == 0x8000, 0x7F80, rounded)
    return (sign | rounded).astype(np.uint16)


def f32_to_bf16_bits_quiet(x) -> np.ndarray:
    """f32 -> bf16 bits as ``half::bf16::from_f32`` (FP registers, FP SRAM preload): RNE for
    numbers, a NaN becomes ``(bits >> 16) | 0x0040`` (quiet, sign and top payload kept)."""
    f = np.asarray(x, dtype=np.float32)
    u = _f32_bits(f)
    nan = np.isnan(f)
    out = f32_to_bf16_bits(f)
    return np.where(nan, ((u >> 16) | 0x0040).astype(np.uint16), out).astype(np.uint16)


def bf16_bits_to_f32(bits) -> np.ndarray:
    """bf16 bit patterns (any integer array) -> float32, exact (``bits << 16``)."""
    b = np.asarray(bits)
    if b.dtype.kind not in "ui":
        raise InputError(f"bf16 bits must be an integer array, got dtype {b.dtype}")
    return (b.astype(np.uint32) << 16).view(np.float32)


def f16_bits_to_f32(bits) -> np.ndarray:
    """IEEE f16 bits -> float32 as x86 hardware converts: exact, signalling NaNs quieted
    (numpy's own conversion keeps the signalling bit, so NaNs are handled by hand)."""
    h = np.asarray(bits)
    if h.dtype == np.float16:
        h = h.view(np.uint16)
    h = h.astype(np.uint16)
    f = h.view(np.float16).astype(np.float32)
    nan = (h & 0x7C00) == 0x7C00
    nan &= (h & 0x03FF) != 0
    if nan.any():
        hb = h.astype(np.uint32)
        nan_bits = ((hb & 0x8000) << 16) | 0x7F800000 | ((hb & 0x03FF) << 13) | _F32_QNAN_BIT
        f = np.where(nan, nan_bits.view(np.float32), f)
    return f.astype(np.float32)


def f16_to_bf16_bits(x) -> np.ndarray:
    """FP SRAM preload conversion: f16 (np.float16 values or uint16 bits) -> f32 exact (sNaN
    quieted) -> bf16 by ``half::bf16::from_f32``.  f16 0x7C01 -> 0x7FC0, 0x7DFF -> 0x7FFF."""
    return f32_to_bf16_bits_quiet(f16_bits_to_f32(x))


def _round_to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest bf16 (torch's float -> bfloat16 cast), as float32."""
    return bf16_bits_to_f32(f32_to_bf16_bits(x))


# --------------------------------------------------------------------------------------------
# The image writer's quantiser
# --------------------------------------------------------------------------------------------

def _as_rows(x: np.ndarray) -> np.ndarray:
    """Rows as the writer blocks them: 1-D -> one row, N-D -> leading dims flattened."""
    if x.ndim == 0:
        raise InputError("cannot quantise a 0-d array: give at least one dimension")
    if x.ndim == 1:
        return x.reshape(1, -1)
    return x.reshape(-1, x.shape[-1])


def _arithmetic_for(x: np.ndarray, arithmetic: str | None) -> str:
    if arithmetic is None:
        return "bfloat16" if x.dtype.name == "bfloat16" else "float32"
    if arithmetic not in ARITHMETICS:
        raise InputError(f"arithmetic must be one of {ARITHMETICS}, got {arithmetic!r}")
    return arithmetic


def _float32_input(x) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.name != "bfloat16" and arr.dtype.kind not in "biuf":
        raise InputError(f"cannot quantise an array of dtype {arr.dtype}")
    f = arr.astype(np.float32)
    if np.isnan(f).any():
        raise InputError("cannot quantise NaN: the PLENA image writer has no defined encoding for it")
    return f


def _hw_round(x: np.ndarray) -> np.ndarray:
    """The writer's HWROUND: keep two fraction bits (floor), then round half to even."""
    return np.rint(np.floor(x * np.float32(4)) / np.float32(4))


def quantize_mxfp8(x, arithmetic: Arithmetic | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Quantise like the PLENA HBM image writer (hbm-dma-mx-formats.md §2.5), bit-exactly.

    ``x`` is blocked by rows (1-D = one row, N-D = leading dims flattened).  ``arithmetic`` is the
    dtype the writer computed in: ``"float32"`` (default, and for any non-bf16 input) or
    ``"bfloat16"`` (default for ml_dtypes.bfloat16 input; every intermediate rounded to bf16 the
    way torch does, which can pick a scale one larger, e.g. block max 255 -> E = 8).

    Writer quirks kept on purpose: an all-zero block gets scale byte 97 (E = -30 from the 1e-9);
    a value that rounds to zero is 0x00 whatever its sign; the mantissa saturates instead of
    carrying (1.97 -> 1.875); and a value in [2^-7, 2^-6) of the block scale gets exponent field
    0, read as (m/8)·2^-7, so it saturates at 0.875·2^-7.

    Returns ``(elements uint8 [R, C], scales uint8 [R, ceil(C/8)])``.  NaN input is refused; ±Inf
    encodes deterministically (scale 254, element 0x77/0xF7) as the writer does.
    """
    mode = _arithmetic_for(np.asarray(x), arithmetic)
    rows = _as_rows(_float32_input(x))
    rnd = _round_to_bf16 if mode == "bfloat16" else (lambda a: a)

    def log2_floor(v: np.ndarray) -> np.ndarray:
        # A correctly rounded f32 log2 (computed in f64), rounded further to bf16 in bf16 mode.
        with np.errstate(divide="ignore"):
            return np.floor(rnd(np.log2(v.astype(np.float64)).astype(np.float32)))

    n_rows, n_cols = rows.shape
    n_blocks = -(-n_cols // MX_BLOCK)
    padded = np.zeros((n_rows, n_blocks * MX_BLOCK), dtype=np.float32)
    padded[:, :n_cols] = rnd(rows)
    blocks = padded.reshape(n_rows, n_blocks, MX_BLOCK)

    with np.errstate(over="ignore", invalid="ignore"):
        block_max = rnd(np.abs(blocks).max(axis=-1) + WRITER_EPS)
        shared_exp = np.clip(log2_floor(block_max), -128, 127)
        scaled = rnd(blocks / np.ldexp(np.float32(1), shared_exp.astype(np.int32))[..., None])

        sign = np.sign(rnd(scaled + WRITER_EPS))
        value = np.abs(scaled)
        exp = log2_floor(rnd(value + WRITER_EPS))
        overflow = exp > E4M3_MAX_EXP
        exp = np.clip(exp, E4M3_MIN_EXP, E4M3_MAX_EXP)
        mant = rnd(value / np.ldexp(np.float32(1), exp.astype(np.int32)))
        normal = exp != E4M3_MIN_EXP
        q_normal = np.clip(_hw_round(rnd(rnd(mant - np.float32(1)) * np.float32(8))), 0, 7)
        q_sub = np.clip(_hw_round(rnd(mant * np.float32(8))), 0, 7)
    q = np.where(normal, q_normal, q_sub)
    q[overflow] = 7

    # pack_fp_to_bin works on the signed mantissa, so a zero sign (x == -1e-9 after scaling)
    # yields a zero mantissa and the "mantissa - 1" of a normal exponent field goes to -1.
    signed_mant = sign * np.where(normal, np.float32(1) + q / np.float32(8), q / np.float32(8))
    exp_field = exp + E4M3_BIAS
    abs_mant = np.abs(signed_mant)
    mant_field = np.where(exp_field == 0, abs_mant, abs_mant - np.float32(1)) * np.float32(8)
    code = (signed_mant < 0) * np.float32(128) + exp_field * np.float32(8) + mant_field
    elements = np.trunc(code).astype(np.int64).reshape(n_rows, -1)[:, :n_cols].astype(np.uint8)
    scales = ((shared_exp.astype(np.int64) + E8M0_BIAS) & 0xFF).astype(np.uint8)
    return elements, scales


# --------------------------------------------------------------------------------------------
# Decoding (the emulator's DMA side, §2.2 / §2.3 and verified-corrections A6)
# --------------------------------------------------------------------------------------------

E4M3_TABLE = e4m3_decode_table()
E8M0_TABLE = e8m0_decode_table()
E4M3_TABLE.flags.writeable = False
E8M0_TABLE.flags.writeable = False


def _as_u8(data) -> np.ndarray:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    arr = np.asarray(data)
    if arr.dtype != np.uint8:
        if arr.dtype.kind not in "ui" or (arr.size and (arr.min() < 0 or arr.max() > 255)):
            raise InputError(f"expected bytes or uint8 codes, got dtype {arr.dtype}")
        arr = arr.astype(np.uint8)
    return arr


def decode_e4m3(codes) -> np.ndarray:
    """E4M3 codes -> float32 as the emulator decodes them: subnormals (m/8)·2^-7, 0x78/0xF8 = ±Inf,
    e=15 m≠0 = NaN with payload ``sign | 0x7F800000 | m << 20`` (A6)."""
    return E4M3_TABLE[_as_u8(codes)]


def decode_e8m0(codes) -> np.ndarray:
    """E8M0 scale codes -> float32: 0 -> 0.0, 255 -> +Inf, else 2^(b-127)."""
    return E8M0_TABLE[_as_u8(codes)]


def dequantize_mx(elements, scales) -> np.ndarray:
    """element × scale in f32 per 8-element block, as the DMA computes it.

    ``elements`` uint8 [..., C], ``scales`` uint8 [..., ceil(C/8)].  NaNs follow x86: an element
    NaN comes out quieted with its payload (0x79 -> 0x7FD00000), 0·Inf is the default NaN
    0xFFC00000 (verified-corrections A6).
    """
    e_codes = _as_u8(elements)
    s_codes = _as_u8(scales)
    n_cols = e_codes.shape[-1]
    if s_codes.shape[-1] != -(-n_cols // MX_BLOCK) or s_codes.shape[:-1] != e_codes.shape[:-1]:
        raise InputError(f"scales shape {s_codes.shape} does not match elements shape {e_codes.shape}")
    elem = decode_e4m3(e_codes)
    scale = np.repeat(decode_e8m0(s_codes), MX_BLOCK, axis=-1)[..., :n_cols]
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        prod = elem * scale
    nan_out = np.isnan(prod)
    if nan_out.any():
        elem_bits = elem.view(np.uint32)
        fixed = np.where(np.isnan(elem), elem_bits | _F32_QNAN_BIT, _X86_DEFAULT_NAN).astype(np.uint32)
        prod = np.where(nan_out, fixed.view(np.float32), prod)
    return prod.astype(np.float32)


# --------------------------------------------------------------------------------------------
# HBM placement
# --------------------------------------------------------------------------------------------

def _shape2d(shape: Sequence[int]) -> tuple[int, int]:
    dims = tuple(int(d) for d in shape)
    if not dims or any(d <= 0 for d in dims):
        raise InputError(f"tensor shape must have positive dimensions, got {tuple(shape)}")
    if len(dims) == 1:
        return 1, dims[0]
    return int(np.prod(dims[:-1])), dims[-1]


def _round_up(n: int, align: int) -> int:
    return -(-n // align) * align


def _check_align(section_align: int) -> int:
    align = int(section_align)
    if align <= 0:
        raise InputError(f"section_align must be a positive number of bytes, got {section_align}")
    return align


def mx_layout(shape: Sequence[int], base: int, storage_shape: Sequence[int] | None = None,
              section_align: int = 1) -> dict:
    """Where an MXFP8 tensor of ``shape`` lives when placed at ``base`` (§4.3), and what a program
    needs to load it.

    ``storage_shape`` (rows, row_elements) pads rows with zero bytes and adds all-zero rows, as the
    test bench's ``tensor_layouts`` do; by default it is the tensor's own [R, C] (leading dims
    flattened).  ``section_align`` pads the element section and the scale section each to a
    multiple of that many bytes, as the direct-emit test benches' writer does with its 32-byte
    HBM rows (the corpus calls it ``section_pad_bytes``); the ATen writer packs tightly (1).

    Keys: ``rows``, ``cols`` (source), ``storage_rows``, ``storage_cols``, ``element_addr``,
    ``element_bytes``, ``scale_addr``, ``scale_bytes``, ``scale_row_bytes`` (data bytes, without
    section padding), ``end`` (one past the last byte incl. padding), ``SCALE`` (value for
    C_SET_SCALE_REG: scale_addr - element_addr), ``STRIDE`` (row pitch for C_SET_STRIDE_REG with
    rstride=1) and ``dma_scale_addressing`` (False when the row length is not a multiple of 8:
    the DMA then looks scales up at ``base + SCALE + offset/8``, not where the writer put them).
    """
    base = int(base)
    if base < 0:
        raise InputError(f"HBM address must be >= 0, got {base}")
    align = _check_align(section_align)
    rows, cols = _shape2d(shape)
    if storage_shape is None:
        s_rows, s_cols = rows, cols
    else:
        if len(storage_shape) != 2:
            raise InputError(f"storage_shape must be (rows, row_elements), got {tuple(storage_shape)}")
        s_rows, s_cols = (int(d) for d in storage_shape)
        if s_rows < rows or s_cols < cols:
            raise InputError(f"storage shape {(s_rows, s_cols)} is smaller than the tensor's {(rows, cols)}")
    element_bytes = s_rows * s_cols
    scale_row_bytes = -(-s_cols // MX_BLOCK)
    scale_bytes = s_rows * scale_row_bytes
    scale_addr = base + _round_up(element_bytes, align)
    return {
        "rows": rows, "cols": cols, "storage_rows": s_rows, "storage_cols": s_cols,
        "element_addr": base, "element_bytes": element_bytes,
        "scale_addr": scale_addr, "scale_bytes": scale_bytes,
        "scale_row_bytes": scale_row_bytes,
        "end": scale_addr + _round_up(scale_bytes, align),
        "SCALE": scale_addr - base, "STRIDE": s_cols,
        "dma_scale_addressing": s_cols % MX_BLOCK == 0,
    }


def mx_tensor_bytes(x, arithmetic: Arithmetic | None = None, storage_shape: Sequence[int] | None = None,
                    section_align: int = 1) -> tuple[bytes, dict]:
    """The bytes the image writer emits for one MXFP8 tensor (element rows, then scale rows, each
    section zero-padded to ``section_align``) and its layout relative to address 0."""
    arr = np.asarray(x)
    layout = mx_layout(arr.shape, 0, storage_shape, section_align)
    elements, scales = quantize_mxfp8(arr, arithmetic)
    rows, cols = layout["rows"], layout["cols"]
    image = np.zeros(layout["end"], dtype=np.uint8)
    elem_region = image[:layout["element_bytes"]].reshape(layout["storage_rows"], layout["storage_cols"])
    elem_region[:rows, :cols] = elements
    scale_end = layout["scale_addr"] + layout["scale_bytes"]
    scale_region = image[layout["scale_addr"]:scale_end].reshape(layout["storage_rows"], layout["scale_row_bytes"])
    scale_region[:rows, :scales.shape[1]] = scales
    return image.tobytes(), layout


def _writable_u8(hbm) -> np.ndarray:
    if isinstance(hbm, bytearray):
        return np.frombuffer(hbm, dtype=np.uint8)
    if isinstance(hbm, np.ndarray) and hbm.dtype == np.uint8 and hbm.ndim == 1 and hbm.flags.writeable:
        return hbm
    raise InputError("HBM must be a bytearray or a writable 1-D uint8 numpy array")


def place_tensor(hbm, x, base: int, arithmetic: Arithmetic | None = None,
                 storage_shape: Sequence[int] | None = None, section_align: int = 1) -> dict:
    """Quantise ``x`` and write it into ``hbm`` (bytearray or writable uint8 array) at ``base``;
    returns its ``mx_layout`` (with ``SCALE``/``STRIDE`` for the program).  The tensor must fit."""
    mem = _writable_u8(hbm)
    data, _ = mx_tensor_bytes(x, arithmetic, storage_shape, section_align)
    layout = mx_layout(np.asarray(x).shape, base, storage_shape, section_align)
    if layout["end"] > mem.size:
        raise ImageError(f"tensor needs HBM bytes [{base}, {layout['end']}) but HBM holds {mem.size} bytes")
    mem[base:layout["end"]] = np.frombuffer(data, dtype=np.uint8)
    return layout


@dataclass(frozen=True)
class HbmTensor:
    """One tensor of an HBM image.  ``raw`` tensors are uint8 bytes copied as they are (the test
    benches' ``int`` tensors); the others are quantised to MXFP8 with ``arithmetic``.
    ``section_align`` as in ``mx_layout`` (a raw tensor is one section)."""

    name: str
    data: np.ndarray
    hbm_addr: int
    arithmetic: Arithmetic | None = None
    storage_shape: tuple[int, int] | None = None
    raw: bool = False
    section_align: int = 1


def _entries(tensors: Iterable) -> list[HbmTensor]:
    out: list[HbmTensor] = []
    for t in tensors:
        if isinstance(t, HbmTensor):
            out.append(t)
        elif isinstance(t, tuple) and len(t) == 3:
            name, data, addr = t
            arr = np.asarray(data)
            out.append(HbmTensor(str(name), arr, int(addr), raw=arr.dtype == np.uint8))
        else:
            raise InputError(f"HBM image entries are (name, array, hbm_addr) or HbmTensor, got {t!r}")
    names = [t.name for t in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise InputError(f"tensor names appear more than once: {sorted(dup)}")
    for t in out:
        if t.raw and np.asarray(t.data).dtype != np.uint8:
            raise InputError(f"raw tensor {t.name!r} must be uint8, got {np.asarray(t.data).dtype}")
    return out


def _layout_of(t: HbmTensor) -> dict:
    if t.hbm_addr < 0:
        raise InputError(f"tensor {t.name!r}: HBM address must be >= 0, got {t.hbm_addr}")
    if t.raw:
        n = int(np.asarray(t.data).size)
        return {"element_addr": t.hbm_addr, "element_bytes": n,
                "end": t.hbm_addr + _round_up(n, _check_align(t.section_align))}
    return mx_layout(np.asarray(t.data).shape, t.hbm_addr, t.storage_shape, t.section_align)


def hbm_image_layouts(tensors: Iterable) -> dict[str, dict]:
    """Layouts of every tensor of an image, in address order (raw tensors: ``element_addr``,
    ``element_bytes``, ``end``).  Overlapping tensors raise ImageError."""
    layouts: dict[str, dict] = {}
    end_prev, name_prev = 0, None
    for t in sorted(_entries(tensors), key=lambda t: t.hbm_addr):
        lay = _layout_of(t)
        if t.hbm_addr < end_prev:
            raise ImageError(f"tensor {t.name!r} at HBM address {t.hbm_addr} overlaps {name_prev!r}, "
                             f"which ends at {end_prev}")
        layouts[t.name] = lay
        end_prev, name_prev = lay["end"], t.name
    return layouts


def build_hbm_image(tensors: Iterable) -> bytes:
    """An HBM preload as the test benches write it: tensors in address order, zero bytes up to
    each ``hbm_addr``, MXFP8 element rows then scale rows, nothing after the last tensor.

    Entries are ``(name, array, hbm_addr)`` (uint8 arrays are copied raw, anything else is
    quantised in float32 arithmetic) or ``HbmTensor``.  Overlapping tensors raise ImageError.
    """
    entries = _entries(tensors)
    layouts = hbm_image_layouts(entries)
    image = np.zeros(max((lay["end"] for lay in layouts.values()), default=0), dtype=np.uint8)
    for t in entries:
        lay = layouts[t.name]
        if t.raw:
            image[t.hbm_addr:t.hbm_addr + lay["element_bytes"]] = np.asarray(t.data).reshape(-1)
        else:
            data, _ = mx_tensor_bytes(t.data, t.arithmetic, t.storage_shape, t.section_align)
            image[t.hbm_addr:lay["end"]] = np.frombuffer(data, dtype=np.uint8)
    return image.tobytes()


_STORED_DTYPES = {"torch.float32": "float32", "torch.bfloat16": "bfloat16"}


def hbm_tensors_from_layout(hbm_layout: Mapping, inputs: Mapping[str, np.ndarray]) -> list[HbmTensor]:
    """``HbmTensor`` entries from a corpus ``case.json`` ``hbm_layout`` and its ``inputs.npz``.

    ``stored_dtype`` picks the quantiser arithmetic, ``section_pad_bytes`` the section alignment;
    ``kind: uint8`` tensors are raw bytes.  Recorded addresses and sizes are checked against
    ``mx_layout`` (InputError when they disagree).
    """
    align = int(hbm_layout.get("section_pad_bytes", 1))
    out: list[HbmTensor] = []
    for name, spec in hbm_layout["tensors"].items():
        if name not in inputs:
            raise InputError(f"hbm_layout names tensor {name!r} but the inputs have no such array")
        data = np.asarray(inputs[name])
        kind = spec.get("kind", "")
        addr = int(spec["hbm_addr"])
        if kind == "uint8":
            if data.size != int(spec.get("numel", data.size)):
                raise InputError(f"tensor {name!r}: {data.size} values, layout says {spec['numel']}")
            if data.dtype.kind not in "ui" or (data.size and (data.min() < 0 or data.max() > 255)):
                raise InputError(f"tensor {name!r} of kind uint8 needs integers in 0..255")
            out.append(HbmTensor(name, data.astype(np.uint8).reshape(-1), addr, raw=True, section_align=align))
            continue
        if not kind.startswith("mxfp8"):
            raise InputError(f"tensor {name!r}: unsupported kind {kind!r}")
        stored = spec.get("stored_dtype", "torch.float32")
        if stored not in _STORED_DTYPES:
            raise InputError(f"tensor {name!r}: unsupported stored_dtype {stored!r}")
        if "shape" in spec and tuple(spec["shape"]) != data.shape:
            raise InputError(f"tensor {name!r}: input shape {data.shape}, layout says {tuple(spec['shape'])}")
        lay = mx_layout(data.shape, addr, section_align=align)
        for key in ("element_bytes", "scale_addr", "scale_bytes"):
            if key in spec and int(spec[key]) != lay[key]:
                raise InputError(f"tensor {name!r}: layout {key} = {spec[key]}, expected {lay[key]}")
        out.append(HbmTensor(name, data, addr, arithmetic=_STORED_DTYPES[stored], section_align=align))
    return out


def read_mx_tensor(hbm, base: int, shape: Sequence[int], scale_base: int | None = None) -> np.ndarray:
    """Dequantise an MXFP8 tensor [R, C] (leading dims flattened for the layout) from HBM bytes:
    elements at ``base + r*C + c``, scales at ``scale_base + r*ceil(C/8) + c//8`` (default
    ``scale_base = base + R*C``), element × scale in f32 as the DMA computes it.  Bytes past the
    end of ``hbm`` read as zero, like an unwritten HBM.  Returns float32 of ``shape``."""
    mem = _as_u8(hbm).reshape(-1)
    lay = mx_layout(shape, base)
    rows, cols = lay["rows"], lay["cols"]
    s_base = lay["scale_addr"] if scale_base is None else int(scale_base)
    if s_base < 0:
        raise InputError(f"scale address must be >= 0, got {s_base}")

    def window(start: int, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.uint8)
        avail = mem[start:start + n]
        out[:avail.size] = avail
        return out

    elements = window(lay["element_addr"], rows * cols).reshape(rows, cols)
    scales = window(s_base, rows * lay["scale_row_bytes"]).reshape(rows, lay["scale_row_bytes"])
    return dequantize_mx(elements, scales).reshape(tuple(int(d) for d in shape))


# --------------------------------------------------------------------------------------------
# VRAM read-back in the golden-check order
# --------------------------------------------------------------------------------------------

def read_vram_tensor(vram_rows_u16, start_row: int, num_rows: int, row_dim: int,
                     num_batches: int | None = None, elements_per_batch: int | None = None,
                     slice_per_row: int | None = None) -> np.ndarray:
    """Values the PLENA golden check reads from VRAM, as float32.

    Reads ``num_rows`` rows of ``row_dim`` bf16 values starting at row ``start_row`` of the VRAM
    viewed as a flat lane stream (rows past the end of ``vram_rows_u16`` are zero, as in a
    trimmed dump).  ``slice_per_row`` keeps the first values of each row (slice mode).

    Without ``num_batches`` the result is [num_rows, row_dim'].  With it, the rows hold column
    blocks in the ``[hidden/VLEN, batch, VLEN]`` layout (chunk ``g*num_batches + b``) and are
    re-ordered to batch-major [num_batches, chunks_per_batch*row_dim'], truncated to
    ``elements_per_batch`` per batch when that is smaller.
    """
    vram = np.asarray(vram_rows_u16)
    if vram.dtype.kind not in "ui" or vram.ndim != 2:
        raise InputError(f"VRAM rows must be a 2-D array of bf16 bits, got {vram.dtype} {vram.shape}")
    start_row, num_rows, row_dim = int(start_row), int(num_rows), int(row_dim)
    if start_row < 0 or num_rows <= 0 or row_dim <= 0:
        raise InputError(f"bad VRAM window: start_row={start_row} num_rows={num_rows} row_dim={row_dim}")
    flat = vram.reshape(-1).astype(np.uint16)
    first, count = start_row * row_dim, num_rows * row_dim
    lanes = np.zeros(count, dtype=np.uint16)
    avail = flat[first:first + count]
    lanes[:avail.size] = avail
    values = bf16_bits_to_f32(lanes).reshape(num_rows, row_dim)
    if slice_per_row is not None:
        if not 0 < int(slice_per_row) <= row_dim:
            raise InputError(f"slice_per_row must be in 1..{row_dim}, got {slice_per_row}")
        values = values[:, :int(slice_per_row)]
    if num_batches is None:
        return values
    nb = int(num_batches)
    if nb <= 0 or num_rows % nb:
        raise InputError(f"{num_rows} rows cannot be split into {num_batches} batches of column blocks")
    width = values.shape[1]
    groups = num_rows // nb
    batched = values.reshape(groups, nb, width).transpose(1, 0, 2).reshape(nb, groups * width)
    if elements_per_batch is not None and int(elements_per_batch) < batched.shape[1]:
        batched = batched[:, :int(elements_per_batch)]
    return np.ascontiguousarray(batched)
