"""Async runs, server-sent events, cancellation, limits, concurrency, isolation and persistence."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from emulator.asm import assemble
from emulator.runner import run
from emulator.tensors import read_vram_tensor
from tests.api.conftest import LONG_ASM, LONG_SETTINGS, start_long_run, wait_for
from tests.api.test_runs import LOAD_ASM, load_request, values_of, x_values

FINISHED = ("succeeded", "failed", "invalid", "cancelled")


def counting_asm(k: int) -> str:
    """A program whose instruction count and cycles depend on k."""
    return (f"; count {k}\nS_ADDI_INT gp1, gp0, 256\nC_SET_SCALE_REG gp1\nH_PREFETCH_V gp0, gp0, a0, 0, 0\n"
            f"C_LOOP_START gp2, {k}\nS_ADDI_INT gp3, gp3, 1\nC_LOOP_END gp2\n")


def test_async_run_then_poll(client):
    x = x_values()
    r = client.post("/v1/runs?async=true", json=load_request(x))
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert r.headers["location"] == accepted["links"]["self"]
    done = wait_for(client, accepted["id"], FINISHED)
    assert done["status"] == "succeeded"
    sync = client.post("/v1/runs", json=load_request(x)).json()
    assert done["cycles"] == sync["cycles"] and done["outputs"] == sync["outputs"]


def test_events_stream_status_progress_and_done(client):
    run_id = start_long_run(client)
    events = []
    with client.stream("GET", f"/v1/runs/{run_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((event, json.loads(line.split(":", 1)[1])))
                if event == "progress" and sum(1 for e, _ in events if e == "progress") == 3:
                    assert client.delete(f"/v1/runs/{run_id}").status_code == 202
                if event == "done":
                    break
    kinds = [e for e, _ in events]
    assert kinds[0] == "status"
    assert ("status", {"id": run_id, "status": "running"}) in events
    progress = [d for e, d in events if e == "progress"]
    assert len(progress) >= 3
    assert all(b["instructions"] >= a["instructions"] and b["cycles"] >= a["cycles"]
               for a, b in zip(progress, progress[1:]))
    assert kinds[-1] == "done" and events[-1][1]["status"] == "cancelled"
    # A finished run's stream is just its `done` event.
    with client.stream("GET", f"/v1/runs/{run_id}/events") as stream:
        lines = [line for line in stream.iter_lines() if line.startswith(("event:", "data:"))]
    assert lines[0] == "event: done" and json.loads(lines[1][5:])["status"] == "cancelled"


def test_cancel_running_run_keeps_the_pool_working(client):
    run_id = start_long_run(client)
    wait_for(client, run_id, ("running",))
    r = client.delete(f"/v1/runs/{run_id}")
    assert r.status_code == 202
    done = wait_for(client, run_id, FINISHED, timeout=30)
    assert done["status"] == "cancelled"
    assert done["error"]["kind"] == "cancelled"
    assert client.delete(f"/v1/runs/{run_id}").status_code == 409
    # The pool still runs programs, on both workers.
    for _ in range(4):
        assert client.post("/v1/runs", json=load_request(x_values())).status_code == 200
    assert client.get("/healthz").json()["workers_ready"] == 2


def test_cancel_queued_run(client):
    busy = [start_long_run(client) for _ in range(2)]   # both workers busy
    for run_id in busy:
        wait_for(client, run_id, ("running",))
    queued = client.post("/v1/runs?async=true", json=load_request(x_values())).json()["id"]
    assert client.get(f"/v1/runs/{queued}").json()["status"] == "queued"
    r = client.delete(f"/v1/runs/{queued}")
    assert r.status_code == 202
    assert r.json()["status"] == "cancelled"            # at once: it never reached a worker
    for run_id in busy:
        client.delete(f"/v1/runs/{run_id}")
    for run_id in busy:
        assert wait_for(client, run_id, FINISHED, timeout=30)["status"] == "cancelled"
    assert client.get(f"/v1/runs/{queued}").json()["started_at"] is None


def test_sync_request_of_a_cancelled_run_is_409(client):
    with ThreadPoolExecutor(1) as ex:
        fut = ex.submit(client.post, "/v1/runs", json={"program": {"asm": LONG_ASM}, "settings": LONG_SETTINGS,
                                                      "tag": "sync-cancel"})
        deadline = time.monotonic() + 30
        while True:
            items = client.get("/v1/runs", params={"tag": "sync-cancel", "status": "running"}).json()["items"]
            if items:
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        client.delete(f"/v1/runs/{items[0]['id']}")
        r = fut.result(timeout=30)
    assert r.status_code == 409
    assert r.json()["detail"]["kind"] == "cancelled"


def test_queue_full_is_429_with_retry_after(make_client):
    with make_client(queue_limit=1, retry_after_seconds=7) as c:
        run_id = start_long_run(c)
        r = c.post("/v1/runs", json=load_request(x_values()))
        assert r.status_code == 429
        assert r.headers["retry-after"] == "7"
        assert c.post("/v1/estimate", json={"program": {"asm": LOAD_ASM}}).status_code == 429
        assert 'plena_runs_rejected_total{reason="queue_full"} 2.0' in c.get("/metrics").text
        c.delete(f"/v1/runs/{run_id}")
        wait_for(c, run_id, FINISHED, timeout=30)
        assert c.post("/v1/runs", json=load_request(x_values())).status_code == 200
        # A rejected run leaves no trace in the history.
        assert c.get("/v1/runs").json()["total"] == 2


def test_wall_time_budget(make_client):
    with make_client(max_wall_seconds=5.0) as c:
        t0 = time.monotonic()
        r = c.post("/v1/runs", json={"program": {"asm": LONG_ASM}, "settings": LONG_SETTINGS,
                                     "max_wall_seconds": 0.3})
        assert r.status_code == 400, r.text
        assert r.json()["detail"]["kind"] == "budget"
        assert time.monotonic() - t0 < 5
        big = c.post("/v1/runs", json={"program": {"asm": LOAD_ASM}, "max_wall_seconds": 10})
        assert big.status_code == 422
        assert big.json()["detail"][0]["loc"] == ["body", "max_wall_seconds"]


def test_body_and_output_limits(make_client):
    with make_client(max_body_bytes=64 * 1024, max_output_bytes=4096) as c:
        huge = {"program": {"asm": "S_ADDI_INT gp1, gp0, 1\n" * 5000}}
        assert c.post("/v1/runs", json=huge).status_code == 413
        r = c.post("/v1/runs", json={"program": {"asm": LOAD_ASM},
                                     "outputs": {"vram_regions": [{"name": "a", "start_row": 0, "num_rows": 64,
                                                                   "row_dim": 64}]}})
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["body", "outputs"]
        r = c.post("/v1/runs", json={**load_request(x_values()), "outputs": {"dumps": ["intsram", "fpsram"]}})
        assert r.status_code == 400
        assert r.json()["detail"]["kind"] == "output_limit"
        small = c.post("/v1/runs", json={**load_request(x_values()), "outputs": {"dumps": ["fpsram"]}})
        assert small.status_code == 200


def test_50_concurrent_requests_get_their_own_results(client):
    ks = list(range(1, 51))
    scales = [0.25 * (1 + k % 7) for k in ks]

    def request(i: int):
        k, x = ks[i], x_values(scales[i])
        body = {"program": {"asm": counting_asm(k)},
                "tensors": [{"name": "x", "hbm_addr": 0, "shape": [4, 64], "values": x.tolist()}],
                "outputs": {"vram_regions": [{"name": "x", "start_row": 0, "num_rows": 4, "row_dim": 64}]},
                "tag": "concurrency"}
        return client.post("/v1/runs", json=body)

    with ThreadPoolExecutor(50) as ex:
        responses = list(ex.map(request, range(50)))
    ids = set()
    for i, r in enumerate(responses):
        assert r.status_code == 200, r.text
        body = r.json()
        direct = run(assemble(counting_asm(ks[i])), tensors={"x": (x_values(scales[i]), 0)})
        assert body["instructions"] == direct.instructions
        assert body["cycles"] == direct.cycles
        want = direct.state.vram[:4]
        np.testing.assert_array_equal(values_of(body["outputs"][0]), read_vram_tensor(want, 0, 4, 64))
        ids.add(body["id"])
    assert len(ids) == 50
    assert client.get("/v1/runs", params={"tag": "concurrency", "limit": 100}).json()["total"] == 50


def test_runs_do_not_see_each_others_state(client):
    # Each worker first loads a tensor into VRAM; later runs without inputs must see zeros.
    for _ in range(4):
        assert client.post("/v1/runs", json=load_request(x_values())).status_code == 200
    for _ in range(4):
        r = client.post("/v1/runs", json={"program": {"asm": "S_ADDI_INT gp1, gp0, 1\n"},
                                          "outputs": {"vram_regions": [{"name": "x", "start_row": 0, "num_rows": 4,
                                                                        "row_dim": 64}],
                                                      "hbm_regions": [{"name": "h", "addr": 0, "shape": [4, 64]}]}})
        assert r.status_code == 200
        for out in r.json()["outputs"]:
            assert set(out["values"]) == {0.0}, out["name"]


def test_a_killed_worker_fails_only_its_run(client):
    service = client.app.state.service
    run_id = start_long_run(client)
    wait_for(client, run_id, ("running",))
    pids = service.pool.worker_pids
    assert len(pids) == 2
    other = client.post("/v1/runs?async=true", json=load_request(x_values())).json()["id"]
    # Kill every worker process: the running job's worker dies with it.
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    failed = wait_for(client, run_id, FINISHED, timeout=60)
    assert failed["status"] == "failed" and failed["error"]["kind"] == "worker_lost"
    assert wait_for(client, other, FINISHED, timeout=120)["status"] in ("succeeded", "failed")
    r = client.post("/v1/runs", json=load_request(x_values()))
    assert r.status_code == 200
    deadline = time.monotonic() + 120
    while client.get("/healthz").json()["workers_ready"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_history_survives_a_restart(make_client, tmp_path):
    with make_client(root=tmp_path) as c:
        first = c.post("/v1/runs", json={**load_request(x_values()), "tag": "persist", "trace": True,
                                         "outputs": {**load_request(x_values())["outputs"], "dumps": ["fpsram"]}})
        assert first.status_code == 200
        body = first.json()
    with make_client(root=tmp_path) as c:
        again = c.get(f"/v1/runs/{body['id']}").json()
        assert again == body
        assert c.get("/v1/runs", params={"tag": "persist"}).json()["total"] == 1
        assert c.get(body["links"]["trace"]).status_code == 200
        assert c.get(body["dumps"][0]["url"]).content


def test_unfinished_runs_are_marked_interrupted_after_a_restart(make_client, tmp_path):
    with make_client(root=tmp_path, kill_grace_seconds=1.0) as c:
        run_id = start_long_run(c)
        wait_for(c, run_id, ("running",))
    with make_client(root=tmp_path) as c:
        body = c.get(f"/v1/runs/{run_id}").json()
        assert body["status"] == "failed"
        assert body["error"]["kind"] == "interrupted"


def test_retention_limit_and_blobs_in_the_database(make_client):
    with make_client(retention_runs=2, blob_storage="db") as c:
        ids = [c.post("/v1/runs", json={**load_request(x_values()),
                                        "outputs": {"dumps": ["intsram"]}}).json()["id"] for _ in range(3)]
        listed = c.get("/v1/runs").json()
        assert listed["total"] == 2
        assert [i["id"] for i in listed["items"]] == ids[:0:-1]
        assert c.get(f"/v1/runs/{ids[0]}").status_code == 404
        assert len(c.get(f"/v1/runs/{ids[2]}/dumps/intsram").content) == 4096
        service = c.app.state.service
        assert not service.store.blob_dir.exists() or not any(service.store.blob_dir.iterdir())
