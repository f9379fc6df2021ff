"""The PLENA ISA and default hardware settings, as data.

`opcodes.toml` is the single source of truth for opcode numbers, field positions, assembler
encoding groups, operand kinds, functional units, latency expressions and one-line semantics.
This module loads and validates it; everything else (assembler, decoder, executor cost table,
static estimator, docs, the HTTP service's /v1/isa) reads the `IsaSpec` returned by `load_isa()`.
"""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

SPEC_DIR = Path(__file__).resolve().parent
OPCODES_TOML = SPEC_DIR / "opcodes.toml"
DEFAULT_SETTINGS_TOML = SPEC_DIR / "plena_settings.toml"
REFERENCE_BUILTIN_TOML = SPEC_DIR / "reference_builtin.toml"

OPERAND_KINDS = ("gp", "fp", "areg", "lit", "imm18", "imm22")
UNITS = ("matrix", "vector", "scalar-int", "scalar-fp", "dma", "control")
WORD_BITS = 32

# Register-file sizes the assembler accepts (the reference's FP file has 8 entries; the ISA
# names a0-a7 even though the emulator's address-register array has 16).
REGISTER_LIMITS = {"gp": 16, "fp": 8, "areg": 8}
REGISTER_PREFIX = {"gp": "gp", "fp": "f", "areg": "a"}


class IsaSpecError(ValueError):
    """opcodes.toml is inconsistent."""


@dataclass(frozen=True)
class Field:
    name: str
    lsb: int
    width: int

    @property
    def mask(self) -> int:
        return (1 << self.width) - 1

    def extract(self, word: int) -> int:
        return (word >> self.lsb) & self.mask


@dataclass(frozen=True)
class Operand:
    name: str
    kind: str
    field: str
    optional: bool = False
    bare: bool = False  # register operand that the compiler writes as a bare number
    must_be_zero: bool = False
    ignored_bits: str | None = None  # decoder field this operand lands in but the hardware ignores
    decoder_field: str | None = None  # field the hardware really reads this operand from (when it differs)


@dataclass(frozen=True)
class OpSpec:
    mnemonic: str
    opcode: int
    unit: str
    group: str
    operands: tuple[Operand, ...]
    latency: str
    semantics: str
    decodable: bool = True

    @property
    def is_dma(self) -> bool:
        return self.latency.strip() == "hbm"


@dataclass(frozen=True)
class IsaSpec:
    fields: dict[str, Field]
    groups: dict[str, tuple[str, ...]]
    ops: tuple[OpSpec, ...]
    by_mnemonic: dict[str, OpSpec] = field(repr=False)
    by_opcode: dict[int, OpSpec] = field(repr=False)

    def opcode(self, mnemonic: str) -> int:
        return self.by_mnemonic[mnemonic].opcode

    def decode_fields(self, word: int) -> dict[str, int]:
        return {name: f.extract(word) for name, f in self.fields.items()}

    def opcode_constants(self) -> dict[str, int]:
        """{mnemonic: opcode} for code that needs integer opcode constants (the numba core)."""
        return {op.mnemonic: op.opcode for op in self.ops}


def _parse_operand(raw: dict, where: str) -> Operand:
    unknown = set(raw) - {"name", "kind", "field", "optional", "bare", "must_be_zero", "ignored_bits", "decoder_field"}
    if unknown:
        raise IsaSpecError(f"{where}: unknown operand keys {sorted(unknown)}")
    if raw.get("kind") not in OPERAND_KINDS:
        raise IsaSpecError(f"{where}: operand kind {raw.get('kind')!r} is not one of {OPERAND_KINDS}")
    return Operand(**raw)


