"""Terminal report of an overlapped run: totals, per-unit lanes, stall attribution."""

from __future__ import annotations

import numpy as np

from .scheduler import OverlapResult

LANE_WIDTH = 64
_SHADES = " .:-=+*#"   # fraction of a column's cycles the unit was busy, 0 .. 1


def unit_lanes(o: OverlapResult, width: int = LANE_WIDTH) -> dict[str, str]:
    """One text lane per unit over the whole run: each column shades how busy the unit was.

    Built from the recorded per-instruction start/end (the first `trace_limit` instructions)."""
    total = max(o.cycles, 1)
    edges = np.linspace(0, total, width + 1)
    busy = np.zeros((len(o.units), width), dtype=np.float64)
    if o.trace_start is not None and len(o.trace_start):
        for u, s, e in zip(o.trace_unit, o.trace_start, o.trace_end):
            if e <= s:
                continue
            lo = np.searchsorted(edges, s, side="right") - 1
            hi = min(np.searchsorted(edges, e, side="left"), width)
            for c in range(max(lo, 0), hi):
                busy[u, c] += max(0.0, min(e, edges[c + 1]) - max(s, edges[c]))
    span = np.diff(edges)
    frac = np.clip(busy / np.maximum(span, 1e-9), 0.0, 1.0)
    lanes = {}
    for i, unit in enumerate(o.units):
        lanes[unit.name] = "".join(_SHADES[min(int(f * (len(_SHADES) - 1) + 0.999), len(_SHADES) - 1)]
                                   for f in frac[i])
    return lanes


def overlap_report_text(o: OverlapResult, sequential_cycles: int, source_ref=None, top: int = 8) -> str:
    """The overlapped section of `emulate`'s report; `source_ref(pc)` names a pc's source line."""
    ratio = o.cycles / sequential_cycles if sequential_cycles else 1.0
    lines = [
        f"overlapped cycles {o.cycles:,}  ({ratio:.3f} x sequential {sequential_cycles:,})",
        f"dependency bound  {o.dependency_bound:,}   critical path: {o.critical_instructions:,} instructions",
        f"front-end stalls  {o.front_end_stall:,} cycles (unit queues full)",
        "",
        f"{'unit':<11}{'instr':>9}{'busy':>10}{'stalled':>10}{'idle':>10}  lane (0 .. {o.cycles:,} cycles)",
    ]
    lanes = unit_lanes(o)
    for u in o.units:
        lines.append(f"{u.name:<11}{u.instructions:>9,}{u.busy:>10,}{u.stalled:>10,}{u.idle:>10,}  |{lanes[u.name]}|")
    if o.stalls:
        lines += ["", "top stalls (waiting unit, cause, resource, on pc):"]
        for s in o.stalls[:top]:
            ref = source_ref(s.blocker_pc) if source_ref is not None else None
            where = f"  line {ref.line_no}: {ref.text.strip()}" if ref is not None else ""
            res = f" {s.resource}" if s.resource else ""
            lines.append(f"  {s.cycles:>10,}  {s.unit:<10} {s.cause:<9}{res:<11} pc {s.blocker_pc}{where}")
    return "\n".join(lines)
