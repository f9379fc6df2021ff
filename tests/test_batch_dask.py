"""Batches on real Dask processes: a LocalCluster of 2 worker processes (the grid sweep, the
conformance corpus, resume, a worker killed mid-batch) and a `dask scheduler` + two `dask worker`
subprocesses on loopback driven through `plena-batch run --scheduler`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batch import cli as batch_cli
from batch.executor import local_cluster, run_batch
from batch.manifest import load_manifest
from batch.results import read_rows
from tests.batch_util import cli_run, row_view
from tests.conftest import CONFORMANCE, NO_CORPUS

distributed = pytest.importorskip("distributed")

REPO = Path(__file__).resolve().parents[1]
SWEEP = REPO / "examples" / "sweep" / "manifest.toml"
CLI_COLUMNS = ("cycles", "hbm_bytes_read", "hbm_bytes_written", "error_kind", "error_pc",
               "vram_sha256", "mram_sha256", "fpsram_sha256", "intsram_sha256")


@pytest.fixture(scope="module")
def client():
    cluster = local_cluster(2)
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


def _expected(plan) -> dict[str, dict]:
    return {j.job_id: {k: v for k, v in cli_run(j).items() if k != "exit"} for j in plan.jobs}


def test_grid_sweep_rows_equal_single_runs(client, tmp_path):
    plan = load_manifest(SWEEP)
    summary = run_batch(plan, tmp_path / "out", client=client)
    assert summary["state"] == "finished" and summary["ok"] == 24 and summary["workers"] == 2
    rows = read_rows(tmp_path / "out").to_pylist()
    assert len(rows) == 24 and len({r["job_id"] for r in rows}) == 24
    expected = _expected(plan)
    for r in rows:
        assert r["status"] == "ok"
        assert row_view(r) == expected[r["job_id"]], r["program"]
        assert (tmp_path / "out" / r["profile_path"]).is_file()
    assert len({r["worker"] for r in rows}) == 2           # both worker processes ran jobs
    # The knobs move the cycles as they should: V_MUL latency only matters to programs using
    # V_MUL_VF (scale loops 32 of them, linear 4, reload 1), never to matmul.
    cyc = {(r["program"], json.loads(r["overrides"])["hbm_model"],
            json.loads(r["overrides"])["LATENCY.VECTOR_MUL_CYCLES"]): r["cycles"] for r in rows}
    for model in ("hbm2", "analytic"):
        assert cyc["matmul", model, 1] == cyc["matmul", model, 4] == cyc["matmul", model, 16]
        for prog in ("scale", "linear", "reload"):
            assert cyc[prog, model, 1] < cyc[prog, model, 4] < cyc[prog, model, 16]
        assert cyc["scale", model, 16] - cyc["scale", model, 1] > cyc["linear", model, 16] - cyc["linear", model, 1]
    summary_file = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary_file["ok"] == 24 and summary_file["state"] == "finished"


def test_interrupted_batch_resumes_without_redoing_jobs(client, tmp_path):
    plan = load_manifest(SWEEP)
    plan.options = plan.options.model_copy(update={"format": "csv", "profile": False})
    seen: list[str] = []

    def stop_after_five(row):
        seen.append(row["job_id"])
        if len(seen) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(plan, tmp_path / "out", client=client, on_row=stop_after_five)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["state"] == "interrupted"
    assert read_rows(tmp_path / "out").num_rows == 5
    again: list[str] = []
    summary = run_batch(plan, tmp_path / "out", client=client, resume=True, on_row=lambda r: again.append(r["job_id"]))
    assert summary["resumed"] == 5 and summary["ran"] == 19 and summary["ok"] == 24
    assert not set(again) & set(seen)
    rows = read_rows(tmp_path / "out").to_pylist()
    assert sorted(r["job_id"] for r in rows) == sorted(j.job_id for j in plan.jobs)


LONG_ASM = """; about 2.4 million instructions: long enough to kill a worker while it runs
C_LOOP_START gp6, 1200
C_LOOP_START gp5, 1000
S_ADDI_INT gp4, gp4, 1
C_LOOP_END gp5
C_LOOP_END gp6
"""


def test_killed_worker_loses_and_duplicates_nothing(client, tmp_path):
    (tmp_path / "long.asm").write_text(LONG_ASM)
    (tmp_path / "m.toml").write_text('[batch]\nprofile = false\n[[jobs]]\nprogram = "long.asm"\n'
                                     '[grid]\n"LATENCY.SCALAR_INT_BASIC_CYCLES" = ' + str(list(range(1, 21))) + "\n")
    plan = load_manifest(tmp_path / "m.toml")
    assert len(plan.jobs) == 20
    killed: list[int] = []

    def kill_a_busy_worker(row):
        if killed:
            return
        pids = client.run(os.getpid)
        busy = [addr for addr, keys in client.processing().items() if keys]
        assert busy, "no worker was running a job"
        killed.append(pids[busy[0]])
        os.kill(pids[busy[0]], signal.SIGKILL)

    summary = run_batch(plan, tmp_path / "out", client=client, on_row=kill_a_busy_worker)
    assert killed
    rows = read_rows(tmp_path / "out").to_pylist()
    assert len(rows) == 20 and len({r["job_id"] for r in rows}) == 20
    assert summary["ok"] == 20 and all(r["status"] == "ok" for r in rows)
    # Every row is right, including the job that was running on the killed worker.
    from emulator import run
    from emulator.asm import assemble
    from emulator.settings import default_settings

    program = assemble(LONG_ASM)
    by_latency = {json.loads(r["overrides"])["LATENCY.SCALAR_INT_BASIC_CYCLES"]: r for r in rows}
    for lat in (1, 20):
        ref = run(program, settings=default_settings().with_overrides({"LATENCY.SCALAR_INT_BASIC_CYCLES": lat}))
        assert by_latency[lat]["cycles"] == ref.cycles and by_latency[lat]["instructions"] == ref.instructions
    cycles = [by_latency[lat]["cycles"] for lat in range(1, 21)]
    step = cycles[1] - cycles[0]
    assert step > 0 and all(b - a == step for a, b in zip(cycles, cycles[1:]))   # one S_ADDI per latency cycle
    # The nanny replaced the killed process: the cluster is back to two workers.
    deadline = time.monotonic() + 60
    while len(client.scheduler_info()["workers"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(client.scheduler_info()["workers"]) == 2


@pytest.mark.conformance
@pytest.mark.skipif(CONFORMANCE is None, reason=NO_CORPUS)
def test_conformance_corpus_as_a_batch_equals_single_cli_runs(client, tmp_path):
    (tmp_path / "m.toml").write_text(f"""
