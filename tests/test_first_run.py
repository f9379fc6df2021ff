"""First run on a cold numba cache: one notice line on stderr before compiling, none when warm;
`emulate --warmup` compiles ahead of time; `--json` stays one JSON line on stdout."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from emulator._jit_cache import cold_notice, is_cached
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "linear"
BIN = Path(sys.executable).parent
EXAMPLE_ARGS = [str(EXAMPLE / "program.asm"), "--hbm", str(EXAMPLE / "hbm.bin"),
                "--fpsram", str(EXAMPLE / "fp_sram.bin")]
NOTICE_START = cold_notice("X").split(" into ")[0]   # "plena-emulator: compiling the numba core"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(extra)
    return env


def _first_stderr_line(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 120.0,
                       stop: signal.Signals = signal.SIGKILL) -> tuple[str, str]:
    """Start `cmd`, wait for its first stderr line, stop it (no need to wait for the compile);
    returns (that line, what it had written to stdout by then)."""
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    try:
        line = proc.stderr.readline()
    finally:
        watchdog.cancel()
        proc.send_signal(stop)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    return line, out


@pytest.mark.parametrize("cmd", [
    pytest.param([str(BIN / "emulate"), *EXAMPLE_ARGS, "--json"], id="emulate-json"),
    pytest.param([str(BIN / "plena-profile"), "static", str(EXAMPLE / "program.asm")], id="plena-profile-static"),
    pytest.param([sys.executable, "-c", "from emulator import run; run('S_ADDI_INT gp1, gp0, 1')"], id="python-api"),
])
def test_cold_cache_prints_one_notice_before_compiling(cmd, tmp_path):
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    line, out = _first_stderr_line(cmd, _env(NUMBA_CACHE_DIR=str(cache)), tmp_path)
    assert line.startswith(NOTICE_START), line
    assert str(cache) in line and "once" in line and "emulate --warmup" in line and " s on 2 cores" in line
    assert out == ""   # nothing on stdout before the run: --json keeps stdout for its one line


def test_cold_cache_service_prints_one_notice(tmp_path):
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    env = _env(NUMBA_CACHE_DIR=str(cache), PLENA_API_WARMUP="false", PLENA_API_WORKERS="1")
    with socket.socket() as sock:   # a free loopback port
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [str(BIN / "plena-serve"), "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(tmp_path / "data"),
           "--database-url", f"sqlite:///{tmp_path / 'runs.db'}", "--log-level", "warning"]
    line, _ = _first_stderr_line(cmd, env, tmp_path, stop=signal.SIGINT)   # SIGINT: the pool stops its worker
    assert line.startswith(NOTICE_START), line


def test_is_cached_reads_the_cache_index(tmp_path):
    """An empty cache dir is cold for every entry point; the warmed default cache is not."""
    code = ("import sys; from emulator._jit_cache import is_cached; from emulator.warmup import entry_points; "
            "print(sum(is_cached(p) for p in entry_points()), len(entry_points()))")
    cold = subprocess.run([sys.executable, "-c", code], env=_env(NUMBA_CACHE_DIR=str(tmp_path)), capture_output=True,
                          text=True, check=True)
    points = cold.stdout.split()[1]   # run loop, HBM store kernels, static estimator
    assert cold.stdout.split() == ["0", points] and int(points) >= 4
    subprocess.run([str(BIN / "emulate"), "--warmup"], env=_env(), capture_output=True, check=True, timeout=900)
    warm = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True)
    assert warm.stdout.split() == [points, points]


def test_warm_cache_prints_nothing_extra_and_json_is_one_line(tmp_path):
    warm = subprocess.run([str(BIN / "emulate"), "--warmup", "--json"], env=_env(), capture_output=True, text=True,
                          timeout=900, check=True)
    assert len(warm.stdout.splitlines()) == 1
    assert set(json.loads(warm.stdout)["warmup"]) == {"seconds", "compiled", "estimator"}
    again = subprocess.run([str(BIN / "emulate"), "--warmup"], env=_env(), capture_output=True, text=True, check=True)
    assert "already compiled" in again.stderr and NOTICE_START not in again.stderr

    run = subprocess.run([str(BIN / "emulate"), *EXAMPLE_ARGS, "--json"], env=_env(), capture_output=True, text=True,
                         cwd=tmp_path, check=True)
    assert run.stderr == ""
    lines = run.stdout.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["cycles"] == 1361

    prof = subprocess.run([str(BIN / "plena-profile"), "static", str(EXAMPLE / "program.asm")], env=_env(),
                          capture_output=True, text=True, cwd=tmp_path, check=True)
    assert NOTICE_START not in prof.stderr

    api = subprocess.run([sys.executable, "-c", "from emulator import run; print(run('S_ADDI_INT gp1, gp0, 1').cycles)"],
                         env=_env(), capture_output=True, text=True, cwd=tmp_path, check=True)
    assert api.stderr == "" and api.stdout.strip().isdigit()


def test_in_process_run_is_warm_after_a_run():
    from emulator import run
    from emulator.core.loop import run_loop

    run("S_ADDI_INT gp1, gp0, 1")
    assert is_cached(run_loop)


def test_every_jitted_module_keys_the_cache():
    """numba checks only a loaded function's own file: an edit to an inlined callee in another
    module must change the cache directory, so every module defining jitted code is hashed."""
    import importlib
    import pkgutil

    from numba.core.registry import CPUDispatcher

    import emulator
    import profiler
    from emulator._jit_cache import jitted_sources

    hashed = {p.resolve() for p in jitted_sources()}
    defining = set()
    for pkg in (emulator, profiler):
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            mod = importlib.import_module(info.name)
            if any(isinstance(v, CPUDispatcher) and v.py_func.__module__ == mod.__name__ for v in vars(mod).values()):
                defining.add(Path(mod.__file__).resolve())
    assert defining and defining <= hashed, sorted(map(str, defining - hashed))


def _outputs(out_dir: Path, stdout: str) -> dict:
    """A run's JSON line (without its wall time) and the dumps it wrote."""
    summary = json.loads(stdout.splitlines()[-1])
    for timing_or_path in ("wall_seconds", "dump_seconds", "dumps"):
        summary.pop(timing_or_path, None)
    return {"json": summary, **{p.name: p.read_bytes() for p in sorted(out_dir.iterdir())}}


