"""Typed errors.  Everything the reference would panic on becomes an EmulationError naming the pc,
the opcode, the source line (when the program came from ASM) and the reason."""

from __future__ import annotations

from dataclasses import dataclass


class PlenaError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(PlenaError):
    """Bad user input: ASM, machine code, memory images, settings.  Nothing was executed."""


@dataclass(frozen=True)
class SourceRef:
    line_no: int  # 1-based line number in the ASM text
    text: str     # the line as written (stripped)


class AssemblerError(InputError):
    """ASM text that cannot be assembled.  `line_no`/`line` say where; the message says what was expected."""

    def __init__(self, message: str, line_no: int | None = None, line: str | None = None):
        self.reason = message
        self.line_no = line_no
        self.line = line
        where = f"line {line_no}: " if line_no is not None else ""
        shown = f"\n    {line}" if line is not None else ""
        super().__init__(f"{where}{message}{shown}")


class MemFileError(InputError):
    """A machine-code (.mem) file with a bad token."""


class ResourceError(InputError):
    """The run would need more memory than its budget (or the machine) allows; nothing was executed."""


class ImageError(InputError):
    """A memory image (HBM / FP SRAM / INT SRAM / VRAM preload) that does not fit."""


class EmulationError(PlenaError):
    """The program did something the reference aborts on (or hit a run budget).

    `kind` classifies it (alignment, out_of_range, narrow, shape, assert, fp_register,
    invalid_opcode, decode, loop, max_loop, topk_policy, load, budget); `pc` is the instruction
    index (None for load errors), `opcode` its mnemonic, `source` the ASM line when known.
    """

    def __init__(self, kind: str, message: str, pc: int | None = None, opcode: str | None = None,
                 word: int | None = None, source: SourceRef | None = None, cycles: int | None = None):
        self.kind = kind
        self.reason = message
        self.pc = pc
        self.opcode = opcode
        self.word = word
        self.source = source
        self.cycles = cycles
        parts = []
        if pc is not None:
            parts.append(f"pc {pc}")
        if opcode:
            parts.append(opcode)
        if source is not None:
            parts.append(f"line {source.line_no}: {source.text!r}")
        head = f"[{kind}] " + (", ".join(parts) + ": " if parts else "")
        super().__init__(head + message)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "pc": self.pc,
            "opcode": self.opcode,
            "line": self.source.line_no if self.source else None,
            "source": self.source.text if self.source else None,
            "message": self.reason,
        }


class BudgetExceeded(EmulationError):
    """The run hit its instruction or wall-time budget (not a reference behaviour: a safety stop)."""
