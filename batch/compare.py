"""Batch-vs-batch comparison: per-job cycle deltas, changed outputs, added and removed jobs.

Jobs are matched by program (machine-code sha256, or the program's name with `match="name"` for
a compiler change that alters the code) and settings key (settings file, fallback policy and
overrides, so each grid point is its own job).  A job regresses when it got slower than the
threshold, its dumps' hashes changed, or it stopped succeeding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

from .job import DUMP_NAMES

MatchBy = Literal["sha", "name"]


@dataclass
class JobDelta:
    program: str
    overrides: str
    base: dict[str, Any]
    new: dict[str, Any]
    cycles_delta: int | None
    relative: float | None            # (new - base) / base cycles
    outputs_changed: list[str]        # dumps whose hash differs
    status_change: str | None         # "ok -> failed" etc.
    slower: bool

    @property
    def regression(self) -> bool:
        return self.slower or bool(self.outputs_changed) or (
            self.base.get("status") == "ok" and self.new.get("status") != "ok")

    def to_dict(self) -> dict[str, Any]:
        return {"program": self.program, "overrides": self.overrides, "base_job_id": self.base["job_id"],
                "new_job_id": self.new["job_id"], "base_cycles": self.base.get("cycles"),
                "new_cycles": self.new.get("cycles"), "cycles_delta": self.cycles_delta,
                "relative": self.relative, "outputs_changed": self.outputs_changed,
                "status_change": self.status_change, "slower": self.slower, "regression": self.regression}


@dataclass
class Comparison:
    threshold: float
    match: MatchBy
    matched: list[JobDelta] = field(default_factory=list)
    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def regressions(self) -> list[JobDelta]:
        return [d for d in self.matched if d.regression]

    def to_dict(self) -> dict[str, Any]:
        brief = lambda r: {"job_id": r["job_id"], "program": r["program"], "overrides": r["overrides"],  # noqa: E731
                           "status": r["status"], "cycles": r["cycles"]}
        return {"threshold": self.threshold, "match": self.match, "matched": len(self.matched),
                "regressions": len(self.regressions), "jobs": [d.to_dict() for d in self.matched],
                "added": [brief(r) for r in self.added], "removed": [brief(r) for r in self.removed]}


def parse_threshold(text: str) -> float:
    """`1%` -> 0.01, `0.5%` -> 0.005, `0.02` -> 0.02 (a fraction without the % sign)."""
    t = text.strip()
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise ValueError(f"not a threshold: {text!r} (examples: 1%, 0.5%, 0.01)") from None
    if value < 0:
        raise ValueError(f"the threshold must be >= 0, got {text!r}")
    return value


def _keys(rows: list[dict[str, Any]], match: MatchBy) -> dict[tuple, dict[str, Any]]:
    def key(r: dict[str, Any]) -> tuple:
        prog = r["program"] if match == "name" else (r["program_sha256"] or r["program_file_sha256"])
        return (prog, r["settings_key"])

    counts: dict[tuple, int] = {}
    for r in rows:
        counts[key(r)] = counts.get(key(r), 0) + 1
    # The same program and settings with different inputs: the program's label tells them apart.
    return {key(r) + ((r["program"], r["program_path"]) if counts[key(r)] > 1 else ()): r for r in rows}


def compare_tables(base: pa.Table, new: pa.Table, threshold: float = 0.01, match: MatchBy = "sha") -> Comparison:
    b, n = _keys(base.to_pylist(), match), _keys(new.to_pylist(), match)
    out = Comparison(threshold=threshold, match=match)
    for key, rb in b.items():
        rn = n.get(key)
        if rn is None:
            out.removed.append(rb)
            continue
        delta = rel = None
        if rb["cycles"] is not None and rn["cycles"] is not None:
            delta = rn["cycles"] - rb["cycles"]
            rel = delta / rb["cycles"] if rb["cycles"] else (0.0 if delta == 0 else float("inf"))
        both_ok = rb["status"] == "ok" and rn["status"] == "ok"
        changed = [d for d in DUMP_NAMES if both_ok and rb[f"{d}_sha256"] != rn[f"{d}_sha256"]]
        status = f"{rb['status']} -> {rn['status']}" if rb["status"] != rn["status"] else None
        slower = both_ok and rel is not None and rel > threshold
        out.matched.append(JobDelta(program=rn["program"], overrides=rn["overrides"], base=rb, new=rn,
                                    cycles_delta=delta, relative=rel, outputs_changed=changed,
                                    status_change=status, slower=slower))
    out.added = [r for key, r in n.items() if key not in b]
    out.matched.sort(key=lambda d: (-(abs(d.relative) if d.relative is not None else -1), d.program))
    return out


def print_comparison(cmp: Comparison, console: Any, limit: int | None = None) -> None:
    """A table of per-job deltas (largest first), then the added and removed jobs."""
    from rich.table import Table

    t = Table(title=f"{len(cmp.matched)} jobs matched by {'program sha256' if cmp.match == 'sha' else 'name'}"
                    f" + settings; threshold {cmp.threshold:.2%}")
    for col, just in (("program", "left"), ("overrides", "left"), ("base cycles", "right"),
                      ("new cycles", "right"), ("delta", "right"), ("delta %", "right"), ("", "left")):
        t.add_column(col, justify=just)
    for d in cmp.matched[:limit]:
        notes = []
        if d.slower:
            notes.append("[red]slower")
        if d.outputs_changed:
            notes.append(f"[red]outputs changed ({', '.join(d.outputs_changed)})")
        if d.status_change:
            notes.append(("[red]" if d.regression else "[yellow]") + d.status_change)
        t.add_row(d.program, d.overrides if d.overrides != "{}" else "",
                  _num(d.base.get("cycles")), _num(d.new.get("cycles")),
                  f"{d.cycles_delta:+,}" if d.cycles_delta is not None else "",
                  f"{d.relative:+.2%}" if d.relative is not None else "", " ".join(notes))
    console.print(t)
    for title, rows in (("added", cmp.added), ("removed", cmp.removed)):
        if rows:
            console.print(f"[bold]{len(rows)} {title}:[/bold] " + ", ".join(
                f"{r['program']}{' ' + r['overrides'] if r['overrides'] != '{}' else ''}" for r in rows))
    n = len(cmp.regressions)
    console.print(f"[bold {'red' if n else 'green'}]{n} regression{'s' if n != 1 else ''}[/]")


def _num(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) else ""
