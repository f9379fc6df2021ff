"""Request and response models of the HTTP API (separate models for what comes in and goes out).

Everything a client sends is validated here, so a bad request is a 422 naming the field path
(`["body", "tensors", 0, "npy_base64"]`) before anything is queued.  Binary data travels as
standard base64 (RFC 4648, with padding); non-finite floats travel as the strings "NaN",
"Infinity" and "-Infinity" (JSON has no literal for them).
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from datetime import datetime
from typing import Annotated, Any, Literal, Union

import numpy as np
from typing_extensions import TypeAliasType
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)

# ------------------------------------------------------------------------------------ scalar types

def _decode_base64(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a base64 string")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise ValueError(f"not valid base64: {exc}") from None


Base64Bytes = Annotated[
    bytes,
    BeforeValidator(_decode_base64),
    PlainSerializer(lambda b: base64.b64encode(b).decode("ascii"), return_type=str),
    WithJsonSchema({"type": "string", "format": "byte", "contentEncoding": "base64",
                    "description": "standard base64 (RFC 4648) with padding"}),
]

NonFinite = Literal["NaN", "Infinity", "-Infinity"]
# A bare JSON `Infinity`, `NaN` or an overflowing literal (1e999) is not a number: non-finite values
# travel as the strings above.
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
JsonFloat = Union[FiniteFloat, NonFinite]
NestedFloats = TypeAliasType("NestedFloats", list[Union[JsonFloat, "NestedFloats"]])  # type: ignore[misc]

RunStatus = Literal["queued", "running", "succeeded", "failed", "invalid", "cancelled"]
FINISHED_STATUSES: tuple[str, ...] = ("succeeded", "failed", "invalid", "cancelled")
DumpName = Literal["vram", "mram", "fpsram", "intsram"]
SectionMode = Literal["blocks", "comments", "markers", "pc"]
SECTIONS_DESCRIPTION = ("how the profile cuts the program into sections: blocks (default for ASM: the first line "
                        "of each comment block), comments (the nearest comment line), markers (only `; @section` "
                        "markers), pc (one per instruction; the default for machine code)")
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$"
TAG_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"
RUN_ID_PATTERN = r"^[0-9a-f]{32}$"
MAX_DIMS = 4

Name = Annotated[str, Field(pattern=NAME_PATTERN, description="letters, digits, `_.-`; up to 64 characters")]
Word = Annotated[int, Field(ge=0, le=0xFFFFFFFF)]
Dim = Annotated[int, Field(ge=1, le=1 << 24)]
Shape = Annotated[list[Dim], Field(min_length=1, max_length=MAX_DIMS)]


def json_floats(values: np.ndarray) -> list[JsonFloat]:
    """Row-major values of a float array as JSON-safe numbers (non-finite values as strings)."""
    out: list[JsonFloat] = values.astype(np.float64).ravel().tolist()
    if not np.isfinite(values).all():
        for i, v in enumerate(out):
            if math.isnan(v):
                out[i] = "NaN"
            elif math.isinf(v):
                out[i] = "Infinity" if v > 0 else "-Infinity"
    return out


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def load_npy(data: bytes) -> np.ndarray:
    """A `.npy` payload as a float array (never unpickles)."""
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError/EOFError/OSError/... for malformed files
        raise ValueError(f"not a valid .npy file: {exc}") from None
    if not isinstance(array, np.ndarray):
        raise ValueError("expected a single .npy array, not an .npz archive")
    if array.dtype.kind not in "biuf":
        raise ValueError(f".npy array has dtype {array.dtype}; expected integers or floats")
    return array


def _as_float32(array: np.ndarray) -> np.ndarray:
    """`array` as float32; a finite value beyond float32's range (1e39) is an error, not infinity."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = array.astype(np.float32)
    overflow = np.isinf(out) & np.isfinite(array)
    if overflow.any():
        value = array[overflow].flat[0]
        raise ValueError(f"value {value!r} is beyond the float32 range (magnitude at most "
                         f"{float(np.finfo(np.float32).max):.4g})")
    return out


# ------------------------------------------------------------------------------------------ inputs

class _In(BaseModel):
    # strict: a JSON string is not an integer and 1.0 is not a machine word.
    model_config = ConfigDict(extra="forbid", strict=True)


