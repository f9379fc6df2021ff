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

import hashlib
import os
import sys
import tempfile
from pathlib import Path

import numba
from numba.core.caching import FunctionCache
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

    def load_overload(self, sig, target_context):
        rtsys.initialize(target_context)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)


class _LazyCache:
    """A dispatcher's `_LoadingCache`, created when the dispatcher first loads or compiles.  numba
    creates a function's cache with its dispatcher: a stat of the source file, a makedirs and a
    writability probe (a temporary file) for each of the ~130 kernels at import (~25 ms), while a
    warm run uses the caches of the few kernels Python calls."""

    def __init__(self, py_func):
        self._py_func = py_func
        self._real = None

    def __getattr__(self, name):   # everything but the two attributes above
        if name in ("_py_func", "_real"):   # not set yet (a copy, an unpickled object)
            raise AttributeError(name)
        if self._real is None:
            self._real = _LoadingCache(self._py_func)
        return getattr(self._real, name)


def disk_cached(dispatcher):
    """`dispatcher` (made without numba's cache=True) with its disk cache: numba's, created on first
    use, loading without the registry refresh.  With NUMBA_DISABLE_JIT=1 numba's decorators give
    back the plain Python function, which has no cache to attach."""
    if not isinstance(dispatcher, Dispatcher):
        return dispatcher
    dispatcher._cache = _LazyCache(dispatcher.py_func)
    return dispatcher


# Measured: the first `emulate` of the shipped example with an empty NUMBA_CACHE_DIR on 2 cores
# (bench/bench_compile.py), 42 s of CPU and of wall time on the shared machine (2026-12-03, main
# aa5cd67: the HBM2 model reworked into one channel-driving function, the matrix and vector kernels
# inlined into the run loop; 60 s on the quiet machine before both).
COLD_COMPILE_SECONDS = 42

_announced = False


def is_cached(dispatcher) -> bool:
    """Whether calling `dispatcher` will load compiled code instead of compiling: it holds an
    overload already, or its on-disk index (numba drops an index written for other sources) has
    an entry for this machine and this function's bytecode -- what numba checks before loading.
    Entry points here have one signature, so any entry will do.  No cache (caching disabled)
    counts as cached: there is nothing to fill.
    """
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
