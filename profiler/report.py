"""Rendering a Profile: terminal table, JSON (documented schema), CSV; loading saved JSON.

JSON schema (``"schema": "plena-profile"``, ``"schema_version": 2``; full description with
every field in profiler/SCHEMA.md).  Top level, in this order::

    schema, schema_version, kind ("dynamic" | "static"), program {name, sha256, words, has_source},
    settings {MLEN, VLEN, BLEN, HLEN, BROADCAST_AMOUNT, DC_EN, ..., hbm_model, source},
    clock_hz, totals {cycles, seconds, instructions, hbm_bytes_read, hbm_bytes_written, macs},
    error (null or {kind, pc, opcode, line, source, message}),
    estimate (null for runs; for static estimates {exact, estimated, notes}),
    units {<unit>: {busy_cycles, utilisation}} for matrix, vector, scalar-int, scalar-fp, dma, control,
    timing ("sequential" | "overlapped"), overlapped (null, or the overlapped model's totals, units,
    stalls and parameters),
    matrix {macs, macs_per_cycle, peak_macs_per_cycle, utilisation, peak_definition},
    hbm {model, bytes_read, bytes_written, bytes_per_cycle, bytes_per_dma_cycle, gb_per_s,
         peak_bytes_per_cycle, utilisation, dma_utilisation, peak_definition},
    sections_mode, section_normalization,
    sections [ <section> ... ]          sorted by cycles (descending), then first pc,
    by_opcode {<mnemonic>: <opcode row>}   sorted by cycles (descending),
    hot_pcs [ {pc, line, text, opcode, unit, section, count, cycles, share, hbm_bytes_read,
               hbm_bytes_written} ],
    warnings [str], wall_seconds, source (per-line heat table, profiler/heat.py)

    <section> = {name, path, first_pc, static_instructions, cycles, share, seconds, instructions,
                 hbm_bytes_read, hbm_bytes_written, macs, macs_per_cycle, matrix_utilisation,
                 hbm_bytes_per_cycle, hbm_utilisation, unit_cycles {<unit>: int},
                 unit_utilisation {<unit>: float},
                 overlapped (null, or {critical_cycles, speedup, stall_cycles, issue_stall_cycles}),
                 by_opcode {<mnemonic>: <opcode row>},
                 self (only when it has children: the same numbers for its own instructions),
                 sections [ <section> ... ]}
    <opcode row> = {unit, instructions, cycles, share, hbm_bytes_read, hbm_bytes_written, macs}

Integers are exact; ``share`` is cycles / total cycles; utilisations are fractions (0..1).  The
cycles of the top-level sections sum to ``totals.cycles``; the children of a section plus its
``self`` sum to the section.  Loading (`load_profile`) reads only the integer fields and
recomputes every derived number.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from emulator.errors import InputError
from emulator.outputs import atomic_writer, write_text
from isa_specs import UNITS

from .aggregate import HotPc, OpStats, Profile, SectionNode, Stats
from .heat import heat_problems

SCHEMA = "plena-profile"
SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)   # version 1 documents have no timing/overlapped keys
BAR_WIDTH = 24
_EIGHTHS = " ▏▎▍▌▋▊▉█"


class ProfileFormatError(InputError):
    """A saved profile JSON that is not a plena-profile document."""


# ------------------------------------------------------------------------------------- JSON out

def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def _stats_dict(st: Stats, p: Profile) -> dict[str, Any]:
    moved = st.hbm_bytes_read + st.hbm_bytes_written
    return {
        "cycles": st.cycles,
        "share": p.share(st.cycles),
        "seconds": p.seconds(st.cycles),
        "instructions": st.instructions,
        "hbm_bytes_read": st.hbm_bytes_read,
        "hbm_bytes_written": st.hbm_bytes_written,
        "macs": st.macs,
        "macs_per_cycle": _ratio(st.macs, st.cycles),
        "matrix_utilisation": _ratio(_ratio(st.macs, st.cycles), p.peak_macs_per_cycle),
        "hbm_bytes_per_cycle": _ratio(moved, st.cycles),
        "hbm_utilisation": _ratio(_ratio(moved, st.cycles), p.peak_hbm_bytes_per_cycle),
        "unit_cycles": {u: st.unit_cycles.get(u, 0) for u in UNITS},
        "unit_utilisation": {u: _ratio(st.unit_cycles.get(u, 0), st.cycles) for u in UNITS},
        "overlapped": _overlapped_stats(st) if p.timing == "overlapped" else None,
    }


def _overlapped_stats(st: Stats) -> dict[str, Any]:
    return {"critical_cycles": st.critical_cycles,
            "speedup": st.cycles / st.critical_cycles if st.critical_cycles else None,
            "stall_cycles": st.stall_cycles, "issue_stall_cycles": st.issue_stall_cycles}


def _op_dict(row: OpStats, p: Profile) -> dict[str, Any]:
    return {"unit": row.unit, "instructions": row.instructions, "cycles": row.cycles,
            "share": p.share(row.cycles), "hbm_bytes_read": row.hbm_bytes_read,
            "hbm_bytes_written": row.hbm_bytes_written, "macs": row.macs}


def _section_dict(node: SectionNode, p: Profile) -> dict[str, Any]:
    d: dict[str, Any] = {"name": node.name, "path": list(node.path), "first_pc": node.first_pc,
                         "static_instructions": node.static_instructions}
    d.update(_stats_dict(node.stats, p))
    d["by_opcode"] = {mn: _op_dict(row, p) for mn, row in node.by_opcode.items()}
    if node.children:
        d["self"] = _stats_dict(node.self_stats, p)
    d["sections"] = [_section_dict(c, p) for c in node.children]
    return d


def profile_to_dict(p: Profile) -> dict[str, Any]:
    t = p.totals
    moved = t.hbm_bytes_read + t.hbm_bytes_written
    dma = t.unit_cycles.get("dma", 0)
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "kind": p.kind,
        "program": {"name": p.program_name, "sha256": p.program_sha256, "words": p.program_words,
                    "has_source": p.has_source},
        "settings": dict(p.settings),
        "clock_hz": p.clock_hz,
        "totals": {"cycles": t.cycles, "seconds": p.seconds(), "instructions": t.instructions,
                   "hbm_bytes_read": t.hbm_bytes_read, "hbm_bytes_written": t.hbm_bytes_written,
                   "macs": t.macs},
        "error": p.error,
        "estimate": p.estimate,
        "units": {u: {"busy_cycles": t.unit_cycles.get(u, 0), "utilisation": _ratio(t.unit_cycles.get(u, 0), t.cycles)}
                  for u in UNITS},
        "timing": p.timing,
        "overlapped": p.overlapped,
        "matrix": {"macs": t.macs, "macs_per_cycle": _ratio(t.macs, t.cycles),
                   "peak_macs_per_cycle": p.peak_macs_per_cycle,
                   "utilisation": _ratio(_ratio(t.macs, t.cycles), p.peak_macs_per_cycle),
                   "peak_definition": p.peak_macs_definition},
        "hbm": {"model": p.hbm_model, "bytes_read": t.hbm_bytes_read, "bytes_written": t.hbm_bytes_written,
                "bytes_per_cycle": _ratio(moved, t.cycles), "bytes_per_dma_cycle": _ratio(moved, dma),
                "gb_per_s": _ratio(moved, t.cycles) * p.clock_hz / 1e9,
                "peak_bytes_per_cycle": p.peak_hbm_bytes_per_cycle,
                "utilisation": _ratio(_ratio(moved, t.cycles), p.peak_hbm_bytes_per_cycle),
                "dma_utilisation": _ratio(_ratio(moved, dma), p.peak_hbm_bytes_per_cycle),
                "peak_definition": p.peak_hbm_definition},
        "sections_mode": p.sections_mode,
        "section_normalization": p.section_normalization,
        "sections": [_section_dict(s, p) for s in p.sections],
        "by_opcode": {mn: _op_dict(row, p) for mn, row in p.by_opcode.items()},
        "hot_pcs": [{"pc": h.pc, "line": h.line, "text": h.text, "opcode": h.opcode, "unit": h.unit,
                     "section": list(h.section), "count": h.count, "cycles": h.cycles,
                     "share": p.share(h.cycles), "hbm_bytes_read": h.hbm_bytes_read,
                     "hbm_bytes_written": h.hbm_bytes_written} for h in p.hot_pcs],
        "warnings": list(p.warnings),
        "wall_seconds": p.wall_seconds,
        "source": p.source,
    }


def profile_to_json(p: Profile) -> str:
    return json.dumps(profile_to_dict(p), indent=1, ensure_ascii=False) + "\n"


def write_json(p: Profile, path: str | Path) -> None:
    write_text(path, profile_to_json(p))


# ------------------------------------------------------------------------------------- JSON in

def _need(d: Any, key: str, where: str, kind: type | tuple[type, ...] = int) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise ProfileFormatError(f"{where}: missing key {key!r}")
    v = d[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(v, bool) and bool not in kinds) or not isinstance(v, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise ProfileFormatError(f"{where}.{key}: expected {names}, got {type(v).__name__}")
    return v


def _stats_from(d: dict, where: str) -> Stats:
    units = _need(d, "unit_cycles", where, dict)
    st = Stats(instructions=_need(d, "instructions", where), cycles=_need(d, "cycles", where),
               hbm_bytes_read=_need(d, "hbm_bytes_read", where),
               hbm_bytes_written=_need(d, "hbm_bytes_written", where), macs=_need(d, "macs", where))
    for u, c in units.items():
        if isinstance(c, bool) or not isinstance(c, int):
            raise ProfileFormatError(f"{where}.unit_cycles.{u}: expected an integer")
        st.unit_cycles[u] = c
    ov = d.get("overlapped")
    if ov is not None:
        st.critical_cycles = _need(ov, "critical_cycles", f"{where}.overlapped")
        st.stall_cycles = _need(ov, "stall_cycles", f"{where}.overlapped")
        st.issue_stall_cycles = _need(ov, "issue_stall_cycles", f"{where}.overlapped")
    return st


def _op_from(d: dict, where: str) -> OpStats:
    return OpStats(unit=_need(d, "unit", where, str), instructions=_need(d, "instructions", where),
                   cycles=_need(d, "cycles", where), hbm_bytes_read=_need(d, "hbm_bytes_read", where),
                   hbm_bytes_written=_need(d, "hbm_bytes_written", where), macs=_need(d, "macs", where))


def _section_from(d: dict, where: str) -> SectionNode:
    name = _need(d, "name", where, str)
    where = f"{where}[{name!r}]"
    node = SectionNode(name=name, path=tuple(_need(d, "path", where, list)), stats=_stats_from(d, where),
                       first_pc=_need(d, "first_pc", where),
                       static_instructions=_need(d, "static_instructions", where))
    node.by_opcode = {mn: _op_from(row, f"{where}.by_opcode.{mn}")
                      for mn, row in _need(d, "by_opcode", where, dict).items()}
    node.children = [_section_from(c, f"{where}.sections") for c in _need(d, "sections", where, list)]
    node.self_stats = _stats_from(d["self"], f"{where}.self") if "self" in d else node.stats.copy()
    return node


def _source_from(heat: Any) -> dict | None:
    if heat is None:
        return None
    problems = heat_problems(heat)
    if problems:
        raise ProfileFormatError("; ".join(problems))
    return heat


def profile_from_dict(d: Any) -> Profile:
    if not isinstance(d, dict) or d.get("schema") != SCHEMA:
        raise ProfileFormatError(f"not a {SCHEMA} JSON document (missing \"schema\": \"{SCHEMA}\")")
    if d.get("schema_version") not in READABLE_SCHEMA_VERSIONS:
        raise ProfileFormatError(f"unsupported {SCHEMA} schema_version {d.get('schema_version')!r} "
                                 f"(this version reads {', '.join(map(str, READABLE_SCHEMA_VERSIONS))})")
    prog = _need(d, "program", "profile", dict)
    totals_d = _need(d, "totals", "profile", dict)
    units = _need(d, "units", "profile", dict)
    totals = Stats(instructions=_need(totals_d, "instructions", "totals"), cycles=_need(totals_d, "cycles", "totals"),
                   hbm_bytes_read=_need(totals_d, "hbm_bytes_read", "totals"),
                   hbm_bytes_written=_need(totals_d, "hbm_bytes_written", "totals"),
                   macs=_need(totals_d, "macs", "totals"))
    for u, row in units.items():
        totals.unit_cycles[u] = _need(row, "busy_cycles", f"units.{u}")
    matrix = _need(d, "matrix", "profile", dict)
    hbm = _need(d, "hbm", "profile", dict)
    hot = [HotPc(pc=_need(h, "pc", "hot_pcs"), opcode=_need(h, "opcode", "hot_pcs", str),
                 unit=_need(h, "unit", "hot_pcs", str), count=_need(h, "count", "hot_pcs"),
                 cycles=_need(h, "cycles", "hot_pcs"), hbm_bytes_read=_need(h, "hbm_bytes_read", "hot_pcs"),
                 hbm_bytes_written=_need(h, "hbm_bytes_written", "hot_pcs"),
                 section=tuple(_need(h, "section", "hot_pcs", list)), line=h.get("line"), text=h.get("text"))
           for h in _need(d, "hot_pcs", "profile", list)]
    return Profile(
        kind=_need(d, "kind", "profile", str), program_name=prog.get("name"),
        program_sha256=_need(prog, "sha256", "program", str), program_words=_need(prog, "words", "program"),
        has_source=bool(prog.get("has_source")), settings=_need(d, "settings", "profile", dict),
        clock_hz=float(_need(d, "clock_hz", "profile", (int, float))), totals=totals,
        sections=[_section_from(s, "sections") for s in _need(d, "sections", "profile", list)],
        by_opcode={mn: _op_from(row, f"by_opcode.{mn}") for mn, row in _need(d, "by_opcode", "profile", dict).items()},
        hot_pcs=hot,
        peak_macs_per_cycle=float(_need(matrix, "peak_macs_per_cycle", "matrix", (int, float))),
        peak_macs_definition=str(matrix.get("peak_definition", "")),
        peak_hbm_bytes_per_cycle=float(_need(hbm, "peak_bytes_per_cycle", "hbm", (int, float))),
        peak_hbm_definition=str(hbm.get("peak_definition", "")), hbm_model=str(hbm.get("model", "")),
        sections_mode=str(d.get("sections_mode", "")), section_normalization=str(d.get("section_normalization", "")),
        error=d.get("error"), estimate=d.get("estimate"), warnings=list(d.get("warnings") or []),
        wall_seconds=d.get("wall_seconds"), source=_source_from(d.get("source")),
        timing=str(d.get("timing") or "sequential"), overlapped=d.get("overlapped"))


def load_profile(path: str | Path) -> Profile:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileFormatError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileFormatError(f"{path}: not valid JSON: {exc}") from exc
    return profile_from_dict(data)


# ------------------------------------------------------------------------------------- CSV

CSV_COLUMNS = ("table", "path", "depth", "name", "opcode", "cycles", "share", "instructions",
               "static_instructions", "first_pc", "hbm_bytes_read", "hbm_bytes_written", "macs",
               *(f"{u}_cycles" for u in UNITS))


def write_csv(p: Profile, out: str | Path | TextIO) -> None:
    """One flat table: a `total` row, a `section` row per section (all depths, `path` joined by
    " / "), `section_opcode` rows (each section's own per-opcode numbers) and `opcode` rows."""
    if isinstance(out, (str, Path)):
        with atomic_writer(out, "w", newline="", encoding="utf-8") as fh:
            write_csv(p, fh)
        return
    w = csv.writer(out)
    w.writerow(CSV_COLUMNS)

    def units(st: Stats | None) -> list:
        return [st.unit_cycles.get(u, 0) if st else "" for u in UNITS]

    t = p.totals
    w.writerow(["total", "", 0, "", "", t.cycles, 1.0 if t.cycles else 0.0, t.instructions, p.program_words, 0,
                t.hbm_bytes_read, t.hbm_bytes_written, t.macs, *units(t)])
    for node in p.iter_sections():
        st = node.stats
        path = " / ".join(node.path)
        w.writerow(["section", path, len(node.path), node.name, "", st.cycles, p.share(st.cycles), st.instructions,
                    node.static_instructions, node.first_pc, st.hbm_bytes_read, st.hbm_bytes_written, st.macs,
                    *units(st)])
        for mn, row in node.by_opcode.items():
            w.writerow(["section_opcode", path, len(node.path), node.name, mn, row.cycles, p.share(row.cycles),
                        row.instructions, "", "", row.hbm_bytes_read, row.hbm_bytes_written, row.macs,
                        *units(None)])
    for mn, row in p.by_opcode.items():
        w.writerow(["opcode", "", 0, "", mn, row.cycles, p.share(row.cycles), row.instructions, "", "",
                    row.hbm_bytes_read, row.hbm_bytes_written, row.macs, *units(None)])


def profile_to_csv(p: Profile) -> str:
    buf = io.StringIO()
    write_csv(p, buf)
    return buf.getvalue()


# ------------------------------------------------------------------------------------- terminal

def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar of `width` characters with 1/8-character resolution."""
    fraction = min(max(fraction, 0.0), 1.0)
    eighths = round(fraction * width * 8)
    full, rest = divmod(eighths, 8)
    text = "█" * full + (_EIGHTHS[rest] if rest else "")
    return text.ljust(width)


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:g}"


def _time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3f} {unit}"
    return f"{seconds * 1e9:.1f} ns"


def _units_brief(st: Stats) -> str:
    parts = sorted(((c, u) for u, c in st.unit_cycles.items() if c), reverse=True)
    return " ".join(f"{u} {100 * c / st.cycles:.0f}%" for c, u in parts[:2]) if st.cycles else ""


def _flatten(nodes: list[SectionNode], depth: int, max_depth: int | None):
    for node in nodes:
        yield depth, node
        if max_depth is None or depth + 1 < max_depth:
            yield from _flatten(node.children, depth + 1, max_depth)


def make_console(out: TextIO | None = None, width: int | None = None):
    """A rich Console for `out`: the terminal's width on a terminal, else `width` (default 160)."""
    from rich.console import Console

    out = out or sys.stdout
    tty = hasattr(out, "isatty") and out.isatty()
    return Console(file=out, width=None if tty and width is None else (width or 160), highlight=False)


def render_text(p: Profile, *, max_sections: int = 30, max_opcodes: int = 15, max_hot: int = 10,
                max_depth: int | None = None, width: int = 160, color: bool = False) -> str:
    """The terminal report as a string (used by the CLI and by tests)."""
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=color, color_system="auto" if color else None,
                      highlight=False)
    print_report(p, console, max_sections=max_sections, max_opcodes=max_opcodes, max_hot=max_hot,
                 max_depth=max_depth)
    return buf.getvalue()


