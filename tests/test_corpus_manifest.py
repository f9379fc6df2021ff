"""The corpus is complete and current (checked against its own index.json and README counts), and
PLENA_REQUIRE_CORPUS turns a missing or incomplete corpus into a failed run instead of skips."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, REQUIRE_CORPUS_ENV, corpus_problems, needs_corpus


@needs_corpus
def test_corpus_matches_its_index(corpus):
    assert corpus_problems(corpus) == []
    ops = json.loads((corpus / "ops" / "index.json").read_text())
    aborts = [e for e in ops if e.get("error_phase") is not None]
    # the ops README's own tally after the 2026-12-03 additions: 188 complete, 68 abort
    assert (len(ops) - len(aborts), len(aborts)) == (188, 68)


def _fake_corpus(root: Path, ops_listed: list[str], ops_present: list[str], dma_said: int, dma_present: int) -> Path:
    """A minimal corpus: one main case, some ops cases, some dma cases."""
    def case(d: Path, expected: dict) -> None:
        (d / "expected").mkdir(parents=True)
        (d / "case.json").write_text(json.dumps({"expected": expected}))
        (d / "program.mem").write_text("0x00000062\n")
        (d / "settings.toml").write_text("")
        for f in ("vram_rows.npy", "mram_tiles.npy", "fpsram_dump.bin", "intsram_dump.bin"):
            (d / "expected" / f).write_bytes(b"")

    root.mkdir()
    case(root / "prog", {"cycles": 1})
    (root / "index.json").write_text(json.dumps([{"name": "prog", "words": 1, "cycles": 1}]))
    (root / "ops").mkdir()
    for n in ops_present:
        case(root / "ops" / n, {"cycles": 1})
    (root / "ops" / "index.json").write_text(json.dumps([{"name": n, "words": 1, "cycles": 1} for n in ops_listed]))
    (root / "dma").mkdir()
    (root / "dma" / "README.md").write_text(f"There are {dma_said} cases.\n")
    for i in range(dma_present):
        case(root / "dma" / f"d{i}", {"cycles": 1})
        (root / "dma" / f"d{i}" / "hbm.bin").write_bytes(b"")
    return root


def test_corpus_check_accepts_a_complete_copy(tmp_path):
    assert corpus_problems(_fake_corpus(tmp_path / "c", ["a", "b"], ["a", "b"], 2, 2)) == []


def test_corpus_check_reports_a_stale_or_partial_copy(tmp_path):
    root = _fake_corpus(tmp_path / "c", ["a", "b", "new"], ["a", "b", "old"], 3, 2)
    (root / "ops" / "a" / "expected" / "vram_rows.npy").unlink()
    (root / "prog" / "program.mem").write_text("0x00000062\n0x00000062\n")
    problems = "\n".join(corpus_problems(root))
    assert "ops/new: missing case.json" in problems           # listed, not copied
    assert "case old is not in index.json" in problems        # copied from an older corpus
    assert "ops/a: missing expected/vram_rows.npy" in problems
    assert "prog: program.mem has 2 words, index.json says 1" in problems
    assert "dma: 2 cases on disk, its README says 3" in problems
    assert corpus_problems(None)


def _pytest_run(env_extra: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    """Run a corpus-free test file of the suite in a fresh pytest process."""
    env = {k: v for k, v in os.environ.items() if k not in ("PLENA_CONFORMANCE_DIR", REQUIRE_CORPUS_ENV)}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_corpus_manifest.py",
         "-k", "accepts_a_complete_copy"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_require_corpus_fails_the_run_when_the_corpus_is_missing(tmp_path):
    missing = {"PLENA_CONFORMANCE_DIR": str(tmp_path / "nowhere")}
    skipped = _pytest_run(missing, tmp_path)
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    required = _pytest_run({**missing, REQUIRE_CORPUS_ENV: "1"}, tmp_path)
    assert required.returncode != 0
    assert REQUIRE_CORPUS_ENV in required.stderr + required.stdout
    assert "no index.json" in required.stderr + required.stdout


def test_require_corpus_fails_the_run_when_the_corpus_is_incomplete(tmp_path):
    root = _fake_corpus(tmp_path / "c", ["a", "b"], ["a"], 1, 1)
    required = _pytest_run({"PLENA_CONFORMANCE_DIR": str(root), REQUIRE_CORPUS_ENV: "1"}, tmp_path)
    assert required.returncode != 0
    assert "ops/b: missing case.json" in required.stderr + required.stdout
    complete = _fake_corpus(tmp_path / "ok", ["a"], ["a"], 1, 1)
    assert _pytest_run({"PLENA_CONFORMANCE_DIR": str(complete), REQUIRE_CORPUS_ENV: "1"}, tmp_path).returncode == 0
