"""Fixtures of the HTTP service tests: one shared service (2 workers, SQLite in a temp dir) for
most tests, and `make_client` for tests that need their own limits or database."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from api.config import ServiceSettings
from api.main import create_app

with warnings.catch_warnings():
    # starlette asks for httpx2 instead of httpx; either works for the tests.
    warnings.filterwarnings("ignore", message=".*install `httpx2` instead")
    from fastapi.testclient import TestClient

# A loop that runs for minutes (three nested 2000-trip loops): for cancellation and budgets.
LONG_ASM = """; spin
C_LOOP_START gp2, 2000
C_LOOP_START gp3, 2000
C_LOOP_START gp4, 2000
S_ADDI_INT gp1, gp1, 1
C_LOOP_END gp4
C_LOOP_END gp3
C_LOOP_END gp2
"""
# MAX_LOOP_INSTRUCTIONS bounds the instructions of one outer-loop iteration: lift it for LONG_ASM.
LONG_SETTINGS = {"overrides": {"MAX_LOOP_INSTRUCTIONS": 1 << 40}}


def settings_for(root: Path, **overrides) -> ServiceSettings:
    values = dict(workers=2, database_url=f"sqlite:///{root / 'runs.db'}", data_dir=root / "data",
                  max_wall_seconds=120.0, kill_grace_seconds=3.0, retention_grace_seconds=0.0)
    values.update(overrides)
    return ServiceSettings(**values)


@pytest.fixture(scope="package")
def service_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("service")


@pytest.fixture(scope="package")
def client(service_root) -> Iterator[TestClient]:
    """The shared service: 2 workers, default limits."""
    with TestClient(create_app(settings_for(service_root))) as c:
        yield c


@pytest.fixture
def make_client(tmp_path) -> Callable:
    """`with make_client(**ServiceSettings overrides) as c:` a service of its own (1 worker by default)."""

    @contextmanager
    def factory(root: Path | None = None, **overrides) -> Iterator[TestClient]:
        overrides.setdefault("workers", 1)
        with TestClient(create_app(settings_for(root or tmp_path, **overrides))) as c:
            yield c

    return factory


def wait_for(client: TestClient, run_id: str, statuses: tuple[str, ...], timeout: float = 60.0) -> dict:
    """Poll GET /v1/runs/{id} until its status is one of `statuses`."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/v1/runs/{run_id}").json()
        if body["status"] in statuses:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {body['status']} after {timeout} s")
        time.sleep(0.05)


def start_long_run(client: TestClient, **extra) -> str:
    r = client.post("/v1/runs?async=true", json={"program": {"asm": LONG_ASM}, "settings": LONG_SETTINGS, **extra})
    assert r.status_code == 202, r.text
    return r.json()["id"]
