"""Preload and dump file formats of the reference emulator (hbm-dma-mx-formats.md §4.1, §4.2)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emulator.errors import ImageError
from emulator.images import (
    FPSRAM_DUMP,
    INTSRAM_DUMP,
    MRAM_DUMP,
    VRAM_DUMP,
    fpsram_dump_bytes,
    intsram_dump_bytes,
    load_fp_sram,
    load_hbm_preload,
    load_int_sram,
    load_vram_preload,
    mram_dump_bytes,
    read_fpsram_dump,
    read_intsram_dump,
    read_mram_dump,
    read_vram_dump,
    vram_dump_bytes,
    write_dumps,
    write_vram_dump,
)
from emulator.tensors import bf16_bits_to_f32
from .conftest import corpus_cases, needs_corpus


def _f16_bytes(*values: float) -> bytes:
    return np.array(values, dtype="<f2").tobytes()


# ---------------------------------------------------------------------------------------------
# Preloads
# ---------------------------------------------------------------------------------------------

def test_fp_sram_preload_converts_f16_to_bf16():
    sram = load_fp_sram(_f16_bytes(1.0, -2.5, 65504.0, 2.0 ** -24) + b"\x7f")   # odd byte ignored
    assert sram.shape == (1024,) and sram.dtype == np.uint16
    assert sram[:4].tolist() == [0x3F80, 0xC020, 0x4780, 0x3380]
    assert not sram[4:].any()
    nans = np.array([0x7C01, 0x7DFF, 0xFE00], dtype="<u2").tobytes()
    assert load_fp_sram(nans)[:3].tolist() == [0x7FC0, 0x7FFF, 0xFFC0]
    assert not load_fp_sram(b"").any()


def test_fp_sram_preload_too_long():
    assert load_fp_sram(bytes(2048) + b"\x01")[1023] == 0        # 1024 entries + odd byte is fine
    with pytest.raises(ImageError, match=r"fp_sram\.bin holds 1030 entries; FP SRAM has 1024"):
        load_fp_sram(bytes(2060))


def test_int_sram_preload():
    data = np.array([1, 0xFFFFFFFF, 7], dtype="<u4").tobytes() + b"\x01\x02"
    sram = load_int_sram(data)
    assert sram.dtype == np.uint32 and sram.shape == (1024,)
    assert sram[:4].tolist() == [1, 0xFFFFFFFF, 7, 0]
    with pytest.raises(ImageError, match=r"int_sram\.bin holds 1025 entries; INT SRAM has 1024"):
        load_int_sram(bytes(4100))


def test_vram_preload_rows():
    lanes = np.arange(1, 71, dtype="<u2")
    rows = load_vram_preload(lanes.tobytes() + b"\x05", 64)
    assert rows.shape == (2, 64)
    assert rows[0].tolist() == list(range(1, 65))
    assert rows[1, :6].tolist() == list(range(65, 71)) and not rows[1, 6:].any()
    assert load_vram_preload(lanes.tobytes(), 64, depth=1).shape == (1, 64)
    assert load_vram_preload(b"", 64).shape == (0, 64)
    with pytest.raises(ImageError):
        load_vram_preload(lanes.tobytes(), 0)


def test_hbm_preload():
    hbm = load_hbm_preload(bytes(range(10)), 64)
    assert hbm.tolist() == list(range(10)) and hbm.flags.writeable
    with pytest.raises(ImageError, match=r"hbm\.bin holds 128 bytes; HBM capacity is 64 bytes"):
        load_hbm_preload(bytes(128), 64)


def test_preloads_from_paths(tmp_path):
    path = tmp_path / "my_fp.bin"
    path.write_bytes(bytes(2 * 1025))
    with pytest.raises(ImageError, match=r"my_fp\.bin holds 1025 entries"):
        load_fp_sram(path)
    with pytest.raises(ImageError, match=r"missing\.bin: cannot read"):
        load_int_sram(tmp_path / "missing.bin")
    (tmp_path / "i.bin").write_bytes(np.array([5], dtype="<u4").tobytes())
    assert load_int_sram(str(tmp_path / "i.bin"))[0] == 5


# ---------------------------------------------------------------------------------------------
# Dumps
# ---------------------------------------------------------------------------------------------

def test_sram_dump_bytes():
    fp = np.zeros(1024, dtype=np.uint16)
    fp[[0, 1023]] = [0x3F80, 0xFFC0]
    data = fpsram_dump_bytes(fp)
    assert len(data) == 2048 and data[:2] == b"\x80\x3f" and data[-2:] == b"\xc0\xff"
    ints = np.zeros(1024, dtype=np.uint32)
    ints[1] = 0x01020304
    data = intsram_dump_bytes(ints)
    assert len(data) == 4096 and data[4:8] == b"\x04\x03\x02\x01"
    with pytest.raises(ImageError):
        fpsram_dump_bytes(np.zeros(1000, dtype=np.uint16))
    with pytest.raises(ImageError):
        intsram_dump_bytes(np.zeros(1024, dtype=np.float32))


def test_vram_dump_full_and_trimmed(tmp_path):
    vram = np.zeros((6, 4), dtype=np.uint16)
    vram[1] = [1, 2, 3, 0x8000]
    vram[3, 0] = 0x3F80
    full = vram_dump_bytes(vram, total_rows=10)
    assert len(full) == 10 * 4 * 2 and full[:48] == vram.astype("<u2").tobytes() and full[48:] == bytes(32)
    trimmed = vram_dump_bytes(vram, total_rows=10, trim=True)
    assert trimmed == vram[:4].astype("<u2").tobytes()
    assert vram_dump_bytes(np.zeros((3, 4), dtype=np.uint16), 3, trim=True) == b""
    write_vram_dump(tmp_path / "v.bin", vram, total_rows=10)
    assert (tmp_path / "v.bin").read_bytes() == full
    with pytest.raises(ImageError):
        vram_dump_bytes(vram, total_rows=5)


def test_mram_dump_casts_f32_to_bf16():
    mram = np.zeros((3, 4), dtype=np.float32)
    mram[0] = [1.0, 1.00390625, 1.01171875, -0.0]          # tie -> even, tie -> up, -0
    mram[1, 0] = np.float32(2.0 ** -136)                     # below bf16 subnormal half-way -> 0
    data = mram_dump_bytes(mram)
    words = np.frombuffer(data, dtype="<u2").reshape(3, 4)
    assert words[0].tolist() == [0x3F80, 0x3F80, 0x3F82, 0x8000]
    assert not words[1:].any()
    assert mram_dump_bytes(mram, trim=True) == data[:8]
    assert len(mram_dump_bytes(mram, total_tiles=5)) == 5 * 4 * 2
    assert mram_dump_bytes(mram.reshape(3, 2, 2)) == data
    with pytest.raises(ImageError):
        mram_dump_bytes(mram, total_tiles=2)
    with pytest.raises(ImageError):
        mram_dump_bytes(np.zeros((2, 4), dtype=np.uint16))


def test_write_dumps(tmp_path):
    vram = np.zeros((2, 8), dtype=np.uint16)
    vram[0, 0] = 0x4000
    mram = np.zeros((4, 16), dtype=np.float32)
    mram[1, 3] = 3.0
    fp = np.arange(1024, dtype=np.uint16)
    ints = np.arange(1024, dtype=np.uint32)
    paths = write_dumps(tmp_path / "out", vram_u16=vram, vram_total_rows=16, mram_f32=mram,
                        fpsram_bf16=fp, intsram_u32=ints)
    assert set(paths) == {VRAM_DUMP, MRAM_DUMP, FPSRAM_DUMP, INTSRAM_DUMP}
    assert read_vram_dump(paths[VRAM_DUMP], 8).shape == (16, 8)
    assert np.array_equal(read_vram_dump(paths[VRAM_DUMP], 8)[:2], vram)
    assert bf16_bits_to_f32(read_mram_dump(paths[MRAM_DUMP], 4))[1, 3] == 3.0
    assert np.array_equal(read_fpsram_dump(paths[FPSRAM_DUMP]), fp)
    assert np.array_equal(read_intsram_dump(paths[INTSRAM_DUMP]), ints)
    trimmed = write_dumps(tmp_path / "t", vram_u16=vram, vram_total_rows=16, mram_f32=mram,
                          fpsram_bf16=fp, intsram_u32=ints, trim=True)
    assert trimmed[VRAM_DUMP].stat().st_size == 16 and trimmed[MRAM_DUMP].stat().st_size == 2 * 32
    with pytest.raises(ImageError):
        write_dumps(tmp_path / "bad", vram_u16=vram, vram_total_rows=16, mram_f32=mram,
                    fpsram_bf16=fp[:10], intsram_u32=ints)
    assert not (tmp_path / "bad" / VRAM_DUMP).exists()


def test_dump_readers_reject_bad_sizes():
    with pytest.raises(ImageError):
        read_fpsram_dump(bytes(2046))
    with pytest.raises(ImageError):
        read_intsram_dump(bytes(4092))
    with pytest.raises(ImageError):
        read_vram_dump(bytes(10), 4)
    with pytest.raises(ImageError):
        read_mram_dump(bytes(10), 2)


# ---------------------------------------------------------------------------------------------
# Conformance corpus
# ---------------------------------------------------------------------------------------------

@needs_corpus
@pytest.mark.conformance
@pytest.mark.parametrize("case", corpus_cases())
def test_corpus_dumps_round_trip(corpus, case):
    """Our dump writers reproduce the reference's dump bytes from the decoded arrays."""
    case_dir = corpus / case
    meta = json.loads((case_dir / "case.json").read_text())
    expected = case_dir / "expected"
    if "error" in meta["expected"]:          # the reference aborted: it wrote no dumps
        assert not expected.exists()
        return
    fp_bytes = (expected / "fpsram_dump.bin").read_bytes()
    int_bytes = (expected / "intsram_dump.bin").read_bytes()
    assert fpsram_dump_bytes(read_fpsram_dump(fp_bytes)) == fp_bytes
    assert intsram_dump_bytes(read_intsram_dump(int_bytes)) == int_bytes
    vram = np.load(expected / "vram_rows.npy")
    # expected/ stores the trimmed dump: the last stored row is non-zero
    assert vram_dump_bytes(vram, meta["expected"]["vram_rows_total"], trim=True) == vram.astype("<u2").tobytes()
    tiles = np.load(expected / "mram_tiles.npy")
    mram = bf16_bits_to_f32(tiles)
    assert mram_dump_bytes(mram, trim=True) == tiles.astype("<u2").tobytes()
    full = mram_dump_bytes(mram, total_tiles=meta["expected"]["mram_tiles_total"])
    assert len(full) == meta["expected"]["mram_tiles_total"] * meta["config"]["MLEN"] ** 2 * 2


