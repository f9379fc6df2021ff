"""Program: machine words plus, when assembled from ASM, a source map (pc -> line, text, section).

The first step of the one-way data flow: ASM/.mem -> Program -> Machine -> RunResult -> Profile.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError, SourceRef

MAX_LABEL_CHARS = 200   # section labels and source lines kept per instruction (a comment can be megabytes)


def clip_label(text: str, limit: int = MAX_LABEL_CHARS) -> str:
    """`text`, cut to `limit` characters with an ellipsis when longer."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


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


def _machine_words(words) -> np.ndarray:
    """`words` as uint32, refusing what does not fit a 32-bit word (numpy would wrap it silently)."""
    try:
        arr = np.asarray(words)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InputError(f"program words must be integers 0..0xFFFFFFFF: {exc}") from None
    if arr.ndim != 1:
        raise InputError(f"program words must be a flat sequence (got shape {arr.shape})")
    if arr.size and arr.dtype.kind not in "iu":
        if arr.dtype.kind == "O" and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in arr):
            arr = np.array([int(v) for v in arr], dtype=object)
        else:
            raise InputError(f"program words must be integers 0..0xFFFFFFFF (got dtype {arr.dtype})")
    if arr.size and (arr.min() < 0 or arr.max() > 0xFFFFFFFF):
        bad = next(int(v) for v in arr if not 0 <= int(v) <= 0xFFFFFFFF)
        raise InputError(f"program word {bad} does not fit 32 bits (0..0xFFFFFFFF)")
    return np.ascontiguousarray(arr, dtype=np.uint32)


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
        w = _machine_words(self.words)
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