ASM_EXAMPLE = (
    "; load 4 rows of x (MXFP8: elements at HBM 0, scales at 256) into VRAM rows 0-3\n"
    "S_ADDI_INT gp1, gp0, 256\n"
    "C_SET_SCALE_REG gp1\n"
    "H_PREFETCH_V gp0, gp0, a0, 0, 0\n"
)


class ProgramIn(_In):
    """Exactly one of `asm` (ASM text), `mem` (machine code, one `0x%08X` word per line, as the
    reference's program.mem) or `words` (machine-code words as integers)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"asm": ASM_EXAMPLE, "name": "load_x"}]})

    asm: str | None = Field(None, description="ASM text as the PLENA compiler emits it (comments kept)")
    mem: str | None = Field(None, description="machine code text, one hex word per line")
    words: list[Word] | None = Field(None, description="machine-code words")
    name: Name | None = Field(None, description="a label kept in the run history")

    @model_validator(mode="after")
    def _exactly_one(self) -> ProgramIn:
        given = [k for k in ("asm", "mem", "words") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of asm, mem, words (got {', '.join(given) or 'none'})")
        return self


# `-` for the overlapped model's unit names (OVERLAP.UNITS.dma-load.queue_depth)
OverrideKey = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")]


class SettingsIn(_In):
    """Hardware settings: a full `plena_settings.toml` text (only `[TRANSACTIONAL]` is read) and/or
    single-key overrides (`{"CONFIG.MLEN": 32, "VECTOR_ADD_CYCLES": 3, "hbm_model": "analytic"}`).
    Without `toml` the service's defaults (the repository's plena_settings.toml) are used."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={
        "examples": [{"overrides": {"HBM_V_Prefetch_Amount": 4, "hbm_model": "hbm2"}}]})

    toml: str | None = Field(None, description="plena_settings.toml text")
    overrides: dict[OverrideKey, JsonValue] = Field(default_factory=dict, max_length=256)
    missing: Literal["error", "reference-defaults"] = Field(
        "error", description="a missing/mistyped key is an error, or (as the reference) falls back to "
                             "the reference's built-in defaults for the whole table")


class ImagesIn(_In):
    """Raw memory images, in the reference's file formats."""

    hbm: Base64Bytes | None = Field(None, description="HBM preload, raw bytes from address 0 (hbm.bin)")
    fp_sram: Base64Bytes | None = Field(None, description="FP SRAM preload, float16 LE per entry (fp_sram.bin)")
    int_sram: Base64Bytes | None = Field(None, description="INT SRAM preload, uint32 LE per entry (int_sram.bin)")
    vram: Base64Bytes | None = Field(None, description="VRAM preload, bf16 LE rows of VLEN (vram_preload.bin)")