def print_report(p: Profile, console=None, *, max_sections: int = 30, max_opcodes: int = 15,
                 max_hot: int = 10, max_depth: int | None = None) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    t = p.totals
    title = "static estimate" if p.kind == "static" else "run profile"
    name = p.program_name or p.program_sha256[:12]
    console.print(Text(f"PLENA {title}: {name}", style="bold"))
    clock = f"{p.clock_hz / 1e9:g} GHz" if p.clock_hz >= 1e9 else f"{p.clock_hz / 1e6:g} MHz"
    console.print(f"cycles {t.cycles:,}  ({_time(p.seconds())} at {clock})   instructions {t.instructions:,}"
                  f" ({p.program_words:,} static)   HBM read {t.hbm_bytes_read:,} B  written {t.hbm_bytes_written:,} B")
    if p.error:
        console.print(Text(f"run aborted: [{p.error.get('kind')}] pc {p.error.get('pc')} {p.error.get('opcode') or ''}: "
                           f"{p.error.get('message')}  (numbers cover the instructions executed up to the abort)",
                           style="bold red"))
    if p.estimate:
        exact = p.estimate.get("exact")
        console.print(Text(("Static estimate, exact: a run gives the same numbers" if exact else
                            "Static estimate: numbers marked ~ are estimates: "
                            + ", ".join(p.estimate.get("estimated", []))), style="yellow"))
        for note in p.estimate.get("notes", []):
            console.print(Text(f"  note: {note}", style="yellow"))
    approx = "~" if p.estimate and not p.estimate.get("exact") else ""

    # Sections
    rows = list(_flatten(p.sections, 0, max_depth))
    table = Table(title=f"Sections by cycles ({p.sections_mode}; normalisation {p.section_normalization})",
                  title_justify="left", show_edge=False, pad_edge=False)
    wc = len(f"{t.cycles:,}") + len(approx)
    wi = len(f"{t.instructions:,}")
    table.add_column("section", overflow="ellipsis", no_wrap=True, min_width=16, max_width=60)
    table.add_column(f"{approx}cycles", justify="right", no_wrap=True, min_width=max(wc, 6))
    table.add_column("share", justify="right", no_wrap=True, min_width=6)
    table.add_column("", no_wrap=True, min_width=BAR_WIDTH)
    table.add_column("instr", justify="right", no_wrap=True, min_width=max(wi, 5))
    table.add_column("HBM R/W B", justify="right", no_wrap=True, min_width=9)
    table.add_column("busy units", no_wrap=True, overflow="ellipsis", max_width=28)
    shown_top = 0
    for i, (depth, node) in enumerate(rows):
        if i >= max_sections:
            break
        st = node.stats
        if depth == 0:
            shown_top += st.cycles
        table.add_row(("  " * depth) + node.name, f"{st.cycles:,}", f"{100 * p.share(st.cycles):.1f}%",
                      bar(p.share(st.cycles)), f"{st.instructions:,}",
                      f"{_si(st.hbm_bytes_read)}/{_si(st.hbm_bytes_written)}", _units_brief(st))
    if len(rows) > max_sections:
        rest = t.cycles - sum(node.stats.cycles for depth, node in rows[:max_sections] if depth == 0)
        hidden_top = sum(1 for depth, _ in rows[max_sections:] if depth == 0)
        table.add_row(f"({len(rows) - max_sections} more rows, {hidden_top} of them top-level)",
                      f"{rest:,}", f"{100 * p.share(rest):.1f}%", bar(p.share(rest)), "", "", "")
    table.add_row(Text("TOTAL", style="bold"), f"{t.cycles:,}", "100.0%" if t.cycles else "0.0%", "",
                  f"{t.instructions:,}", f"{_si(t.hbm_bytes_read)}/{_si(t.hbm_bytes_written)}", _units_brief(t))
    console.print(table)

    # Units, matrix, HBM
    ut = Table(title="Units (in-order machine: busy cycles sum to the total)", title_justify="left",
               show_edge=False, pad_edge=False)
    ut.add_column("unit")
    ut.add_column(f"{approx}busy cycles", justify="right")
    ut.add_column("util", justify="right")
    ut.add_column("", no_wrap=True)
    for u in UNITS:
        c = t.unit_cycles.get(u, 0)
        ut.add_row(u, f"{c:,}", f"{100 * _ratio(c, t.cycles):.1f}%", bar(_ratio(c, t.cycles)))
    console.print(ut)
    moved = t.hbm_bytes_read + t.hbm_bytes_written
    rate = _ratio(t.macs, t.cycles)
    console.print(f"matrix: {t.macs:,} MACs, {rate:.2f} MACs/cycle of peak {p.peak_macs_per_cycle:g} "
                  f"({100 * _ratio(rate, p.peak_macs_per_cycle):.2f}%)  [{p.peak_macs_definition}]")
    dma = t.unit_cycles.get("dma", 0)
    console.print(f"HBM ({p.hbm_model}): {_ratio(moved, t.cycles):.2f} B/cycle = "
                  f"{_ratio(moved, t.cycles) * p.clock_hz / 1e9:.2f} GB/s over the run, "
                  f"{_ratio(moved, dma):.2f} B/cycle while DMA is busy; peak {p.peak_hbm_bytes_per_cycle:g} B/cycle "
                  f"({100 * _ratio(_ratio(moved, t.cycles), p.peak_hbm_bytes_per_cycle):.2f}% / "
                  f"{100 * _ratio(_ratio(moved, dma), p.peak_hbm_bytes_per_cycle):.2f}%)")

    if p.overlapped is not None:
        _print_overlapped(p, rows[:max_sections], console)

    ot = Table(title="Opcodes by cycles", title_justify="left", show_edge=False, pad_edge=False)
    for col, just in (("opcode", "left"), ("unit", "left"), ("count", "right"), (f"{approx}cycles", "right"),
                      ("share", "right"), ("", "left"), ("HBM R/W B", "right")):
        ot.add_column(col, justify=just, no_wrap=True)
    for mn, row in list(p.by_opcode.items())[:max_opcodes]:
        ot.add_row(mn, row.unit, f"{row.instructions:,}", f"{row.cycles:,}", f"{100 * p.share(row.cycles):.1f}%",
                   bar(p.share(row.cycles), 16), f"{_si(row.hbm_bytes_read)}/{_si(row.hbm_bytes_written)}")
    if len(p.by_opcode) > max_opcodes:
        ot.add_row(f"({len(p.by_opcode) - max_opcodes} more)", "", "", "", "", "", "")
    console.print(ot)

    if p.hot_pcs and max_hot > 0:
        ht = Table(title="Hot pcs", title_justify="left", show_edge=False, pad_edge=False)
        for col, just in (("pc", "right"), ("line", "right"), ("count", "right"), (f"{approx}cycles", "right"),
                          ("share", "right"), ("instruction", "left"), ("section", "left")):
            ht.add_column(col, justify=just, no_wrap=True, overflow="ellipsis")
        for h in p.hot_pcs[:max_hot]:
            ht.add_row(str(h.pc), "" if h.line is None else str(h.line), f"{h.count:,}", f"{h.cycles:,}",
                       f"{100 * p.share(h.cycles):.1f}%", h.text or h.opcode, " / ".join(h.section))
        console.print(ht)
    for w in p.warnings:
        console.print(Text(f"warning: {w}", style="yellow"))


