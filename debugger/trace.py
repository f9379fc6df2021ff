"""Instruction trace: one record per executed instruction, with what it changed.

    emulate PROG.asm --trace-instructions trace.jsonl [--trace-range pc:10-40] [--trace-range cycle:0-5000]
                     [--trace-instructions-limit N] [--trace-format jsonl|csv]

A record: i (dynamic index), pc, line, section, opcode, asm (the source line or disassembly),
operands, start (cycle), cycles (duration), changed: registers as {name: [old, new]}, and the
memory it wrote: vram_rows / mram_tiles (indices), fp_sram / int_sram ({entry: [old, new]}),
hbm ([[start, end), ...] byte ranges).  Instructions outside the ranges run at full speed (the
session's in-loop stops bring the machine to the next range).  Recording ends after `limit`
records with a clear message; the run itself continues to the end.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from emulator.asm import disassemble_word
from emulator.core import state as S
from emulator.core.hbm_store import PAGE_SHIFT
from emulator.errors import InputError
from emulator.tensors import bf16_bits_to_f32

from .session import Session
from .stops import MEMORY_WRITERS

DEFAULT_LIMIT = 100_000
CSV_COLUMNS = ("i", "pc", "line", "section", "opcode", "asm", "operands", "start", "cycles", "changed")
_RANGE_RE = re.compile(r"^\s*(?:(pc|cycle)\s*[:=]\s*)?(\d+)\s*(?:-\s*(\d+))?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class TraceRange:
    """Record instructions whose pc (or start cycle) lies in [first, last]."""

    kind: str     # pc | cycle
    first: int
    last: int

    @staticmethod
    def parse(text: str) -> "TraceRange":
        m = _RANGE_RE.match(text)
        if not m:
            raise InputError(f"bad trace range {text!r}: expected pc:A-B, cycle:A-B, pc:A or A-B (a pc range)")
        kind = (m.group(1) or "pc").lower()
        first = int(m.group(2))
        last = int(m.group(3)) if m.group(3) is not None else first
        if last < first:
            raise InputError(f"bad trace range {text!r}: {last} < {first}")
        return TraceRange(kind, first, last)

    def covers(self, pc: int, cycle: int) -> bool:
        value = pc if self.kind == "pc" else cycle
        return self.first <= value <= self.last


@dataclass(frozen=True)
class TraceSummary:
    records: int
    truncated: bool            # the limit stopped the recording before the ranges were done
    limit: int
    path: str | None

    def message(self) -> str:
        if self.truncated:
            return (f"trace: recording stopped at the limit of {self.limit:,} instructions "
                    f"(raise it with --trace-instructions-limit, or narrow it with --trace-range); the run continued to the end")
        return f"trace: {self.records:,} instructions recorded"


def _memory_snapshot(s: Session, memories: set[str]) -> dict:
    m = s.machine
    snap: dict = {}
    if "vram" in memories:
        snap["vram"] = m.vram[: int(m.ctrl[S.VRAM_ROWS_USED])].copy()
    if "mram" in memories:
        snap["mram"] = m.mram[: int(m.ctrl[S.MRAM_TILES_USED])].copy()
    if "fp_sram" in memories:
        snap["fp_sram"] = m.fpsram.copy()
    if "int_sram" in memories:
        snap["int_sram"] = m.intsram.copy()
    if "hbm" in memories:
        st = m.store
        snap["hbm"] = {p: data.copy() for p, data in st.resident_pages()}
    return snap


def _rows_changed(before: np.ndarray, after: np.ndarray) -> list[int]:
    n = max(before.shape[0], after.shape[0])
    width = after.shape[1:] if after.ndim > 1 else ()
    old = np.zeros((n, *width), dtype=after.dtype)
    new = np.zeros((n, *width), dtype=after.dtype)
    old[: before.shape[0]] = before
    new[: after.shape[0]] = after
    diff = (old != new).reshape(n, -1).any(axis=1)
    return [int(r) for r in np.nonzero(diff)[0]]


def _byte_ranges(mask: np.ndarray, base: int) -> list[list[int]]:
    idx = np.nonzero(mask)[0]
    if idx.size == 0:
        return []
    breaks = np.nonzero(np.diff(idx) > 1)[0]
    starts = np.concatenate(([idx[0]], idx[breaks + 1]))
    ends = np.concatenate((idx[breaks], [idx[-1]])) + 1
    return [[base + int(a), base + int(b)] for a, b in zip(starts, ends)]


def _memory_changes(s: Session, before: dict) -> dict:
    m = s.machine
    out: dict = {}
    if "vram" in before:
        rows = _rows_changed(before["vram"], m.vram[: int(m.ctrl[S.VRAM_ROWS_USED])])
        if rows:
            out["vram_rows"] = rows
    if "mram" in before:
        tiles = _rows_changed(before["mram"], m.mram[: int(m.ctrl[S.MRAM_TILES_USED])])
        if tiles:
            out["mram_tiles"] = tiles
    if "fp_sram" in before:
        idx = np.nonzero(before["fp_sram"] != m.fpsram)[0]
        if idx.size:
            old, new = bf16_bits_to_f32(before["fp_sram"][idx]), bf16_bits_to_f32(m.fpsram[idx])
            out["fp_sram"] = {str(int(i)): [float(a), float(b)] for i, a, b in zip(idx, old, new)}
    if "int_sram" in before:
        idx = np.nonzero(before["int_sram"] != m.intsram)[0]
        if idx.size:
            out["int_sram"] = {str(int(i)): [int(before["int_sram"][i]), int(m.intsram[i])] for i in idx}
    if "hbm" in before:
        st = m.store
        ranges: list[list[int]] = []
        for p, new in st.resident_pages():
            old = before["hbm"].get(p)
            mask = new != (old if old is not None else 0)
            ranges += _byte_ranges(mask, p << PAGE_SHIFT)
        if ranges:
            out["hbm"] = ranges
    return out


def _register_changes(before, after) -> dict:
    out: dict = {}
    for name, old, new in (("gp", before.gp, after.gp), ("f", before.fp, after.fp), ("a", before.addr, after.addr)):
        for i, (x, y) in enumerate(zip(old, new)):
            if x != y and not (x != x and y != y):
                out[f"{name}{i}"] = [x, y]
    for name in ("scale", "stride", "v_mask"):
        x, y = getattr(before, name), getattr(after, name)
        if x != y:
            out[name] = [x, y]
    return out


def _writers_by_opcode() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for memory, ops in MEMORY_WRITERS.items():
        for op in ops:
            out.setdefault(op, set()).add(memory)
    return out


_WRITES = _writers_by_opcode()


def _json_safe(x):
    if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
        return str(x)
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    return x


class _Writer:
    def __init__(self, out: IO[str], fmt: str):
        self.out = out
        self.fmt = fmt
        self.csv = csv.writer(out) if fmt == "csv" else None
        if self.csv is not None:
            self.csv.writerow(CSV_COLUMNS)

    def write(self, record: dict) -> None:
        record = _json_safe(record)
        if self.csv is not None:
            self.csv.writerow([record[c] if c != "changed" else json.dumps(record[c]) for c in CSV_COLUMNS])
        else:
            self.out.write(json.dumps(record) + "\n")


def step_record(s: Session) -> dict:
    """Run one instruction and return its trace record."""
    pc, start, index = s.pc, s.cycle, s.instructions
    loc = s.location(pc)
    opcode = s.opcode(pc)
    before_regs = s.registers()
    before_mem = _memory_snapshot(s, _WRITES.get(opcode, set()))
    s.step()
    changed = _register_changes(before_regs, s.registers())
    changed.update(_memory_changes(s, before_mem))
    disasm = disassemble_word(int(s.program.words[pc]))
    operands = disasm.split(None, 1)[1] if " " in disasm and not disasm.startswith(".word") else ""
    return {"i": index, "pc": pc, "line": loc.line, "section": loc.section, "opcode": opcode, "asm": loc.text,
            "operands": operands.split("  ;")[0], "start": start, "cycles": s.cycle - start, "changed": changed}


def trace_instructions(s: Session, out: IO[str], *, ranges: tuple[TraceRange, ...] = (), limit: int = DEFAULT_LIMIT,
                       fmt: str = "jsonl", max_instructions: int | None = None) -> TraceSummary:
    """Record instructions (those in `ranges`, or all) until the program ends, `limit` records,
    or `max_instructions` dynamic instructions in all (a run budget)."""
    if limit < 1:
        raise InputError("the trace limit must be >= 1")
    if fmt not in ("jsonl", "csv"):
        raise InputError(f"unknown trace format {fmt!r}: jsonl or csv")
    writer = _Writer(out, fmt)
    pc_ranges = [r for r in ranges if r.kind == "pc"]
    cycle_ranges = [r for r in ranges if r.kind == "cycle"]
    n = len(s.program)
    range_pcs = tuple(sorted({p for r in pc_ranges for p in range(r.first, min(r.last, n - 1) + 1)}))
    records = 0
    while not s.finished and records < limit and (max_instructions is None or s.instructions < max_instructions):
        if ranges and not any(r.covers(s.pc, s.cycle) for r in ranges):
            later = [r.first for r in cycle_ranges if r.first > s.cycle]
            if not range_pcs and not later:
                break  # nothing left to record
            bp = s.break_at(cycle=min(later), temporary=True) if later else None
            try:
                s._resume(max_instructions, "finish", internal=range_pcs)
            finally:
                if bp is not None:
                    s.breakpoints.pop(bp.id, None)
            continue
        writer.write(step_record(s))
        records += 1
    truncated = records >= limit and not s.finished and (
        not ranges or any(r.kind == "pc" or r.last >= s.cycle for r in ranges))
    return TraceSummary(records, truncated, limit, getattr(out, "name", None))


# ------------------------------------------------------------------ emulate CLI hook

def add_trace_args(parser) -> None:
    g = parser.add_argument_group("instruction trace (one record per executed instruction)")
    g.add_argument("--trace-instructions", type=Path, metavar="FILE",
                   help="write a record per executed instruction (pc, line, opcode, operands, start cycle, "
                        "duration, changed registers and memory rows) to FILE (JSONL, or CSV for *.csv)")
    g.add_argument("--trace-range", action="append", default=[], metavar="RANGE",
                   help="only record pcs or start cycles in a range: pc:A-B, cycle:A-B (repeatable)")
    g.add_argument("--trace-instructions-limit", type=int, default=DEFAULT_LIMIT, metavar="N",
                   help=f"stop recording after N instructions (default {DEFAULT_LIMIT:,}); the run continues")
    g.add_argument("--trace-format", choices=("jsonl", "csv"),
                   help="record format (default: from the file name, jsonl unless it ends in .csv)")


def traced_run(args, program, settings, **inputs):
    """The emulate CLI's run when --trace-instructions is given: (RunResult, TraceSummary).

    `inputs`: the images and any extra run() outputs the profiler asked for (trace_limit,
    seconds_labels)."""
    if args.max_seconds is not None:
        raise InputError("--max-seconds does not apply to a traced run (bound it with --max-instructions or "
                         "--trace-instructions-limit)")
    ranges = tuple(TraceRange.parse(t) for t in args.trace_range)
    fmt = args.trace_format or ("csv" if args.trace_instructions.suffix.lower() == ".csv" else "jsonl")
    s = Session(program, settings=settings, **inputs)
    try:
        with open(args.trace_instructions, "w", encoding="utf-8", newline="") as out:
            summary = trace_instructions(s, out, ranges=ranges, limit=args.trace_instructions_limit, fmt=fmt,
                                         max_instructions=args.max_instructions)
    except OSError as exc:
        raise InputError(f"cannot write the trace to {str(args.trace_instructions)!r}: {exc.strerror or exc}") from exc
    return s.run_to_end(args.max_instructions), summary
