"""MXFP8 image writer, HBM placement, E4M3/E8M0 decode, bf16 conversions, VRAM read-back."""

from __future__ import annotations

import json
import math

import ml_dtypes
import numpy as np
import pytest

from emulator.errors import ImageError, InputError
from emulator.images import mram_dump_bytes
from emulator.tensors import (
    HbmTensor,
    bf16_bits_to_f32,
    build_hbm_image,
    decode_e4m3,
    decode_e8m0,
    dequantize_mx,
    f16_to_bf16_bits,
    f32_to_bf16_bits,
    f32_to_bf16_bits_quiet,
    hbm_image_layouts,
    hbm_tensors_from_layout,
    mx_layout,
    place_tensor,
    quantize_mxfp8,
    read_mx_tensor,
    read_vram_tensor,
)
from .conftest import corpus_cases, needs_corpus

RNG_SEED = 20240611


def _one_block(*values: float) -> np.ndarray:
    block = np.zeros((1, 8), dtype=np.float32)
    block[0, :len(values)] = values
    return block


# ---------------------------------------------------------------------------------------------
# quantize_mxfp8: the Python image writer (hbm-dma-mx-formats.md §2.5)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, code", [
    (1.0625, 0x38),      # 0.5 ulp: truncate to 2 fraction bits, tie -> even (down)
    (1.0859375, 0x38),   # 0.6875 ulp truncates to 0.5 -> tie -> even
    (1.1875, 0x3A),      # 1.5 ulp -> tie -> even (up to 2)
    (1.328125, 0x3A),    # 2.625 ulp truncates to 2.5 -> tie -> 2
    (1.96875, 0x3F),     # 7.75 ulp rounds to 8, saturates at 7: no carry into the exponent
    (-1.5, 0xBC),
])
def test_writer_rounding_examples(value, code):
    elements, scales = quantize_mxfp8(_one_block(value))
    assert elements[0, 0] == code
    assert scales[0, 0] == 127           # block max in [1, 2) -> E = 0


def test_writer_powers_of_two_block():
    elements, scales = quantize_mxfp8(_one_block(0.5, 1.0, 2.0, 4.0))
    assert elements[0, :4].tolist() == [0x20, 0x28, 0x30, 0x38]
    assert scales.tolist() == [[129]]


def test_writer_zero_block_scale_97_and_negative_underflow_is_plus_zero():
    elements, scales = quantize_mxfp8(np.zeros((2, 8), dtype=np.float32))
    assert scales.tolist() == [[97], [97]]              # E = floor(log2(1e-9)) = -30
    assert not elements.any()
    elements, _ = quantize_mxfp8(_one_block(1.0, -2.0 ** -12))
    assert elements[0, 1] == 0x00                         # the Rust store writes 0x80 here


def test_writer_subnormal_elements():
    elements, _ = quantize_mxfp8(_one_block(1.0, 2.0 ** -9, 3 * 2.0 ** -10, -(2.0 ** -8)))
    assert elements[0, 1:4].tolist() == [0x02, 0x03, 0x84]
    assert decode_e4m3(elements[0, 1:4]).tolist() == [2.0 ** -9, 3 * 2.0 ** -10, -(2.0 ** -8)]


def test_writer_exponent_field_zero_saturates():
    # value/scale in [2^-7, 2^-6) gets exponent -7, which the writer encodes as field 0
    # ("subnormal", m/8 * 2^-7), so the mantissa saturates at 7 instead of using field 1.
    elements, _ = quantize_mxfp8(_one_block(1.0, 1.5 * 2.0 ** -7, 2.0 ** -6))
    assert elements[0, 1:3].tolist() == [0x07, 0x08]
    assert decode_e4m3(elements[0, 1:2])[0] == 0.875 * 2.0 ** -7


def test_writer_infinity_encodes_like_the_writer():
    elements, scales = quantize_mxfp8(_one_block(np.inf, 1.0, -np.inf))
    assert scales[0, 0] == 254
    assert elements[0, :3].tolist() == [0x77, 0x00, 0xF7]


def test_writer_refuses_nan():
    with pytest.raises(InputError, match="NaN"):
        quantize_mxfp8(_one_block(1.0, np.nan))


