"""Hardware settings: a `plena_settings.toml` `[TRANSACTIONAL]` table as a validated, immutable model.

The reference silently falls back to its built-in defaults for the *whole* table when one key is
missing or mistyped.  We report exactly which key is wrong instead; `missing="reference-defaults"`
reproduces the reference's fallback on purpose.  Single keys can be overridden from code with
dotted paths (`{"CONFIG.MLEN": 32, "LATENCY.VECTOR_ADD_CYCLES.dc_lib_en": 3, "hbm_model": "analytic"}`;
a bare knob name such as `"MLEN"` or `"VECTOR_ADD_CYCLES"` is looked up in CONFIG/LATENCY).
"""

from __future__ import annotations

import copy
import tomllib
from functools import lru_cache
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from isa_specs import DEFAULT_SETTINGS_TOML, REFERENCE_BUILTIN_TOML

from .timing.model import MAX_LATENCY_CYCLES, OverlapModel, OverlapModelError, apply_overlap_override, overlap_from_table

CONFIG_KEYS = (
    "DC_EN", "MAX_LOOP_INSTRUCTIONS", "BLEN", "HLEN", "MLEN", "VLEN", "BROADCAST_AMOUNT", "HBM_SIZE",
    "MATRIX_SRAM_SIZE", "VECTOR_SRAM_SIZE", "HBM_M_Prefetch_Amount", "HBM_V_Prefetch_Amount",
    "HBM_V_Writeback_Amount",
)
LATENCY_KEYS = (
    "SYSTOLIC_PROCESSING_OVERHEAD", "VECTOR_ADD_CYCLES", "VECTOR_MUL_CYCLES", "VECTOR_EXP_CYCLES",
    "VECTOR_PREFIX_SCAN_CYCLES", "VECTOR_SHIFT_CYCLES", "VECTOR_RECI_CYCLES", "VECTOR_MAX_CYCLES",
    "VECTOR_SUM_CYCLES", "SCALAR_FP_LONGEST_OPERATE_CYCLES", "SCALAR_FP_BASIC_CYCLES",
    "SCALAR_FP_EXP_CYCLES", "SCALAR_FP_SQRT_CYCLES", "SCALAR_FP_RECI_CYCLES", "SCALAR_INT_BASIC_CYCLES",
)
PRECISION_KEYS = (
    "MATRIX_SRAM_TYPE", "VECTOR_SRAM_TYPE", "HBM_M_WEIGHT_TYPE", "HBM_M_KV_TYPE", "HBM_V_ACT_TYPE",
    "HBM_V_KV_TYPE", "HBM_V_INT_TYPE", "SCALAR_FP",
)
HBM_MODELS = ("hbm2", "analytic")

# Ranges every numeric setting must lie in, wherever settings come from (file, overrides, CLI,
# service).  They keep every array a setting sizes allocatable and every cycle sum far from the
# int64 limit: with latencies <= MAX_LATENCY_CYCLES one instruction costs < 2**40 cycles, so the
# run loop's cycle counter cannot wrap within a chunk (emulator/runner.py checks it between chunks).
# MAX_LATENCY_CYCLES (1,000,000) lives in emulator/timing/model.py, whose knobs it bounds too.
MAX_HBM_SIZE = 1 << 48                  # bytes (256 TiB); the store is sparse, addresses stay in int64
MAX_LOOP_INSTRUCTIONS_LIMIT = 1 << 62
MAX_DMA_ROWS = 1 << 16                  # HBM_*_Amount: rows one DMA instruction moves
MAX_SRAM_BYTES = 1 << 36                # VRAM (rows x VLEN x bf16) and MRAM (tiles x MLEN^2 x f32) arrays
MAX_BROADCAST_AMOUNT = 1 << 10
MissingPolicy = Literal["error", "reference-defaults"]

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class SettingsError(ValueError):
    """A settings file or override is missing a key, has a mistyped value, or breaks a relation."""


class FpType(BaseModel):
    model_config = _FROZEN
    sign: bool
    exponent: int
    mantissa: int

    def describe(self) -> str:
        return f"{'S' if self.sign else 'U'}E{self.exponent}M{self.mantissa}"