class TensorIn(_In):
    """A named float tensor placed into HBM at `hbm_addr` as MXFP8 (E4M3 elements, E8M0 scales,
    block 8): element bytes first, the scale bytes right after them.  Give `values` (nested or
    flat, with `shape`) or `npy_base64` (a base64 `.npy` file; `shape` optional, must match)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"name": "x", "hbm_addr": 0, "shape": [4, 64], "values": [[0.5] * 64] * 4}]})

    name: Name
    hbm_addr: int = Field(ge=0, le=(1 << 48), description="HBM byte address of the first element")
    shape: Shape | None = None
    values: NestedFloats | None = None
    npy_base64: Base64Bytes | None = None

    @model_validator(mode="after")
    def _one_source(self) -> TensorIn:
        if (self.values is None) == (self.npy_base64 is None):
            raise ValueError("give exactly one of values, npy_base64")
        if self.values is not None and self.shape is None:
            raise ValueError("shape is required with values")
        return self

    def array(self) -> np.ndarray:
        """The tensor as float32 of `shape` (raises ValueError naming what does not fit)."""
        if self.npy_base64 is not None:
            array = load_npy(self.npy_base64)
            if self.shape is not None and list(array.shape) != self.shape:
                raise ValueError(f".npy array has shape {list(array.shape)}, but shape says {self.shape}")
            if array.ndim == 0 or array.ndim > MAX_DIMS:
                raise ValueError(f".npy array must have 1 to {MAX_DIMS} dimensions (has {array.ndim})")
            if array.size == 0:
                raise ValueError(".npy array is empty")
            return _as_float32(array)
        try:
            flat = np.asarray(self.values, dtype=np.float64)
        except ValueError:
            raise ValueError("values must be a regular (non-ragged) nested list of numbers") from None
        size = math.prod(self.shape)
        if flat.size != size:
            raise ValueError(f"values hold {flat.size} numbers; shape {self.shape} needs {size}")
        return _as_float32(flat.reshape(self.shape))


class VramRegionIn(_In):
    """VRAM rows read back as a float tensor.  Rows `start_row .. start_row+num_rows` of `row_dim`
    bf16 values; with `num_batches`/`elements_per_batch` the rows hold column blocks
    (`[elements_per_batch/row_dim, num_batches, row_dim]`) and are re-ordered to
    `[num_batches, elements_per_batch]` (the corpus' `compare` block)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"name": "linear_out", "start_row": 64, "num_rows": 128, "row_dim": 64,
         "num_batches": 64, "elements_per_batch": 128}]})

    name: Name
    start_row: int = Field(ge=0, le=1 << 40)
    num_rows: int = Field(ge=1, le=1 << 24)
    row_dim: int = Field(ge=1, le=1 << 16)
    num_batches: int | None = Field(None, ge=1, le=1 << 24)
    elements_per_batch: int | None = Field(None, ge=1, le=1 << 24)

    @model_validator(mode="after")
    def _batches_together(self) -> VramRegionIn:
        if (self.num_batches is None) != (self.elements_per_batch is None):
            raise ValueError("give both num_batches and elements_per_batch, or neither")
        if self.num_batches is not None:
            total = self.num_rows * self.row_dim
            if self.num_batches * self.elements_per_batch != total:
                raise ValueError(f"num_batches*elements_per_batch ({self.num_batches}*{self.elements_per_batch})"
                                 f" must equal num_rows*row_dim ({total})")
            if self.elements_per_batch % self.row_dim:
                raise ValueError("elements_per_batch must be a multiple of row_dim")
        return self

    @property
    def elements(self) -> int:
        return self.num_rows * self.row_dim


class HbmRegionIn(_In):
    """An MXFP8 tensor read back from HBM (layout as for inputs: elements, then scales)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"name": "y", "addr": 65536, "shape": [4, 64]}]})

    name: Name
    addr: int = Field(ge=0, le=1 << 48)
    shape: Shape = Field(description="the last dimension is a multiple of the MXFP8 block (8)")

    @property
    def elements(self) -> int:
        return math.prod(self.shape)


class OutputsIn(_In):
    """What to read back after the run."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"vram_regions": [{"name": "x", "start_row": 0, "num_rows": 4, "row_dim": 64}], "dumps": ["fpsram"]}]})

    vram_regions: list[VramRegionIn] = Field(default_factory=list, max_length=64)
    hbm_regions: list[HbmRegionIn] = Field(default_factory=list, max_length=64)
    dumps: list[DumpName] = Field(default_factory=list, max_length=4,
                                  description="full memories kept for GET /v1/runs/{id}/dumps/{name}")
    format: Literal["json", "npy"] = Field("json", description="tensors as JSON numbers or base64 .npy")

    @model_validator(mode="after")
    def _unique(self) -> OutputsIn:
        names = [r.name for r in self.vram_regions] + [r.name for r in self.hbm_regions]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"output names must be unique (repeated: {', '.join(dup)})")
        if len(set(self.dumps)) != len(self.dumps):
            raise ValueError("a dump is named twice")
        return self

    def tensor_bytes(self) -> int:
        """float32 bytes of all requested regions."""
        return 4 * (sum(r.elements for r in self.vram_regions) + sum(r.elements for r in self.hbm_regions))