def test_writer_bfloat16_arithmetic_can_pick_a_larger_scale():
    # log2(255) = 7.994 rounds to 8.0 in bf16, so the bf16 writer scales by 2^8, not 2^7.
    x = _one_block(255.0)
    e32, s32 = quantize_mxfp8(x, "float32")
    e16, s16 = quantize_mxfp8(x, "bfloat16")
    assert (s32[0, 0], e32[0, 0]) == (134, 0x3F)
    assert (s16[0, 0], e16[0, 0]) == (135, 0x37)
    assert decode_e4m3(e32[0, :1]) * 2.0 ** 7 == decode_e4m3(e16[0, :1]) * 2.0 ** 8 == 240
    # ml_dtypes bfloat16 input selects bf16 arithmetic by default
    assert quantize_mxfp8(x.astype(ml_dtypes.bfloat16))[1][0, 0] == 135


def test_writer_shapes_and_partial_blocks():
    rng = np.random.default_rng(RNG_SEED)
    x = rng.standard_normal((3, 4, 20)).astype(np.float32)
    elements, scales = quantize_mxfp8(x)
    assert elements.shape == (12, 20) and scales.shape == (12, 3)
    flat_e, flat_s = quantize_mxfp8(x.reshape(12, 20))
    assert np.array_equal(elements, flat_e) and np.array_equal(scales, flat_s)
    one_d_e, _ = quantize_mxfp8(x[0, 0])
    assert one_d_e.shape == (1, 20)
    with pytest.raises(InputError):
        quantize_mxfp8(np.float32(1.0))
    with pytest.raises(InputError):
        quantize_mxfp8(x, arithmetic="float16")


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------

def _e4m3_digest_value(code: int) -> float:
    """§2.2 table, written out per code."""
    s, e, m = code >> 7, (code >> 3) & 15, code & 7
    sign = -1.0 if s else 1.0
    if e == 0:
        return sign * (m / 8) * 2.0 ** -7
    if e == 15:
        return sign * math.inf if m == 0 else math.nan
    return sign * (1 + m / 8) * 2.0 ** (e - 7)


def test_e4m3_decode_all_codes_match_the_table():
    got = decode_e4m3(np.arange(256, dtype=np.uint8))
    assert got.dtype == np.float32
    for code in range(256):
        want = _e4m3_digest_value(code)
        if math.isnan(want):
            s, m = code >> 7, code & 7
            assert got[code:code + 1].view(np.uint32)[0] == (s << 31) | 0x7F800000 | (m << 20)
        else:
            assert got[code] == want and math.copysign(1, got[code]) == math.copysign(1, want), code


def test_e4m3_decode_agrees_with_ml_dtypes_except_subnormals():
    codes = np.arange(256, dtype=np.uint8)
    ours = decode_e4m3(codes)
    ieee = codes.view(ml_dtypes.float8_e4m3).astype(np.float32)   # IEEE-style E4M3 (2^-6 subnormals)
    exp = (codes >> 3) & 15
    normal = (exp != 0) & ~np.isnan(ieee)
    assert np.array_equal(ours[normal], ieee[normal])
    assert np.array_equal(ours[exp == 0], ieee[exp == 0] / 2)     # the emulator's (m/8)*2^-7
    assert np.array_equal(np.isnan(ours), np.isnan(ieee))


def test_e8m0_decode():
    codes = np.arange(256, dtype=np.uint8)
    got = decode_e8m0(codes)
    assert got[0] == 0.0 and got[255] == np.inf and got[127] == 1.0
    mid = slice(1, 255)
    assert np.array_equal(got[mid], codes[mid].view(ml_dtypes.float8_e8m0fnu).astype(np.float32))


def test_dequantize_nan_rules():
    elements = np.array([[0x79, 0x7F, 0xF9, 0x78, 0x00, 0x38, 0x00, 0x00]], dtype=np.uint8)
    bits = f32_to_bf16_bits(dequantize_mx(elements, np.array([[127]], dtype=np.uint8)))
    assert bits[0, :3].tolist() == [0x7FD0, 0x7FF0, 0xFFD0]        # A6: quieted payloads
    inf_times_zero = dequantize_mx(elements, np.array([[0]], dtype=np.uint8))
    assert inf_times_zero[0, 3:4].view(np.uint32)[0] == 0xFFC00000  # x86 default NaN
    zero_times_inf = dequantize_mx(elements, np.array([[255]], dtype=np.uint8))
    assert zero_times_inf[0, 4:5].view(np.uint32)[0] == 0xFFC00000
    assert zero_times_inf[0, 5] == np.inf


# ---------------------------------------------------------------------------------------------
# bf16 conversions
# ---------------------------------------------------------------------------------------------

def _ml_bf16_bits(x: np.ndarray) -> np.ndarray:
    return x.astype(ml_dtypes.bfloat16).view(np.uint16)


