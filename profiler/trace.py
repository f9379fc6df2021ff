"""Chrome trace-event / Perfetto JSON timeline of a run.

Layout (JSON Object Format: ``{"traceEvents": [...], "displayTimeUnit": "ns", "otherData": {...}}``):

* one process (pid 1) named after the program;
* track (tid) 1 "sections": one complete event (``ph: "X"``) per section *instance*, i.e. per
  maximal run of consecutive dynamic instructions in the same section; nested sections
  (``; @section`` markers, or marker + comment label) give nested slices on the same track;
* one track per unit (isa_specs.UNITS: matrix, vector, scalar-int, scalar-fp, dma, control):
  one slice per instruction when the recorded part of the run has at most
  `per_instruction_limit` instructions, otherwise one slice per maximal run of consecutive
  instructions on that unit (named after the opcode when the run has a single one);
* ``M`` metadata events name the process and the tracks and fix their order.

Times: ``ts``/``dur`` in microseconds = cycles / clock_hz * 1e6 (default 1 GHz: 1 cycle = 1 ns).

Size: the core records (pc, start, end) for the first N instructions (`run(trace_limit=N)`).
The timeline is exact for a prefix of the run holding at most `max_events` slices; everything
after it (instructions beyond the recorded ones, or beyond the event cap) becomes an
*aggregated tail*: per section, one slice covering its remaining cycles, laid out one after the
other in program order, with per-unit slices inside, all carrying ``args.aggregated = true`` and a
note.  So a 10^8-instruction run still gives a file of bounded size whose total span is the run's
cycles.  Without a recorded trace the whole run is the aggregated tail.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from emulator.outputs import write_text
from emulator.result import RunResult
from isa_specs import UNITS

from .aggregate import DEFAULT_CLOCK_HZ, decode_program
from .sections import SectionMap, build_sections

DEFAULT_TRACE_LIMIT = 200_000
DEFAULT_PER_INSTRUCTION_LIMIT = 20_000
DEFAULT_MAX_EVENTS = 200_000
PID = 1
SECTIONS_TID = 1
UNIT_TID = {u: i + 2 for i, u in enumerate(UNITS)}
AGGREGATED_NOTE = ("aggregated: instructions after the recorded part of the run, laid out per "
                   "section in program order (not their real interleaving)")

_METADATA_NAMES = {"process_name", "process_labels", "process_sort_index", "thread_name", "thread_sort_index"}
# Phases of the Trace Event Format: duration, complete, instant, counter, async (nestable and
# legacy), flow, sample, object, metadata, memory dump, mark, clock sync, context.
_PHASES = {"B", "E", "X", "i", "I", "C", "b", "n", "e", "S", "T", "p", "F", "s", "t", "f", "P", "N", "O", "D",
           "M", "V", "v", "R", "c", "(", ")"}


def _runs(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first index, last index) of the maximal runs of equal values in `ids`."""
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    change = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    first = np.concatenate(([0], change))
    last = np.concatenate((change - 1, [len(ids) - 1]))
    return first, last


def _prefix_ids(smap: SectionMap, depth: int) -> np.ndarray:
    """Per path id: an id of its prefix of length depth+1, or -1 when the path is shorter."""
    table: dict[tuple[str, ...], int] = {}
    out = np.full(len(smap.paths), -1, dtype=np.int64)
    for i, path in enumerate(smap.paths):
        if len(path) > depth:
            out[i] = table.setdefault(path[:depth + 1], len(table))
    return out


class _Events:
    def __init__(self, clock_hz: float) -> None:
        self.per_us = clock_hz / 1e6
        self.items: list[dict[str, Any]] = []

    def us(self, cycles: int) -> float:
        return cycles / self.per_us

    def slice(self, tid: int, name: str, start: int, end: int, cat: str, args: dict | None = None) -> None:
        ev = {"name": name, "cat": cat, "ph": "X", "ts": self.us(start), "dur": self.us(end - start),
              "pid": PID, "tid": tid}
        if args:
            ev["args"] = args
        self.items.append(ev)