class IntType(BaseModel):
    model_config = _FROZEN
    width: int


class PrecisionType(BaseModel):
    """Either a plain element type or an MX type (elements + block scales)."""

    model_config = _FROZEN
    format: Literal["Plain", "Mx"]
    data_type: FpType | IntType | None = None
    elem: FpType | None = None
    scale: FpType | None = None
    block: int | None = None

    @property
    def is_mxfp8_e4m3(self) -> bool:
        return (
            self.format == "Mx" and self.block == 8
            and self.elem == FpType(sign=True, exponent=4, mantissa=3)
            and self.scale == FpType(sign=False, exponent=8, mantissa=0)
        )

    @property
    def is_bf16(self) -> bool:
        return self.format == "Plain" and self.data_type == FpType(sign=True, exponent=8, mantissa=7)

    def describe(self) -> str:
        if self.format == "Mx":
            return f"Mx(elem={self.elem.describe()}, scale={self.scale.describe()}, block={self.block})"
        if isinstance(self.data_type, IntType):
            return f"Int{self.data_type.width}"
        return self.data_type.describe()


class Settings(BaseModel):
    """Validated, immutable hardware settings (the `[TRANSACTIONAL]` table plus our run options)."""

    model_config = _FROZEN

    DC_EN: int
    MAX_LOOP_INSTRUCTIONS: int
    BLEN: int
    HLEN: int
    MLEN: int
    VLEN: int
    BROADCAST_AMOUNT: int
    HBM_SIZE: int
    MATRIX_SRAM_SIZE: int
    VECTOR_SRAM_SIZE: int
    HBM_M_Prefetch_Amount: int
    HBM_V_Prefetch_Amount: int
    HBM_V_Writeback_Amount: int
    latency_table: dict[str, tuple[int, int]]
    precision: dict[str, PrecisionType]
    hbm_model: Literal["hbm2", "analytic"] = "hbm2"
    overlap: OverlapModel = OverlapModel()   # [OVERLAP]: timing mode and the overlapped model
    source: str = "defaults"

    @field_validator("latency_table")
    @classmethod
    def _latencies_in_range(cls, v: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        for k, (en, dis) in v.items():
            if not (0 <= en <= MAX_LATENCY_CYCLES and 0 <= dis <= MAX_LATENCY_CYCLES):
                raise ValueError(f"LATENCY.{k}: cycle counts must be 0..{MAX_LATENCY_CYCLES:,} (got {en}/{dis})")
        return v

    # ---------------------------------------------------------------- derived values
    @property
    def timing(self) -> str:
        """"sequential" (the reference's timing) or "overlapped" (emulator/timing)."""
        return self.overlap.timing

    def latency(self, knob: str) -> int:
        """The DC_EN-selected value of one LATENCY knob (dc_lib_en iff DC_EN != 0)."""
        en, dis = self.latency_table[knob]
        return en if self.DC_EN != 0 else dis

    @property
    def latencies(self) -> dict[str, int]:
        return {k: self.latency(k) for k in self.latency_table}

    @property
    def prefetch_m_rows(self) -> int:
        """HBM_M_Prefetch_Amount rounded as the reference does: < MLEN -> MLEN, else up to a multiple."""
        a, m = self.HBM_M_Prefetch_Amount, self.MLEN
        return m if a < m else -(-a // m) * m

    @property
    def mram_tiles(self) -> int:
        return self.MATRIX_SRAM_SIZE // self.MLEN

    @property
    def vram_bytes(self) -> int:
        """Bytes of the emulator's VRAM array (every row, bf16 lanes)."""
        return self.VECTOR_SRAM_SIZE * self.VLEN * 2

    @property
    def mram_bytes(self) -> int:
        """Bytes of the emulator's MRAM array (every tile, f32 values)."""
        return self.mram_tiles * self.MLEN * self.MLEN * 4

    @property
    def vector_heads(self) -> int:
        return self.VLEN // self.HLEN

    def cost_names(self) -> dict[str, int]:
        """Names a latency expression of isa_specs/opcodes.toml may use (besides decoded fields)."""
        names = dict(self.latencies)
        names.update(MLEN=self.MLEN, VLEN=self.VLEN, BLEN=self.BLEN, HLEN=self.HLEN,
                     BROADCAST_AMOUNT=self.BROADCAST_AMOUNT)
        return names

    def to_toml_table(self) -> dict[str, Any]:
        """The `[TRANSACTIONAL]` table as nested dicts (what `load_settings` reads)."""
        prec = {}
        for k, p in self.precision.items():
            if k == "SCALAR_FP":
                prec[k] = {"type": "Fp", **p.data_type.model_dump()}
            elif p.format == "Mx":
                prec[k] = {"format": "Mx", "block": p.block,
                           "ELEM": {"type": "Fp", **p.elem.model_dump()},
                           "SCALE": {"type": "Fp", **p.scale.model_dump()}}
            else:
                kind = "Int" if isinstance(p.data_type, IntType) else "Fp"
                prec[k] = {"format": "Plain", "DATA_TYPE": {"type": kind, **p.data_type.model_dump()}}
        return {
            "CONFIG": {k: {"value": getattr(self, k)} for k in CONFIG_KEYS},
            "PRECISION": prec,
            "LATENCY": {k: {"dc_lib_en": en, "dc_lib_dis": dis} for k, (en, dis) in self.latency_table.items()},
            "OVERLAP": self.overlap.model_dump(),
        }

    def with_overrides(self, overrides: Mapping[str, Any]) -> Settings:
        """A new Settings with single keys replaced (dotted paths or bare knob names)."""
        table = self.to_toml_table()
        extra = {"hbm_model": self.hbm_model}
        _apply_overrides(table, extra, overrides)
        return _build(table, extra, source=f"{self.source}+overrides", missing="error")

    @property
    def warnings(self) -> list[str]:
        """Relations that only some instructions rely on: the run goes on, those instructions abort."""
        out = []
        if self.BROADCAST_AMOUNT * self.HLEN != self.MLEN:
            out.append(f"BROADCAST_AMOUNT*HLEN ({self.BROADCAST_AMOUNT}*{self.HLEN}) != MLEN ({self.MLEN}): "
                       "M_BMM/M_BTMM/M_BMV/M_BTMV will abort, as in the reference")
        return out

    def check_supported(self) -> None:
        """Relations the machines rely on; raises SettingsError naming the offending keys."""
        problems = []
        pos = ("BLEN", "HLEN", "MLEN", "VLEN", "BROADCAST_AMOUNT", "MATRIX_SRAM_SIZE", "VECTOR_SRAM_SIZE",
               "HBM_V_Prefetch_Amount", "HBM_V_Writeback_Amount", "MAX_LOOP_INSTRUCTIONS")
        for k in pos:
            if getattr(self, k) <= 0:
                problems.append(f"CONFIG.{k} must be > 0 (got {getattr(self, k)})")
        if self.HBM_M_Prefetch_Amount < 0:
            problems.append("CONFIG.HBM_M_Prefetch_Amount must be >= 0")
        if self.HBM_SIZE <= 0 or self.HBM_SIZE % 64 or self.HBM_SIZE > MAX_HBM_SIZE:
            problems.append(f"CONFIG.HBM_SIZE must be a positive multiple of 64 bytes up to 2**48 "
                            f"({MAX_HBM_SIZE:,}; got {self.HBM_SIZE})")
        if self.DC_EN not in (0, 1):
            problems.append(f"CONFIG.DC_EN must be 0 or 1 (got {self.DC_EN})")
        if self.MAX_LOOP_INSTRUCTIONS > MAX_LOOP_INSTRUCTIONS_LIMIT:
            problems.append(f"CONFIG.MAX_LOOP_INSTRUCTIONS must be at most 2**62 (got {self.MAX_LOOP_INSTRUCTIONS})")
        for k in ("HBM_M_Prefetch_Amount", "HBM_V_Prefetch_Amount", "HBM_V_Writeback_Amount"):
            if getattr(self, k) > MAX_DMA_ROWS:
                problems.append(f"CONFIG.{k} must be at most {MAX_DMA_ROWS} rows (got {getattr(self, k)})")
        if self.BROADCAST_AMOUNT > MAX_BROADCAST_AMOUNT:
            problems.append(f"CONFIG.BROADCAST_AMOUNT must be at most {MAX_BROADCAST_AMOUNT} "
                            f"(got {self.BROADCAST_AMOUNT})")
        for k in ("MLEN", "VLEN", "BLEN", "HLEN"):
            if getattr(self, k) > 4096:
                problems.append(f"CONFIG.{k} above 4096 is not supported (got {getattr(self, k)})")
        if problems:
            raise SettingsError("; ".join(problems))
        if self.MLEN != self.VLEN:
            problems.append(f"MLEN ({self.MLEN}) must equal VLEN ({self.VLEN}): every matrix op assumes it")
        if self.MLEN % self.BLEN:
            problems.append(f"MLEN ({self.MLEN}) must be a multiple of BLEN ({self.BLEN})")
        if self.VLEN % 8:
            problems.append(f"VLEN ({self.VLEN}) must be a multiple of the MX block (8)")
        for k in ("MLEN", "VLEN", "BLEN", "HLEN"):
            v = getattr(self, k)
            if v & (v - 1):
                problems.append(f"{k} ({v}) must be a power of two")
        if self.VLEN // self.HLEN > 64:
            problems.append(f"VLEN/HLEN ({self.VLEN // self.HLEN}) mask heads above 64 are not supported")
        for k in ("MATRIX_SRAM_TYPE", "VECTOR_SRAM_TYPE"):
            if not self.precision[k].is_bf16:
                problems.append(f"PRECISION.{k} must be bf16 (Plain Fp sign/8/7); got {self.precision[k].describe()}")
        for k in ("HBM_M_WEIGHT_TYPE", "HBM_M_KV_TYPE", "HBM_V_ACT_TYPE", "HBM_V_KV_TYPE"):
            if not self.precision[k].is_mxfp8_e4m3:
                problems.append(
                    f"PRECISION.{k}: only MXFP8 (E4M3 elements, E8M0 scales, block 8) is supported; "
                    f"got {self.precision[k].describe()}")
        if self.MATRIX_SRAM_SIZE // self.MLEN == 0:
            problems.append("MATRIX_SRAM_SIZE / MLEN must be at least one tile")
        if self.vram_bytes > MAX_SRAM_BYTES:
            problems.append(f"VECTOR_SRAM_SIZE ({self.VECTOR_SRAM_SIZE}) rows of VLEN ({self.VLEN}) bf16 lanes "
                            f"take {self.vram_bytes:,} bytes; at most {MAX_SRAM_BYTES:,} are supported")
        if self.mram_bytes > MAX_SRAM_BYTES:
            problems.append(f"MATRIX_SRAM_SIZE ({self.MATRIX_SRAM_SIZE}) makes {self.mram_tiles} MRAM tiles of "
                            f"{self.MLEN}x{self.MLEN} values ({self.mram_bytes:,} bytes); at most "
                            f"{MAX_SRAM_BYTES:,} are supported")
        if problems:
            raise SettingsError("; ".join(problems))


# ---------------------------------------------------------------------------------------- loading

def _require(table: Mapping, path: str, where: str) -> Any:
    node: Any = table
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise SettingsError(f"{where}: missing key TRANSACTIONAL.{path}")
        node = node[part]
    return node


def _int(v: Any, key: str, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise SettingsError(f"{where}: TRANSACTIONAL.{key} must be an integer, got {type(v).__name__} {v!r}")
    return v


def _fp_type(node: Any, key: str, where: str) -> FpType | IntType:
    if not isinstance(node, Mapping):
        raise SettingsError(f"{where}: TRANSACTIONAL.{key} must be a table")

    def field(name: str) -> Any:
        if name not in node:
            raise SettingsError(f"{where}: missing key TRANSACTIONAL.{key}.{name}")
        return node[name]

    kind = field("type")
    if kind == "Fp":
        sign = field("sign")
        if not isinstance(sign, bool):
            raise SettingsError(f"{where}: TRANSACTIONAL.{key}.sign must be true/false")
        return FpType(sign=sign, exponent=_int(field("exponent"), f"{key}.exponent", where),
                      mantissa=_int(field("mantissa"), f"{key}.mantissa", where))
    if kind == "Int":
        return IntType(width=_int(field("width"), f"{key}.width", where))
    raise SettingsError(f'{where}: TRANSACTIONAL.{key}.type must be "Fp" or "Int", got {kind!r}')


def table_of(node: Mapping, path: str) -> dict:
    """Re-root `node` at its dotted path so `_require` can name the full key in errors."""
    root: dict = {}
    cur = root
    parts = path.split(".")
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = node
    return root


def _precision(node: Any, key: str, where: str) -> PrecisionType:
    if not isinstance(node, Mapping):
        raise SettingsError(f"{where}: TRANSACTIONAL.PRECISION.{key} must be a table")
    path = f"PRECISION.{key}"
    if key == "SCALAR_FP":  # a bare data type, no format
        return PrecisionType(format="Plain", data_type=_fp_type(node, path, where))
    # serde untagged, as the reference: a table with DATA_TYPE is Plain, one with block/ELEM/SCALE is Mx.
    if "DATA_TYPE" in node:
        return PrecisionType(format="Plain", data_type=_fp_type(node["DATA_TYPE"], f"{path}.DATA_TYPE", where))
    if "ELEM" in node or "SCALE" in node or "block" in node:
        elem = _fp_type(_require(table_of(node, path), f"{path}.ELEM", where), f"{path}.ELEM", where)
        scale = _fp_type(_require(table_of(node, path), f"{path}.SCALE", where), f"{path}.SCALE", where)
        block = _int(_require(table_of(node, path), f"{path}.block", where), f"{path}.block", where)
        if not isinstance(elem, FpType) or not isinstance(scale, FpType):
            raise SettingsError(f"{where}: TRANSACTIONAL.{path}: MX element and scale types must be Fp")
        return PrecisionType(format="Mx", elem=elem, scale=scale, block=block)
    raise SettingsError(f"{where}: TRANSACTIONAL.{path} needs DATA_TYPE (Plain) or block/ELEM/SCALE (Mx)")


def _build(table: Mapping, extra: Mapping, source: str, missing: MissingPolicy) -> Settings:
    where = source
    try:
        values: dict[str, Any] = {}
        for k in CONFIG_KEYS:
            values[k] = _int(_require(table, f"CONFIG.{k}.value", where), f"CONFIG.{k}.value", where)
        lat = {}
        for k in LATENCY_KEYS:
            en = _int(_require(table, f"LATENCY.{k}.dc_lib_en", where), f"LATENCY.{k}.dc_lib_en", where)
            dis = _int(_require(table, f"LATENCY.{k}.dc_lib_dis", where), f"LATENCY.{k}.dc_lib_dis", where)
            lat[k] = (en, dis)
        prec = {k: _precision(_require(table, f"PRECISION.{k}", where), k, where) for k in PRECISION_KEYS}
    except SettingsError:
        if missing == "reference-defaults":
            fallback = load_settings(REFERENCE_BUILTIN_TOML).with_overrides(dict(extra)) if extra else \
                load_settings(REFERENCE_BUILTIN_TOML)
            if "OVERLAP" not in table:
                return fallback
            try:  # the overlapped-timing table is ours, not the reference's: it survives the fallback
                return fallback.model_copy(update={"overlap": overlap_from_table(table["OVERLAP"], where)})
            except OverlapModelError as exc:
                raise SettingsError(str(exc)) from exc
        raise
    try:
        overlap = overlap_from_table(table.get("OVERLAP"), where)
    except OverlapModelError as exc:
        raise SettingsError(str(exc)) from exc
    hbm_model = extra.get("hbm_model", "hbm2")
    if hbm_model not in HBM_MODELS:
        raise SettingsError(f"{where}: hbm_model must be one of {HBM_MODELS}, got {hbm_model!r}")
    try:
        s = Settings(**values, latency_table=lat, precision=prec, hbm_model=hbm_model, overlap=overlap,
                     source=source)
    except ValidationError as exc:
        raise SettingsError(f"{where}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from exc
    s.check_supported()
    return s


_SECTIONS = {"CONFIG": CONFIG_KEYS, "LATENCY": LATENCY_KEYS, "PRECISION": PRECISION_KEYS}


def _apply_overrides(table: dict, extra: dict, overrides: Mapping[str, Any]) -> None:
    for key, value in overrides.items():
        if key in ("hbm_model",):
            extra[key] = value
            continue
        if key == "timing":
            key = "OVERLAP.timing"
        parts = key.split(".")
        if parts[0] == "TRANSACTIONAL":
            parts = parts[1:]
        if parts and parts[0] == "OVERLAP":
            try:
                apply_overlap_override(table, parts[1:], value)
            except OverlapModelError as exc:
                raise SettingsError(str(exc)) from exc
            continue
        if not parts or not all(parts):
            raise SettingsError(f"override {key!r}: not a settings key (e.g. MLEN, CONFIG.MLEN, "
                                "LATENCY.VECTOR_ADD_CYCLES.dc_lib_en)")
        if len(parts) == 1:  # bare knob name
            section = next((s for s, keys in _SECTIONS.items() if parts[0] in keys), None)
            if section is None:
                raise SettingsError(f"override {key!r}: no CONFIG, LATENCY or PRECISION key of that name")
            parts = [section, parts[0]]
        if parts[0] not in _SECTIONS or parts[1] not in _SECTIONS[parts[0]]:
            raise SettingsError(f"override {key!r}: unknown settings key")
        section, name = parts[0], parts[1]
        if section == "CONFIG":
            if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "value"):
                raise SettingsError(f"override {key!r}: CONFIG keys take a single integer")
            table["CONFIG"][name] = {"value": value}
        elif section == "LATENCY":
            entry = table["LATENCY"].setdefault(name, {})
            if len(parts) == 3:
                if parts[2] not in ("dc_lib_en", "dc_lib_dis"):
                    raise SettingsError(f"override {key!r}: LATENCY fields are dc_lib_en / dc_lib_dis")
                entry[parts[2]] = value
            elif isinstance(value, Mapping):
                entry.update(value)
            elif isinstance(value, (list, tuple)) and len(value) == 2:
                entry["dc_lib_en"], entry["dc_lib_dis"] = value
            else:  # one number: the value used whatever DC_EN says
                entry["dc_lib_en"] = entry["dc_lib_dis"] = value
        else:
            table["PRECISION"][name] = copy.deepcopy(value)


def load_settings(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    text: str | None = None,
    missing: MissingPolicy = "error",
) -> Settings:
    """Read a plena_settings.toml (only `[TRANSACTIONAL]` is used) or our defaults.

    `text` gives the TOML content directly (the service receives files as text).  A file
    without a `[TRANSACTIONAL]` table is read as if it were that table's content.
    """
    if text is not None:
        source = "<settings text>"
    else:
        p = Path(path) if path is not None else DEFAULT_SETTINGS_TOML
        source = str(p) if path is not None else "default settings"
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise SettingsError(f"cannot read settings file {p}: it is not UTF-8 text "
                                f"({exc.reason} at byte {exc.start})") from None
        except OSError as exc:
            raise SettingsError(f"cannot read settings file {p}: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{source}: not valid TOML: {exc}") from exc
    table = copy.deepcopy(data.get("TRANSACTIONAL", data))
    if not isinstance(table, dict):
        raise SettingsError(f"{source}: TRANSACTIONAL must be a table, got {type(table).__name__}")
    for section in _SECTIONS:
        if not isinstance(table.setdefault(section, {}), dict):
            raise SettingsError(f"{source}: TRANSACTIONAL.{section} must be a table")
    extra: dict[str, Any] = {}
    if overrides:
        _apply_overrides(table, extra, overrides)
    return _build(table, extra, source=source, missing=missing)


@lru_cache(maxsize=1)
def default_settings() -> Settings:
    """The shipped settings (parsed once: Settings is immutable)."""
    return load_settings()