def test_f32_to_bf16_matches_ml_dtypes_on_numbers():
    rng = np.random.default_rng(RNG_SEED)
    words = rng.integers(0, 2 ** 32, size=200_000, dtype=np.uint64).astype(np.uint32)
    low = rng.integers(0, 2 ** 23, size=20_000, dtype=np.uint64).astype(np.uint32)   # subnormals
    ties = (rng.integers(0, 2 ** 16, size=20_000, dtype=np.uint64).astype(np.uint32) << 16) | 0x8000
    near_max = np.arange(0x7F7F0000, 0x7F800000, 0x101, dtype=np.uint32)               # overflow to inf
    bits = np.concatenate([words, low, low | 0x80000000, ties, near_max, near_max | 0x80000000])
    x = bits.view(np.float32)
    x = x[~np.isnan(x)]
    assert np.array_equal(f32_to_bf16_bits(x), _ml_bf16_bits(x))
    assert np.array_equal(f32_to_bf16_bits_quiet(x), _ml_bf16_bits(x))


def test_f32_to_bf16_nan_rules():
    nans = np.array([0x7FC00000, 0xFFC00000, 0x7FFFFFFF, 0x7F800001, 0x7F818000, 0xFFA00000],
                    dtype=np.uint32).view(np.float32)
    # VRAM cast: payload rounded like a mantissa, carry saturates to Inf, no quieting
    assert f32_to_bf16_bits(nans).tolist() == [0x7FC0, 0xFFC0, 0x7F80, 0x7F80, 0x7F82, 0xFFA0]
    # half::bf16::from_f32: (bits >> 16) | 0x40
    assert f32_to_bf16_bits_quiet(nans).tolist() == [0x7FC0, 0xFFC0, 0x7FFF, 0x7FC0, 0x7FC1, 0xFFE0]


def test_bf16_to_f32_is_exact():
    bits = np.arange(2 ** 16, dtype=np.uint16)
    ours = bf16_bits_to_f32(bits)
    assert np.array_equal(ours.view(np.uint32), bits.astype(np.uint32) << 16)
    finite = ~np.isnan(ours)
    assert np.array_equal(ours[finite], bits.view(ml_dtypes.bfloat16).astype(np.float32)[finite])
    with pytest.raises(InputError):
        bf16_bits_to_f32(np.zeros(3, dtype=np.float32))


def test_f16_to_bf16_all_codes():
    codes = np.arange(2 ** 16, dtype=np.uint16)
    ours = f16_to_bf16_bits(codes)
    as_f32 = codes.view(np.float16).astype(np.float32)
    nan = np.isnan(as_f32)
    assert np.array_equal(ours[~nan], _ml_bf16_bits(as_f32[~nan]))
    # NaN: the f16 payload lands in the bf16 payload, quiet bit set, sign kept
    want_nan = (codes[nan] & 0x8000) | 0x7FC0 | ((codes[nan] & 0x3FF) >> 3)
    assert np.array_equal(ours[nan], want_nan)
    assert f16_to_bf16_bits(np.array([0x7C01, 0x7DFF], dtype=np.uint16)).tolist() == [0x7FC0, 0x7FFF]
    assert f16_to_bf16_bits(np.array([1.0, -0.0], dtype=np.float16)).tolist() == [0x3F80, 0x8000]


# ---------------------------------------------------------------------------------------------
# Placement and read-back
# ---------------------------------------------------------------------------------------------

def test_mx_layout_addresses():
    lay = mx_layout((64, 128), 4608)
    assert (lay["element_addr"], lay["element_bytes"]) == (4608, 8192)
    assert (lay["scale_addr"], lay["scale_bytes"]) == (12800, 1024)
    assert (lay["SCALE"], lay["STRIDE"], lay["end"]) == (8192, 128, 13824)
    padded = mx_layout((128,), 576, section_align=32)
    assert (padded["scale_addr"], padded["scale_bytes"], padded["end"]) == (704, 16, 736)
    store = mx_layout((3, 20), 0, storage_shape=(4, 64))
    assert (store["SCALE"], store["STRIDE"], store["scale_row_bytes"], store["end"]) == (256, 64, 8, 288)
    assert not mx_layout((2, 12), 0)["dma_scale_addressing"]
    with pytest.raises(InputError):
        mx_layout((4, 64), 0, storage_shape=(2, 64))
    with pytest.raises(InputError):
        mx_layout((0, 64), 0)


