"""The reference emulator's memory-image files (hbm-dma-mx-formats.md §4.1, §4.2): preloads in,
dumps out, byte-identical to what the reference reads and writes.

Preloads: ``--hbm`` raw bytes; ``--fpsram`` IEEE f16 LE (converted f16 -> f32 -> bf16 on load);
``--intsram`` u32 LE; ``--vram`` bf16 LE in rows of VLEN.  Dumps: ``vram_dump.bin`` (every VRAM
row), ``mram_dump.bin`` (every MRAM tile, bf16), ``fpsram_dump.bin`` (1024 bf16 — not f16),
``intsram_dump.bin`` (1024 u32).  All little-endian.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from emulator.errors import ImageError
from emulator.outputs import replace_all
from emulator.tensors import f16_to_bf16_bits, f32_to_bf16_bits

FP_SRAM_ENTRIES = 1024    # hard-wired in the reference, not a setting
INT_SRAM_ENTRIES = 1024

VRAM_DUMP = "vram_dump.bin"
MRAM_DUMP = "mram_dump.bin"
FPSRAM_DUMP = "fpsram_dump.bin"
INTSRAM_DUMP = "intsram_dump.bin"

Source = bytes | bytearray | memoryview | str | os.PathLike

_VRAM_STREAM_ROWS = 1 << 16   # rows per chunk when streaming zero rows of a full VRAM dump


def _read(source: Source, default_name: str, limit: int | None = None) -> tuple[bytes, str, int]:
    """(content, name for messages, size) of a preload given as bytes or as a path.

    With `limit`, at most `limit` + 1 bytes are read: a regular file larger than `limit` is not
    read at all (`size` is its real size, `content` empty), and a stream (a pipe, /dev/zero) is
    cut after `limit` + 1 bytes, so a loader sees it is too long without reading it whole.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return data, default_name, len(data)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            with path.open("rb") as f:
                st = os.fstat(f.fileno())
                if limit is not None and stat.S_ISREG(st.st_mode) and st.st_size > limit:
                    return b"", path.name, st.st_size
                data = f.read() if limit is None else f.read(limit + 1)
        except OSError as exc:
            raise ImageError(f"{path.name}: cannot read ({exc.strerror or exc})") from exc
        return data, path.name, len(data)
    raise ImageError(f"{default_name}: expected bytes or a file path, got {type(source).__name__}")


def _le(dtype: str) -> np.dtype:
    return np.dtype(dtype).newbyteorder("<")


# --------------------------------------------------------------------------------------------
# Preloads
# --------------------------------------------------------------------------------------------

def load_fp_sram(source: Source, name: str = "fp_sram.bin") -> np.ndarray:
    """FP SRAM preload: f16 LE values -> uint16[1024] bf16 bits (f16 -> f32 exact with sNaN
    quieted -> bf16 RNE, NaN ``(bits>>16)|0x40``).  A trailing odd byte is ignored; more than
    1024 entries is an ImageError (the reference panics)."""
    data, name, size = _read(source, name, 2 * FP_SRAM_ENTRIES + 1)
    n = size // 2
    if n > FP_SRAM_ENTRIES:
        raise ImageError(f"{name} holds {n} entries; FP SRAM has {FP_SRAM_ENTRIES}")
    out = np.zeros(FP_SRAM_ENTRIES, dtype=np.uint16)
    out[:n] = f16_to_bf16_bits(np.frombuffer(data, dtype=_le("u2"), count=n))
    return out


def load_int_sram(source: Source, name: str = "int_sram.bin") -> np.ndarray:
    """INT SRAM preload: u32 LE -> uint32[1024].  Trailing bytes (< 4) are ignored; more than
    1024 entries is an ImageError."""
    data, name, size = _read(source, name, 4 * INT_SRAM_ENTRIES + 3)
    n = size // 4
    if n > INT_SRAM_ENTRIES:
        raise ImageError(f"{name} holds {n} entries; INT SRAM has {INT_SRAM_ENTRIES}")
    out = np.zeros(INT_SRAM_ENTRIES, dtype=np.uint32)
    out[:n] = np.frombuffer(data, dtype=_le("u4"), count=n)
    return out