def build_trace(result: RunResult, sections: SectionMap | None = None, *, clock_hz: float = DEFAULT_CLOCK_HZ,
                per_instruction_limit: int = DEFAULT_PER_INSTRUCTION_LIMIT,
                max_events: int = DEFAULT_MAX_EVENTS) -> dict[str, Any]:
    """The trace-event document of `result` (see the module docstring)."""
    if not clock_hz > 0:
        raise ValueError(f"clock must be positive, got {clock_hz}")
    program = result.program
    smap = sections or build_sections(program)
    dec = decode_program(program, result.settings)
    max_depth = max((len(p) for p in smap.paths), default=1)
    tr = result.trace
    if tr is not None and len(tr.pc):
        pcs = np.asarray(tr.pc, dtype=np.int64)
        starts = np.asarray(tr.start, dtype=np.int64)
        ends = np.asarray(tr.end, dtype=np.int64)
    else:
        pcs = starts = ends = np.zeros(0, dtype=np.int64)
    n_rec = len(pcs)
    per_instruction = n_rec <= per_instruction_limit
    sec_of = smap.pc_section.astype(np.int64)[pcs]
    unit_of = dec.unit[pcs]

    # Slices that begin at each recorded instruction -> the longest prefix within max_events.
    begins = np.zeros(n_rec, dtype=np.int64)
    depth_runs = []
    for d in range(max_depth):
        ids = _prefix_ids(smap, d)[sec_of]
        first, last = _runs(ids)
        keep = ids[first] >= 0
        depth_runs.append((ids, first[keep], last[keep]))
        np.add.at(begins, first[keep], 1)
    if per_instruction:
        begins += 1
    else:
        ufirst, _ = _runs(unit_of)
        np.add.at(begins, ufirst, 1)
    budget = max(max_events - 64, 0)   # room for metadata and a minimal tail
    window = int(np.searchsorted(np.cumsum(begins), budget, side="right")) if n_rec else 0

    ev = _Events(clock_hz)
    name = program.name or f"program {program.sha256[:12]}"
    meta: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": PID, "tid": 0, "args": {"name": f"PLENA {name}"}},
        {"name": "thread_name", "ph": "M", "pid": PID, "tid": SECTIONS_TID, "args": {"name": "sections"}},
        {"name": "thread_sort_index", "ph": "M", "pid": PID, "tid": SECTIONS_TID, "args": {"sort_index": 0}},
    ]
    for u, tid in UNIT_TID.items():
        meta.append({"name": "thread_name", "ph": "M", "pid": PID, "tid": tid, "args": {"name": u}})
        meta.append({"name": "thread_sort_index", "ph": "M", "pid": PID, "tid": tid, "args": {"sort_index": tid}})

    # Exact part: instructions [0, window) of the recorded trace.
    # Section instances, parents before children, in time order.
    sf, sl, sd = [], [], []
    for d, (ids, first, last) in enumerate(depth_runs):
        inside = last < window
        sf.append(first[inside])
        sl.append(last[inside])
        sd.append(np.full(int(inside.sum()), d, dtype=np.int64))
    if sf:
        f_all, l_all, d_all = np.concatenate(sf), np.concatenate(sl), np.concatenate(sd)
        order = np.lexsort((d_all, -ends[l_all], starts[f_all]))
        f_all, l_all, d_all = f_all[order], l_all[order], d_all[order]
        ts = (starts[f_all] / ev.per_us).tolist()
        dur = ((ends[l_all] - starts[f_all]) / ev.per_us).tolist()
        paths = [smap.paths[p][:d + 1] for p, d in zip(sec_of[f_all].tolist(), d_all.tolist())]
        ev.items.extend(
            {"name": path[-1], "cat": "section", "ph": "X", "ts": t, "dur": du, "pid": PID, "tid": SECTIONS_TID,
             "args": {"path": " / ".join(path), "instructions": k}}
            for path, t, du, k in zip(paths, ts, dur, (l_all - f_all + 1).tolist()))
    if per_instruction:
        src = program.source
        ts = (starts[:window] / ev.per_us).tolist()
        dur = ((ends[:window] - starts[:window]) / ev.per_us).tolist()
        for pc, u, t, du in zip(pcs[:window].tolist(), unit_of[:window].tolist(), ts, dur):
            args: dict[str, Any] = {"pc": pc}
            if src is not None:
                args["line"] = src[pc].line_no
                args["asm"] = src[pc].text
            ev.items.append({"name": dec.mnemonic(pc), "cat": UNITS[u], "ph": "X", "ts": t, "dur": du,
                             "pid": PID, "tid": UNIT_TID[UNITS[u]], "args": args})
    else:
        ufirst, ulast = _runs(unit_of[:window])
        if len(ufirst):
            op = dec.opcode[pcs[:window]]
            lo = np.minimum.reduceat(op, ufirst).tolist()
            hi = np.maximum.reduceat(op, ufirst).tolist()
            ts = (starts[ufirst] / ev.per_us).tolist()
            dur = ((ends[ulast] - starts[ufirst]) / ev.per_us).tolist()
            units = unit_of[ufirst].tolist()
            count = (ulast - ufirst + 1).tolist()
            first_pc = pcs[ufirst].tolist()
            last_pc = pcs[ulast].tolist()
            ev.items.extend(
                {"name": dec.mnemonics[a] if a == b else UNITS[u], "cat": UNITS[u], "ph": "X", "ts": t, "dur": du,
                 "pid": PID, "tid": UNIT_TID[UNITS[u]],
                 "args": {"instructions": k, "first_pc": fp, "last_pc": lp}}
                for a, b, u, t, du, k, fp, lp in zip(lo, hi, units, ts, dur, count, first_pc, last_pc))

    # Aggregated tail: everything the exact part does not cover.
    exact_end = int(ends[window - 1]) if window else 0
    count_left = np.asarray(result.pc_count, dtype=np.int64).copy()
    cycles_left = np.asarray(result.pc_cycles, dtype=np.int64).copy()
    if window:
        np.subtract.at(count_left, pcs[:window], 1)
        np.subtract.at(cycles_left, pcs[:window], ends[:window] - starts[:window])
    tail_events = _aggregated_tail(ev, smap, dec, count_left, cycles_left, exact_end,
                                   max(max_events - len(ev.items) - len(meta), 0))
    doc = {
        "traceEvents": meta + ev.items,
        "displayTimeUnit": "ns",
        "otherData": {
            "program": name,
            "cycles": int(result.cycles),
            "instructions": int(result.instructions),
            "clock_hz": clock_hz,
            "recorded_instructions": n_rec,
            "exact_instructions": window,
            "exact_until_cycle": exact_end,
            "per_instruction_slices": bool(per_instruction),
            "aggregated_tail_slices": tail_events,
            "note": ("exact timeline" if tail_events == 0 else
                     f"exact timeline for the first {window:,} instructions (until cycle {exact_end:,}); "
                     + AGGREGATED_NOTE),
        },
    }
    if result.overlap is not None:
        ov_events, ov_meta, ov_info = _overlapped_process(result, dec, clock_hz, max(max_events - len(doc["traceEvents"]), 0))
        doc["traceEvents"] = meta + ov_meta + ev.items + ov_events
        doc["otherData"]["overlapped"] = ov_info
    if result.error is not None:
        doc["otherData"]["error"] = result.error.to_dict()
    return doc