class RunRequest(_In):
    """One emulation run: program, settings, inputs and the outputs wanted."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{
        "program": {"asm": ASM_EXAMPLE, "name": "load_x"},
        "settings": {"overrides": {"hbm_model": "hbm2"}},
        "tensors": [{"name": "x", "hbm_addr": 0, "shape": [4, 64], "values": [[0.5] * 64] * 4}],
        "outputs": {"vram_regions": [{"name": "x", "start_row": 0, "num_rows": 4, "row_dim": 64}]},
        "tag": "example",
    }]})

    program: ProgramIn
    settings: SettingsIn | None = None
    images: ImagesIn | None = None
    tensors: list[TensorIn] = Field(default_factory=list, max_length=256)
    outputs: OutputsIn = Field(default_factory=OutputsIn)
    tag: str | None = Field(None, pattern=TAG_PATTERN, description="free label to filter the history by")
    max_instructions: int | None = Field(None, ge=1, description="dynamic instruction budget (<= the service's)")
    max_wall_seconds: float | None = Field(None, gt=0, description="wall-time budget (<= the service's)")
    trace: bool = Field(False, description="record a Perfetto trace (GET /v1/runs/{id}/trace)")
    trace_limit: int | None = Field(None, ge=1, description="instructions recorded in the trace "
                                                            "(default and maximum: the service's)")
    sections: SectionMode | None = Field(None, description=SECTIONS_DESCRIPTION)
    timing: Literal["sequential", "overlapped"] | None = Field(
        None, description="sequential: the reference's timing (default); overlapped: also compute the "
                          "decoupled-units model (README 'Overlapped timing'; its parameters come from the "
                          "settings' OVERLAP table). The same as the settings override \"timing\"")

    @field_validator("tensors")
    @classmethod
    def _unique_tensor_names(cls, v: list[TensorIn]) -> list[TensorIn]:
        names = [t.name for t in v]
        if len(set(names)) != len(names):
            raise ValueError("tensor names must be unique")
        return v


class AssembleRequest(_In):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"asm": ASM_EXAMPLE}]})
    asm: str = Field(description="ASM text")


class DisassembleRequest(_In):
    """Exactly one of `mem` (one hex word per line) or `words`."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"words": [0x00004067, 0x0000002C]}]})
    mem: str | None = None
    words: list[Word] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> DisassembleRequest:
        if (self.mem is None) == (self.words is None):
            raise ValueError("give exactly one of mem, words")
        if self.words is not None and not self.words:
            raise ValueError("words must not be empty")
        return self


class EstimateRequest(_In):
    """A static estimate: no emulation, costs from the ISA spec's latency expressions."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"program": {"asm": ASM_EXAMPLE}}]})
    program: ProgramIn
    settings: SettingsIn | None = None
    int_sram: Base64Bytes | None = Field(None, description="INT SRAM preload (uint32 LE) that S_LD_INT reads")
    max_instructions: int | None = Field(None, ge=1, description="instruction budget (<= the service's)")
    sections: SectionMode | None = Field(None, description=SECTIONS_DESCRIPTION)


# ----------------------------------------------------------------------------------------- outputs

class FieldIssue(BaseModel):
    """One problem with the request, in FastAPI's validation-error shape."""

    loc: list[str | int] = Field(description='path of the offending field, e.g. ["body", "program", "asm"]')
    msg: str
    type: str
    ctx: dict[str, Any] | None = None


class InputErrorResponse(BaseModel):
    """422: the request (or a file in it) cannot be used; nothing was executed."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"detail": [{
        "loc": ["body", "program", "asm"], "msg": "line 2: unknown mnemonic 'S_ADD_INTX'",
        "type": "assembler_error", "ctx": {"line": 2}}]}]})
    detail: list[FieldIssue]
    run_id: str | None = None


class EmulationErrorOut(BaseModel):
    """Where and why the program stopped (what the reference would have panicked on)."""

    kind: str = Field(description="alignment, out_of_range, narrow, shape, assert, fp_register, invalid_opcode, "
                                  "decode, loop, max_loop, topk_policy, load, budget, cancelled, worker_lost, "
                                  "output_limit")
    pc: int | None = None
    opcode: str | None = None
    line: int | None = None
    source: str | None = None
    message: str


class TensorOut(BaseModel):
    name: str
    shape: list[int]
    dtype: Literal["float32"] = "float32"
    values: list[JsonFloat] | None = Field(None, description="row-major values (format json)")
    npy_base64: str | None = Field(None, description="base64 .npy file (format npy)")


class SectionOut(BaseModel):
    """Totals of one section (by default the first line of the nearest preceding `;` comment block, with
    `; @section NAME` ... `; @end` markers nesting; `pc N` for machine-code programs)."""

    name: str
    path: list[str]
    first_pc: int
    static_instructions: int
    instructions: int
    cycles: int
    share: float = Field(description="cycles / total cycles")
    hbm_bytes_read: int
    hbm_bytes_written: int
    macs: int
    sections: list[SectionOut] = Field(default_factory=list, description="nested sections (markers)")


class ProfileTotalsOut(BaseModel):
    cycles: int
    instructions: int
    hbm_bytes_read: int
    hbm_bytes_written: int
    macs: int


class OverlappedUnitOut(BaseModel):
    instructions: int
    busy_cycles: int
    stalled_cycles: int = Field(description="free, with an instruction waiting on a hazard or the HBM port")
    idle_cycles: int


class OverlappedStallOut(BaseModel):
    unit: str = Field(description="the unit that waited (unit_full: the unit whose queue was full)")
    cause: Literal["RAW", "WAR", "WAW", "hbm_port", "unit_full"]
    resource: str = Field(description="resource space (gp, vram_row, hbm_block, ...); empty for unit_full")
    blocker_pc: int = Field(description="the earlier instruction waited on")
    blocker_line: int | None = None
    blocker_text: str | None = None
    cycles: int


class OverlappedOut(BaseModel):
    """The overlapped timing model's figures (profiler/SCHEMA.md "Overlapped"; top 10 stalls)."""

    cycles: int
    sequential_cycles: int
    speedup: float | None
    dependency_bound: int
    critical_instructions: int
    front_end_stall_cycles: int
    dma_extra_cycles: int
    units: dict[str, OverlappedUnitOut]
    stalls: list[OverlappedStallOut]


