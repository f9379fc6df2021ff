"""The container files agree with the package: the image holds every package, and the compose
file's `cluster` profile runs a Dask scheduler and workers from the service's own image."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_image_copies_every_package():
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in include}
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (REPO / "Dockerfile").read_text(), re.M))
    assert packages <= copied, f"the Dockerfile does not copy {sorted(packages - copied)}"


def test_cluster_profile_runs_scheduler_and_workers_from_the_service_image():
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    api, scheduler, worker = services["api"], services["dask-scheduler"], services["dask-worker"]
    assert scheduler["image"] == worker["image"] == api["image"]
    assert scheduler["profiles"] == worker["profiles"] == ["cluster"]
    assert scheduler["command"][:2] == ["dask", "scheduler"] and "8786" in scheduler["command"]
    assert worker["command"][:3] == ["dask", "worker", "tcp://dask-scheduler:8786"]
    assert "PLENA_API_DASK_SCHEDULER" in api["environment"]
    assert "profiles" not in api          # the service itself runs without the cluster
