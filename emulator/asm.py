"""Assembler, disassembler and machine-code (.mem) reader for PLENA programs.

Every opcode number, field position and operand kind comes from `isa_specs/opcodes.toml`
(`isa_specs.load_isa()`); this module only knows how the PLENA compiler's assembler *places*
operands, so that `assemble(program.asm)` is byte-identical to the compiler's `program.mem`.

Placement (the compiler's rule, reproduced exactly)
    Operands are assigned to slots by their position: operand 1 -> rd; operands 2 and 3 -> rs1 and
    rs2 when written as registers (`gpN`, `fN`, `aN`), otherwise to the single immediate slot (a
    later immediate overwrites an earlier one); operand 4 -> rs3; operand 5 -> funct1; operand 6
    -> funct2, which is never encoded.  The op's encoding group (spec `groups`) then keeps only its
    own fields: the immediate slot goes to the group's immediate field (imm18 or imm22), and every
    other slot the group lacks is dropped.  That is how `M_MV_WO gp3, gp0, 0` (group B drops rs1),
    `S_EXP_FP f2, f2, 0` (group C drops the immediate), `V_RED_SUM f3, gp1, 0, 0` and the
    six-operand `H_PREFETCH_V gp3, gp1, a0, 0, 0, 0` assemble as the compiler assembles them.

Warnings (`Program.warnings`, never errors) -- issued whenever the hardware would see something
different from what the line says:
    * an operand that the placement drops (or that a later immediate overwrites) and whose value
      is not 0 -- `gp0`, `f0`, `a0` and `0` are silent, since dropping them changes nothing the
      line expresses (the compiler's templates write them routinely);
    * an operand whose placement reaches a field the hardware ignores for that op (spec attributes
      `ignored_bits`/`decoder_field`) when the value the hardware reads differs from the value
      written: a non-zero mask on V_EXP_V / V_RECI_V / V_RED_MAX (it lands in rs2; the hardware
      reads rs3) and a non-zero imm on M_MV_WO / M_BMM_WO / M_BMV_WO (placed at bit 10, read from
      bit 14: the hardware sees imm >> 4).

Beyond the compiler (all documented extensions or stricter checks)
    * Mnemonics and register prefixes are accepted in any case and canonicalised to upper-case
      mnemonics and lower-case registers (the compiler is case-sensitive; accepting `s_addi_int`
      cannot change the meaning of a correct program).
    * Comments: `;`, `//` and `#`, full-line or inline.  The nearest preceding full-line `;`
      comment becomes `SourceLine.comment` (the profilers use it as a section label).
    * Immediates may be hexadecimal (`0x10`).  Negative immediates are an error (PLENA has no
      signed immediates; the compiler would emit a word the emulator cannot load).
    * Register numbers are range-checked (gp0-15, f0-7, a0-7, `isa_specs.REGISTER_LIMITS`), every
      operand is kind-checked against the spec's operand list (`bare = true` register operands may
      be written as bare numbers), literals and immediates are range-checked against their field
      width, and too few operands is an error (optional operands default to 0).
    * `M_BMM`/`M_BTMM` with a non-zero rd (spec `must_be_zero`) is an error: the hardware aborts
      at decode, before any instruction runs.
    * `.word 0xXXXXXXXX` emits a raw word (invalid opcodes, hand-made encodings).  Labels are an
      error: PLENA has no branch targets (loops are C_LOOP_START / C_LOOP_END).
    * Every error is an `AssemblerError(message, line_no, line)` whose message says what was
      expected; an unknown mnemonic gets a "did you mean" hint.

`.mem` files follow the reference's loader: the text is split on any whitespace, every leading
lower-case `0x` is stripped (repeated prefixes too; `0X` is not a prefix), an optional `+` may
follow (Rust's `u32::from_str_radix` accepts it), and the rest must be hexadecimal below 2^32.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from isa_specs import REGISTER_LIMITS, REGISTER_PREFIX, WORD_BITS, IsaSpec, Operand, OpSpec, load_isa

from .errors import AssemblerError, InputError, MemFileError
from .program import AsmWarning, Program, SourceLine, clip_label

__all__ = [
    "assemble", "disassemble", "disassemble_word", "parse_mem", "load_program", "MAX_OPERANDS",
    "MACHINE_CODE_SUFFIXES",
]

WORD_MASK = (1 << WORD_BITS) - 1
MACHINE_CODE_SUFFIXES = (".mem", ".hex")

# The compiler's parser assigns operands to slots by position (see the module docstring).  Slots
# are named after the spec fields they feed; "imm" is the group's immediate field, "funct2" is
# parsed but never encoded.
_IMM = "imm"
_FUNCT2 = "funct2"
_POSITION_SLOTS = (("rd", "rd"), ("rs1", _IMM), ("rs2", _IMM), ("rs3", "rs3"), ("funct1", "funct1"),
                   (_FUNCT2, _FUNCT2))
MAX_OPERANDS = len(_POSITION_SLOTS)
_REGISTER_SLOT_FIELDS = ("rd", "rs1", "rs2", "rs3", "funct1")

_REGISTER_NAMES = {"gp": "a GP register", "fp": "an FP register", "areg": "an address register"}
_PREFIX_KIND = {prefix: kind for kind, prefix in REGISTER_PREFIX.items()}
# ASCII only: `\d` would also take other scripts' digits (`gp١`, fullwidth `５`), which int() accepts.
_TOKEN_RE = re.compile(r"(?:(gp|f|a)(\d+)|(0x[0-9a-f]+|\d+)|(-(?:0x[0-9a-f]+|\d+)))", re.IGNORECASE | re.ASCII)
_MEM_TOKEN_RE = re.compile(r"(?:0x)*\+?([0-9A-Fa-f]+)")
_WHITESPACE_RUN = re.compile(r"\S+")
BOM = "\ufeff"   # a UTF-8 byte-order mark some editors put at the start of a text file; skipped


# --------------------------------------------------------------------------- operand tokens
@dataclass(frozen=True, slots=True)
class _Token:
    text: str
    reg_kind: str | None   # "gp" / "fp" / "areg" for a register, None for a number
    value: int | None      # None: not parseable (or negative, see `negative`)
    negative: bool = False

    @property
    def is_register(self) -> bool:
        return self.reg_kind is not None


_MAX_DIGITS = 64


@lru_cache(maxsize=4096)
def _parse_token(text: str) -> _Token:
    m = _TOKEN_RE.fullmatch(text)
    if m is None:
        # The compiler treats anything starting with gp/f/a as register-like; keep that for slot
        # assignment, but the value is unusable.
        lowered = text.lower()
        reg_kind = next((_PREFIX_KIND[p] for p in ("gp", "f", "a") if lowered.startswith(p)), None)
        return _Token(text, reg_kind, None)
    prefix, reg_number, number, negative = m.groups()
    if len(reg_number or number or "") > _MAX_DIGITS:  # far beyond any field; int() would refuse it
        return _Token(text, _PREFIX_KIND[prefix.lower()] if prefix else None, None)
    if prefix is not None:
        return _Token(text, _PREFIX_KIND[prefix.lower()], int(reg_number))
    if number is not None:
        return _Token(text, None, int(number, 0) if number[:2].lower() == "0x" else int(number))
    return _Token(text, None, None, negative=True)


# --------------------------------------------------------------------------- per-op plans
@dataclass(frozen=True, slots=True)
class _OperandPlan:
    index: int             # position in the spec's operand list (= canonical position)
    spec: Operand
    lsb: int
    limit: int             # values must be < limit
    reg_kind: str | None   # register file the operand names, None for literals/immediates


@dataclass(frozen=True)
class _OpPlan:
    op: OpSpec
    # For operand position i: (field, slot) when the token is a number, and when it is a register;
    # field None means the group drops that slot.
    placement: tuple[tuple[tuple[str | None, str], tuple[str | None, str]], ...]
    operands: tuple[_OperandPlan, ...]
    required: int
    usage: str


@dataclass(frozen=True)
class _Tables:
    isa: IsaSpec
    plans: dict[str, _OpPlan]
    mnemonics: tuple[str, ...]
    group_masks: dict[str, int]


def _operand_usage(isa: IsaSpec, o: Operand) -> str:
    if o.must_be_zero:
        return f"<{o.name}:0>"
    if o.kind in REGISTER_LIMITS:
        return f"<{o.name}:{REGISTER_PREFIX[o.kind]}N>"
    return f"<{o.name}:0-{isa.fields[o.field].mask}>"


def _usage(isa: IsaSpec, op: OpSpec) -> str:
    parts, tail = [], ""
    for o in op.operands:
        if o.optional:
            parts.append("[, " + _operand_usage(isa, o))
            tail += "]"
        else:
            parts.append((", " if parts else " ") + _operand_usage(isa, o))
    return op.mnemonic + "".join(parts) + tail


def _plan(isa: IsaSpec, op: OpSpec) -> _OpPlan:
    group_fields = set(isa.groups[op.group])
    imm_fields = sorted(group_fields - set(_REGISTER_SLOT_FIELDS))
    if len(imm_fields) > 1:
        raise InputError(f"encoding group {op.group} has several immediate fields {imm_fields}")
    imm_field = imm_fields[0] if imm_fields else None

    def field_of(slot: str) -> str | None:
        if slot == _IMM:
            return imm_field
        return slot if slot in group_fields else None

    placement = tuple(((field_of(number_slot), number_slot), (field_of(register_slot), register_slot))
                      for register_slot, number_slot in _POSITION_SLOTS)
    operands = []
    for i, o in enumerate(op.operands):
        f = isa.fields[o.field]
        if o.kind in REGISTER_LIMITS:
            limit, reg_kind = min(REGISTER_LIMITS[o.kind], f.mask + 1), o.kind
        else:
            limit, reg_kind = f.mask + 1, None
        operands.append(_OperandPlan(i, o, f.lsb, 1 if o.must_be_zero else limit, reg_kind))
    return _OpPlan(op, placement, tuple(operands), sum(not o.optional for o in op.operands), _usage(isa, op))


@lru_cache(maxsize=1)
def _tables() -> _Tables:
    isa = load_isa()
    for name in _REGISTER_SLOT_FIELDS:
        if name not in isa.fields:
            raise InputError(f"the ISA spec has no field {name!r}, which the compiler's operand placement needs")
    group_masks = {}
    for g, names in isa.groups.items():
        mask = isa.fields["opcode"].mask << isa.fields["opcode"].lsb
        for n in names:
            mask |= isa.fields[n].mask << isa.fields[n].lsb
        group_masks[g] = mask
    plans = {op.mnemonic: _plan(isa, op) for op in isa.ops}
    return _Tables(isa, plans, tuple(op.mnemonic for op in isa.ops), group_masks)


def _expected(isa: IsaSpec, o: Operand) -> str:
    if o.must_be_zero:
        return f"0 (the hardware aborts at decode when {o.field} is not 0)"
    if o.kind in REGISTER_LIMITS:
        limit, prefix = REGISTER_LIMITS[o.kind], REGISTER_PREFIX[o.kind]
        text = f"{_REGISTER_NAMES[o.kind]} {prefix}0-{prefix}{limit - 1}"
        return text + (f" (or its bare number 0-{limit - 1})" if o.bare else "")
    top = isa.fields[o.field].mask
    return f"a literal 0-{top}" if o.kind == "lit" else f"an immediate 0-{top} ({o.kind})"


# --------------------------------------------------------------------------- assembler
def _strip_inline_comment(line: str) -> str:
    cut = len(line)
    for marker in ("//", ";", "#"):
        i = line.find(marker)
        if 0 <= i < cut:
            cut = i
    return line[:cut].strip()


def _placement_warning(isa: IsaSpec, op: OpSpec, o: Operand, value: int) -> str | None:
    """Say so when the compiler's placement of `value` makes the hardware read something else."""
    if o.ignored_bits is None or value == 0:
        return None
    placed = isa.fields[o.field]
    ignored = isa.fields[o.ignored_bits]
    where = (f"{op.mnemonic} {o.name} {value}: the compiler's assembler places it as {o.field} "
             f"(from bit {placed.lsb}), which overlaps {o.ignored_bits} (bits {ignored.lsb}-"
             f"{ignored.lsb + ignored.width - 1}), a field the hardware ignores for {op.mnemonic}")
    if o.decoder_field is None:
        return where if ignored.extract(value << placed.lsb) else None
    seen = isa.fields[o.decoder_field].extract(value << placed.lsb)
    if seen == value:
        return None
    return f"{where}; the hardware reads {o.name} from {o.decoder_field} and sees {seen}, not {value}"


