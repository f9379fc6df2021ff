"""Timeline windows of a run's trace for the dashboard: per-unit lanes over cycles, sections above.

The stored trace (profiler/trace.py, Chrome trace-event JSON, bounded to ~200,000 slices however
long the run) is indexed once per run into numpy arrays.  A window request returns either the
slices themselves, when few enough overlap the window to be drawn, or per-bin busy fractions of
each unit lane (exact: the busy cycles of a lane inside a bin / the bin's width) plus the top-level
section at each bin, so a 3-million-instruction run stays a few kilobytes per view at any zoom.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

SECTIONS_LANE = "sections"


@dataclass(frozen=True)
class Lane:
    name: str
    start: np.ndarray     # int64 cycles, sorted
    end: np.ndarray       # int64 cycles
    label: np.ndarray     # int64 index into TraceIndex.names
    depth: np.ndarray     # int64 (sections lane: nesting depth; units: 0)
    aggregated: np.ndarray  # bool: slice of the aggregated tail
    busy_before: np.ndarray  # int64: busy cycles of the slices before index i (units lanes)


@dataclass(frozen=True)
class TraceIndex:
    cycles: int
    lanes: list[Lane]
    names: list[str]
    note: str
    exact_until_cycle: int

    @classmethod
    def from_trace(cls, doc: dict[str, Any]) -> TraceIndex:
        other = doc.get("otherData") or {}
        per_cycle_us = float(other.get("clock_hz") or 1e9) / 1e6
        tid_names: dict[int, str] = {}
        tid_order: dict[int, int] = {}
        slices: dict[int, list[tuple[int, int, str, int, bool]]] = {}
        for ev in doc.get("traceEvents") or []:
            ph, tid = ev.get("ph"), ev.get("tid")
            if ph == "M":
                if ev.get("name") == "thread_name":
                    tid_names[tid] = str((ev.get("args") or {}).get("name"))
                elif ev.get("name") == "thread_sort_index":
                    tid_order[tid] = int((ev.get("args") or {}).get("sort_index", tid))
            elif ph == "X":
                start = int(round(float(ev["ts"]) * per_cycle_us))
                end = start + int(round(float(ev.get("dur", 0)) * per_cycle_us))
                args = ev.get("args") or {}
                path = args.get("path")
                label = str(path if path else ev.get("name", ""))
                depth = label.count(" / ") if path else 0
                slices.setdefault(tid, []).append((start, end, label, depth, bool(args.get("aggregated"))))
        names: list[str] = []
        name_ids: dict[str, int] = {}
        lanes = []
        for tid in sorted(tid_names, key=lambda t: (tid_order.get(t, t), t)):
            rows = sorted(slices.get(tid, []), key=lambda r: (r[0], r[3]))
            start = np.array([r[0] for r in rows], dtype=np.int64)
            end = np.array([r[1] for r in rows], dtype=np.int64)
            label = np.array([name_ids.setdefault(r[2], len(name_ids)) for r in rows], dtype=np.int64)
            depth = np.array([r[3] for r in rows], dtype=np.int64)
            agg = np.array([r[4] for r in rows], dtype=bool)
            busy = np.concatenate(([0], np.cumsum(end - start)))[:-1] if len(rows) else np.zeros(0, np.int64)
            lanes.append(Lane(tid_names[tid], start, end, label, depth, agg, busy))
        names = [None] * len(name_ids)   # type: ignore[list-item]
        for text, i in name_ids.items():
            names[i] = text
        cycles = int(other.get("cycles") or max((int(ln.end.max()) for ln in lanes if len(ln.end)), default=0))
        return cls(cycles=cycles, lanes=lanes, names=names, note=str(other.get("note", "")),
                   exact_until_cycle=int(other.get("exact_until_cycle", cycles)))

    def window(self, start: int | None, end: int | None, max_slices: int, bins: int) -> dict[str, Any]:
        """The view of cycles [start, end): slices when at most `max_slices` overlap it, else bins."""
        lo = max(0, int(start or 0))
        hi = min(self.cycles, int(end if end is not None else self.cycles))
        if hi <= lo:
            lo, hi = 0, max(self.cycles, 1)
        overlapping = []
        for ln in self.lanes:
            # Slices overlapping [lo, hi): start < hi and end > lo (ends are not sorted for nested
            # sections, so filter by mask after cutting at start < hi).
            cut = int(np.searchsorted(ln.start, hi, side="left"))
            mask = ln.end[:cut] > lo
            overlapping.append(np.flatnonzero(mask))
        count = sum(len(ix) for ix in overlapping)
        out: dict[str, Any] = {"start": lo, "end": hi, "cycles": self.cycles, "lanes": [ln.name for ln in self.lanes],
                               "note": self.note, "exact_until_cycle": self.exact_until_cycle, "slices_in_window": count}
        if count <= max_slices:
            out["mode"] = "slices"
            out["slices"] = [{"lane": ln.name, "start": ln.start[ix].tolist(), "end": ln.end[ix].tolist(),
                              "name": [self.names[i] for i in ln.label[ix].tolist()],
                              "depth": ln.depth[ix].tolist(), "aggregated": ln.aggregated[ix].tolist()}
                             for ln, ix in zip(self.lanes, overlapping)]
            return out
        bins = max(1, min(int(bins), hi - lo))
        edges = np.linspace(lo, hi, bins + 1).round().astype(np.int64)
        edges = np.unique(edges)
        width = np.diff(edges)
        out["mode"] = "bins"
        out["edges"] = edges.tolist()
        busy_rows, section_runs = [], []
        for ln in self.lanes:
            if ln.name == SECTIONS_LANE:
                top = np.flatnonzero(ln.depth == 0)
                mids = (edges[:-1] + edges[1:]) // 2
                k = np.searchsorted(ln.start[top], mids, side="right") - 1
                inside = (k >= 0) & (ln.end[top][np.maximum(k, 0)] > mids)
                labels = np.where(inside, ln.label[top][np.maximum(k, 0)], -1)
                change = np.flatnonzero(np.diff(labels)) + 1
                firsts = np.concatenate(([0], change))
                lasts = np.concatenate((change, [len(labels)]))
                section_runs = [{"start": int(edges[a]), "end": int(edges[b]), "name": self.names[int(labels[a])]}
                                for a, b in zip(firsts.tolist(), lasts.tolist()) if labels[a] >= 0]
                continue
            busy_rows.append({"lane": ln.name, "busy": (np.diff(self._busy_until(ln, edges)) / width).round(4).tolist()})
        out["units"] = busy_rows
        out["sections"] = section_runs
        return out

    @staticmethod
    def _busy_until(ln: Lane, t: np.ndarray) -> np.ndarray:
        """Busy cycles of a lane of non-overlapping slices in [0, t) for each t."""
        if not len(ln.start):
            return np.zeros(len(t), dtype=np.int64)
        k = np.searchsorted(ln.start, t, side="right") - 1
        kk = np.maximum(k, 0)
        partial = np.clip(t - ln.start[kk], 0, ln.end[kk] - ln.start[kk])
        return np.where(k >= 0, ln.busy_before[kk] + partial, 0)
