"""The service under hostile requests (issue 15, items 1-6): bounded memory per run, no 500 and no
traceback in any response, a pool that heals itself, clipped labels, output regions checked
against the settings, and a bounded, seeded fuzz over settings values and output regions."""

from __future__ import annotations

import base64
import os
import random
import signal
import time

import pytest

from api.jobs import exit_description
from tests.api.conftest import start_long_run, wait_for
from tests.api.test_runs import LOAD_ASM, load_request, x_values

ONE = "S_ADDI_INT gp1, gp0, 1\n"
FINISHED = ("succeeded", "failed", "invalid", "cancelled")


def no_traceback(r) -> None:
    assert "Traceback" not in r.text and 'File "' not in r.text, r.text[:2000]


# ------------------------------------------------------------------------------ 1: memory per run

@pytest.mark.parametrize("overrides, words", [
    ({"HBM_SIZE": 2**43}, None),                        # sparse page table: nothing to refuse
    ({"VECTOR_SRAM_SIZE": 2**26}, "this service allows"),   # 8 GiB of VRAM
    ({"MATRIX_SRAM_SIZE": 2**22}, "this service allows"),   # 1 GiB of MRAM
])
def test_settings_sized_state_counts_against_the_run_budget(client, overrides, words):
    r = client.post("/v1/runs", json={"program": {"asm": ONE}, "settings": {"overrides": overrides}})
    if words is None:
        assert r.status_code == 200, r.text
        return
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["body", "settings"] and detail["type"] == "resources" and words in detail["msg"]


def test_hbm_pages_written_during_the_run_are_budgeted(make_client):
    # 8 MiB per run: the state of these settings fits, the HBM pages 4096 scattered stores write do not.
    prog = ("S_LUI_INT gp5, 256\nC_LOOP_START gp2, 4096\nH_STORE_V gp0, gp1, a0, 0, 0\n"
            "S_ADD_INT gp1, gp1, gp5\nC_LOOP_END gp2\n")
    small = {"overrides": {"VECTOR_SRAM_SIZE": 1024}}
    with make_client(max_run_bytes=8 << 20) as c:
        r = c.post("/v1/runs", json={"program": {"asm": prog}, "settings": small})
        assert r.status_code == 400, r.text
        detail = r.json()["detail"]
        assert detail["kind"] == "resources" and detail["opcode"] == "H_STORE_V" and "memory budget" in detail["message"]
        assert c.post("/v1/runs", json={"program": {"asm": ONE}, "settings": small}).status_code == 200


# ------------------------------------------------------------------------------ 2: no 500, no traceback

@pytest.mark.parametrize("overrides", [{"VECTOR_ADD_CYCLES": 9223372036854775808}, {"VECTOR_ADD_CYCLES": 2**62},
                                       {"DC_EN": 7}, {"HBM_V_Prefetch_Amount": 2**40}, {"BROADCAST_AMOUNT": 2**40},
                                       {"MAX_LOOP_INSTRUCTIONS": 2**63}, {"HBM_SIZE": 2**60}])
def test_out_of_range_settings_are_422(client, overrides):
    r = client.post("/v1/runs", json={"program": {"asm": "V_ADD_VV gp0, gp0, gp0, 0\n"},
                                      "settings": {"overrides": overrides}})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "settings"]
    no_traceback(r)


def test_an_internal_error_returns_an_incident_id_not_a_traceback(client, monkeypatch, caplog):
    import api.worker as worker

    def broken(*_args, **_kwargs):
        raise RuntimeError("boom in /some/server/path.py")

    monkeypatch.setattr("emulator.runner.run", broken)
    outcome = worker.execute_run({"program": {"asm": ONE}, "settings": None})
    assert outcome["status"] == "internal"
    message = outcome["error"]["message"]
    assert "incident" in message and "boom" not in message and "Traceback" not in message
    assert any("boom" in (r.exc_text or "") or "boom" in str(r.exc_info) for r in caplog.records)


def test_unhandled_exception_in_a_route_is_json_500_without_traceback(make_client, monkeypatch):
    from fastapi.testclient import TestClient

    def broken(**_):
        raise RuntimeError("secret /srv/path")

    with make_client() as c:
        monkeypatch.setattr(c.app.state.service.store, "list", broken)
        # What a client sees (the test client re-raises server exceptions unless told not to).
        r = TestClient(c.app, raise_server_exceptions=False).get("/v1/runs")
        assert r.status_code == 500 and "incident" in r.json()["detail"] and "secret" not in r.text


