"""Shared test fixtures.  The conformance corpus is found through PLENA_CONFORMANCE_DIR
(default ../shared/conformance relative to the repository); tests that need it skip with a
clear reason when it is absent.

With PLENA_REQUIRE_CORPUS=1 (CI sets it) a missing or incomplete corpus fails the run instead:
the session stops before collection with the list of problems, so ~750 corpus tests cannot
silently vanish from a run.  `corpus_problems` is also what tests/test_corpus_manifest.py checks
on every machine that has the corpus, so a stale copy fails even without the switch.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REQUIRE_CORPUS_ENV = "PLENA_REQUIRE_CORPUS"


def corpus_required() -> bool:
    return os.environ.get(REQUIRE_CORPUS_ENV, "").strip().lower() not in ("", "0", "false", "no")


def corpus_location() -> Path:
    env = os.environ.get("PLENA_CONFORMANCE_DIR")
    return Path(env) if env else REPO.parent / "shared" / "conformance"


def conformance_dir() -> Path | None:
    path = corpus_location()
    return path if (path / "index.json").is_file() else None


CONFORMANCE = conformance_dir()
NO_CORPUS = "conformance corpus not found (set PLENA_CONFORMANCE_DIR; default ../shared/conformance)"
needs_corpus = pytest.mark.skipif(CONFORMANCE is None, reason=NO_CORPUS)

# Files every case directory must hold (besides case.json); completed runs also have expected/.
CASE_FILES = ("program.mem", "settings.toml")
EXPECTED_FILES = ("vram_rows.npy", "mram_tiles.npy", "fpsram_dump.bin", "intsram_dump.bin")
DMA_COUNT = re.compile(r"There are (\d+) cases\.")


def _case_problems(case_dir: Path, words: int | None, completes: bool) -> list[str]:
    name = f"{case_dir.parent.name}/{case_dir.name}" if case_dir.parent.name != "conformance" else case_dir.name
    if not (case_dir / "case.json").is_file():
        return [f"{name}: missing case.json"]
    problems = [f"{name}: missing {f}" for f in CASE_FILES if not (case_dir / f).is_file()]
    if completes:
        problems += [f"{name}: missing expected/{f}" for f in EXPECTED_FILES if not (case_dir / "expected" / f).is_file()]
    if words is not None and (case_dir / "program.mem").is_file():
        n = len((case_dir / "program.mem").read_text().split())
        if n != words:
            problems.append(f"{name}: program.mem has {n} words, index.json says {words}")
    return problems


def corpus_problems(root: Path | None) -> list[str]:
    """Everything that makes the corpus at `root` differ from its own index (empty: complete).

    Main corpus and ops/: every index.json entry has its directory, files, word count, and the
    case.json expectation the index names (cycles, or an abort pc); no unlisted case directory.
    dma/ (no index.json): as many complete cases as its README states.
    """
    if root is None or not (root / "index.json").is_file():
        return [f"no index.json under {corpus_location()}"]
    problems: list[str] = []
    for sub in ("", "ops"):
        base = root / sub if sub else root
        index_path = base / "index.json"
        if not index_path.is_file():
            problems.append(f"missing {sub}/index.json")
            continue
        index = json.loads(index_path.read_text())
        listed = {e["name"] for e in index}
        on_disk = {p.parent.name for p in base.glob("*/case.json")}
        problems += [f"{sub or 'main'}: case {n} is not in index.json" for n in sorted(on_disk - listed)]
        for e in index:
            d = base / e["name"]
            aborts = e.get("error_at_pc") is not None or e.get("error_phase") is not None
            # a program.mem the reference fails to load has no meaningful word count
            words = None if e.get("error_kind") == "load" else e.get("words")
            found = _case_problems(d, words, completes=not aborts)
            problems += found
            if found or not (d / "case.json").is_file():
                continue
            exp = json.loads((d / "case.json").read_text())["expected"]
            if not aborts and e.get("cycles") is not None and exp.get("cycles") != e["cycles"]:
                problems.append(f"{d.name}: case.json cycles {exp.get('cycles')} != index.json {e['cycles']}")
            if aborts and "error" not in exp:
                problems.append(f"{d.name}: index.json lists an abort, case.json expects none")
    dma = root / "dma"
    readme = dma / "README.md"
    m = DMA_COUNT.search(readme.read_text()) if readme.is_file() else None
    if m is None:
        problems.append("dma/README.md does not state its case count ('There are N cases.')")
    else:
        cases = sorted(p.parent for p in dma.glob("*/case.json"))
        if len(cases) != int(m.group(1)):
            problems.append(f"dma: {len(cases)} cases on disk, its README says {m.group(1)}")
        for d in cases:
            problems += [f"dma/{d.name}: missing {f}" for f in ("program.mem", "settings.toml", "hbm.bin")
                         if not (d / f).is_file()]
    return problems


def pytest_sessionstart(session):
    """Under PLENA_REQUIRE_CORPUS a missing or incomplete corpus is an error, not a skip."""
    if not corpus_required():
        return
    problems = corpus_problems(CONFORMANCE)
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise pytest.UsageError(f"{REQUIRE_CORPUS_ENV} is set but the conformance corpus at {corpus_location()} "
                                f"is missing or incomplete:\n  {shown}")


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
        if corpus_required():
            pytest.fail(f"{REQUIRE_CORPUS_ENV} is set: {NO_CORPUS}")
        pytest.skip(NO_CORPUS)
    return CONFORMANCE
