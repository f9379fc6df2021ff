"""Chrome trace-event / Perfetto timeline: structure, validity, exact sums, size cap."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from isa_specs import UNITS
from profiler.trace import SECTIONS_TID, UNIT_TID, build_trace, validate_trace, write_trace
from tests.test_profiler_support import synthetic_result

ASM = """\
; @section layer0
; load
H_PREFETCH_V gp1, gp2, a0, 1, 0
; compute
C_LOOP_START gp5, 3
M_MM 0, gp2, gp3
V_ADD_VV gp1, gp1, gp1, 0
C_LOOP_END gp5
; @end
; store
H_STORE_V gp1, gp2, a0, 1, 0
"""
EXECUTED = [0, 1, 2, 3, 4, 2, 3, 4, 2, 3, 4, 5]
COST = {0: 40, 2: 64, 3: 1, 5: 30}


def _result(**kw):
    return synthetic_result(ASM, EXECUTED, COST, hbm={0: (320, 0), 5: (320, 320)}, **kw)


def _x_events(doc, tid=None):
    return [e for e in doc["traceEvents"] if e["ph"] == "X" and (tid is None or e["tid"] == tid)]


def _cycles(us: float) -> int:
    """Back to cycles at the 1 GHz default clock."""
    return round(us * 1000)


def test_exact_timeline_per_instruction():
    result = _result()
    doc = build_trace(result)
    assert validate_trace(doc) == []
    json.loads(json.dumps(doc, allow_nan=False))
    names = {e["tid"]: e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "thread_name"}
    assert names[SECTIONS_TID] == "sections" and {names[UNIT_TID[u]] for u in UNITS} == set(UNITS)
    # one slice per instruction on the unit tracks, exact cycles per unit
    unit_slices = [e for e in _x_events(doc) if e["tid"] != SECTIONS_TID]
    assert len(unit_slices) == len(EXECUTED)
    busy = defaultdict(int)
    for e in unit_slices:
        busy[e["cat"]] += _cycles(e["dur"])
    assert sum(busy.values()) == result.cycles
    assert busy["matrix"] == 3 * 64 and busy["dma"] == 70 and busy["control"] == 1 + 3
    first = unit_slices[0]
    assert first["name"] == "H_PREFETCH_V" and first["args"] == {"pc": 0, "line": 3, "asm": "H_PREFETCH_V gp1, gp2, a0, 1, 0"}
    # section instances: layer0 once (nested: load, compute), store once
    secs = _x_events(doc, SECTIONS_TID)
    by_name = defaultdict(list)
    for e in secs:
        by_name[e["name"]].append(e)
    assert len(by_name["layer0"]) == 1 and len(by_name["load"]) == 1 and len(by_name["compute"]) == 1
    assert _cycles(by_name["layer0"][0]["dur"]) == 40 + 1 + 3 * 66
    assert by_name["compute"][0]["args"]["path"] == "layer0 / compute"
    assert _cycles(by_name["store"][0]["ts"]) == result.cycles - 30
    assert doc["otherData"]["note"] == "exact timeline"


def test_section_instances_are_maximal_runs():
    asm = "; a\nS_ADDI_INT gp1, gp0, 1\n; b\nS_ADDI_INT gp1, gp0, 1\n"
    result = synthetic_result(asm, [0, 0, 1, 0, 1, 1])
    secs = _x_events(build_trace(result), SECTIONS_TID)
    assert [(e["name"], e["args"]["instructions"]) for e in secs] == [("a", 2), ("b", 1), ("a", 1), ("b", 2)]


def test_unit_runs_when_the_program_is_large():
    result = _result()
    doc = build_trace(result, per_instruction_limit=0)
    assert validate_trace(doc) == []
    unit_slices = [e for e in _x_events(doc) if e["tid"] != SECTIONS_TID]
    # consecutive same-unit instructions merge: dma, control, (matrix, vector, control) x 3, dma
    assert len(unit_slices) == 2 + 3 * 3 + 1
    assert sum(_cycles(e["dur"]) for e in unit_slices) == result.cycles
    assert all("instructions" in e["args"] for e in unit_slices)


@pytest.mark.parametrize("kw", [{"trace_limit": 4}, {"trace_limit": 0}])
def test_truncated_trace_gets_an_aggregated_tail(kw):
    result = _result(**kw)
    doc = build_trace(result)
    assert validate_trace(doc) == []
    other = doc["otherData"]
    assert other["exact_instructions"] == kw["trace_limit"]
    assert other["aggregated_tail_slices"] > 0 and "aggregated" in other["note"]
    unit_slices = [e for e in _x_events(doc) if e["tid"] != SECTIONS_TID]
    assert sum(_cycles(e["dur"]) for e in unit_slices) == result.cycles
    top = [e for e in _x_events(doc, SECTIONS_TID) if " / " not in e["args"]["path"]]
    assert sum(_cycles(e["dur"]) for e in top) == result.cycles
    end = max(e["ts"] + e["dur"] for e in _x_events(doc))
    assert _cycles(end) == result.cycles
    tail = [e for e in _x_events(doc) if e.get("args", {}).get("aggregated")]
    assert tail and all(_cycles(e["ts"]) >= other["exact_until_cycle"] for e in tail)


def test_event_cap_bounds_the_file(tmp_path):
    asm = "; body\nC_LOOP_START gp1, 4000\nS_ADDI_INT gp2, gp2, 1\nV_ADD_VV gp1, gp1, gp1, 0\nC_LOOP_END gp1\n"
    executed = [0] + [1, 2, 3] * 4000
    result = synthetic_result(asm, executed)
    doc = build_trace(result, max_events=500)
    assert validate_trace(doc) == []
    assert len(doc["traceEvents"]) <= 500
    assert doc["otherData"]["exact_instructions"] < len(executed)
    unit_slices = [e for e in _x_events(doc) if e["tid"] != SECTIONS_TID]
    assert sum(_cycles(e["dur"]) for e in unit_slices) == result.cycles
    path = tmp_path / "t.json"
    write_trace(doc, path)
    assert validate_trace(json.loads(path.read_text())) == []


def test_clock_scales_time():
    result = _result()
    doc = build_trace(result, clock_hz=1e6)  # 1 cycle = 1 us
    end = max(e["ts"] + e["dur"] for e in _x_events(doc))
    assert end == result.cycles


@pytest.mark.parametrize("events, message", [
    ([{"ph": "X", "name": "a", "ts": 0, "dur": -1, "pid": 1, "tid": 1}], "negative dur"),
    ([{"ph": "X", "name": "a", "ts": 0, "pid": 1, "tid": 1}], "needs a finite numeric dur"),
    ([{"ph": "X", "name": "a", "dur": 1, "pid": 1, "tid": 1}], "ts must be"),
    ([{"ph": "X", "name": 3, "ts": 0, "dur": 1, "pid": 1, "tid": 1}], "name must be a string"),
    ([{"ph": "Q", "name": "a", "ts": 0}], "unknown phase"),
    ([{"ph": "M", "name": "thread_name", "pid": 1, "tid": 1, "args": {}}], "needs args.name"),
    ([{"ph": "M", "name": "colour", "pid": 1, "args": {}}], "unknown metadata"),
    ([{"ph": "X", "name": "a", "ts": 5, "dur": 1, "pid": 1, "tid": 1},
      {"ph": "X", "name": "b", "ts": 2, "dur": 1, "pid": 1, "tid": 1}], "goes back in time"),
    ([{"ph": "X", "name": "a", "ts": 0, "dur": 10, "pid": 1, "tid": 1},
      {"ph": "X", "name": "b", "ts": 5, "dur": 10, "pid": 1, "tid": 1}], "overlaps"),
    ([{"ph": "C", "name": "c", "ts": 0, "pid": 1, "tid": 1, "args": {"v": "x"}}], "counter args"),
])
def test_validator_catches_malformed_events(events, message):
    problems = validate_trace({"traceEvents": events})
    assert any(message in p for p in problems), problems


def test_validator_accepts_nesting_and_other_tracks():
    events = [
        {"ph": "X", "name": "a", "ts": 0, "dur": 10, "pid": 1, "tid": 1},
        {"ph": "X", "name": "b", "ts": 0, "dur": 4, "pid": 1, "tid": 1},
        {"ph": "X", "name": "c", "ts": 4, "dur": 6, "pid": 1, "tid": 1},
        {"ph": "X", "name": "d", "ts": 1, "dur": 50, "pid": 1, "tid": 2},
        {"ph": "i", "name": "e", "ts": 3, "pid": 1, "tid": 2, "s": "t"},
    ]
    assert validate_trace({"traceEvents": events, "displayTimeUnit": "ns"}) == []
    assert validate_trace(events) == []
    assert validate_trace({"events": []}) == ['top-level object has no "traceEvents" list']
