"""Shared test fixtures.  The conformance corpus is found through PLENA_CONFORMANCE_DIR
(default ../shared/conformance relative to the repository); tests that need it skip with a
clear reason when it is absent."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def conformance_dir() -> Path | None:
    env = os.environ.get("PLENA_CONFORMANCE_DIR")
    path = Path(env) if env else REPO.parent / "shared" / "conformance"
    return path if (path / "index.json").is_file() else None


CONFORMANCE = conformance_dir()
NO_CORPUS = "conformance corpus not found (set PLENA_CONFORMANCE_DIR; default ../shared/conformance)"
needs_corpus = pytest.mark.skipif(CONFORMANCE is None, reason=NO_CORPUS)


def corpus_cases() -> list[str]:
    """Names of the 30 top-level corpus programs (empty when the corpus is absent)."""
    if CONFORMANCE is None:
        return []
    return [e["name"] for e in json.loads((CONFORMANCE / "index.json").read_text())]


def sub_corpus_cases(sub: str) -> list[str]:
    """Names of the cases of conformance/<sub> (ops, dma)."""
    if CONFORMANCE is None or not (CONFORMANCE / sub).is_dir():
        return []
    return sorted(p.parent.name for p in (CONFORMANCE / sub).glob("*/case.json"))


@pytest.fixture
def corpus() -> Path:
    if CONFORMANCE is None:
        pytest.skip(NO_CORPUS)
    return CONFORMANCE
