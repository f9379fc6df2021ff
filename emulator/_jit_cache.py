"""Point numba's on-disk cache at a directory keyed by a hash of the jitted sources, and say so
(once, on stderr) when a run is about to fill a cold cache.

numba's `cache=True` checks only the source file of the function it loads, not the files of
the functions it calls, so editing e.g. core/vector.py would leave a stale cached run loop (and
a renamed state type can make the cache unloadable).  Keying the cache directory by the contents
of every jitted module makes a stale cache impossible.  An explicit NUMBA_CACHE_DIR wins.

A cold cache (fresh install, upgrade, edited core) means the first run compiles the core for tens
of seconds; `announce_if_cold` prints one line before that happens so it is not taken for a hang.
"Cold" is decided the way numba itself decides whether it can load: the entry point's cache index
(current source stamp) must hold the key of the signature about to be called.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numba
from numba.core.caching import FunctionCache, IndexDataCacheFile
from numba.core.dispatcher import Dispatcher
from numba.core.runtime import rtsys

_ROOT = Path(__file__).resolve().parent
# Every module that defines jitted functions (tests/test_first_run.py checks the list is complete).
_JITTED_PACKAGES = ("core", "hbm", "timing")
_JITTED_MODULES = (_ROOT.parent / "profiler" / "static.py",)


def jitted_sources() -> list[Path]:
    """The files whose contents key the cache directory."""
    files = [path for pkg in _JITTED_PACKAGES for path in sorted((_ROOT / pkg).glob("*.py"))]
    return files + [path for path in _JITTED_MODULES if path.exists()]


def source_digest() -> str:
    h = hashlib.sha256()
    for path in jitted_sources():
        h.update(str(path.relative_to(_ROOT.parent)).encode())
        h.update(path.read_bytes())
    h.update(numba.__version__.encode())
    return h.hexdigest()[:16]


def configure() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    name = f"numba-{source_digest()}"
    candidates = [Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "plena-emulator",
                  Path(tempfile.gettempdir()) / f"plena-emulator-{os.getuid() if hasattr(os, 'getuid') else 0}"]
    for base in candidates:  # an unwritable home (containers, CI) falls back to the temp dir
        try:
            (base / name).mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(base / name, os.W_OK):
            numba.config.CACHE_DIR = str(base / name)
            return


class _LoadingCache(FunctionCache):
    """numba's per-function disk cache, loading a compiled function without first installing
    every typing and lowering registry into the CPU target (`target_context.refresh()`: ~0.14 s
    of a ~0.6 s warm `emulate`, importing numba's whole library of numpy/cpython implementations).
    Loading machine code needs none of them: only the native helpers' symbols (installed when the
    target context is created) and the runtime's (`rtsys.initialize`, for the kernels that
    allocate).  A compile still refreshes the registries itself (numba's compiler does it first).
    """

    def __init__(self, py_func, suffix: str = ""):
        super().__init__(py_func)
        if suffix:   # a second compiled flavour of the same function keeps its own index and data files
            self._cache_file = IndexDataCacheFile(cache_path=self._cache_path,
                                                  filename_base=self._impl.filename_base + suffix,
                                                  source_stamp=self._impl.locator.get_source_stamp())

    def load_overload(self, sig, target_context):
        rtsys.initialize(target_context)
        while True:
            with self._guard_against_spurious_io_errors():
                cres = self._load_overload(sig, target_context)
            if cres is not None or not self._enabled:
                return cres
            claim = self._claim_path(sig, target_context.codegen())
            if claim is None or _claim_or_wait(claim):
                return None   # ours to compile; save_overload gives the claim up
            # another process compiled it meanwhile (or gave up): load it, or claim it

    def save_overload(self, sig, cres):
        try:
            super().save_overload(sig, cres)
        finally:
            claim = self._claim_path(sig, cres.codegen)
            if claim is not None:
                _release(claim)

    def _claim_path(self, sig, codegen) -> Path | None:
        if not numba.config.CACHE_DIR:
            return None
        key = repr((self._cache_file._index_name, self._index_key(sig, codegen)))
        return Path(numba.config.CACHE_DIR) / "claims" / hashlib.sha256(key.encode()).hexdigest()[:32]


# Claims: processes filling one cache (the first run and its compile helper, emulator/_compile_helper.py;
# two first runs at once; the service's workers) compile each function once between them.  Before
# compiling a function the cache does not hold, a process claims it (a file named by the function's
# cache key holding its pid, created atomically); a process finding another's claim waits until the
# claim is given up (saved to the cache: it loads that) or its owner is gone (it claims it itself).
# A claim older than _STALE_CLAIM_SECONDS, or of a process that no longer runs, is taken over.
# A process waits at most _MAX_WAIT_SECONDS for one claim, then compiles the function too.
_STALE_CLAIM_SECONDS = 600.0
_MAX_WAIT_SECONDS = 180.0
_held_claims: set[Path] = set()


def _claim_owner(claim: Path) -> int | None:
    """The pid of a live claim's owner; None if the claim is gone or stale."""
    try:
        pid = int(claim.read_text())
        age = time.time() - claim.stat().st_mtime
    except (OSError, ValueError):
        return None
    if age > _STALE_CLAIM_SECONDS or not _running(pid):
        return None
    return pid


def _running(pid: int) -> bool:
    """Whether process `pid` exists and has not exited (a killed helper stays a zombie until its
    parent, which may be the process waiting for its claim, reaps it)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):   # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:   # alive, someone else's
            pass
        return True


def _claim_or_wait(claim: Path) -> bool:
    """Claim `claim` (True), or wait until its live owner gives it up or goes (False)."""
    mine = claim.with_name(f"{claim.name}.{os.getpid()}")
    try:
        claim.parent.mkdir(parents=True, exist_ok=True)
        mine.write_text(str(os.getpid()))
        while True:
            try:
                os.link(mine, claim)   # atomic: fails if the claim exists
                _held_claims.add(claim)
                return True
            except FileExistsError:
                pass
            owner = _claim_owner(claim)
            if owner == os.getpid():    # a compile of ours failed before saving: ours again
                _held_claims.add(claim)
                return True
            if owner is None:           # stale: take it over
                _unlink(claim)
                continue
            give_up = time.monotonic() + _MAX_WAIT_SECONDS
            while _claim_owner(claim) == owner:
                if time.monotonic() > give_up:   # never expected; compiling it too beats hanging
                    return True
                time.sleep(0.01)
            return False
    except OSError:   # an unwritable cache: compile without telling anyone
        return True
    finally:
        _unlink(mine)


def _release(claim: Path) -> None:
    if claim in _held_claims:
        _held_claims.discard(claim)
        _unlink(claim)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


@atexit.register
def _release_all() -> None:
    for claim in list(_held_claims):
        _release(claim)


class _LazyCache:
    """A dispatcher's `_LoadingCache`, created when the dispatcher first loads or compiles.  numba
    creates a function's cache with its dispatcher: a stat of the source file, a makedirs and a
    writability probe (a temporary file) for each of the ~130 kernels at import (~25 ms), while a
    warm run uses the caches of the few kernels Python calls."""

    def __init__(self, py_func, suffix: str = ""):
        self._py_func = py_func
        self._suffix = suffix
        self._real = None

    def __getattr__(self, name):   # everything but the three attributes above
        if name in ("_py_func", "_suffix", "_real"):   # not set yet (a copy, an unpickled object)
            raise AttributeError(name)
        if self._real is None:
            self._real = _LoadingCache(self._py_func, self._suffix)
        return getattr(self._real, name)


def disk_cached(dispatcher, suffix: str = ""):
    """`dispatcher` (made without numba's cache=True) with its disk cache: numba's, created on first
    use, loading without the registry refresh.  `suffix` names the cache files of a second flavour
    of one function (numba's cache index does not tell compile options apart).  With
    NUMBA_DISABLE_JIT=1 numba's decorators give back the plain Python function, which has no cache
    to attach."""
    if not isinstance(dispatcher, Dispatcher):
        return dispatcher
    dispatcher._cache = _LazyCache(dispatcher.py_func, suffix)
    return dispatcher


# Measured: the first `emulate` of the shipped example with an empty NUMBA_CACHE_DIR on 2 cores
# (bench/bench_compile.py, 2026-12-03 on the shared machine at load average 1.8-3.4, medians of 3):
# 32.9 s of wall time, 20.0 s of CPU in the run and 13.8 s in its compile helper (50.2 s wall,
# 48.5 s CPU in one process before the kernels lost their wrappers and machine code and the helper
# came); 20.1 s of wall time in the run that found the second core free.
COLD_COMPILE_SECONDS = 20

_announced = False


def is_cached(dispatcher) -> bool:
    """Whether calling `dispatcher` will load compiled code instead of compiling: it holds an
    overload already, or its on-disk index (numba drops an index written for other sources) has
    an entry for this machine and this function's bytecode -- what numba checks before loading.
    Entry points here have one signature, so any entry will do.  No cache (caching disabled)
    counts as cached: there is nothing to fill.
    """
    dispatcher = getattr(dispatcher, "python_entry", dispatcher)   # what a call from Python compiles
    if not isinstance(dispatcher, Dispatcher) or dispatcher.overloads:  # NUMBA_DISABLE_JIT=1: no compiling
        return True
    cache = getattr(dispatcher, "_cache", None)
    cache_file = getattr(cache, "_cache_file", None)
    if cache_file is None:
        return True
    probe = cache._index_key((), dispatcher.targetctx.codegen())
    return any(key[1:] == probe[1:] for key in cache_file._load_index())


def cold_notice(where: str) -> str:
    return (f"plena-emulator: compiling the numba core into {where} (the cache is empty for "
            f"this version; about {COLD_COMPILE_SECONDS} s on 2 cores, once: later runs load it in well under "
            "a second; `emulate --warmup` does this ahead of time)")


def announce_if_cold(*dispatchers) -> bool:
    """Print the one-line compile notice to stderr if any of `dispatchers` is about to compile (at
    most once per process); returns whether it printed."""
    global _announced
    cold = [d for d in dispatchers if not is_cached(d)] if not _announced else []
    if not cold:
        return False
    _announced = True
    where = numba.config.CACHE_DIR or os.path.dirname(cold[0]._cache._cache_path)
    print(cold_notice(where), file=sys.stderr, flush=True)
    return True


def suppress_notice() -> None:
    """For processes whose parent already told the user (the service's workers)."""
    global _announced
    _announced = True