# ------------------------------------------------------------------------------ 3: self-healing pool

def test_dead_idle_workers_come_back_without_traffic(client):
    service = client.app.state.service
    deadline = time.monotonic() + 120
    while client.get("/healthz").json()["workers_ready"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    killed = set(service.pool.worker_pids)
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    started = time.monotonic()
    while True:
        health = client.get("/healthz")
        replaced = not killed & set(service.pool.worker_pids)
        if replaced and health.status_code == 200 and health.json()["workers_ready"] == 2:
            break
        assert time.monotonic() - started < 60, health.json()
        time.sleep(0.2)
    # No POST was needed; the restored pool runs programs.
    assert client.post("/v1/runs", json=load_request(x_values())).status_code == 200


def test_worker_lost_names_the_signal(client):
    service = client.app.state.service
    run_id = start_long_run(client)
    wait_for(client, run_id, ("running",))
    for pid in service.pool.worker_pids:
        os.kill(pid, signal.SIGKILL)
    failed = wait_for(client, run_id, FINISHED, timeout=60)
    assert failed["error"]["kind"] == "worker_lost"
    assert "killed by signal 9 (SIGKILL)" in failed["error"]["message"] and "None" not in failed["error"]["message"]


def test_exit_description_of_a_reaped_process():
    import multiprocessing

    p = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(30,))
    p.start()
    os.kill(p.pid, signal.SIGKILL)
    assert exit_description(p) == "killed by signal 9 (SIGKILL)"


# ------------------------------------------------------------------------------ 4: amplified comments

def test_a_megabyte_comment_is_clipped_everywhere(client):
    comment = "c" * 2_000_000
    r = client.post("/v1/runs", json={"program": {"asm": f"; {comment}\n{LOAD_ASM}; {comment}\n{ONE}"}})
    assert r.status_code == 200, r.text[:500]
    assert len(r.content) < 50_000
    sections = r.json()["profile"]["sections"]
    assert sections and all(len(s["name"]) <= 200 for s in sections)
    profile = client.get(f"/v1/runs/{r.json()['id']}/profile")
    assert profile.status_code == 200 and len(profile.content) < 200_000


def test_warnings_are_clipped_and_counted(client):
    # A warning on every line, each line with a long inline comment.
    asm = ("V_EXP_V gp2, gp1, 1 ; " + "w" * 10_000 + "\n") * 300
    r = client.post("/v1/runs", json={"program": {"asm": asm}})
    assert r.status_code == 200, r.text[:500]
    warnings = r.json()["warnings"]
    assert len(warnings) == 101 and warnings[-1] == "... and 200 more warnings"
    assert all(len(w) < 1000 for w in warnings)


def test_what_one_run_stores_is_bounded(make_client):
    asm = ("; " + "d" * 150 + "\n") * 20_000 + ONE
    with make_client(max_output_bytes=1 << 20) as c:
        r = c.post("/v1/runs", json={"program": {"asm": asm}})
        assert r.status_code == 200, r.text[:500]
        doc = c.get(f"/v1/runs/{r.json()['id']}/profile").json()
        assert doc["source"] is None and any("source heat table is left out" in w for w in doc["warnings"])
        small = c.post("/v1/runs", json={"program": {"asm": LOAD_ASM}}).json()
        assert c.get(f"/v1/runs/{small['id']}/profile").json()["source"] is not None


# ------------------------------------------------------------------------------ 5: regions beyond memory