def _print_overlapped(p: Profile, rows, console) -> None:
    """Overlapped timing: totals, units (busy/stalled/idle), per-section critical path and
    speed-up, and the largest stalls with their cause."""
    from rich.table import Table

    o = p.overlapped
    seq = o["sequential_cycles"]
    console.print(f"overlapped timing: {o['cycles']:,} cycles vs sequential {seq:,} "
                  f"(speed-up {seq / o['cycles'] if o['cycles'] else 0:.2f}x); dependency bound "
                  f"{o['dependency_bound']:,}; critical path {o['critical_instructions']:,} instructions; "
                  f"front end waited {o['front_end_stall_cycles']:,} cycles on full unit queues")
    ut = Table(title="Overlapped units (busy + stalled + idle = overlapped total)", title_justify="left",
               show_edge=False, pad_edge=False)
    for col, just in (("unit", "left"), ("instr", "right"), ("busy", "right"), ("stalled", "right"),
                      ("idle", "right"), ("busy", "left")):
        ut.add_column(col, justify=just, no_wrap=True)
    for name, u in o["units"].items():
        ut.add_row(name, f"{u['instructions']:,}", f"{u['busy_cycles']:,}", f"{u['stalled_cycles']:,}",
                   f"{u['idle_cycles']:,}", bar(_ratio(u["busy_cycles"], o["cycles"]), 16))
    console.print(ut)
    st = Table(title="Sections: sequential cycles, share of the overlapped critical path, speed-up",
               title_justify="left", show_edge=False, pad_edge=False)
    for col, just in (("section", "left"), ("sequential", "right"), ("critical path", "right"),
                      ("speed-up", "right"), ("stalled", "right"), ("issue waits", "right")):
        st.add_column(col, justify=just, no_wrap=True, overflow="ellipsis", max_width=60 if col == "section" else None)
    for depth, node in rows:
        s = node.stats
        speed = f"{s.cycles / s.critical_cycles:.2f}x" if s.critical_cycles else ("hidden" if s.cycles else "")
        st.add_row(("  " * depth) + node.name, f"{s.cycles:,}", f"{s.critical_cycles:,}", speed,
                   f"{s.stall_cycles:,}", f"{s.issue_stall_cycles:,}")
    console.print(st)
    if o["stalls"]:
        kt = Table(title="Largest stalls (the unit waited; cause; resource; the earlier instruction it waited on)",
                   title_justify="left", show_edge=False, pad_edge=False)
        for col, just in (("cycles", "right"), ("unit", "left"), ("cause", "left"), ("resource", "left"),
                          ("on pc", "right"), ("line", "right"), ("instruction", "left")):
            kt.add_column(col, justify=just, no_wrap=True, overflow="ellipsis")
        for k in o["stalls"][:10]:
            kt.add_row(f"{k['cycles']:,}", k["unit"], k["cause"], k["resource"], str(k["blocker_pc"]),
                       "" if k.get("blocker_line") is None else str(k["blocker_line"]), k.get("blocker_text") or "")
        console.print(kt)
