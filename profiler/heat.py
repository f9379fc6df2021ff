"""Source heat table: every line of the program with the counters of the instruction on it.

The per-pc counters of a run (or estimate) joined to the program's text, so that a source view
can show execution count, cycles and share per line, highlight hot lines and fold sections:

* ``lines``: the ASM text split into lines (comments and blank lines kept, line 1 first); for a
  program given as machine code, its disassembly, one line per pc;
* ``pc_line``: 1-based line of each pc; ``pc_count``, ``pc_cycles``, ``pc_hbm_bytes`` (read +
  written): that pc's dynamic counters; ``pc_section``: index into ``section_paths``;
* ``section_paths``: the section path (outermost first) of every section id.

Columns instead of one object per line keep the JSON small (a 30,000-line program is ~1 MB).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emulator.program import Program, clip_label

from .sections import SectionMap

# Programs longer than this are profiled without a heat table (it would dominate the document).
MAX_HEAT_PCS = 250_000


def source_heat(program: Program, smap: SectionMap, pc_count: np.ndarray, pc_cycles: np.ndarray,
                pc_hbm_bytes: np.ndarray) -> dict[str, Any] | None:
    """The heat table of `program` (see the module docstring), or None when it is too long."""
    n = len(program)
    if n > MAX_HEAT_PCS:
        return None
    if program.source is not None and program.asm_text is not None:
        lines = [clip_label(line) for line in program.asm_text.split("\n")]   # a comment can be megabytes
        if lines and lines[-1] == "":
            lines.pop()
        pc_line = [s.line_no for s in program.source]
    elif program.source is not None:
        lines = [s.text for s in program.source]
        pc_line = list(range(1, n + 1))
    else:
        from emulator.asm import disassemble_word

        lines = [disassemble_word(int(w)) for w in program.words]
        pc_line = list(range(1, n + 1))
    return {
        "lines": lines,
        "pc_line": pc_line,
        "pc_count": np.asarray(pc_count, dtype=np.int64).tolist(),
        "pc_cycles": np.asarray(pc_cycles, dtype=np.int64).tolist(),
        "pc_hbm_bytes": np.asarray(pc_hbm_bytes, dtype=np.int64).tolist(),
        "pc_section": smap.pc_section.astype(np.int64).tolist(),
        "section_paths": [list(p) for p in smap.paths],
    }


def heat_problems(heat: Any) -> list[str]:
    """What is wrong with a heat table read back from JSON (empty when it is usable)."""
    if not isinstance(heat, dict):
        return ["source: expected an object"]
    out = []
    for key in ("lines", "pc_line", "pc_count", "pc_cycles", "pc_hbm_bytes", "pc_section", "section_paths"):
        if not isinstance(heat.get(key), list):
            out.append(f"source.{key}: expected a list")
    if out:
        return out
    n = len(heat["pc_line"])
    for key in ("pc_count", "pc_cycles", "pc_hbm_bytes", "pc_section"):
        if len(heat[key]) != n:
            out.append(f"source.{key} has {len(heat[key])} entries for {n} pcs")
    if any(not isinstance(v, int) or not 1 <= v <= len(heat["lines"]) for v in heat["pc_line"]):
        out.append("source.pc_line: every entry must be a line number of source.lines")
    if any(not isinstance(v, int) or not 0 <= v < len(heat["section_paths"]) for v in heat["pc_section"]):
        out.append("source.pc_section: every entry must index source.section_paths")
    return out