OVERLAPPED_PID = 2


def _overlapped_process(result: RunResult, dec, clock_hz: float, max_events: int):
    """Process 2, "overlapped timing": one track per unit of the overlapped model with one slice
    per instruction at its overlapped start/end (instructions a pipelined unit runs at the same
    time go to extra tracks "unit #2", ...).  Covers the recorded instructions, at most
    `max_events` of them."""
    o = result.overlap
    per_us = clock_hz / 1e6
    n = min(len(o.trace_pc), max_events)
    src = result.program.source
    unit_names = [u.name for u in o.units]
    lane_ends: dict[int, list[int]] = {}
    tids: dict[tuple[int, int], int] = {}
    events = []
    order = np.lexsort((np.arange(n), o.trace_start[:n], o.trace_unit[:n]))
    for i in order.tolist():
        u, s, e = int(o.trace_unit[i]), int(o.trace_start[i]), int(o.trace_end[i])
        ends = lane_ends.setdefault(u, [])
        lane = next((k for k, end in enumerate(ends) if end <= s), len(ends))
        if lane == len(ends):
            ends.append(e)
        else:
            ends[lane] = e
        tid = tids.setdefault((u, lane), 0)
        pc = int(o.trace_pc[i])
        args: dict[str, Any] = {"pc": pc, "issue_cycle": int(o.trace_issue[i])}
        if src is not None:
            args["line"] = src[pc].line_no
            args["asm"] = src[pc].text
        events.append({"name": dec.mnemonic(pc), "cat": unit_names[u], "ph": "X", "ts": s / per_us,
                       "dur": (e - s) / per_us, "pid": OVERLAPPED_PID, "tid": (u, lane), "args": args})
    numbered = {key: 100 + k for k, key in enumerate(sorted(tids))}
    for ev in events:
        ev["tid"] = numbered[ev["tid"]]
    events.sort(key=lambda ev: (ev["tid"], ev["ts"]))
    meta: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": OVERLAPPED_PID, "tid": 0,
         "args": {"name": f"overlapped timing ({o.cycles:,} cycles; sequential {result.cycles:,})"}},
        {"name": "process_sort_index", "ph": "M", "pid": OVERLAPPED_PID, "tid": 0, "args": {"sort_index": 2}},
    ]
    for (u, lane), tid in sorted(numbered.items(), key=lambda kv: kv[1]):
        name = unit_names[u] if lane == 0 else f"{unit_names[u]} #{lane + 1}"
        meta.append({"name": "thread_name", "ph": "M", "pid": OVERLAPPED_PID, "tid": tid, "args": {"name": name}})
        meta.append({"name": "thread_sort_index", "ph": "M", "pid": OVERLAPPED_PID, "tid": tid,
                     "args": {"sort_index": tid}})
    info = {"cycles": o.cycles, "instructions": o.instructions, "recorded_instructions": n,
            "note": "process 2 shows the overlapped model's schedule; process 1 the sequential (reference) one"}
    return events, meta, info