def _validate(fields: dict[str, Field], groups: dict[str, tuple[str, ...]], ops: list[OpSpec]) -> None:
    opcode_field = fields.get("opcode")
    if opcode_field is None or opcode_field.lsb != 0:
        raise IsaSpecError("the field table must define `opcode` at bit 0")
    for f in fields.values():
        if f.lsb < 0 or f.width <= 0 or f.lsb + f.width > WORD_BITS:
            raise IsaSpecError(f"field {f.name} [{f.lsb}, {f.width}] does not fit in a {WORD_BITS}-bit word")
    for g, names in groups.items():
        bits = 0
        for name in names:
            if name not in fields:
                raise IsaSpecError(f"group {g} names unknown field {name}")
            f = fields[name]
            fbits = f.mask << f.lsb
            if bits & fbits:
                raise IsaSpecError(f"group {g}: field {name} overlaps another field of the group")
            bits |= fbits
        if bits & opcode_field.mask:
            raise IsaSpecError(f"group {g}: a field overlaps the opcode")
    seen_mn: set[str] = set()
    seen_op: dict[int, str] = {}
    for op in ops:
        where = f"op {op.mnemonic}"
        if op.mnemonic in seen_mn:
            raise IsaSpecError(f"{where}: mnemonic defined twice")
        seen_mn.add(op.mnemonic)
        if op.opcode in seen_op:
            raise IsaSpecError(f"{where}: opcode 0x{op.opcode:02X} already used by {seen_op[op.opcode]}")
        seen_op[op.opcode] = op.mnemonic
        if not 0 < op.opcode <= opcode_field.mask:
            raise IsaSpecError(f"{where}: opcode 0x{op.opcode:X} does not fit the opcode field")
        if op.unit not in UNITS:
            raise IsaSpecError(f"{where}: unit {op.unit!r} is not one of {UNITS}")
        if op.group not in groups:
            raise IsaSpecError(f"{where}: unknown encoding group {op.group}")
        used: set[str] = set()
        seen_optional = False
        for o in op.operands:
            if o.field not in groups[op.group]:
                raise IsaSpecError(f"{where}: operand {o.name} uses field {o.field}, which group {op.group} does not encode")
            if o.field in used:
                raise IsaSpecError(f"{where}: field {o.field} used by two operands")
            used.add(o.field)
            for attr in ("ignored_bits", "decoder_field"):
                if getattr(o, attr) is not None and getattr(o, attr) not in fields:
                    raise IsaSpecError(f"{where}: operand {o.name} {attr} names unknown field {getattr(o, attr)}")
            if seen_optional and not o.optional:
                raise IsaSpecError(f"{where}: a required operand follows an optional one")
            seen_optional |= o.optional
        try:
            compile_latency(op.latency)
        except SyntaxError as exc:
            raise IsaSpecError(f"{where}: bad latency expression {op.latency!r}: {exc}") from exc


_ALLOWED_NODES = (
    ast.Expression, ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.IfExp, ast.Compare,
    ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Name, ast.Load, ast.Constant,
)


@lru_cache(maxsize=None)
def compile_latency(expr: str):
    """Compile a latency expression; only arithmetic, comparisons, conditionals and names."""
    tree = ast.parse(expr, mode="eval")
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise SyntaxError(f"{type(node).__name__} is not allowed in a latency expression")
    return compile(tree, f"<latency {expr}>", "eval")


def eval_latency(expr: str, names: dict[str, int]) -> int:
    """Evaluate a latency expression with knob values, MLEN/VLEN/... and decoded fields."""
    return int(eval(compile_latency(expr), {"__builtins__": {}}, names))  # noqa: S307 - AST-checked above


@lru_cache(maxsize=None)
def load_isa(path: str | None = None) -> IsaSpec:
    """Load and validate opcodes.toml (cached)."""
    data = tomllib.loads(Path(path or OPCODES_TOML).read_text())
    fields = {name: Field(name, int(v[0]), int(v[1])) for name, v in data["fields"].items()}
    groups = {name: tuple(g["fields"]) for name, g in data["groups"].items()}
    ops = []
    for raw in data["op"]:
        raw = dict(raw)
        where = f"op {raw.get('mnemonic', '?')}"
        operands = tuple(_parse_operand(o, where) for o in raw.pop("operands"))
        try:
            ops.append(OpSpec(operands=operands, **raw))
        except TypeError as exc:
            raise IsaSpecError(f"{where}: {exc}") from exc
    _validate(fields, groups, ops)
    return IsaSpec(
        fields=fields,
        groups=groups,
        ops=tuple(ops),
        by_mnemonic={op.mnemonic: op for op in ops},
        by_opcode={op.opcode: op for op in ops},
    )
