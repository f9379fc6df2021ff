"""The dashboard's pages and JSON endpoints (api/dashboard), through the HTTP interface.
What the pages draw is tested in a real browser (tests/test_dashboard_browser.py)."""

from __future__ import annotations

import gzip
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api.dashboard.timeline import TraceIndex
from api.db import RunRecord

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "linear"
LOOP_ASM = """\
; setup
S_ADDI_INT gp1, gp0, 1
; spin
C_LOOP_START gp2, {trips}
S_ADDI_INT gp3, gp3, 1
S_ADDI_INT gp4, gp4, 2
C_LOOP_END gp2
"""


def _example_files() -> dict:
    return {"program": ("linear.asm", (EXAMPLE / "program.asm").read_bytes()),
            "hbm": ("hbm.bin", (EXAMPLE / "hbm.bin").read_bytes()),
            "fpsram": ("fp_sram.bin", (EXAMPLE / "fp_sram.bin").read_bytes())}


def _run(client, asm: str, **extra) -> dict:
    r = client.post("/v1/runs", json={"program": {"asm": asm, "name": "loop"}, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def test_pages_are_served_and_unknown_runs_are_404(client):
    run = _run(client, LOOP_ASM.format(trips=3))
    for path in ("/", "/dashboard", f"/runs/{run['id']}", f"/runs/{run['id']}/source", f"/runs/{run['id']}/timeline",
                 "/compare", f"/compare?a={run['id']}&b={run['id']}", "/new", "/estimate"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert r.headers["content-type"].startswith("text/html")
        assert "/dashboard/static/dashboard.js?v=" in r.text
    assert client.get(f"/runs/{uuid.uuid4().hex}").status_code == 404
    assert client.get("/runs/not-a-run-id").status_code == 422


def test_assets_are_served_locally_gzipped_and_cacheable(client):
    page = client.get(f"/runs/{_run(client, LOOP_ASM.format(trips=2))['id']}").text
    assert "/dashboard/static/plotly.min.js?v=" in page and "https://" not in page
    r = client.get("/dashboard/static/plotly.min.js", headers={"accept-encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
    assert "immutable" in r.headers["cache-control"]
    assert len(r.content) > 1_000_000        # httpx decoded it: the whole bundle
    raw = client.get("/dashboard/static/plotly.min.js", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in raw.headers and raw.content == r.content
    etag = r.headers["etag"]
    assert client.get("/dashboard/static/plotly.min.js", headers={"if-none-match": etag}).status_code == 304
    for name in ("profile_view.js", "profile_view.css", "dashboard.js"):
        assert client.get(f"/dashboard/static/{name}").status_code == 200
    assert client.get("/dashboard/static/../main.py").status_code == 404
    assert client.get("/dashboard/static/secret.js").status_code == 422
    assert len(gzip.compress(raw.content)) < len(raw.content) / 2


def _seed(store, n: int, tag: str) -> None:
    """n finished runs written straight into the history (a large history without n emulations)."""
    now = datetime.now(UTC) - timedelta(days=1)
    rows = [RunRecord(id=uuid.uuid4().hex, status="succeeded" if i % 10 else "failed", tag=f"{tag}{i % 3}",
                      program_sha256=f"{i:064x}", program_name=f"prog{i % 7}", program_words=10 + i % 5,
                      settings_toml=None, settings_overrides={"hbm_model": "analytic"} if i % 2 else {}, settings_missing="error",
                      options={}, created_at=now - timedelta(seconds=i), finished_at=now - timedelta(seconds=i),
                      cycles=(i * 7919) % 100_003, instructions=i, hbm_bytes_read=i % 11, hbm_bytes_written=i % 13,
                      hbm_model="hbm2", wall_seconds=(i % 97) / 100, warnings=[])
            for i in range(n)]
    with store.sessions.begin() as s:
        s.add_all(rows)


def test_runs_list_sorts_filters_and_pages_10000_runs(make_client):
    with make_client(retention_runs=20_000) as client:
        _seed(client.app.state.service.store, 10_000, "bulk")
        real = _run(client, LOOP_ASM.format(trips=5), tag="real")
        t0 = time.perf_counter()
        page = client.get("/dashboard/api/runs").json()
        first_page_seconds = time.perf_counter() - t0
        assert page["total"] == 10_001 and len(page["items"]) == 50
        assert page["items"][0]["id"] == real["id"]                    # newest first
        assert page["items"][0]["settings"] == {"MLEN": 64, "VLEN": 64, "BLEN": 4, "HLEN": 16, "hbm_model": "hbm2",
                                                "custom": False, "problem": None}
        by_cycles = client.get("/dashboard/api/runs", params={"sort": "cycles", "order": "desc", "limit": 500}).json()
        cycles = [r["cycles"] for r in by_cycles["items"]]
        assert cycles == sorted(cycles, reverse=True) and cycles[0] == max((i * 7919) % 100_003 for i in range(10_000))
        by_hbm = client.get("/dashboard/api/runs", params={"sort": "hbm_bytes", "order": "asc"}).json()["items"]
        totals = [r["hbm_bytes_read"] + r["hbm_bytes_written"] for r in by_hbm]
        assert totals == sorted(totals) and totals[0] == 0
        second = client.get("/dashboard/api/runs", params={"offset": 50}).json()
        assert {r["id"] for r in second["items"]}.isdisjoint(r["id"] for r in page["items"])
        failed = client.get("/dashboard/api/runs", params={"status": "failed", "tag": "bulk1", "program": "prog3"}).json()
        assert failed["total"] == sum(1 for i in range(10_000) if i % 10 == 0 and i % 3 == 1 and i % 7 == 3)
        assert all(r["status"] == "failed" and r["tag"] == "bulk1" for r in failed["items"])
        custom = client.get("/dashboard/api/runs", params={"program": "prog1"}).json()["items"]
        assert {(r["settings"]["hbm_model"], r["settings"]["custom"]) for r in custom} == {
            ("hbm2", False), ("analytic", True)}
        by_sha = client.get("/dashboard/api/runs", params={"program": real["program_sha256"][:10]}).json()
        assert [r["id"] for r in by_sha["items"]] == [real["id"]]
        assert client.get("/dashboard/api/runs", params={"sort": "bogus"}).status_code == 422
        assert first_page_seconds < 30   # a sanity bound only; bench/bench_dashboard.py measures it


def test_timeline_windows_switch_from_bins_to_slices(client):
    run = _run(client, LOOP_ASM.format(trips=3000), trace=True)
    full = client.get(f"/dashboard/api/runs/{run['id']}/timeline", params={"max_slices": 500}).json()
    assert full["mode"] == "bins" and full["cycles"] == run["cycles"] and full["start"] == 0
    assert full["lanes"][0] == "sections" and "scalar-int" in full["lanes"]
    busy = {u["lane"]: u["busy"] for u in full["units"]}
    assert all(0 <= b <= 1 for row in busy.values() for b in row)
    assert max(busy["scalar-int"]) > 0.5
    assert {s["name"] for s in full["sections"]} == {"spin"}    # "setup" is 1 cycle: less than a bin
    start = client.get(f"/dashboard/api/runs/{run['id']}/timeline", params={"start": 0, "end": 30}).json()
    assert start["mode"] == "slices" and start["slices"][0]["name"][:2] == ["setup", "spin"]
    zoom = client.get(f"/dashboard/api/runs/{run['id']}/timeline", params={"start": 100, "end": 160}).json()
    assert zoom["mode"] == "slices" and zoom["start"] == 100 and zoom["end"] == 160
    lanes = {s["lane"]: s for s in zoom["slices"]}
    assert all(e > 100 and s < 160 for s, e in zip(lanes["scalar-int"]["start"], lanes["scalar-int"]["end"]))
    assert set(lanes["scalar-int"]["name"]) <= {"S_ADDI_INT"}
    plain = _run(client, LOOP_ASM.format(trips=2))
    assert client.get(f"/dashboard/api/runs/{plain['id']}/timeline").status_code == 404


def test_trace_index_busy_fractions_are_exact():
    doc = {"traceEvents": [
        {"ph": "M", "name": "thread_name", "tid": 1, "args": {"name": "sections"}},
        {"ph": "M", "name": "thread_name", "tid": 2, "args": {"name": "matrix"}},
        {"ph": "X", "tid": 1, "ts": 0, "dur": 0.1, "name": "a", "args": {"path": "a"}},
        {"ph": "X", "tid": 2, "ts": 0.010, "dur": 0.020, "name": "M_MM"},
        {"ph": "X", "tid": 2, "ts": 0.050, "dur": 0.030, "name": "M_MM"}],
        "otherData": {"cycles": 100, "clock_hz": 1e9}}
    index = TraceIndex.from_trace(doc)
    view = index.window(0, 100, max_slices=1, bins=4)
    assert view["mode"] == "bins" and view["edges"] == [0, 25, 50, 75, 100]
    assert view["units"] == [{"lane": "matrix", "busy": [15 / 25, 5 / 25, 25 / 25, 5 / 25]}]
    assert view["sections"] == [{"start": 0, "end": 100, "name": "a"}]
    slices = index.window(40, 60, max_slices=10, bins=4)
    assert slices["mode"] == "slices"
    assert [s["start"] for s in slices["slices"]] == [[0], [50]]


def test_compare_endpoint(client):
    a = _run(client, LOOP_ASM.format(trips=10))
    b = _run(client, LOOP_ASM.format(trips=40).replace("; setup", "; prologue"))
    c = client.get("/dashboard/api/compare", params={"a": a["id"], "b": b["id"]}).json()
    assert c["a"]["id"] == a["id"] and c["b"]["id"] == b["id"]
    assert c["totals"]["cycles"]["delta"] == b["cycles"] - a["cycles"]
    assert [r["key"] for r in c["sections"]] == ["spin"]
    assert c["only_a"][0]["key"] == "setup" and c["only_b"][0]["key"] == "prologue"
    assert c["opcodes"][0]["delta_cycles"] == max((r["delta_cycles"] for r in c["opcodes"]), key=abs)
    missing = uuid.uuid4().hex
    assert client.get("/dashboard/api/compare", params={"a": a["id"], "b": missing}).status_code == 404
    assert client.get("/dashboard/api/compare", params={"a": "x", "b": missing}).status_code == 422


def test_examples_are_listed_and_run(client):
    examples = client.get("/dashboard/api/examples").json()
    linear = next(e for e in examples if e["name"] == "linear")
    assert linear["program"] == "program.asm" and {"hbm.bin", "fp_sram.bin"} <= set(linear["inputs"])
    r = client.post("/dashboard/api/examples/linear/runs", data={"tag": "ex"})
    assert r.status_code == 202, r.text
    from tests.api.conftest import wait_for

    done = wait_for(client, r.json()["id"], ("succeeded",))
    upload = client.post("/v1/runs/files", files=_example_files()).json()
    assert done["cycles"] == upload["cycles"] and done["tag"] == "ex" and done["program_name"] == "linear"
    assert done["links"]["trace"] is not None
    assert client.post("/dashboard/api/examples/nope/runs").status_code == 404
    assert client.post("/dashboard/api/examples/..%2F..%2Fetc/runs").status_code == 404


def test_estimate_endpoint_returns_the_full_static_profile(client):
    files = {"program": ("linear.asm", (EXAMPLE / "program.asm").read_bytes())}
    doc = client.post("/dashboard/api/estimate", files=files).json()
    plain = client.post("/v1/estimate", json={"program": {"asm": (EXAMPLE / "program.asm").read_text()}}).json()
    assert doc["kind"] == "static" and doc["totals"]["cycles"] == plain["cycles"]
    assert doc["estimate"]["exact"] == plain["exact"] and doc["source"]["lines"][0].startswith("; Example")
    bad = client.post("/dashboard/api/estimate", files={"program": ("bad.asm", b"S_ADD_INTX gp1\n")})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][:2] == ["body", "program"]


def test_section_mode_is_blocks_by_default_and_selectable(client):
    asm = "; FFN Upsize Linear Generation\n; K-split inactive: num_k_tiles=1\nS_ADDI_INT gp1, gp0, 1\n"
    default = _run(client, asm, trace=True)
    assert default["profile"]["sections_mode"] == "blocks"
    assert [s["name"] for s in default["profile"]["sections"]] == ["FFN Upsize Linear Generation"]
    comments = _run(client, asm, sections="comments", trace=True)
    assert [s["name"] for s in comments["profile"]["sections"]] == ["K-split inactive: num_k_tiles=1"]
    trace = client.get(comments["links"]["trace"]).json()          # the trace's sections track agrees
    assert {e["name"] for e in trace["traceEvents"] if e.get("cat") == "section"} == {"K-split inactive: num_k_tiles=1"}
    files = {"program": ("k.asm", asm.encode())}
    upload = client.post("/v1/runs/files", files=files, data={"sections": "comments"}).json()
    assert upload["profile"]["sections_mode"] == "comments"
    bad = client.post("/v1/runs/files", files=files, data={"sections": "lines"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "sections"]
    est = client.post("/v1/estimate", json={"program": {"asm": asm}, "sections": "comments"}).json()
    assert est["profile"]["sections_mode"] == "comments"
    doc = client.post("/dashboard/api/estimate", files=files, data={"sections": "markers"}).json()
    assert doc["sections_mode"] == "markers" and doc["sections"][0]["name"] == "(unlabelled)"
    r = client.post("/dashboard/api/examples/linear/runs", data={"sections": "comments"})
    from tests.api.conftest import wait_for

    assert wait_for(client, r.json()["id"], ("succeeded",))["profile"]["sections_mode"] == "comments"
