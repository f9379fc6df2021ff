"""Sections: which part of the program each pc belongs to.

A *section path* is a tuple of names, outermost first.  Three ways to cut a program:

* ``comments``: an instruction belongs to the nearest preceding full-line ``;``
  comment, the way PLENA compiler templates label code ("; Preload Activation Generation",
  "; FFN Gate", ...).  Comment labels are normalised (see `Normalization`) so that labels that
  differ only in register lists or numbers can be aggregated.
* ``blocks`` (default for ASM): like ``comments``, but a run of consecutive comment lines is one
  label, its first line: compiler templates often follow a heading ("; FFN Upsize Linear
  Generation") with detail lines ("; K-split inactive: ...") that ``comments`` would pick instead.
* ``markers``: only explicit markers count.  Users write ``; @section NAME`` ... ``; @end`` (nestable;
  ``; @end NAME`` additionally checks that the innermost open section is NAME).  In ``comments``
  mode markers are honoured too: the comment label becomes the leaf under the open markers, so
  ``; @section layer0`` / ``; FFN Gate`` gives the path ``("layer0", "FFN Gate")``.  A marker
  opens a fresh scope (no comment label until the next comment); ``@end`` restores the label that
  was in effect before the ``@section``.
* ``pc``: every static instruction is its own section (``pc 17``); the default for programs given
  as machine code, which have no comments.

Instructions in no section at top level get the path ``("(unlabelled)",)``; instructions directly
inside an explicit section with no comment label get the marker path itself (the section's own
"self" instructions).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from emulator.errors import InputError
from emulator.program import MAX_LABEL_CHARS, Program, clip_label

UNLABELLED = "(unlabelled)"
SECTION_MODES = ("comments", "blocks", "markers", "pc")
NORMALIZE_STEPS = ("brackets", "numbers")

_MARKER_OPEN = re.compile(r"^;+\s*@section\b\s*(.*?)\s*$")
_MARKER_END = re.compile(r"^;+\s*@end\b\s*(.*?)\s*$")
# Innermost bracket group, closed by `]` or `)` ("[10, 74)" is a half-open range in the templates).
_BRACKET_GROUP = re.compile(r"\[[^\[\]]*?[\])]")
_DIGITS = re.compile(r"\d+")
_DECORATION = re.compile(r"^[=\-*~\s]+|[=\-*~\s]+$")
_SPACES = re.compile(r"\s+")


class SectionError(InputError):
    """Badly nested ``; @section`` / ``; @end`` markers or an unknown section option."""


@dataclass(frozen=True)
class Normalization:
    """How comment labels are cleaned before they become section names.

    Always: leading ``;`` removed, surrounding decoration (``===``, ``---``) stripped, runs of
    whitespace collapsed.  ``brackets``: remove ``[...]`` groups (nested, and ``[a, b)`` ranges),
    so "Reset Registers [[1, 2, 3]]" and "Reset Registers [[1, 2, 3, 4]]" become "Reset Registers".
    ``numbers``: replace every run of digits with ``#``.
    """

    brackets: bool = False
    numbers: bool = False

    @classmethod
    def parse(cls, spec: str | None) -> Normalization:
        """``"basic"``/``"none"``/``""`` (cleanup only), ``"all"``, or a comma list of steps."""
        if spec is None:
            return cls()
        words = {w.strip().lower() for w in spec.split(",") if w.strip()}
        if words <= {"basic", "none"}:
            return cls()
        if words == {"all"}:
            return cls(brackets=True, numbers=True)
        unknown = words - set(NORMALIZE_STEPS)
        if unknown:
            raise SectionError(
                f"unknown section normalisation {sorted(unknown)}: use basic, all, or a comma list of "
                f"{', '.join(NORMALIZE_STEPS)}")
        return cls(brackets="brackets" in words, numbers="numbers" in words)

    def describe(self) -> str:
        steps = [s for s in NORMALIZE_STEPS if getattr(self, s)]
        return ",".join(steps) if steps else "basic"

    def apply(self, comment: str) -> str:
        # Labels are clipped (a comment may be megabytes); cut long input first so the cleanup
        # regexes never scan more than a few labels' worth.
        text = comment.strip()[: 4 * MAX_LABEL_CHARS].lstrip(";")
        if self.brackets:
            while True:
                stripped = _BRACKET_GROUP.sub("", text)
                if stripped == text:
                    break
                text = stripped
        if self.numbers:
            text = _DIGITS.sub("#", text)
        text = _DECORATION.sub("", text)
        text = _SPACES.sub(" ", text).strip(" ,:;")
        return clip_label(text)


@dataclass(frozen=True)
class SectionMap:
    """pc -> section path.  `pc_section[pc]` indexes `paths`."""

    paths: tuple[tuple[str, ...], ...]
    pc_section: np.ndarray          # int32[n_words]
    mode: str
    normalization: Normalization
    has_markers: bool = False
    warnings: tuple[str, ...] = field(default=())

    def path_of(self, pc: int) -> tuple[str, ...]:
        return self.paths[int(self.pc_section[pc])]


class _PathTable:
    def __init__(self) -> None:
        self.paths: list[tuple[str, ...]] = []
        self.index: dict[tuple[str, ...], int] = {}

    def id(self, path: tuple[str, ...]) -> int:
        got = self.index.get(path)
        if got is None:
            got = self.index[path] = len(self.paths)
            self.paths.append(path)
        return got


def default_mode(program: Program) -> str:
    return "blocks" if program.source is not None else "pc"


def build_sections(program: Program, mode: str | None = None,
                   normalization: Normalization | None = None) -> SectionMap:
    """Assign every pc of `program` a section path (see the module docstring)."""
    norm = normalization or Normalization()
    mode = mode or default_mode(program)
    if mode not in SECTION_MODES:
        raise SectionError(f"unknown section mode {mode!r}: use one of {', '.join(SECTION_MODES)}")
    n = len(program)
    table = _PathTable()
    pc_section = np.zeros(n, dtype=np.int32)
    if mode == "pc" or program.source is None:
        for pc in range(n):
            pc_section[pc] = table.id((f"pc {pc}",))
        return SectionMap(tuple(table.paths), pc_section, "pc", norm)

    if program.asm_text is None:
        # Only the assembler's per-pc comment is known: no markers possible.
        for pc, src in enumerate(program.source):
            label = norm.apply(src.comment) if (mode != "markers" and src.comment) else ""
            pc_section[pc] = table.id((label or UNLABELLED,))
        return SectionMap(tuple(table.paths), pc_section, mode, norm)

    line_to_pc: dict[int, int] = {}
    for pc, src in enumerate(program.source):
        line_to_pc.setdefault(src.line_no, pc)
    markers: list[tuple[str, str, int]] = []   # (name, label before it, line_no)
    label = ""
    warnings: list[str] = []
    has_markers = False
    assigned = np.zeros(n, dtype=bool)
    in_comment_block = False   # the previous non-blank line was a comment (for mode "blocks")
    for line_no, raw in enumerate(program.asm_text.split("\n"), start=1):
        pc = line_to_pc.get(line_no)
        if pc is not None:
            in_comment_block = False
            names = tuple(m[0] for m in markers)
            path = names + ((label,) if label else ())
            pc_section[pc] = table.id(path or (UNLABELLED,))
            assigned[pc] = True
            continue
        text = raw.strip()
        if not text.startswith(";"):
            continue
        opened = _MARKER_OPEN.match(text)
        if opened:
            in_comment_block = False
            has_markers = True
            name = clip_label(opened.group(1))
            if not name:
                raise SectionError(f"line {line_no}: `; @section` needs a name\n    {clip_label(text)}")
            markers.append((name, label, line_no))
            label = ""
            continue
        ended = _MARKER_END.match(text)
        if ended:
            in_comment_block = False
            has_markers = True
            if not markers:
                raise SectionError(f"line {line_no}: `; @end` without an open `; @section`\n    {clip_label(text)}")
            name, label, _ = markers.pop()
            if ended.group(1) and clip_label(ended.group(1)) != name:
                raise SectionError(
                    f"line {line_no}: `; @end {clip_label(ended.group(1))}` closes section {name!r}\n    {clip_label(text)}")
            continue
        if mode == "comments" or (mode == "blocks" and not in_comment_block):
            label = norm.apply(text)
        in_comment_block = True
    for name, _, line_no in markers:
        warnings.append(f"line {line_no}: `; @section {name}` is never closed (ends at the end of the program)")
    if not assigned.all():
        # Source lines beyond the ASM text (should not happen with a consistent Program).
        for pc in np.flatnonzero(~assigned):
            src = program.source[pc]
            lab = norm.apply(src.comment) if (mode != "markers" and src.comment) else ""
            pc_section[pc] = table.id((lab or UNLABELLED,))
    return SectionMap(tuple(table.paths), pc_section, mode, norm, has_markers, tuple(warnings))
