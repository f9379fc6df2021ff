"""`emulate` imports only what the run needs: no profiler, rich, API or FastAPI for a plain run
(start-up time), and the profiler exactly when a profiling flag asks for it."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "linear"
HEAVY = ("profiler", "rich", "api", "fastapi", "starlette", "uvicorn", "sqlalchemy")

PROBE = """
import contextlib, io, json, sys
import emulator
from emulator.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "stdout": out.getvalue(), "loaded": sorted(m for m in %r if m in sys.modules)}))
""" % (HEAVY,)


def _probe(*args: str) -> dict:
    argv = [str(EXAMPLE / "program.asm"), "--hbm", str(EXAMPLE / "hbm.bin"), "--fpsram", str(EXAMPLE / "fp_sram.bin"),
            "--quiet", *args]
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, check=True, timeout=900)
    return json.loads(done.stdout.splitlines()[-1])


def test_plain_json_run_imports_no_profiler_rich_or_api():
    probe = _probe("--json")
    assert probe["code"] == 0 and json.loads(probe["stdout"])["cycles"] == 1361
    assert probe["loaded"] == []


def test_profiling_flag_imports_the_profiler():
    probe = _probe("--profile-json", "/dev/null", "--json")
    assert probe["code"] == 0
    assert "profiler" in probe["loaded"]


def test_importing_the_package_and_cli_loads_nothing_heavy():
    code = "import sys, emulator, emulator.cli; print([m for m in %r if m in sys.modules])" % (HEAVY,)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
