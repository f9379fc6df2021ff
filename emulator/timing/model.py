"""Parameters of the overlapped timing model, as a validated immutable model.

Defaults live in isa_specs/overlap_model.toml (documented there, key by key); a settings file may
carry the same table as `[TRANSACTIONAL.OVERLAP]`.  `OverlapModel.unit_tables()` turns the model
into the per-handler arrays the jitted scheduler reads.
"""

from __future__ import annotations

import copy
import tomllib
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from isa_specs import SPEC_DIR, load_isa

OVERLAP_MODEL_TOML = SPEC_DIR / "overlap_model.toml"
TIMING_MODES = ("sequential", "overlapped")
UNITS = ("scalar-int", "scalar-fp", "vector", "matrix", "dma-load", "dma-store", "control")
SHARED_UNIT = "shared"

_FROZEN = ConfigDict(frozen=True, extra="forbid")

# Largest latency any setting may give one instruction, here because the overlapped model's own
# cycle knobs share it (emulator/settings.py explains the bound and applies it to the latencies).
MAX_LATENCY_CYCLES = 1_000_000


class UnitParams(BaseModel):
    model_config = _FROZEN
    queue_depth: int = Field(1, ge=1, le=64)
    initiation_interval: int = Field(0, ge=0, le=MAX_LATENCY_CYCLES)


class OverlapModel(BaseModel):
    """The `[OVERLAP]` table: timing mode, front end, units, occupancy overrides."""

    model_config = _FROZEN
    timing: Literal["sequential", "overlapped"] = "sequential"
    issue_width: int = Field(1, ge=1, le=64)
    decoupled: bool = True
    UNITS: dict[str, UnitParams] = Field(default_factory=lambda: {u: UnitParams() for u in UNITS})
    OCCUPANCY: dict[str, int] = Field(default_factory=dict)

    def unit_names(self) -> tuple[str, ...]:
        return UNITS if self.decoupled else (SHARED_UNIT,)

    def unit_of_mnemonic(self, mnemonic: str, spec_unit: str) -> str:
        if not self.decoupled:
            return SHARED_UNIT
        if spec_unit == "dma":
            return "dma-store" if mnemonic == "H_STORE_V" else "dma-load"
        return spec_unit

    def unit_tables(self, handlers: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(unit index per handler, occupancy per handler (-1 = sequential duration),
        initiation interval per unit, queue depth per unit)."""
        spec = load_isa()
        names = self.unit_names()
        by_name = {op.mnemonic: op for op in spec.ops}
        unit_of = np.zeros(len(handlers), dtype=np.int64)
        occupancy = np.full(len(handlers), -1, dtype=np.int64)
        for i, mnemonic in enumerate(handlers):
            op = by_name.get(mnemonic)
            if op is not None:
                unit_of[i] = names.index(self.unit_of_mnemonic(mnemonic, op.unit))
            if mnemonic in self.OCCUPANCY:
                occupancy[i] = self.OCCUPANCY[mnemonic]
        if self.decoupled:
            ii = np.array([self.UNITS[u].initiation_interval for u in names], dtype=np.int64)
            depth = np.array([self.UNITS[u].queue_depth for u in names], dtype=np.int64)
        else:
            ii = np.zeros(1, dtype=np.int64)
            depth = np.ones(1, dtype=np.int64)
        return unit_of, occupancy, ii, depth


class OverlapModelError(ValueError):
    pass


@lru_cache(maxsize=1)
def default_overlap_table() -> dict:
    return tomllib.loads(OVERLAP_MODEL_TOML.read_text())["OVERLAP"]


def overlap_from_table(table: Any, where: str) -> OverlapModel:
    """An OverlapModel from a (possibly partial) `[OVERLAP]` table over the shipped defaults."""
    merged = copy.deepcopy(default_overlap_table())
    if table is not None:
        if not isinstance(table, dict):
            raise OverlapModelError(f"{where}: TRANSACTIONAL.OVERLAP must be a table")
        for key, value in table.items():
            if key == "UNITS" and isinstance(value, dict):
                for unit, params in value.items():
                    if unit not in UNITS:
                        raise OverlapModelError(f"{where}: OVERLAP.UNITS.{unit}: unknown unit; units are {', '.join(UNITS)}")
                    if not isinstance(params, dict):
                        raise OverlapModelError(f"{where}: OVERLAP.UNITS.{unit} must be a table")
                    merged["UNITS"][unit] = {**merged["UNITS"][unit], **params}
            elif key == "OCCUPANCY" and isinstance(value, dict):
                merged["OCCUPANCY"] = {**merged.get("OCCUPANCY", {}), **value}
            else:
                merged[key] = value
    known = {op.mnemonic for op in load_isa().ops if not op.is_dma}
    for mnemonic, cycles in merged.get("OCCUPANCY", {}).items():
        if mnemonic not in known:
            raise OverlapModelError(f"{where}: OVERLAP.OCCUPANCY.{mnemonic}: not a non-DMA opcode mnemonic")
        if isinstance(cycles, bool) or not isinstance(cycles, int) or not 0 <= cycles <= MAX_LATENCY_CYCLES:
            raise OverlapModelError(f"{where}: OVERLAP.OCCUPANCY.{mnemonic} must be an integer "
                                    f"0..{MAX_LATENCY_CYCLES:,}, got {cycles!r}")
    try:
        return OverlapModel(**merged)
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = ".".join(str(p) for p in e["loc"])
        raise OverlapModelError(f"{where}: OVERLAP.{loc}: {e['msg']}") from exc


def overlap_to_table(model: OverlapModel) -> dict:
    return model.model_dump()


def apply_overlap_override(table: dict, parts: list[str], value: Any) -> None:
    """Set OVERLAP.<parts> = value in a TRANSACTIONAL table (dotted override keys)."""
    node = table.setdefault("OVERLAP", {})
    if not parts:
        raise OverlapModelError("override 'OVERLAP': name a key, e.g. OVERLAP.issue_width")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise OverlapModelError(f"override OVERLAP.{'.'.join(parts)}: {part} is not a table")
    node[parts[-1]] = value
