"""The numba options of the core, fixed in one place.

- numba's disk cache (what cache=True gives; emulator/_jit_cache.py keys its directory): only the
  first run of a fresh install pays the JIT cost.  `disk_cached` attaches it created on first use
  and loading without numba's registry refresh (both for the warm start).
- nogil=True: the service runs kernels in worker processes; releasing the GIL costs nothing.
- error_model="numpy": float division by zero gives inf/NaN as IEEE says (the reference relies
  on 1/0 = inf) instead of raising ZeroDivisionError.
- fastmath stays off: the reference's results depend on exact f32 operation order.
- _nrt=False (`jit`): no reference counting.  With numba's runtime on, every jitted function
  increfs and decrefs each array argument it receives, an atomic operation pair per array per
  call; measured as more than half the time of a scalar instruction (one call to a unit kernel
  with four array arguments took ~300 ns instead of ~7 ns).  Kernels only read and write arrays
  their caller owns, so nothing needs counting.  A kernel that allocates (np.empty, .copy())
  needs the runtime: numba refuses to compile it under `jit` ("NRT required but not enabled"),
  and it uses `jit_alloc` instead.
"""

from numba import njit

from .._jit_cache import disk_cached

_OPTIONS = dict(nogil=True, error_model="numpy")


def _decorator(**options):
    """njit(**options) with the disk cache of emulator/_jit_cache.py (instead of cache=True)."""
    compile_with = njit(**options)
    return lambda fn: disk_cached(compile_with(fn))


jit = _decorator(**_OPTIONS, _nrt=False)
jit_alloc = _decorator(**_OPTIONS, _nrt=True)  # explicit: a callee inherits an unset _nrt from its caller

# Compile time (the first run on a fresh machine) is part of the product:
# - numba compiles a jitted callee once per distinct argument-type tuple, and a constant argument
#   has its own literal type: pass run-time values (e.g. `one.shape[0]`, not `1`) where one compiled
#   version can serve, and inline tiny helpers called with many different constants (`inline_jit`);
# - an array-to-array slice assignment pulls in numba's shape-mismatch error formatting (several
#   seconds of compiling); the kernels copy with element loops instead.
inline_jit = _decorator(**_OPTIONS, _nrt=False, inline="always")
