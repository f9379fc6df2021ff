"""Program: machine words plus, when assembled from ASM, a source map (pc -> line, text, section).

The first step of the one-way data flow: ASM/.mem -> Program -> Machine -> RunResult -> Profile.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from .errors import SourceRef


@dataclass(frozen=True)
class SourceLine:
    """Where one instruction came from."""

    line_no: int                 # 1-based line number in the ASM text
    text: str                    # the instruction line, stripped
    comment: str | None = None   # nearest preceding full-line `;` comment (section label), without `;`

    def ref(self) -> SourceRef:
        return SourceRef(self.line_no, self.text)


@dataclass(frozen=True)
class AsmWarning:
    line_no: int
    line: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line_no}: warning: {self.message}\n    {self.line}"


@dataclass(frozen=True)
class Program:
    """Decoded-ready program: `words[pc]` is the instruction at pc.

    `source` is None for programs given as machine code; otherwise `source[pc]` maps every pc.
    `asm_text` keeps the original ASM (the stage profiler and section profiler read comments).
    """

    words: np.ndarray                         # uint32[n]
    source: tuple[SourceLine, ...] | None = None
    asm_text: str | None = None
    name: str | None = None
    warnings: tuple[AsmWarning, ...] = field(default=())

    def __post_init__(self) -> None:
        w = np.ascontiguousarray(self.words, dtype=np.uint32)
        w.setflags(write=False)
        object.__setattr__(self, "words", w)
        if self.source is not None and len(self.source) != len(w):
            raise ValueError(f"source map has {len(self.source)} entries for {len(w)} words")

    def __len__(self) -> int:
        return int(self.words.shape[0])

    def source_ref(self, pc: int | None) -> SourceRef | None:
        if self.source is None or pc is None or not 0 <= pc < len(self.source):
            return None
        return self.source[pc].ref()

    @property
    def sha256(self) -> str:
        """Hash of the machine code (the service indexes run history by it)."""
        return hashlib.sha256(self.words.astype("<u4").tobytes()).hexdigest()

    def to_mem_text(self) -> str:
        """The reference's machine-code format: one `0x%08X` word per line."""
        return "".join(f"0x{int(w):08X}\n" for w in self.words)
