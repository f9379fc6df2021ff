"""Overlapped timing in the outputs: profile JSON (schema 2), terminal reports, Perfetto trace, CLI."""

from __future__ import annotations

import json

import pytest

from emulator.cli import EXIT_OK, main
from emulator.runner import run
from emulator.settings import default_settings
from profiler.aggregate import profile_run
from profiler.report import load_profile, profile_from_dict, profile_to_dict, profile_to_json, render_text
from profiler.trace import OVERLAPPED_PID, build_trace, validate_trace
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "linear"


def _example(timing: str):
    s = default_settings().with_overrides({"timing": timing})
    return run(EXAMPLE / "program.asm", settings=s, hbm=EXAMPLE / "hbm.bin", fp_sram=EXAMPLE / "fp_sram.bin",
               trace_limit=1 << 16, raise_on_error=True)


def test_profile_records_timing_and_round_trips(tmp_path):
    r = _example("overlapped")
    p = profile_run(r)
    d = profile_to_dict(p)
    assert d["schema_version"] == 2 and d["timing"] == "overlapped"
    o = d["overlapped"]
    assert o["cycles"] == r.overlap.cycles and o["sequential_cycles"] == r.cycles == d["totals"]["cycles"]
    assert sum(s["overlapped"]["critical_cycles"] for s in d["sections"]) == o["cycles"]
    assert sum(u["busy_cycles"] + u["stalled_cycles"] + u["idle_cycles"] for u in o["units"].values()) \
        == o["cycles"] * len(o["units"])
    assert o["stalls"] and {"unit", "cause", "resource", "blocker_pc", "blocker_line", "cycles"} <= set(o["stalls"][0])
    path = tmp_path / "p.json"
    path.write_text(profile_to_json(p))
    assert profile_to_json(load_profile(path)) == profile_to_json(p)
    text = render_text(p)
    assert "overlapped timing" in text and "Largest stalls" in text and "critical path" in text


def test_sequential_profile_has_no_overlapped_block_and_version_1_still_loads():
    d = profile_to_dict(profile_run(_example("sequential")))
    assert d["timing"] == "sequential" and d["overlapped"] is None
    assert all(s["overlapped"] is None for s in d["sections"])
    old = json.loads(json.dumps(d))
    old["schema_version"] = 1
    del old["timing"], old["overlapped"]
    assert profile_from_dict(old).timing == "sequential"


def test_trace_shows_overlapping_unit_lanes():
    r = _example("overlapped")
    doc = build_trace(r)
    assert validate_trace(doc) == []
    ov = [e for e in doc["traceEvents"] if e.get("pid") == OVERLAPPED_PID and e["ph"] == "X"]
    assert len(ov) == r.instructions
    names = {e["args"]["name"] for e in doc["traceEvents"]
             if e.get("pid") == OVERLAPPED_PID and e.get("name") == "thread_name"}
    assert {"matrix", "dma-load", "dma-store", "scalar-int"} <= names
    # some slices of different lanes overlap in time (the point of the mode)
    by_tid: dict[int, list[tuple[float, float]]] = {}
    for e in ov:
        by_tid.setdefault(e["tid"], []).append((e["ts"], e["ts"] + e["dur"]))
    tids = sorted(by_tid)
    overlapping = any(a0 < b1 and b0 < a1 for i, t in enumerate(tids) for u in tids[i + 1:]
                      for a0, a1 in by_tid[t] for b0, b1 in by_tid[u])
    assert overlapping
    assert max(e["ts"] + e["dur"] for e in ov) * 1e3 == r.overlap.cycles  # 1 GHz: 1 cycle = 1e-3 us


def test_pipelined_unit_gets_extra_trace_lanes():
    s = default_settings().with_overrides({"timing": "overlapped", "OVERLAP.UNITS.matrix.initiation_interval": 1})
    r = run("M_MM 0, gp0, gp0\nM_MV 0, gp0, gp0\n", settings=s, trace_limit=16, raise_on_error=True)
    doc = build_trace(r)
    assert validate_trace(doc) == []
    names = {e["args"]["name"] for e in doc["traceEvents"] if e.get("pid") == OVERLAPPED_PID
             and e.get("name") == "thread_name"}
    assert names == {"matrix", "matrix #2"}


def test_cli_timing_flag_prints_lanes_and_json(capsys):
    args = [str(EXAMPLE / "program.asm"), "--hbm", str(EXAMPLE / "hbm.bin"), "--fpsram", str(EXAMPLE / "fp_sram.bin"),
            "--quiet", "--timing", "overlapped"]
    assert main(args) == EXIT_OK
    text = capsys.readouterr().out
    assert "overlapped cycles" in text and "dma-load" in text and "top stalls" in text
    lane_lines = [ln for ln in text.splitlines() if ln.startswith(("matrix", "dma-load"))]
    assert len(lane_lines) == 2 and all(ln.rstrip().endswith("|") for ln in lane_lines)
    assert main(args + ["--json"]) == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["timing"] == "overlapped" and out["overlapped"]["cycles"] < out["cycles"]
    with pytest.raises(SystemExit):   # argparse: invalid choice
        main(args[:-1] + ["parallel"])