@needs_corpus
@pytest.mark.conformance
def test_corpus_fp_sram_preload_conversion(corpus):
    """A NOP program: the FP SRAM dump is exactly the converted preload (RNE ties, carries, f16
    subnormals, NaN payloads, signalling NaNs, -0)."""
    case_dir = corpus / "ops" / "fpsram_preload_conversion"
    loaded = load_fp_sram(case_dir / "fp_sram.bin")
    assert np.array_equal(loaded, read_fpsram_dump(case_dir / "expected" / FPSRAM_DUMP))


@needs_corpus
@pytest.mark.conformance
def test_corpus_preloads_untouched_by_programs(corpus):
    """Preloads of cases whose program never writes them equal the reference dumps."""
    for name in ("aten_linear", "aten_ffn", "de_gelu"):
        case_dir = corpus / name
        assert np.array_equal(load_fp_sram(case_dir / "fp_sram.bin"),
                              read_fpsram_dump(case_dir / "expected" / FPSRAM_DUMP))
        assert np.array_equal(load_int_sram(case_dir / "int_sram.bin"),
                              read_intsram_dump(case_dir / "expected" / INTSRAM_DUMP))
    mha = corpus / "aten_flash_attention_mha"
    preload = load_vram_preload(mha / "vram_preload.bin", 64)
    assert np.array_equal(preload, np.load(mha / "expected" / "vram_rows.npy")[:preload.shape[0]])