def _slot_description(slot: str) -> str:
    if slot == _IMM:
        return "the immediate slot"
    if slot == _FUNCT2:
        return "funct2, which is never encoded"
    return f"the {slot} field"


class _LineError(Exception):
    """An error in one line's code; `assemble` adds the line number and text."""


def _unknown_mnemonic(tables: _Tables, head: str) -> str:
    if "," in head:
        before = head.split(",", 1)[0]
        if before.upper() in tables.plans:
            return f"expected a space between the mnemonic {before!r} and its operands, got {head!r}"
    wanted = head.upper()
    # Truncated names (`S_ADDI`) first, then difflib's nearest spellings.
    prefixed = [m for m in tables.mnemonics if m.startswith(wanted)] if len(wanted) >= 3 else []
    close = list(dict.fromkeys(prefixed + difflib.get_close_matches(wanted, tables.mnemonics, n=3, cutoff=0.6)))[:3]
    hint = (f" (did you mean {', '.join(close)}?)" if close
            else " (raw instruction words are written `.word 0xXXXXXXXX`)")
    return f"unknown mnemonic {head!r}{hint}"


def _directive(head: str, rest: str) -> int:
    if head.lower() != ".word":
        raise _LineError(f"unknown directive {head!r}: the only directive is `.word 0xXXXXXXXX` (one raw 32-bit word)")
    tok = _parse_token(rest) if rest else None
    if tok is None or tok.is_register or tok.value is None or tok.value > WORD_MASK:
        raise _LineError(f".word needs exactly one value 0-0x{WORD_MASK:08X} (decimal or 0x hex), got {rest!r}")
    return tok.value


