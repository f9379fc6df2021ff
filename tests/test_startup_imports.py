"""`emulate` imports only what the run needs: no profiler, rich, API or FastAPI for a plain run
(start-up time), and the profiler exactly when a profiling flag asks for it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

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


REGISTRY_ONLY = ("numba.np.npyimpl", "numba.np.linalg", "numba.typed.typeddict")   # imported by numba's refresh()

AFTER_RUN = """
import contextlib, io, json, sys
import numpy as np
from numba import njit
from emulator.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(sys.argv[1:])
loaded = sorted(m for m in %r if m in sys.modules)
# a compile after a load that skipped the registries: numba's compiler installs them itself
mean_of_squares = njit(lambda n: (np.arange(n, dtype=np.float64) ** 2).mean())
print(json.dumps({"code": code, "loaded": loaded, "compiled": mean_of_squares(4)}))
""" % (REGISTRY_ONLY,)


def test_a_warm_run_loads_the_core_without_numbas_registries_and_compiling_still_works():
    """Loading cached kernels skips numba's registry refresh (emulator/_jit_cache.py _LoadingCache);
    a later compile in the same process still gets every registry."""
    _probe("--json")   # the cache is warm afterwards
    argv = [str(EXAMPLE / "program.asm"), "--hbm", str(EXAMPLE / "hbm.bin"), "--json"]
    done = subprocess.run([sys.executable, "-c", AFTER_RUN, *argv], capture_output=True, text=True, check=True,
                          timeout=900)
    probe = json.loads(done.stdout.splitlines()[-1])
    assert probe["code"] == 0 and probe["loaded"] == []
    assert probe["compiled"] == 3.5


def test_importing_the_core_leaves_the_disk_cache_alone_until_a_kernel_is_used(tmp_path):
    """numba would create every kernel's disk cache at import (a makedirs and a writability probe
    each); emulator/_jit_cache.py creates one when its kernel first loads or compiles."""
    code = ("import os, sys; import emulator.runner, emulator.warmup; from emulator._jit_cache import is_cached; "
            "from emulator.core.loop import run_loop; before = os.listdir(sys.argv[1]); "
            "cold = not is_cached(run_loop); print(before, cold, len(os.listdir(sys.argv[1])))")
    env = {k: v for k, v in __import__("os").environ.items() if k != "NUMBA_CACHE_DIR"}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env={**env, "NUMBA_CACHE_DIR": str(tmp_path)},
                          capture_output=True, text=True, check=True, timeout=300)
    assert done.stdout.split() == ["[]", "True", "1"]


NO_COMPILES = """
import contextlib, io, json, sys
from numba.core import event
compiled = []
class Listener(event.Listener):
    def on_start(self, ev):
        compiled.append(ev.data["dispatcher"].py_func.__qualname__)
    def on_end(self, ev):
        pass
event.register("numba:compile", Listener())
from emulator.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "compiled": compiled}))
"""


@pytest.mark.parametrize("timing", ["sequential", "overlapped"])
def test_a_warm_run_compiles_nothing(timing):
    """On a warm cache a run only loads compiled code: the overlapped scheduler's typed dicts are
    made and read by cached kernels (from Python, numba would compile its dict helpers per process)."""
    _probe("--json", "--timing", timing)   # the cache is warm afterwards
    argv = [str(EXAMPLE / "program.asm"), "--hbm", str(EXAMPLE / "hbm.bin"), "--json", "--timing", timing]
    done = subprocess.run([sys.executable, "-c", NO_COMPILES, *argv], capture_output=True, text=True, check=True,
                          timeout=900)
    assert json.loads(done.stdout.splitlines()[-1]) == {"code": 0, "compiled": []}


def test_only_the_emulate_command_limits_blas_threads():
    """`emulate` (no linear algebra) starts numpy with one OpenBLAS thread: its idle pool threads
    spin ~0.1 s of CPU.  A program that imports the package keeps its BLAS settings."""
    from emulator import _is_emulate_command

    assert _is_emulate_command(["/venv/bin/python3", "/venv/bin/emulate", "prog.asm", "--json"])
    assert _is_emulate_command(["python", "-m", "emulator.cli", "prog.asm"])
    assert _is_emulate_command(["python", "-X", "importtime", "-m", "emulator.cli", "prog.asm"])
    assert not _is_emulate_command(["python", "-c", "import emulator"])
    assert not _is_emulate_command(["python", "script.py", "emulate"])
    env = {k: v for k, v in __import__("os").environ.items() if k != "OPENBLAS_NUM_THREADS"}
    code = "import os, emulator; print(os.environ.get('OPENBLAS_NUM_THREADS'))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "None"


GC_PROBE = """
import contextlib, gc, io, json, sys
sys.orig_argv = %r
import emulator
during = gc.isenabled()
from emulator.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "during_imports": during, "after": gc.isenabled(), "frozen": gc.get_freeze_count()}))
"""


@pytest.mark.parametrize("command", [True, False], ids=["emulate", "library"])
def test_the_emulate_command_pauses_the_garbage_collector_only_for_its_imports(command):
    """The command's imports run without the cyclic GC (~0.05 s of start-up walking objects that are
    never garbage); its run has the GC back on, with the imported objects frozen.  A program
    importing the package keeps its GC as it is."""
    argv = [sys.executable, "-m", "emulator.cli"] if command else [sys.executable, "-c", "import emulator"]
    example = [str(EXAMPLE / "program.asm"), "--hbm", str(EXAMPLE / "hbm.bin"), "--fpsram",
               str(EXAMPLE / "fp_sram.bin"), "--json", "--quiet"]
    done = subprocess.run([sys.executable, "-c", GC_PROBE % (argv,), *example], capture_output=True, text=True,
                          check=True, timeout=900)
    probe = json.loads(done.stdout.splitlines()[-1])
    assert probe["code"] == 0 and probe["after"] is True
    assert probe["during_imports"] is (not command)
    assert (probe["frozen"] > 0) is command


def test_with_numba_jit_disabled_the_kernels_import_as_plain_python():
    # NUMBA_DISABLE_JIT=1 (numba's debugging switch: step through a kernel in pdb, profile it with
    # cProfile) makes the decorators return plain functions: nothing to cache, nothing to compile.
    probe = """
from emulator import runner
from emulator._jit_cache import is_cached
from emulator.core.loop import run_loop
from emulator.timing.overlap import decode_stall_key, stall_key
assert not hasattr(run_loop, "overloads") and is_cached(run_loop)
print(*decode_stall_key(stall_key(3, 2, 1, 77)))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NUMBA_DISABLE_JIT": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "2", "1", "77"]