@needs_corpus
@pytest.mark.conformance
def test_corpus_partial_preloads(corpus):
    ints = corpus / "ops" / "int_preload_partial_trailing"      # 3 words + 2 stray bytes
    loaded = load_int_sram(ints / "int_sram.bin")
    dumped = read_intsram_dump(ints / "expected" / INTSRAM_DUMP)
    assert np.array_equal(loaded[:3], dumped[:3]) and not loaded[3:].any()
    assert dumped[3] == loaded[2] and not dumped[4:].any()         # the program copies entry 2 to 3
    vram = corpus / "ops" / "vram_preload_partial_row"          # 70 lanes: one row + 6 lanes
    rows = load_vram_preload(vram / "vram_preload.bin", 64)
    assert rows.shape == (2, 64) and not rows[1, 6:].any()
    assert np.array_equal(rows, np.load(vram / "expected" / "vram_rows.npy")[:2])


@needs_corpus
@pytest.mark.conformance
@pytest.mark.parametrize("case, loader", [
    ("err_fpsram_preload_too_long", lambda d, meta: load_fp_sram(d / "fp_sram.bin")),
    ("err_intsram_preload_too_long", lambda d, meta: load_int_sram(d / "int_sram.bin")),
    ("err_hbm_preload_too_long", lambda d, meta: load_hbm_preload(d / "hbm.bin", meta["hbm_size"])),
])
def test_corpus_oversized_preloads_are_refused(corpus, case, loader):
    case_dir = corpus / "ops" / case
    meta = json.loads((case_dir / "case.json").read_text())
    assert meta["expected"]["error"]["phase"] == "before_execution"
    with pytest.raises(ImageError, match="holds"):
        loader(case_dir, meta)