def load_vram_preload(source: Source, vlen: int, depth: int | None = None,
                      name: str = "vram_preload.bin") -> np.ndarray:
    """VRAM preload: bf16 LE lanes filling rows 0, 1, ... -> uint16[rows, vlen]; a partial last
    row is zero-padded, a trailing odd byte ignored, rows at or past ``depth`` (when given) are
    dropped as the reference does."""
    vlen = int(vlen)
    if vlen <= 0:
        raise ImageError(f"{name}: VLEN must be positive, got {vlen}")
    # Rows past the depth are dropped: a file (or stream) is read only as far as the depth reaches.
    limit = 2 * vlen * max(int(depth), 0) if depth is not None else None
    data, name, _ = _read(source, name, limit)
    if limit is not None:
        data = data[:limit]
    n = len(data) // 2
    rows = -(-n // vlen)
    out = np.zeros(rows * vlen, dtype=np.uint16)
    out[:n] = np.frombuffer(data, dtype=_le("u2"), count=n)
    out = out.reshape(rows, vlen)
    if depth is not None:
        out = out[:max(int(depth), 0)]
    return out


def load_hbm_preload(source: Source, hbm_size: int, name: str = "hbm.bin") -> np.ndarray:
    """HBM preload: raw bytes for HBM[0 .. len) as a writable uint8 array of the file's length
    (the rest of the capacity is zero).  Longer than ``hbm_size`` is an ImageError."""
    data, name, size = _read(source, name, int(hbm_size))
    if size > int(hbm_size):
        raise ImageError(f"{name} holds {size} bytes; HBM capacity is {int(hbm_size)} bytes")
    return np.frombuffer(data, dtype=np.uint8).copy()


# --------------------------------------------------------------------------------------------
# Dumps
# --------------------------------------------------------------------------------------------

def _entries_of(arr, count: int, dtype: str, what: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.shape != (count,) or a.dtype.kind not in "ui":
        raise ImageError(f"{what}: expected {count} integer entries, got {a.dtype} {a.shape}")
    return a.astype(_le(dtype))


def fpsram_dump_bytes(fpsram_bf16) -> bytes:
    """``fpsram_dump.bin``: 1024 bf16 bit patterns, LE (2048 bytes)."""
    return _entries_of(fpsram_bf16, FP_SRAM_ENTRIES, "u2", FPSRAM_DUMP).tobytes()


def intsram_dump_bytes(intsram_u32) -> bytes:
    """``intsram_dump.bin``: 1024 u32, LE (4096 bytes)."""
    return _entries_of(intsram_u32, INT_SRAM_ENTRIES, "u4", INTSRAM_DUMP).tobytes()


def _rows_of(arr, what: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim != 2 or a.dtype.kind not in "ui":
        raise ImageError(f"{what}: expected a 2-D array of bf16 bits, got {a.dtype} {a.shape}")
    return a


def _used_rows(bits: np.ndarray) -> int:
    """Rows up to and including the last row with a non-zero byte."""
    nonzero = np.flatnonzero(bits.any(axis=1))
    return int(nonzero[-1]) + 1 if nonzero.size else 0


def vram_dump_bytes(vram_u16, total_rows: int, trim: bool = False) -> bytes:
    """``vram_dump.bin``: rows of VLEN bf16 LE.  Full: all ``total_rows`` (VECTOR_SRAM_SIZE) rows,
    rows past the array being zero; trimmed: up to the last non-zero row.  For the full dump of
    a large VRAM prefer ``write_vram_dump``, which streams the zero rows."""
    vram = _rows_of(vram_u16, VRAM_DUMP)
    if vram.shape[0] > int(total_rows):
        raise ImageError(f"{VRAM_DUMP}: {vram.shape[0]} rows given, VRAM has {int(total_rows)}")
    if trim:
        return vram[:_used_rows(vram)].astype(_le("u2")).tobytes()
    full = np.zeros((int(total_rows), vram.shape[1]), dtype=_le("u2"))
    full[:vram.shape[0]] = vram
    return full.tobytes()


def _vram_dump_chunks(vram_u16, total_rows: int, trim: bool = False) -> Iterator[bytes]:
    """``vram_dump_bytes(...)`` in chunks (the zero rows of a full dump are never built whole)."""
    vram = _rows_of(vram_u16, VRAM_DUMP)
    total_rows = int(total_rows)
    if vram.shape[0] > total_rows:
        raise ImageError(f"{VRAM_DUMP}: {vram.shape[0]} rows given, VRAM has {total_rows}")
    stored = _used_rows(vram) if trim else vram.shape[0]
    yield vram[:stored].astype(_le("u2")).tobytes()
    if not trim:
        row_bytes = 2 * vram.shape[1]
        remaining = total_rows - stored
        zeros = bytes(row_bytes * min(remaining, _VRAM_STREAM_ROWS))
        while remaining > 0:
            rows = min(remaining, _VRAM_STREAM_ROWS)
            yield zeros[:rows * row_bytes]
            remaining -= rows


def write_vram_dump(path: str | os.PathLike, vram_u16, total_rows: int, trim: bool = False) -> Path:
    """Write ``vram_dump_bytes(...)`` to ``path`` without building the whole dump in memory."""
    path = Path(path)
    replace_all({path: _vram_dump_chunks(vram_u16, total_rows, trim)})
    return path


def mram_dump_bytes(mram_f32, trim: bool = False, total_tiles: int | None = None) -> bytes:
    """``mram_dump.bin``: tiles in order, each MLEN×MLEN values row-major, f32 -> bf16 with the
    VRAM cast, LE.  ``mram_f32`` is [tiles, MLEN*MLEN] (or [tiles, MLEN, MLEN]).  Full: all
    ``total_tiles`` (default: the array's) with zero tiles after the array; trimmed: up to the
    last tile with a non-zero byte."""
    mram = np.asarray(mram_f32)
    if mram.ndim not in (2, 3) or mram.dtype.kind != "f":
        raise ImageError(f"{MRAM_DUMP}: expected float tiles [tiles, MLEN*MLEN], got {mram.dtype} {mram.shape}")
    bits = f32_to_bf16_bits(mram.reshape(mram.shape[0], int(np.prod(mram.shape[1:]))))
    tiles = bits.shape[0] if total_tiles is None else int(total_tiles)
    if bits.shape[0] > tiles:
        raise ImageError(f"{MRAM_DUMP}: {bits.shape[0]} tiles given, MRAM has {tiles}")
    if trim:
        return bits[:_used_rows(bits)].astype(_le("u2")).tobytes()
    full = np.zeros((tiles, bits.shape[1]), dtype=_le("u2"))
    full[:bits.shape[0]] = bits
    return full.tobytes()


def write_dumps(out_dir: str | os.PathLike, *, vram_u16, vram_total_rows: int, mram_f32,
                fpsram_bf16, intsram_u32, trim: bool = False,
                mram_total_tiles: int | None = None) -> dict[str, Path]:
    """Write the four reference dumps into ``out_dir`` (created if needed); returns their paths
    by file name.  The files appear together or not at all (temporary names, then renamed)."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageError(f"cannot create dump directory {out}: {exc.strerror or exc}") from exc
    # Build every payload before writing, so bad input leaves no partial set of files.
    rows = _rows_of(vram_u16, VRAM_DUMP).shape[0]
    if rows > int(vram_total_rows):
        raise ImageError(f"{VRAM_DUMP}: {rows} rows given, VRAM has {int(vram_total_rows)}")
    payloads = {
        VRAM_DUMP: _vram_dump_chunks(vram_u16, vram_total_rows, trim),
        MRAM_DUMP: mram_dump_bytes(mram_f32, trim, mram_total_tiles),
        FPSRAM_DUMP: fpsram_dump_bytes(fpsram_bf16),
        INTSRAM_DUMP: intsram_dump_bytes(intsram_u32),
    }
    replace_all({out / name: data for name, data in payloads.items()})
    return {name: out / name for name in payloads}


# --------------------------------------------------------------------------------------------
# Reading dumps back (reference output files, corpus expectations)
# --------------------------------------------------------------------------------------------

def read_fpsram_dump(source: Source, name: str = FPSRAM_DUMP) -> np.ndarray:
    """``fpsram_dump.bin`` -> uint16[1024] bf16 bits."""
    data, name, _ = _read(source, name)
    if len(data) != 2 * FP_SRAM_ENTRIES:
        raise ImageError(f"{name} holds {len(data)} bytes; an FP SRAM dump has {2 * FP_SRAM_ENTRIES}")
    return np.frombuffer(data, dtype=_le("u2")).astype(np.uint16)


def read_intsram_dump(source: Source, name: str = INTSRAM_DUMP) -> np.ndarray:
    """``intsram_dump.bin`` -> uint32[1024]."""
    data, name, _ = _read(source, name)
    if len(data) != 4 * INT_SRAM_ENTRIES:
        raise ImageError(f"{name} holds {len(data)} bytes; an INT SRAM dump has {4 * INT_SRAM_ENTRIES}")
    return np.frombuffer(data, dtype=_le("u4")).astype(np.uint32)


def read_vram_dump(source: Source, vlen: int, name: str = VRAM_DUMP) -> np.ndarray:
    """``vram_dump.bin`` (full or trimmed) -> uint16[rows, vlen] bf16 bits."""
    data, name, _ = _read(source, name)
    row_bytes = 2 * int(vlen)
    if row_bytes <= 0 or len(data) % row_bytes:
        raise ImageError(f"{name} holds {len(data)} bytes, not a whole number of {vlen}-lane rows")
    return np.frombuffer(data, dtype=_le("u2")).astype(np.uint16).reshape(-1, int(vlen))


def read_mram_dump(source: Source, mlen: int, name: str = MRAM_DUMP) -> np.ndarray:
    """``mram_dump.bin`` -> uint16[tiles, mlen*mlen] bf16 bits."""
    data, name, _ = _read(source, name)
    tile_bytes = 2 * int(mlen) ** 2
    if int(mlen) <= 0 or len(data) % tile_bytes:
        raise ImageError(f"{name} holds {len(data)} bytes, not a whole number of {mlen}x{mlen} tiles")
    return np.frombuffer(data, dtype=_le("u2")).astype(np.uint16).reshape(-1, int(mlen) ** 2)