def _warm_outputs(out_dir: Path, cache: Path | None = None) -> dict:
    """The example's outputs from a run on `cache` (default: the user's), which is warm."""
    env = _env(NUMBA_CACHE_DIR=str(cache)) if cache else _env()
    done = subprocess.run([str(BIN / "emulate"), *EXAMPLE_ARGS, "--json", "--out", str(out_dir)],
                          env=env, capture_output=True, text=True, check=True, timeout=900)
    assert cache is None or done.stderr == ""   # warm: no compile notice
    return _outputs(out_dir, done.stdout)


@pytest.fixture(scope="module")
def cold_bench(tmp_path_factory):
    """bench/bench_compile.py on an empty cache (the compile helper on), the example writing its dumps;
    then the same run on the cache it filled."""
    tmp = tmp_path_factory.mktemp("cold-bench")
    done = subprocess.run([sys.executable, str(REPO / "bench" / "bench_compile.py"), "--top", "200", "--",
                           *EXAMPLE_ARGS, "--json", "--quiet", "--out", str(tmp / "cold")],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return done.stdout, tmp


def test_a_cold_run_compiles_each_of_our_kernels_once(cold_bench):
    """Compile time is part of the product: a literal or differently typed argument at one call site
    makes numba compile a whole kernel (and everything inlined into it) again.  bench/bench_compile.py
    runs the example on an empty cache and lists the functions compiled for several signatures;
    none of them may be ours (numba's own overloads, e.g. `max` over two types, may)."""
    stdout, _ = cold_bench
    line = next(ln for ln in stdout.splitlines() if "compiled for more than one signature:" in ln)
    twice = line.split("compiled for more than one signature:")[1].strip()
    ours = [name for name in twice.split(", ") if name.startswith(("emulator.", "profiler."))]
    assert ours == [], ours


def test_the_compile_helper_compiles_part_of_the_core_and_the_run_loads_it(cold_bench):
    """The first run's helper process (emulator/_compile_helper.py) compiles the matrix and vector
    kernels into the cache while the run compiles the DMA kernels; the run loads what the helper
    compiled instead of compiling it again, and its outputs are those of a warm run."""
    stdout, tmp = cold_bench
    rows = _compile_rows(stdout)
    helper = {name for where, name in rows if where == "helper"}
    here = {name for where, name in rows if where == ""}
    assert {"emulator.core.loop._matrix_op", "emulator.core.loop._vector_op"} <= helper, stdout
    assert {"emulator.core.loop.run_loop", "emulator.core.dma.h_prefetch"} <= here, stdout
    assert not {name for name in helper & here if name.startswith(("emulator.", "profiler."))}, stdout

    run_json = next(ln for ln in stdout.splitlines() if ln.startswith("{"))
    assert _outputs(tmp / "cold", run_json) == _warm_outputs(tmp / "warm")


def test_concurrent_cold_starts_share_the_cache_and_survive_a_killed_helper(tmp_path):
    """Two first runs at once on one empty cache both finish with a warm run's outputs, although one
    of them loses its compile helper (SIGKILL) while the helper holds a claim on a function: the
    claim of a dead process is taken over instead of waited for."""
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    env = _env(NUMBA_CACHE_DIR=str(cache))

    def start(i: int) -> subprocess.Popen:
        return subprocess.Popen([str(BIN / "emulate"), *EXAMPLE_ARGS, "--json", "--out", str(tmp_path / f"out{i}")],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    runs = [start(0)]
    killed_holding = None
    try:
        deadline = time.monotonic() + 300
        while killed_holding is None and runs[0].poll() is None and time.monotonic() < deadline:
            helpers = _children(runs[0].pid)
            claims = {c.name for c in (cache / "claims").glob("*") if "." not in c.name
                      and _read(c) in {str(h) for h in helpers}}
            if claims:
                os.kill(helpers[0], signal.SIGKILL)
                killed_holding = claims
            time.sleep(0.05)
        runs.append(start(1))   # a second first run joins while the first takes over the dead helper's claims
        results = [run.communicate(timeout=600) for run in runs]
    finally:
        for run in runs:
            run.kill()
    assert killed_holding, "the first run's helper never held a claim"
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in results]
    warm = _warm_outputs(tmp_path / "warm", cache)
    for i, (out, _) in enumerate(results):
        assert _outputs(tmp_path / f"out{i}", out) == warm


def _compile_rows(stdout: str) -> list[tuple[str, str]]:
    """(where, function) per row of bench_compile's table: where is "helper" or "" (this process)."""
    rows = []
    for line in stdout.splitlines():
        fields = line.split()
        try:
            float(fields[0]), float(fields[1]), int(fields[2])
        except (ValueError, IndexError):
            continue
        rows.append(("helper", fields[4]) if fields[3] == "helper" else ("", fields[3]))
    return rows


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def test_a_claim_is_taken_over_from_a_dead_process_and_waited_for_while_its_owner_lives(tmp_path):
    from emulator._jit_cache import _claim_or_wait, _release

    claim = tmp_path / "claims" / "key"
    claim.parent.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    claim.write_text(gone)
    assert _claim_or_wait(claim) is True and claim.read_text() == str(os.getpid())
    _release(claim)
    assert not claim.exists()

    owner = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        claim.write_text(str(owner.pid))
        threading.Timer(0.5, claim.unlink).start()   # the owner saved the function and gave the claim up
        t0 = time.monotonic()
        assert _claim_or_wait(claim) is False        # the caller loads it from the cache
        assert time.monotonic() - t0 >= 0.4

        claim.write_text(str(owner.pid))
        threading.Timer(0.5, owner.kill).start()     # the owner dies while compiling
        assert _claim_or_wait(claim) is False
        assert _claim_or_wait(claim) is True and claim.read_text() == str(os.getpid())
        _release(claim)
    finally:
        owner.kill()
        owner.wait()


LINK_ONLY_PROBE = '''
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import kernels
from kernels import entry, second_entry, twice
total = {"entry": entry, "second_entry": second_entry}[sys.argv[2]](np.arange(4))
lib = next(iter(twice.overloads.values())).library if twice.overloads else None
engine = lib._codegen._engine if lib else None
print(total, lib is not None and lib.link_only,
      lib is not None and engine.is_symbol_defined(next(iter(twice.overloads.values())).fndesc.mangled_name),
      twice(np.int64(5)), sum(twice._cache_hits.values()))
'''

KERNELS = '''
from emulator.core.jit import jit, python_entry


@jit
def twice(x):
    return 2 * x


@python_entry
@jit
def entry(a):
    s = 0
    for v in a:
        s += twice(v)
    return s


@python_entry
@jit
def second_entry(a):
    s = 0
    for v in a:
        s += twice(v) + 1
    return s
'''


def test_a_kernel_is_compiled_to_bitcode_for_its_callers_only(tmp_path):
    """A kernel (`jit`) is compiled without module optimisation or machine code and cached as LLVM
    bitcode (emulator/core/jit.py `_Library`): the entry point that links it in generates the code.
    A kernel loaded from the cache links into a new caller; Python still calls it (through its
    wrapped twin)."""
    (tmp_path / "kernels.py").write_text(KERNELS)
    env = _env(NUMBA_CACHE_DIR=str(tmp_path / "cache"), PLENA_COMPILE_HELPER="0")

    def probe(which: str) -> list[str]:
        done = subprocess.run([sys.executable, "-c", LINK_ONLY_PROBE, str(tmp_path), which], env=env,
                              capture_output=True, text=True, check=True, timeout=300)
        return done.stdout.split()

    # cold: twice compiled for entry, link-only, no machine code of its own
    assert probe("entry") == ["12", "True", "False", "10", "0"]
    # twice loaded from the cache (bitcode) and linked into a caller compiled now
    assert probe("second_entry") == ["16", "True", "False", "10", "1"]