def test_place_and_read_back_within_mx_precision():
    rng = np.random.default_rng(RNG_SEED)
    x = (rng.standard_normal((16, 96)) * np.exp2(rng.integers(-20, 20, size=(16, 1)))).astype(np.float32)
    x[3, 8:16] = 0.0
    hbm = bytearray(4096)
    lay = place_tensor(hbm, x, 128)
    assert lay["SCALE"] == 16 * 96 and lay["STRIDE"] == 96
    assert hbm[:128] == bytes(128) and hbm[lay["end"]:] == bytes(4096 - lay["end"])
    back = read_mx_tensor(hbm, 128, x.shape)
    # E4M3 keeps 3 mantissa bits (error <= one step, as the writer saturates instead of
    # carrying).  Below 2^-6 of the block scale the writer uses exponent field 0, whose largest
    # value is 0.875*2^-7, so [2^-7, 2^-6) saturates there: error < 1.125*2^-7 of the scale.
    _, scales = quantize_mxfp8(x)
    block_scale = np.exp2(np.repeat(scales.astype(np.float64) - 127, 8, axis=1))
    tol = np.where(np.abs(x) >= block_scale * 2.0 ** -6, np.abs(x) / 8, block_scale * 1.125 * 2.0 ** -7)
    assert np.all(np.abs(back - x) <= tol)
    assert np.array_equal(back[3, 8:16], np.zeros(8, dtype=np.float32))
    assert read_mx_tensor(bytes(hbm), 128, x.shape).tobytes() == back.tobytes()


def test_place_tensor_errors():
    with pytest.raises(ImageError, match="HBM holds"):
        place_tensor(bytearray(100), np.ones((4, 64), dtype=np.float32), 0)
    with pytest.raises(InputError):
        place_tensor(b"\0" * 4096, np.ones((4, 64), dtype=np.float32), 0)


def test_read_mx_tensor_past_the_image_reads_zero():
    hbm = build_hbm_image([("x", np.full((2, 8), 3.0, dtype=np.float32), 0)])
    assert len(hbm) == 18
    assert read_mx_tensor(hbm, 0, (2, 8)).tolist() == [[3.0] * 8] * 2
    assert not read_mx_tensor(hbm, 64, (2, 8)).any()


def test_build_hbm_image_pads_sorts_and_rejects_overlap():
    a = np.ones((2, 8), dtype=np.float32)
    raw = np.arange(5, dtype=np.uint8)
    image = build_hbm_image([("b", raw, 64), ("a", a, 8)])
    assert image[:8] == bytes(8)
    assert image[8:24] == bytes([0x38]) * 16 and image[24:26] == bytes([127, 127])
    assert image[26:64] == bytes(38) and image[64:] == raw.tobytes()
    assert set(hbm_image_layouts([("a", a, 8), ("b", raw, 64)])) == {"a", "b"}
    with pytest.raises(ImageError, match="overlaps 'a'"):
        build_hbm_image([("a", a, 0), ("b", a, 10)])
    with pytest.raises(InputError, match="more than once"):
        build_hbm_image([("a", a, 0), ("a", a, 100)])
    with pytest.raises(InputError, match="uint8"):
        build_hbm_image([HbmTensor("r", np.arange(3), 0, raw=True)])
    aligned = build_hbm_image([HbmTensor("a", a, 0, section_align=32)])
    assert len(aligned) == 64 and aligned[32:34] == bytes([127, 127])


# ---------------------------------------------------------------------------------------------
# Conformance corpus
# ---------------------------------------------------------------------------------------------

@needs_corpus
@pytest.mark.conformance
@pytest.mark.parametrize("case", corpus_cases())
def test_corpus_hbm_image_rebuilds_byte_identically(corpus, case):
    case_dir = corpus / case
    meta = json.loads((case_dir / "case.json").read_text())
    reference = (case_dir / "hbm.bin").read_bytes()
    layout = meta.get("hbm_layout")
    if layout is None:       # no tensors (moe_topk): the test bench wrote an all-zero image
        assert not (case_dir / "inputs.npz").exists()
        assert reference == bytes(len(reference))
        return
    with np.load(case_dir / "inputs.npz") as npz:
        inputs = {k: npz[k] for k in npz.files}
    image = build_hbm_image(hbm_tensors_from_layout(layout, inputs))
    assert len(image) == len(reference) == layout["file_bytes"]
    assert image == reference


@needs_corpus
@pytest.mark.conformance
def test_corpus_bf16_tensors_need_bf16_arithmetic(corpus):
    """de_linear_loop's tensors were quantised as torch.bfloat16: float32 arithmetic differs."""
    case_dir = corpus / "de_linear_loop"
    meta = json.loads((case_dir / "case.json").read_text())
    with np.load(case_dir / "inputs.npz") as npz:
        weights = npz["weights"]
    spec = meta["hbm_layout"]["tensors"]["weights"]
    assert spec["stored_dtype"] == "torch.bfloat16"
    reference = (case_dir / "hbm.bin").read_bytes()[spec["hbm_addr"]:spec["scale_addr"] + spec["scale_bytes"]]
    as_bf16 = build_hbm_image([HbmTensor("w", weights, 0, arithmetic="bfloat16")])
    as_f32 = build_hbm_image([HbmTensor("w", weights, 0, arithmetic="float32")])
    assert as_bf16 == reference and as_f32 != reference