def _kind_error(isa: IsaSpec, plan: _OpPlan, o: Operand, pos: int, tok: _Token) -> _LineError:
    extra = " (PLENA has no signed immediates)" if tok.negative else ""
    return _LineError(f"operand {pos + 1} of {plan.op.mnemonic} must be {_expected(isa, o)}, got "
                      f"{tok.text!r}{extra}; usage: {plan.usage}")


@lru_cache(maxsize=1 << 16)
def _assemble_code(code: str) -> tuple[int, tuple[str, ...]]:
    """(word, warning messages) for one line with its comment removed; raises _LineError.

    Pure and cached: compiler output repeats the same lines thousands of times."""
    tables = _tables()
    head, *tail = code.split(None, 1)
    rest = tail[0] if tail else ""
    if ":" in head:
        raise _LineError(f"labels are not supported ({head!r}): PLENA has no branch targets; "
                         "write hardware loops as C_LOOP_START gpN, count ... C_LOOP_END gpN")
    if head.startswith("."):
        return _directive(head, rest), ()
    plan = tables.plans.get(head) or tables.plans.get(head.upper())
    if plan is None:
        raise _LineError(_unknown_mnemonic(tables, head))
    return _encode(tables.isa, plan, [_parse_token(t.strip()) for t in rest.split(",")] if rest else [])


