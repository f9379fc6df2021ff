"""Helpers for the profiler tests (no tests here): synthetic RunResults with consistent counters."""

from __future__ import annotations

import numpy as np

from emulator.asm import assemble
from emulator.result import RunResult, TraceEvents
from emulator.settings import default_settings


def synthetic_result(asm: str, executed: list[int], cost: dict[int, int] | list[int] | None = None,
                     hbm: dict[int, tuple[int, int]] | None = None, trace_limit: int | None = None,
                     settings=None, name: str = "synthetic") -> RunResult:
    """A RunResult for `asm` whose dynamic instruction stream is `executed` (pcs in order).

    `cost[pc]` cycles per execution (default 1), `hbm[pc]` = (bytes read, bytes written) per
    execution; the trace holds the first `trace_limit` instructions (all when None)."""
    program = assemble(asm, name=name)
    n = len(program)
    cost_of = [1] * n
    if isinstance(cost, dict):
        for pc, c in cost.items():
            cost_of[pc] = c
    elif cost is not None:
        cost_of = list(cost)
    count = np.zeros(n, dtype=np.int64)
    cycles = np.zeros(n, dtype=np.int64)
    read = np.zeros(n, dtype=np.int64)
    written = np.zeros(n, dtype=np.int64)
    starts, ends = [], []
    now = 0
    for pc in executed:
        count[pc] += 1
        cycles[pc] += cost_of[pc]
        r, w = (hbm or {}).get(pc, (0, 0))
        read[pc] += r
        written[pc] += w
        starts.append(now)
        now += cost_of[pc]
        ends.append(now)
    k = len(executed) if trace_limit is None else min(trace_limit, len(executed))
    trace = TraceEvents(pc=np.array(executed[:k], dtype=np.int32), start=np.array(starts[:k], dtype=np.int64),
                        end=np.array(ends[:k], dtype=np.int64), truncated=k < len(executed))
    return RunResult(program=program, settings=settings or default_settings(), cycles=now,
                     instructions=len(executed), hbm_bytes_read=int(read.sum()),
                     hbm_bytes_written=int(written.sum()), hbm_model="hbm2", pc_count=count, pc_cycles=cycles,
                     pc_hbm_read=read, pc_hbm_written=written, state=None, trace=trace)