@needs_corpus
@pytest.mark.conformance
def test_corpus_prefetch_v_decode_all_codes(corpus):
    """H_PREFETCH_V of the 256 E4M3 codes under four scales: VRAM = bf16(element × scale)."""
    case_dir = corpus / "ops" / "pv_e4m3_all_codes"
    hbm = (case_dir / "hbm.bin").read_bytes()
    vram = np.load(case_dir / "expected" / "vram_rows.npy")
    for k in range(4):   # four 4-row tensors at 512*k, SCALE = 256
        values = read_mx_tensor(hbm, 512 * k, (4, 64), scale_base=512 * k + 256)
        assert np.array_equal(f32_to_bf16_bits(values), vram[4 * k:4 * k + 4])


@needs_corpus
@pytest.mark.conformance
def test_corpus_prefetch_v_special_scales(corpus):
    case_dir = corpus / "ops" / "pv_scale_special"
    values = read_mx_tensor((case_dir / "hbm.bin").read_bytes(), 0, (4, 64))
    assert np.array_equal(f32_to_bf16_bits(values), np.load(case_dir / "expected" / "vram_rows.npy"))


@needs_corpus
@pytest.mark.conformance
def test_corpus_prefetch_m_tile_dump(corpus):
    """H_PREFETCH_M of 64 contiguous rows into tile 3; SCALE = 8192."""
    case_dir = corpus / "ops" / "pm_dest_tile3"
    mram = np.zeros((4, 64 * 64), dtype=np.float32)
    mram[3] = read_mx_tensor((case_dir / "hbm.bin").read_bytes(), 0, (64, 64), scale_base=8192).reshape(-1)
    expected = np.load(case_dir / "expected" / "mram_tiles.npy")
    assert mram_dump_bytes(mram, trim=True) == expected.astype("<u2").tobytes()


def _golden_case(corpus, name):
    case_dir = corpus / name
    meta = json.loads((case_dir / "case.json").read_text())
    return meta["compare"], np.load(case_dir / "expected" / "vram_rows.npy"), np.load(case_dir / "golden.npy")


@needs_corpus
@pytest.mark.conformance
@pytest.mark.parametrize("name", ["aten_linear", "de_linear", "moe_gate_up"])
def test_corpus_vram_column_blocks_reorder_to_golden(corpus, name):
    cmp, vram, golden = _golden_case(corpus, name)
    args = (vram, cmp["start_row_idx"], cmp["num_rows"], cmp.get("row_dim", vram.shape[1]))
    got = read_vram_tensor(*args, num_batches=cmp["num_batches"], elements_per_batch=cmp["elements_per_batch"])
    golden = golden.reshape(cmp["num_batches"], -1)
    assert got.shape == golden.shape
    close = np.abs(got - golden) <= 0.05 + 0.05 * np.abs(golden)
    assert close.mean() > 0.99
    # the rows are column blocks: read without re-ordering they do not match
    plain = read_vram_tensor(*args).reshape(golden.shape)
    assert (np.abs(plain - golden) <= 0.05 + 0.05 * np.abs(golden)).mean() < 0.5


def test_read_vram_tensor_windows():
    bits = f32_to_bf16_bits(np.arange(4 * 8, dtype=np.float32).reshape(4, 8))
    # rows 1..3 hold [g0b0, g0b1, g1b0] ... as two batches of 2 column blocks from row 0
    got = read_vram_tensor(bits, 0, 4, 8, num_batches=2)
    assert got.tolist() == [list(range(0, 8)) + list(range(16, 24)), list(range(8, 16)) + list(range(24, 32))]
    assert read_vram_tensor(bits, 0, 4, 8, num_batches=2, elements_per_batch=4).shape == (2, 4)
    sliced = read_vram_tensor(bits, 1, 2, 8, slice_per_row=3)
    assert sliced.tolist() == [[8, 9, 10], [16, 17, 18]]
    beyond = read_vram_tensor(bits, 3, 3, 8)          # rows past the stored dump are zero
    assert beyond[0].tolist() == list(range(24, 32)) and not beyond[1:].any()
    with pytest.raises(InputError):
        read_vram_tensor(bits, 0, 3, 8, num_batches=2)
    with pytest.raises(InputError):
        read_vram_tensor(bits, 0, 2, 8, slice_per_row=9)