def _encode(isa: IsaSpec, plan: _OpPlan, tokens: list[_Token]) -> tuple[int, tuple[str, ...]]:
    op = plan.op
    mn = op.mnemonic
    for i, tok in enumerate(tokens):
        if tok.value is None and not tok.negative:
            if not tok.text:
                raise _LineError(f"operand {i + 1} of {mn} is empty (a stray ','); usage: {plan.usage}")
            if len(tok.text.split()) > 1:
                raise _LineError(f"operand {i + 1} of {mn} is {tok.text!r}: operands are separated by ','; "
                                 f"usage: {plan.usage}")
    if len(tokens) > MAX_OPERANDS:
        raise _LineError(f"{mn} takes {len(op.operands)} operands and the compiler's assembler parses at most "
                         f"{MAX_OPERANDS}, got {len(tokens)}; usage: {plan.usage}")

    # The compiler's positional slots, then the group's fields.
    filled: dict[str, int] = {}              # field -> operand position
    dropped: list[tuple[int, str]] = []       # (position, why)
    for i, tok in enumerate(tokens):
        field, slot = plan.placement[i][tok.reg_kind is not None]
        if field is None:
            dropped.append((i, f"the compiler's assembler puts it in {_slot_description(slot)}, "
                               f"which {mn} (encoding group {op.group}) does not encode"))
            continue
        if field in filled:
            dropped.append((filled[field], f"operand {i + 1} overwrites it (the compiler keeps only the last "
                                           "immediate of operands 2-3)"))
        filled[field] = i

    word = op.opcode << isa.fields["opcode"].lsb
    warnings: list[str] = []
    for p in plan.operands:
        o = p.spec
        pos = filled.get(o.field)
        if pos is None:
            if p.index < len(tokens):      # the operand written in this position did not land here
                raise _kind_error(isa, plan, o, p.index, tokens[p.index])
            if o.optional:
                continue
            raise _LineError(f"{mn} needs {plan.required} operand{'s' if plan.required != 1 else ''}"
                             f"{' (more are optional)' if plan.required < len(op.operands) else ''}, "
                             f"got {len(tokens)}; usage: {plan.usage}")
        tok = tokens[pos]
        value = tok.value
        if (value is None or value >= p.limit
                or (tok.reg_kind != p.reg_kind and not (o.bare and tok.reg_kind is None))):
            if o.must_be_zero and tok.reg_kind is None and value is not None:
                raise _LineError(f"operand {pos + 1} of {mn} must be 0, got {tok.text!r}: the hardware aborts at "
                                 f"decode (before any instruction runs) when {mn}'s {o.field} field is not 0")
            raise _kind_error(isa, plan, o, pos, tok)
        if value and o.ignored_bits is not None:
            note = _placement_warning(isa, op, o, value)
            if note:
                warnings.append(note)
        word |= value << p.lsb

    for pos, why in dropped:
        tok = tokens[pos]
        if tok.value is None:
            if tok.negative:
                raise _LineError(f"operand {pos + 1} of {mn} is negative ({tok.text!r}): PLENA has no signed "
                                 "immediates")
            raise _LineError(f"operand {pos + 1} of {mn}: cannot parse {tok.text!r} (expected a register "
                             f"gpN/fN/aN or a non-negative integer); usage: {plan.usage}")
        if tok.is_register and tok.value >= REGISTER_LIMITS[tok.reg_kind]:
            raise _LineError(f"operand {pos + 1} of {mn}: {tok.text!r} is not {_REGISTER_NAMES[tok.reg_kind]} "
                             f"(limit {REGISTER_PREFIX[tok.reg_kind]}{REGISTER_LIMITS[tok.reg_kind] - 1})")
        if tok.value != 0:
            warnings.append(f"operand {pos + 1} ({tok.text!r}) of {mn} is ignored: {why}; the hardware never sees it")
    return word, tuple(warnings)