def _aggregated_tail(ev: _Events, smap: SectionMap, dec, count_left: np.ndarray, cycles_left: np.ndarray,
                     start: int, room: int) -> int:
    """Per-section slices of the cycles not on the exact timeline; returns the slices written."""
    if not (count_left.any() or cycles_left.any()):
        return 0
    n_paths = len(smap.paths)
    sid = smap.pc_section.astype(np.int64)
    n_units = len(UNITS)
    cnt = np.zeros(n_paths, dtype=np.int64)
    np.add.at(cnt, sid, count_left)
    unit_cyc = np.zeros(n_paths * n_units, dtype=np.int64)
    np.add.at(unit_cyc, sid * n_units + dec.unit, cycles_left)
    unit_cyc = unit_cyc.reshape(n_paths, n_units)
    first_pc = np.full(n_paths, len(sid), dtype=np.int64)
    np.minimum.at(first_pc, sid, np.arange(len(sid), dtype=np.int64))

    # Tree of paths with leftovers, children in program order.
    root = {"children": {}, "self": np.zeros(n_units, dtype=np.int64), "count": 0, "first": 1 << 62}

    def node(path):
        cur = root
        for i in range(len(path)):
            cur = cur["children"].setdefault(path[i], {"children": {}, "self": np.zeros(n_units, dtype=np.int64),
                                                        "count": 0, "first": 1 << 62, "path": path[:i + 1]})
        return cur

    for p in range(n_paths):
        if cnt[p] == 0 and not unit_cyc[p].any():
            continue
        nd = node(smap.paths[p])
        nd["self"] += unit_cyc[p]
        nd["count"] += int(cnt[p])
        nd["first"] = min(nd["first"], int(first_pc[p]))

    def total(nd) -> tuple[int, int, int]:
        cyc = int(nd["self"].sum())
        cnt_ = nd["count"]
        first = nd["first"]
        for ch in nd["children"].values():
            c, k, f = total(ch)
            cyc += c
            cnt_ += k
            first = min(first, f)
        nd["total"], nd["total_count"], nd["first"] = cyc, cnt_, first
        return cyc, cnt_, first

    total(root)
    n_nodes = sum(1 for _ in _walk(root)) - 1
    flat = n_nodes * (1 + n_units) > room
    written = 0
    cursor = start

    def emit(nd, t: int) -> int:
        nonlocal written
        end = t + nd["total"]
        args = {"aggregated": True, "instructions": nd["total_count"], "note": AGGREGATED_NOTE}
        if "path" in nd:
            ev.slice(SECTIONS_TID, nd["path"][-1], t, end, "section", {"path": " / ".join(nd["path"]), **args})
            written += 1
        u_t = t
        for i, u in enumerate(UNITS):
            c = int(nd["self"][i])
            if c:
                ev.slice(UNIT_TID[u], u, u_t, u_t + c, u, {"aggregated": True, "note": AGGREGATED_NOTE})
                written += 1
                u_t += c
        t = u_t
        for ch in sorted(nd["children"].values(), key=lambda x: x["first"]):
            t = emit(ch, t)
        return end

    if flat:
        # Too many sections for the cap: one slice for the whole tail, per-unit slices inside.
        units = np.zeros(n_units, dtype=np.int64)
        for nd in _walk(root):
            units += nd["self"]
        end = start + int(units.sum())
        ev.slice(SECTIONS_TID, "(rest of the run)", start, end, "section",
                 {"aggregated": True, "instructions": root["total_count"], "note": AGGREGATED_NOTE})
        written += 1
        for i, u in enumerate(UNITS):
            if units[i]:
                ev.slice(UNIT_TID[u], u, cursor, cursor + int(units[i]), u, {"aggregated": True, "note": AGGREGATED_NOTE})
                cursor += int(units[i])
                written += 1
        return written
    emit(root, start)
    return written


def _walk(nd):
    yield nd
    for ch in nd["children"].values():
        yield from _walk(ch)


def write_trace(doc: dict, path: str | Path) -> None:
    write_text(path, json.dumps(doc, separators=(",", ":"), allow_nan=False))