class ProfileOut(BaseModel):
    """Per-section summary (top sections by cycles); the full plena-profile document is at
    GET /v1/runs/{id}/profile."""

    sections_mode: str
    totals: ProfileTotalsOut
    unit_cycles: dict[str, int]
    sections: list[SectionOut]
    sections_total: int = Field(description="number of top-level sections (the summary keeps the top 100)")
    timing: Literal["sequential", "overlapped"] = "sequential"
    overlapped: OverlappedOut | None = Field(None, description="null for sequential runs")


class DumpOut(BaseModel):
    name: DumpName
    bytes: int
    url: str
    description: str


class ProgressOut(BaseModel):
    instructions: int
    cycles: int


class RunLinks(BaseModel):
    self: str
    events: str
    trace: str | None = None
    profile: str | None = None


class RunOut(BaseModel):
    """A run: its status, and once finished its totals, outputs and profile."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "3f2a9c0d4e5b6a7c8d9e0f1a2b3c4d5e", "status": "succeeded", "tag": "example",
        "program_sha256": "9b1c…", "program_name": "load_x", "program_words": 3,
        "created_at": "2026-11-22T10:00:00Z", "started_at": "2026-11-22T10:00:00Z",
        "finished_at": "2026-11-22T10:00:01Z", "cycles": 120, "instructions": 3,
        "hbm_bytes_read": 512, "hbm_bytes_written": 0, "hbm_model": "hbm2", "wall_seconds": 0.01,
        "outputs": [{"name": "x", "shape": [4, 64], "dtype": "float32", "values": [0.5] * 4}],
        "profile": {"sections_mode": "blocks",
                    "totals": {"cycles": 120, "instructions": 3, "hbm_bytes_read": 512, "hbm_bytes_written": 0,
                               "macs": 0},
                    "unit_cycles": {"matrix": 0, "vector": 0, "scalar-int": 1, "scalar-fp": 0, "dma": 118,
                                    "control": 1},
                    "sections": [{"name": "load 4 rows of x", "path": ["load 4 rows of x"], "first_pc": 0,
                                  "static_instructions": 3, "instructions": 3, "cycles": 120, "share": 1.0,
                                  "hbm_bytes_read": 512, "hbm_bytes_written": 0, "macs": 0, "sections": []}],
                    "sections_total": 1},
        "links": {"self": "/v1/runs/3f2a9c0d4e5b6a7c8d9e0f1a2b3c4d5e",
                  "events": "/v1/runs/3f2a9c0d4e5b6a7c8d9e0f1a2b3c4d5e/events"}}]})

    id: str
    status: RunStatus
    tag: str | None = None
    program_sha256: str
    program_name: str | None = None
    program_words: int
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cycles: int | None = None
    instructions: int | None = None
    hbm_bytes_read: int | None = None
    hbm_bytes_written: int | None = None
    hbm_model: str | None = None
    timing: Literal["sequential", "overlapped"] = "sequential"
    wall_seconds: float | None = None
    progress: ProgressOut | None = Field(None, description="while running: instructions and cycles so far")
    outputs: list[TensorOut] | None = None
    profile: ProfileOut | None = None
    error: EmulationErrorOut | None = None
    issues: list[FieldIssue] | None = Field(None, description="status invalid: what was wrong with the input")
    dumps: list[DumpOut] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    links: RunLinks


class RunAccepted(BaseModel):
    """202: the run is queued; poll `links.self` or follow `links.events`."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "3f2a9c0d4e5b6a7c8d9e0f1a2b3c4d5e", "status": "queued",
        "links": {"self": "/v1/runs/3f2a9c0d4e5b6a7c8d9e0f1a2b3c4d5e",
                  "events": "/v1/runs/3f2a9c0d4e5b6a7c8d9e0f1a2b3c4d5e/events"}}]})
    id: str
    status: RunStatus
    links: RunLinks