[batch]
name = "corpus"
[[jobs]]
program = "{CONFORMANCE}/*/program.mem"
case_dir = true
settings_fallback = "reference"
""")
    plan = load_manifest(tmp_path / "m.toml")
    assert len(plan.jobs) == len(json.loads((CONFORMANCE / "index.json").read_text()))
    summary = run_batch(plan, tmp_path / "out", client=client)
    rows = {r["job_id"]: r for r in read_rows(tmp_path / "out").to_pylist()}
    assert len(rows) == len(plan.jobs)
    expected = _expected(plan)
    for job in plan.jobs:
        assert row_view(rows[job.job_id]) == expected[job.job_id], job.name
        case = json.loads((job.program.path.parent / "case.json").read_text())["expected"]
        if "error" in case:
            assert rows[job.job_id]["status"] == "failed" and rows[job.job_id]["error_pc"] == case["error"]["pc"]
        else:
            assert rows[job.job_id]["status"] == "ok"
            assert rows[job.job_id]["hbm_bytes_read"] == case["hbm_bytes_read"]
    assert summary["failed"] == 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_on_a_dask_scheduler_and_workers_started_as_processes(tmp_path, capsys):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "dask"]
    log = open(tmp_path / "dask.log", "w")
    procs = [subprocess.Popen(dask + ["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              stdout=log, stderr=subprocess.STDOUT)]
    try:
        for i in range(2):
            procs.append(subprocess.Popen(dask + ["worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                                                  "--nworkers", "1", "--no-dashboard", "--name", f"w{i}"],
                                          stdout=log, stderr=subprocess.STDOUT))
        with distributed.Client(address, timeout="60s") as c:
            c.wait_for_workers(2, timeout=120)
        out = tmp_path / "out"
        assert batch_cli.main(["run", str(SWEEP), "--out", str(out), "--scheduler", address, "--json",
                               "--format", "csv"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["scheduler"] == address and summary["workers"] == 2 and summary["ok"] == 24
        rows = read_rows(out).to_pylist()
        assert len(rows) == 24 and len({r["worker"] for r in rows}) == 2
        expected = _expected(load_manifest(SWEEP))
        for r in rows:
            assert row_view(r) == expected[r["job_id"]]
        assert all(int(r["worker"].rsplit(":", 1)[1]) != os.getpid() for r in rows)
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGINT)
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        log.close()


def test_progress_bar_on_a_terminal(client, tmp_path):
    """`plena-batch run` in a pseudo-terminal draws the rich progress bar: done/total, failed, ETA."""
    import pty

    out = tmp_path / "out"
    primary, secondary = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "batch.cli", "run", str(SWEEP), "--out", str(out),
                             "--scheduler", client.scheduler_info()["address"], "--max-instructions", "1000"],
                            stdin=secondary, stdout=secondary, stderr=secondary, close_fds=True,
                            env={**os.environ, "COLUMNS": "120", "TERM": "xterm"})
    os.close(secondary)
    screen = b""
    try:
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:      # the terminal closed: the process exited
                break
            if not chunk:
                break
            screen += chunk
        assert proc.wait(timeout=120) == 0, screen.decode(errors="replace")[-2000:]
    finally:
        os.close(primary)
    text = screen.decode(errors="replace")
    assert "24/24" in text and "0 failed" in text and "ETA" in text
    assert "24 jobs: 24 ok, 0 failed, 0 invalid" in text
    assert read_rows(out).num_rows == 24


def test_dumps_are_written_when_asked(client, tmp_path):
    import hashlib

    from tests.batch_util import DUMP_FILES

    plan = load_manifest(SWEEP)
    plan.jobs = [j for j in plan.jobs if j.overrides["LATENCY.VECTOR_MUL_CYCLES"] == 1 and
                 j.overrides["hbm_model"] == "hbm2"]
    plan.options = plan.options.model_copy(update={"dumps": True, "profile": False})
    run_batch(plan, tmp_path / "out", client=client)
    rows = read_rows(tmp_path / "out").to_pylist()
    assert len(rows) == 4
    for r in rows:
        assert r["profile_path"] is None
        for name, fname in DUMP_FILES.items():
            data = (tmp_path / "out" / r["dumps_dir"] / fname).read_bytes()
            assert hashlib.sha256(data).hexdigest() == r[f"{name}_sha256"]