# ----------------------------------------------------------------------------------- validation

def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate_trace(doc: Any, *, tolerance: float = 1e-6) -> list[str]:
    """Problems of a trace-event JSON document (empty list: valid).

    Checks the Trace Event Format's structure (JSON Object or Array Format, required keys and
    types per phase, metadata names and args), that durations are non-negative, that complete
    events appear in non-decreasing `ts` order per (pid, tid) track, and that the complete events
    of a track nest properly (each is either disjoint from or inside the enclosing one), which is
    what the Chrome/Perfetto importers need to draw them as a flame chart.
    """
    problems: list[str] = []
    if isinstance(doc, dict):
        events = doc.get("traceEvents")
        if not isinstance(events, list):
            return ["top-level object has no \"traceEvents\" list"]
        unit = doc.get("displayTimeUnit")
        if unit is not None and unit not in ("ms", "ns"):
            problems.append(f"displayTimeUnit must be \"ms\" or \"ns\", got {unit!r}")
    elif isinstance(doc, list):
        events = doc
    else:
        return ["a trace must be a JSON object with traceEvents or a JSON array of events"]
    try:
        json.dumps(doc, allow_nan=False)
    except (TypeError, ValueError) as exc:
        problems.append(f"not serialisable as strict JSON: {exc}")
    last_ts: dict[tuple, float] = {}
    stacks: dict[tuple, list[float]] = {}
    for i, e in enumerate(events):
        where = f"event {i}"
        if not isinstance(e, dict):
            problems.append(f"{where}: not an object")
            continue
        ph = e.get("ph")
        if not isinstance(ph, str) or ph not in _PHASES:
            problems.append(f"{where}: unknown phase {ph!r}")
            continue
        if "args" in e and not isinstance(e["args"], dict):
            problems.append(f"{where}: args must be an object")
        for key in ("pid", "tid"):
            if key in e and not (_is_int(e[key]) or isinstance(e[key], str)):
                problems.append(f"{where}: {key} must be an integer or string")
        if ph == "M":
            name = e.get("name")
            if name not in _METADATA_NAMES:
                problems.append(f"{where}: unknown metadata event {name!r}")
            args = e.get("args")
            if not isinstance(args, dict):
                problems.append(f"{where}: metadata needs args")
            elif name in ("process_name", "thread_name") and not isinstance(args.get("name"), str):
                problems.append(f"{where}: {name} needs args.name (string)")
            elif name in ("process_sort_index", "thread_sort_index") and not _is_int(args.get("sort_index")):
                problems.append(f"{where}: {name} needs args.sort_index (integer)")
            if "pid" not in e:
                problems.append(f"{where}: metadata needs pid")
            continue
        if not isinstance(e.get("name"), str):
            problems.append(f"{where}: name must be a string")
        if "cat" in e and not isinstance(e["cat"], str):
            problems.append(f"{where}: cat must be a string")
        ts = e.get("ts")
        if not _is_num(ts):
            problems.append(f"{where}: ts must be a finite number")
            continue
        if ts < 0:
            problems.append(f"{where}: negative ts {ts}")
        if "pid" not in e or "tid" not in e:
            problems.append(f"{where}: pid and tid are required")
            continue
        track = (e["pid"], e["tid"])
        if ph == "X":
            dur = e.get("dur")
            if not _is_num(dur):
                problems.append(f"{where}: complete event needs a finite numeric dur")
                continue
            if dur < 0:
                problems.append(f"{where}: negative dur {dur}")
                continue
            if ts + tolerance < last_ts.get(track, -math.inf):
                problems.append(f"{where}: ts {ts} goes back in time on track {track} "
                                f"(previous {last_ts[track]})")
            last_ts[track] = max(ts, last_ts.get(track, -math.inf))
            stack = stacks.setdefault(track, [])
            while stack and stack[-1] <= ts + tolerance:
                stack.pop()
            end = ts + dur
            if stack and end > stack[-1] + tolerance:
                problems.append(f"{where}: slice [{ts}, {end}] overlaps its enclosing slice ending at "
                                f"{stack[-1]} on track {track}")
            stack.append(end)
        elif ph in ("i", "I"):
            if "s" in e and e["s"] not in ("g", "p", "t"):
                problems.append(f"{where}: instant scope must be g, p or t")
        elif ph == "C":
            args = e.get("args")
            if not isinstance(args, dict) or not all(_is_num(v) for v in args.values()):
                problems.append(f"{where}: counter args must be numbers")
        if len(problems) > 100:
            problems.append("... (stopped after 100 problems)")
            break
    return problems