class EmulationErrorResponse(BaseModel):
    """400: the program stopped with a typed error (or hit a budget); the run is in the history."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "detail": {"kind": "alignment", "pc": 2, "opcode": "H_PREFETCH_V", "line": 4,
                   "source": "H_PREFETCH_V gp1, gp0, a0, 0, 0", "message": "VRAM address 3 is not a multiple of VLEN"},
        "run_id": "3f2a9c0d4e5b6a7c8d9e0f1a2b3c4d5e"}]})
    detail: EmulationErrorOut
    run_id: str
    run: RunOut | None = None


class MessageResponse(BaseModel):
    detail: str


class RunSummaryOut(BaseModel):
    id: str
    status: RunStatus
    tag: str | None = None
    program_sha256: str
    program_name: str | None = None
    created_at: datetime
    finished_at: datetime | None = None
    cycles: int | None = None
    instructions: int | None = None
    error_kind: str | None = None


class RunListOut(BaseModel):
    items: list[RunSummaryOut]
    total: int
    limit: int
    offset: int


class AsmWarningOut(BaseModel):
    line: int
    text: str
    message: str


class SourceLineOut(BaseModel):
    pc: int
    line: int
    text: str
    section: str | None = None


class AssembleResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "words": [0x40004067, 0x0000006C, 0x00000029], "mem": "0x40004067\n0x0000006C\n0x00000029\n",
        "sha256": "9b1c…", "warnings": [], "source": [{"pc": 0, "line": 2, "text": "S_ADDI_INT gp1, gp0, 256",
                                                        "section": " load 4 rows of x"}]}]})
    words: list[int]
    mem: str
    sha256: str
    warnings: list[AsmWarningOut]
    source: list[SourceLineOut]


class DisassembledLine(BaseModel):
    pc: int
    word: int
    text: str


class DisassembleResponse(BaseModel):
    asm: str
    lines: list[DisassembledLine]


class OperandOut(BaseModel):
    name: str
    kind: str
    field: str
    optional: bool


class OpOut(BaseModel):
    mnemonic: str
    opcode: int
    unit: str
    group: str
    operands: list[OperandOut]
    latency: str
    semantics: str
    decodable: bool


class FieldOut(BaseModel):
    lsb: int
    width: int


class IsaOut(BaseModel):
    fields: dict[str, FieldOut]
    groups: dict[str, list[str]]
    ops: list[OpOut]


class HealthOut(BaseModel):
    status: Literal["ok", "degraded", "unavailable"]
    workers: int
    workers_ready: int
    in_flight: int
    queue_limit: int
    database: Literal["ok", "error"]
    warmup_problems: list[str] = Field(default_factory=list)


class EstimateOut(BaseModel):
    """What a run of the program would cost, without running it (profiler.static)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "program_sha256": "9b1c…", "program_words": 3, "cycles": 120, "instructions": 3, "hbm_bytes_read": 512,
        "hbm_bytes_written": 0, "hbm_model": "hbm2", "exact": True, "estimated": [],
        "notes": ["1 DMA instructions charged through the hbm2 HBM timing model with addresses from the "
                  "tracked registers"], "error": None, "wall_seconds": 0.001,
        "profile": None}]})
    program_sha256: str
    program_words: int
    cycles: int
    instructions: int
    hbm_bytes_read: int
    hbm_bytes_written: int
    hbm_model: str
    exact: bool = Field(description="true when the numbers equal what a run gives")
    estimated: list[str] = Field(description="which numbers are estimates when not exact")
    notes: list[str]
    error: EmulationErrorOut | None = Field(None, description="where a run would abort, when detected statically")
    wall_seconds: float
    profile: ProfileOut | None = None
