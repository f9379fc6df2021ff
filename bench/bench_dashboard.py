"""Dashboard benchmark: time to first render and payload of the pages, in headless Chromium.

Starts the real service (plena-serve, 1 worker, temporary SQLite history seeded with 10,000
runs), creates runs through the API -- the biggest shipped example (examples/linear), a 3-million-
instruction loop (a run with 10^6+ dynamic instructions, traced) and, when the corpus is there, its
biggest program aten_ffn -- and loads each page several times in Chromium (Debian's chromium +
chromium-driver, via Selenium).

Time to first render = navigation start -> the page's charts/tables are drawn (the
`plena-rendered` performance mark the dashboard sets).  "cold" is the first load with an empty
browser cache; "warm" is the median of the later loads (assets cached, data fetched again).
Payload = bytes over the wire (compressed) and decoded, of the document, every asset and every
JSON fetch of one cold load.

    python bench/bench_dashboard.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from api.db import RunRecord, RunStore  # noqa: E402

EXAMPLE = REPO / "examples" / "linear"
LOOP_3M = """\
; prologue
S_ADDI_INT gp1, gp0, 1
; outer loop
C_LOOP_START gp2, 1000
; inner loop: integer and FP scalar work
C_LOOP_START gp3, 1000
S_ADDI_INT gp4, gp4, 1
S_ADD_FP f1, f1, f2
C_LOOP_END gp3
C_LOOP_END gp2
"""
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000")


def seed_history(url: str, n: int) -> None:
    store = RunStore(url, Path(tempfile.mkdtemp()), "disk", retention_runs=1 << 30)
    store.create_schema()
    now = datetime.now(UTC) - timedelta(days=1)
    with store.sessions.begin() as s:
        s.add_all([RunRecord(id=uuid.uuid4().hex, status="succeeded", tag=f"seed{i % 5}", program_sha256=f"{i:064x}",
                             program_name=f"prog{i % 9}", program_words=100, settings_toml=None, settings_overrides={},
                             settings_missing="error", options={}, created_at=now - timedelta(seconds=i),
                             finished_at=now - timedelta(seconds=i), cycles=i * 37, instructions=i * 5,
                             hbm_bytes_read=i, hbm_bytes_written=0, hbm_model="hbm2", wall_seconds=0.01, warnings=[])
                   for i in range(n)])
    store.dispose()


def start_service(root: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"sqlite:///{root / 'runs.db'}"
    seed_history(url, 10_000)
    env = {**os.environ, "PLENA_API_RETENTION_RUNS": "100000", "PLENA_API_RETENTION_GRACE_SECONDS": "3600"}
    proc = subprocess.Popen([sys.executable, "-c", "from api.main import serve; serve()", "--port", str(port),
                             "--workers", "1", "--database-url", url, "--data-dir", str(root / "data"),
                             "--log-level", "warning"], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).json().get("status") == "ok":
                return proc, base
        except (httpx.HTTPError, ValueError):
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the service did not start")


def make_runs(base: str) -> dict[str, dict]:
    runs = {}
    with httpx.Client(base_url=base, timeout=900) as api:
        files = {"program": ("linear.asm", (EXAMPLE / "program.asm").read_bytes()),
                 "hbm": ("hbm.bin", (EXAMPLE / "hbm.bin").read_bytes()),
                 "fpsram": ("fp_sram.bin", (EXAMPLE / "fp_sram.bin").read_bytes())}
        runs["example linear"] = api.post("/v1/runs/files", files=files, data={"trace": "true"}).json()
        runs["3M-instruction loop"] = api.post("/v1/runs", json={
            "program": {"asm": LOOP_3M, "name": "loop3m"}, "trace": True,
            "settings": {"overrides": {"MAX_LOOP_INSTRUCTIONS": 1 << 40}}}).json()
        corpus = Path(os.environ.get("PLENA_CONFORMANCE_DIR") or REPO.parent / "shared" / "conformance") / "aten_ffn"
        if corpus.is_dir():
            files = {"program": ("aten_ffn.asm", (corpus / "program.asm").read_bytes())}
            for key, name in (("settings", "settings.toml"), ("hbm", "hbm.bin"), ("fpsram", "fp_sram.bin"),
                              ("intsram", "int_sram.bin")):
                if (corpus / name).exists():
                    files[key] = (name, (corpus / name).read_bytes())
            runs["corpus aten_ffn"] = api.post("/v1/runs/files", files=files, data={"trace": "true"}).json()
    for name, run in runs.items():
        if run.get("status") != "succeeded":
            raise SystemExit(f"{name} did not succeed: {run}")
    return runs


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='plena-bench-')}")
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=opts)


def load(driver, url: str) -> tuple[float, int, int]:
    """(ms to first render, bytes transferred, bytes decoded) of one page load."""
    driver.get(url)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        got = driver.execute_script(
            "const m = performance.getEntriesByName('plena-rendered'); if (!m.length) return null;"
            "const all = [performance.getEntriesByType('navigation')[0], ...performance.getEntriesByType('resource')];"
            "return [m[0].startTime, all.reduce((a, e) => a + (e.transferSize || 0), 0),"
            "        all.reduce((a, e) => a + (e.decodedBodySize || 0), 0)];")
        if got:
            return got[0], int(got[1]), int(got[2])
        time.sleep(0.02)
    raise SystemExit(f"{url} did not render")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="page loads per page (first one cold)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="plena-bench-dashboard-"))
    proc, base = start_service(root)
    try:
        runs = make_runs(base)
        pages = [("runs list (10,000+ runs)", "/")]
        for name, run in runs.items():
            pages.append((f"run page: {name}", f"/runs/{run['id']}"))
        pages.append(("timeline: 3M-instruction loop", f"/runs/{runs['3M-instruction loop']['id']}/timeline"))
        pages.append(("source view: " + list(runs)[-1], f"/runs/{list(runs.values())[-1]['id']}/source"))
        for name, run in runs.items():
            print(f"{name}: {run['instructions']:,} instructions, {run['cycles']:,} cycles, "
                  f"profile JSON {len(httpx.get(base + run['links']['profile']).content):,} B, "
                  f"trace JSON {len(httpx.get(base + run['links']['trace']).content):,} B")
        print(f"\n{'page':42s} {'cold ms':>8s} {'warm ms':>8s} {'wire KiB':>9s} {'decoded KiB':>12s}")
        for title, path in pages:
            driver = browser()          # a fresh profile: the first load is cold
            try:
                results = [load(driver, base + path) for _ in range(args.repeats)]
            finally:
                driver.quit()
            cold, wire, decoded = results[0]
            warm = statistics.median(r[0] for r in results[1:]) if len(results) > 1 else float("nan")
            print(f"{title:42s} {cold:8.0f} {warm:8.0f} {wire / 1024:9.0f} {decoded / 1024:12.0f}")
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