@pytest.mark.parametrize("outputs, loc", [
    ({"vram_regions": [{"name": "a", "start_row": 4194304, "num_rows": 1, "row_dim": 64}]},
     ["body", "outputs", "vram_regions", 0, "start_row"]),
    ({"vram_regions": [{"name": "a", "start_row": 4194300, "num_rows": 8, "row_dim": 64}]},
     ["body", "outputs", "vram_regions", 0, "start_row"]),
    ({"vram_regions": [{"name": "a", "start_row": 0, "num_rows": 1, "row_dim": 128}]},
     ["body", "outputs", "vram_regions", 0, "row_dim"]),
    ({"hbm_regions": [{"name": "h", "addr": 2**34, "shape": [1, 64]}]}, ["body", "outputs", "hbm_regions", 0, "addr"]),
    ({"hbm_regions": [{"name": "h", "addr": 2**34 - 64, "shape": [1, 64]}]},
     ["body", "outputs", "hbm_regions", 0, "addr"]),
    ({"hbm_regions": [{"name": "h", "addr": 0, "shape": [1, 60]}]}, ["body", "outputs", "hbm_regions", 0, "shape"]),
])
def test_output_regions_beyond_memory_are_422(client, outputs, loc):
    r = client.post("/v1/runs", json={"program": {"asm": ONE}, "outputs": outputs})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc


def test_regions_at_the_edge_of_memory_are_fine(client):
    r = client.post("/v1/runs", json={"program": {"asm": ONE}, "outputs": {
        "vram_regions": [{"name": "a", "start_row": 4194303, "num_rows": 1, "row_dim": 64}],
        "hbm_regions": [{"name": "h", "addr": 2**34 - 72, "shape": [1, 64]}]}})
    assert r.status_code == 200, r.text
    assert [o["shape"] for o in r.json()["outputs"]] == [[1, 64], [1, 64]]


# ------------------------------------------------------------------------------ 6: smaller ones

@pytest.mark.parametrize("raw", ["Infinity", "-Infinity", "NaN", "1e999"])
def test_bare_non_finite_json_numbers_are_rejected(client, raw):
    values = ", ".join(["0.5"] * 7 + [raw])
    body = ('{"program": {"asm": "S_ADDI_INT gp1, gp0, 1\\n"}, "tensors": [{"name": "x", "hbm_addr": 0, '
            f'"shape": [1, 8], "values": [{values}]}}]}}')
    r = client.post("/v1/runs", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][:4] == ["body", "tensors", 0, "values"]


def test_float32_overflow_is_rejected(client):
    r = client.post("/v1/runs", json={"program": {"asm": ONE}, "tensors": [
        {"name": "x", "hbm_addr": 0, "shape": [1, 8], "values": [1e39] + [0.0] * 7}]})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "tensors", 0, "values"] and "float32" in r.text


def test_tensor_rows_must_be_whole_mx_blocks(client):
    r = client.post("/v1/runs", json={"program": {"asm": ONE}, "tensors": [
        {"name": "x", "hbm_addr": 0, "shape": [2, 12], "values": [0.5] * 24}]})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "tensors", 0, "shape"]


def test_empty_program_runs_in_zero_cycles(client):
    for program in ({"asm": "; nothing\n"}, {"mem": ""}, {"words": []}):
        r = client.post("/v1/runs", json={"program": program})
        assert r.status_code == 200, r.text
        assert (r.json()["cycles"], r.json()["instructions"]) == (0, 0)


def test_text_plain_body_says_what_is_expected(client):
    r = client.post("/v1/runs", content='{"program": {"asm": "S_ADDI_INT gp1, gp0, 1"}}',
                    headers={"content-type": "text/plain"})
    assert r.status_code == 422
    assert "application/json" in r.json()["detail"][0]["msg"]


