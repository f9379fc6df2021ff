"""POST /v1/batches and GET /v1/batches/{id}: manifests run through the service's pool (or a Dask
cluster via PLENA_API_DASK_SCHEDULER), each job recorded in the run history tagged with the batch."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from batch.manifest import build_plan
from tests.batch_util import cli_run, row_view

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
MANIFEST = {
    "batch": {"name": "svc"},
    "jobs": [{"program": "linear/program.asm", "hbm": "linear/hbm.bin", "fpsram": "linear/fp_sram.bin"},
             {"program": "sweep/*.asm", "hbm": "linear/hbm.bin", "fpsram": "linear/fp_sram.bin"}],
    "grid": {"hbm_model": ["hbm2", "analytic"]},
}


def wait_batch(client, batch_id: str, timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/v1/batches/{batch_id}").json()
        if body["state"] != "running":
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"batch {batch_id} still running after {timeout} s: {body['done']}/{body['jobs']}")
        time.sleep(0.1)


def check_rows(client, body: dict, manifest: dict, base_dir: Path) -> None:
    """Every row equals a single `emulate` run, and every job is a run of the history."""
    plan = build_plan(manifest, base_dir=base_dir)
    assert body["state"] == "finished" and body["done"] == body["jobs"] == len(plan.jobs)
    rows = {r["job_id"]: r for r in body["rows"]}
    assert set(rows) == {j.job_id for j in plan.jobs}
    for job in plan.jobs:
        row = rows[job.job_id]
        assert row["status"] == "ok"
        assert row_view(row) == {k: v for k, v in cli_run(job).items() if k != "exit"}, job.name
    runs = client.get("/v1/runs", params={"tag": f"batch:{body['id']}", "limit": 500}).json()
    assert runs["total"] == len(plan.jobs)
    by_run = {r["id"]: r for r in runs["items"]}
    for row in rows.values():
        run = by_run[row["run_id"]]
        assert run["status"] == "succeeded" and run["cycles"] == row["cycles"]
    some = next(iter(rows.values()))
    assert client.get(some["profile_path"]).json()["totals"]["cycles"] == some["cycles"]


def test_batch_from_server_side_paths(make_client, tmp_path):
    with make_client(batch_root=EXAMPLES) as c:
        r = c.post("/v1/batches", json={"manifest": MANIFEST})
        assert r.status_code == 202, r.text
        accepted = r.json()
        assert accepted["jobs"] == 8 and r.headers["location"] == f"/v1/batches/{accepted['id']}"
        body = wait_batch(c, accepted["id"])
        check_rows(c, body, MANIFEST, EXAMPLES)
        assert body["ok"] == 8 and body["grid"] == ["hbm_model"]
        table = pq.read_table(io.BytesIO(c.get(f"/v1/batches/{accepted['id']}/results?format=parquet").content))
        assert table.num_rows == 8
        assert [b["id"] for b in c.get("/v1/batches").json()["items"]] == [accepted["id"]]
        assert c.delete(f"/v1/batches/{accepted['id']}").status_code == 409     # already finished
    # The batch outlives the service process: a new one reads it from its directory.
    with make_client(batch_root=EXAMPLES) as c:
        again = c.get(f"/v1/batches/{accepted['id']}").json()
        assert again["state"] == "finished" and again["done"] == 8


@pytest.mark.parametrize("manifest, loc, words", [
    ({"jobs": [{"program": "linear/program.asm", "hbmx": "linear/hbm.bin"}]},
     ["body", "manifest", "jobs", 0, "hbmx"], "unknown key 'hbmx'"),
    ({"jobs": [{"program": "linear/program.asm", "hbm": "../README.md"}]},
     ["body", "manifest", "jobs", 0, "hbm"], "outside the service's batch root"),
    ({"jobs": [{"program": "linear/program.asm"}], "grid": {"NOT_A_KNOB": [1]}},
     ["body", "manifest", "grid", "NOT_A_KNOB"], "NOT_A_KNOB"),
    ({"jobs": []}, ["body", "manifest", "jobs"], "at least 1"),
])
def test_bad_manifests_are_422_naming_the_key(make_client, manifest, loc, words):
    with make_client(batch_root=EXAMPLES, warmup=False) as c:
        r = c.post("/v1/batches", json={"manifest": manifest})
        assert r.status_code == 422, r.text
        issue = r.json()["detail"][0]
        assert issue["loc"] == loc and words in issue["msg"]
        assert c.get("/v1/batches").json()["items"] == []       # nothing started
        assert c.get("/v1/runs").json()["total"] == 0


def test_server_side_paths_need_a_batch_root(client):
    r = client.post("/v1/batches", json={"manifest": MANIFEST})
    assert r.status_code == 422 and "PLENA_API_BATCH_ROOT" in r.json()["detail"][0]["msg"]


def test_batch_from_uploaded_files(make_client, tmp_path):
    toml = ('[batch]\nname = "up"\n[[jobs]]\nprogram = "program.asm"\nhbm = "hbm.bin"\nfpsram = "fp_sram.bin"\n'
            '[grid]\n"LATENCY.VECTOR_MUL_CYCLES" = [1, 8]\n')
    files = [("files", (n, (EXAMPLES / "linear" / n).read_bytes())) for n in ("program.asm", "hbm.bin", "fp_sram.bin")]
    with make_client(warmup=False) as c:
        bad = c.post("/v1/batches/files", files=[("manifest", ("m.toml", toml.replace("hbm.bin", "nope.bin", 1)))]
                     + files)
        assert bad.status_code == 422
        issue = bad.json()["detail"][0]
        assert issue["loc"] == ["body", "manifest", "jobs", 0, "hbm"] and issue["ctx"]["line"] == 5
        r = c.post("/v1/batches/files", files=[("manifest", ("m.toml", toml))] + files)
        assert r.status_code == 202, r.text
        body = wait_batch(c, r.json()["id"])
        for n in ("program.asm", "hbm.bin", "fp_sram.bin"):
            (tmp_path / n).write_bytes((EXAMPLES / "linear" / n).read_bytes())
        import tomllib

        check_rows(c, body, tomllib.loads(toml), tmp_path)
        cycles = sorted(row["cycles"] for row in body["rows"])
        assert cycles[0] < cycles[1]


def test_runs_and_batches_go_to_the_dask_scheduler(make_client):
    distributed = pytest.importorskip("distributed")
    from batch.executor import local_cluster

    cluster = local_cluster(2)
    try:
        with distributed.Client(cluster) as dc:
            worker_pids = set(dc.run(os.getpid).values())
            with make_client(dask_scheduler=cluster.scheduler_address, batch_root=EXAMPLES) as c:
                health = c.get("/healthz").json()
                assert health["workers_ready"] == 2
                files = {"program": ("program.asm", (EXAMPLES / "linear" / "program.asm").read_bytes()),
                         "hbm": ("hbm.bin", (EXAMPLES / "linear" / "hbm.bin").read_bytes()),
                         "fpsram": ("fp_sram.bin", (EXAMPLES / "linear" / "fp_sram.bin").read_bytes())}
                run = c.post("/v1/runs/files", files=files)
                assert run.status_code == 200, run.text
                plan = build_plan(MANIFEST, base_dir=EXAMPLES)
                linear = next(j for j in plan.jobs if j.name == "linear" and j.overrides["hbm_model"] == "hbm2")
                assert run.json()["cycles"] == cli_run(linear)["cycles"]
                # The run was a task of the cluster's scheduler.
                prefixes = dc.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
                assert "plena-run" in prefixes
                r = c.post("/v1/batches", json={"manifest": MANIFEST})
                body = wait_batch(c, r.json()["id"])
                check_rows(c, body, MANIFEST, EXAMPLES)
                assert {int(row["worker"].rsplit(":", 1)[1]) for row in body["rows"]} <= worker_pids
    finally:
        cluster.close()


def test_cancel_a_running_batch(make_client, tmp_path):
    from tests.api.conftest import LONG_ASM

    (tmp_path / "long.asm").write_text(LONG_ASM)
    manifest = {"batch": {"max_seconds": 60},
                "jobs": [{"program": "long.asm", "overrides": {"MAX_LOOP_INSTRUCTIONS": 1 << 40}}],
                "grid": {"LATENCY.SCALAR_INT_BASIC_CYCLES": list(range(1, 7))}}
    with make_client(batch_root=tmp_path, warmup=False) as c:
        batch_id = c.post("/v1/batches", json={"manifest": manifest}).json()["id"]
        deadline = time.monotonic() + 60
        while not c.get("/v1/runs", params={"tag": f"batch:{batch_id}", "status": "running"}).json()["total"]:
            assert time.monotonic() < deadline, "no job of the batch started"
            time.sleep(0.05)
        r = c.delete(f"/v1/batches/{batch_id}")
        assert r.status_code == 202, r.text
        body = wait_batch(c, batch_id, timeout=60)
        assert body["state"] == "cancelled"
        assert 1 <= body["done"] < 6               # the running job's row; the rest never started
        assert all(row["status"] == "failed" and row["error_kind"] == "cancelled" for row in body["rows"])
        runs = c.get("/v1/runs", params={"tag": f"batch:{batch_id}"}).json()["items"]
        assert runs and all(run["status"] == "cancelled" for run in runs)