def assemble(text: str, name: str | None = None) -> Program:
    """Assemble PLENA ASM text into a Program (words, source map, warnings); see the module docstring."""
    if not isinstance(text, str):
        raise InputError(f"assemble() needs ASM text (str), got {type(text).__name__}")
    text = text.removeprefix(BOM)
    words: list[int] = []
    source: list[SourceLine] = []
    warnings: list[AsmWarning] = []
    section: str | None = None
    for line_no, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith(("//", "#")):
            continue
        if line.startswith(";"):
            section = clip_label(line.lstrip(";").strip())
            continue
        try:
            word, notes = _assemble_code(_strip_inline_comment(line))
        except _LineError as exc:
            raise AssemblerError(str(exc), line_no, clip_label(line)) from None
        words.append(word)
        shown = clip_label(line)
        source.append(SourceLine(line_no, shown, section))
        warnings.extend(AsmWarning(line_no, shown, note) for note in notes)
    return Program(
        words=np.array(words, dtype=np.uint32),
        source=tuple(source),
        asm_text=text,
        name=name,
        warnings=tuple(warnings),
    )


# --------------------------------------------------------------------------- disassembler
def _format_operand(o: Operand, value: int) -> str:
    if o.kind in REGISTER_PREFIX:
        return f"{REGISTER_PREFIX[o.kind]}{value}"
    return str(value)


