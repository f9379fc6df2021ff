"""The real service (`plena-serve`) in a subprocess on a free loopback port, for browser tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

START_SECONDS = 240     # a cold numba cache: the worker's warm-up compiles the core


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(root: Path, **env: str) -> Iterator[str]:
    """plena-serve with one worker, a SQLite history and data dir under `root` and the extra
    PLENA_API_* environment `env`; yields its base URL once /healthz says ok, stops it after."""
    port = free_port()
    log_path = root / "service.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-c", "from api.main import serve; serve()", "--port", str(port),
                                 "--workers", "1", "--database-url", f"sqlite:///{root / 'runs.db'}",
                                 "--data-dir", str(root / "data"), "--log-level", "warning"],
                                cwd=root, env={**os.environ, "PLENA_API_WORKERS": "1", **env},
                                stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_SECONDS
        try:
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=2).json().get("status") == "ok":
                        break
                except (httpx.HTTPError, ValueError):
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the service did not start:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