def test_413_is_json_for_content_length_and_chunked_bodies(make_client):
    with make_client(max_body_bytes=4096) as c:
        big = {"program": {"asm": ONE * 1000}}
        r = c.post("/v1/runs", json=big)
        assert r.status_code == 413 and "larger than this service accepts" in r.json()["detail"]

        def chunks():
            for _ in range(10):
                yield b" " * 1000

        r = c.post("/v1/runs", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and "larger than this service accepts" in r.json()["detail"]
        metrics = c.get("/metrics").text
        assert 'route="/v1/runs",status="413"' in metrics


def test_json_bodies_have_a_lower_limit_than_multipart_uploads(make_client):
    """Item 4: a JSON body is held several times over while parsed; big images go as multipart."""
    hbm = bytes(range(256)) * 80   # 20 KiB
    with make_client(max_body_bytes=64 * 1024, max_json_body_bytes=8 * 1024) as c:
        r = c.post("/v1/runs", json={"program": {"asm": ONE}, "images": {"hbm": base64.b64encode(hbm).decode()}})
        assert r.status_code == 413 and "multipart/form-data" in r.json()["detail"]
        assert "8,192 bytes" in r.json()["detail"]
        r = c.post("/v1/runs/files", files={"program": ("p.asm", ONE.encode()), "hbm": ("hbm.bin", hbm)})
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
        r = c.post("/v1/runs/files", files={"program": ("p.asm", ONE.encode()), "hbm": ("hbm.bin", hbm * 4)})
        assert r.status_code == 413 and "65,536 bytes" in r.json()["detail"]


def test_docs_routes_are_named_in_metrics(client):
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200
    metrics = client.get("/metrics").text
    assert 'route="/openapi.json"' in metrics and 'route="/docs"' in metrics


# ------------------------------------------------------------------------------ fuzz

def _settings_value(rng: random.Random):
    return rng.choice([0, 1, -1, 2, 3, 7, 64, 4096, 65536, 2**20, 2**31, 2**32, 2**40, 2**48, 2**62, 2**63,
                       2**64, -2**63, rng.randint(-10, 10**6), True, 1.5, "64", None, [1, 2], {"value": 4}])


FUZZ_KEYS = ["DC_EN", "MAX_LOOP_INSTRUCTIONS", "BLEN", "HLEN", "MLEN", "VLEN", "BROADCAST_AMOUNT", "HBM_SIZE",
             "MATRIX_SRAM_SIZE", "VECTOR_SRAM_SIZE", "HBM_M_Prefetch_Amount", "HBM_V_Prefetch_Amount",
             "HBM_V_Writeback_Amount", "VECTOR_ADD_CYCLES", "VECTOR_SUM_CYCLES", "SYSTOLIC_PROCESSING_OVERHEAD",
             "LATENCY.VECTOR_EXP_CYCLES.dc_lib_dis", "SCALAR_INT_BASIC_CYCLES"]
FUZZ_PROGRAMS = [LOAD_ASM, "V_ADD_VV gp0, gp0, gp0, 0\n", ONE,
                 "S_ADDI_INT gp1, gp0, 64\nH_STORE_V gp0, gp1, a0, 0, 0\n", "M_MM 0, gp0, gp0\n",
                 "C_LOOP_START gp1, 3\nV_RED_SUM f1, gp0, 0\nC_LOOP_END gp1\n"]


def _region(rng: random.Random, i: int) -> tuple[str, dict]:
    big = [0, 1, 63, 64, 65, 4096, 2**22 - 1, 2**22, 2**24, 2**34 - 64, 2**34, 2**40]
    if rng.random() < 0.5:
        return "vram_regions", {"name": f"v{i}", "start_row": rng.choice(big[:-2] + [2**40]),
                                "num_rows": rng.choice([1, 2, 4, 1024]), "row_dim": rng.choice([1, 8, 64, 65, 4096])}
    return "hbm_regions", {"name": f"h{i}", "addr": rng.choice(big), "shape": [rng.choice([1, 2, 7]),
                                                                               rng.choice([8, 12, 64, 128])]}


def test_fuzz_settings_values_and_output_regions(client):
    """60 seeded requests mixing out-of-range and odd settings values with regions in and beyond
    memory: every answer is a documented status with a JSON body, and none carries a traceback."""
    rng = random.Random(15)
    seen = set()
    for n in range(60):
        overrides = {rng.choice(FUZZ_KEYS): _settings_value(rng) for _ in range(rng.randint(1, 3))}
        outputs: dict = {"vram_regions": [], "hbm_regions": []}
        for i in range(rng.randint(0, 3)):
            kind, region = _region(rng, i)
            outputs[kind].append(region)
        body = {"program": {"asm": rng.choice(FUZZ_PROGRAMS)}, "settings": {"overrides": overrides},
                "outputs": outputs, "max_wall_seconds": 20}
        r = client.post("/v1/runs", json=body)
        assert r.status_code in (200, 400, 422), (n, body, r.status_code, r.text[:1000])
        no_traceback(r)
        detail = r.json().get("detail")
        if r.status_code == 400:
            assert detail["kind"] != "internal", (n, body, detail)
        seen.add(r.status_code)
    assert seen >= {200, 422}