def _describe(word: int) -> tuple[str, str | None]:
    """(canonical ASM, note or None) for one word; undecodable words become `.word`."""
    if not isinstance(word, (int, np.integer)) or not 0 <= int(word) <= WORD_MASK:
        raise InputError(f"an instruction word must be an integer 0-0x{WORD_MASK:08X}, got {word!r}")
    word = int(word)
    tables = _tables()
    isa = tables.isa
    raw = f".word 0x{word:08X}"
    opcode = isa.fields["opcode"].extract(word)
    op = isa.by_opcode.get(opcode)
    if op is None:
        return raw, f"unknown opcode 0x{opcode:02X}: the hardware aborts if it executes this word"
    outside = word & ~tables.group_masks[op.group] & WORD_MASK
    if outside:
        return raw, (f"{op.mnemonic} with bits 0x{outside:08X} set outside its fields "
                     f"(encoding group {op.group}: {', '.join(isa.groups[op.group]) or 'no fields'})")
    texts, notes = [], []
    for o in op.operands:
        value = isa.fields[o.field].extract(word)
        if o.kind in REGISTER_LIMITS and value >= REGISTER_LIMITS[o.kind]:
            return raw, (f"{op.mnemonic} {o.name} = {value} in {o.field} is not "
                         f"{_expected(isa, o)}")
        if o.must_be_zero and value != 0:
            return raw, (f"{op.mnemonic} with {o.field} = {value}: the hardware aborts at decode "
                         f"({o.field} must be 0)")
        note = _placement_warning(isa, op, o, value)
        if note:
            notes.append(note)
        texts.append(_format_operand(o, value))
    if not op.decodable:
        notes.append(f"{op.mnemonic} is not decodable by the hardware: executing it aborts")
    text = op.mnemonic + (" " + ", ".join(texts) if texts else "")
    return text, "; ".join(notes) if notes else None


def disassemble_word(word: int) -> str:
    """Canonical ASM for one word (`assemble` of it gives the word back); undecodable words are
    written `.word 0xXXXXXXXX` followed by a `; comment` saying why."""
    text, note = _describe(word)
    return text if note is None else f"{text}  ; {note}"


def disassemble(words: Iterable[int] | np.ndarray | Program) -> str:
    """One line of canonical ASM per word."""
    if isinstance(words, Program):
        words = words.words
    if isinstance(words, np.ndarray):
        words = words.tolist()
    return "".join(disassemble_word(w) + "\n" for w in words)


# --------------------------------------------------------------------------- machine code
def parse_mem(text: str, name: str | None = None) -> Program:
    """Parse machine code the way the reference loader does (see the module docstring)."""
    words: list[int] = []
    text = text.removeprefix(BOM)
    for index, m in enumerate(_WHITESPACE_RUN.finditer(text)):
        tok = m.group()
        hex_digits = _MEM_TOKEN_RE.fullmatch(tok)
        value = int(hex_digits.group(1), 16) if hex_digits else None
        if value is None or value > WORD_MASK:
            line_no = text.count("\n", 0, m.start()) + 1
            why = ("is wider than 32 bits" if value is not None else
                   "is not hexadecimal (optional leading lower-case '0x' prefixes, then hex digits; "
                   "'0X' is not a prefix)")
            err = MemFileError(f"bad machine-code token {tok!r} (token {index}, line {line_no}): it {why}")
            err.token, err.index, err.line_no = tok, index, line_no
            raise err
        words.append(value)
    return Program(words=np.array(words, dtype=np.uint32), name=name)


def load_program(path: str | Path) -> Program:
    """Read a program file: `.mem`/`.hex` as machine code, anything else as ASM."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot read program {str(p)!r}: it is not UTF-8 text "
                         f"({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise InputError(f"cannot read program {str(p)!r}: {exc.strerror or exc}") from exc
    if p.suffix.lower() in MACHINE_CODE_SUFFIXES:
        return parse_mem(text, name=p.stem)
    return assemble(text, name=p.stem)
