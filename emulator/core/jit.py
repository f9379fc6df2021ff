"""The numba options of the core, fixed in one place.

- cache=True: compiled kernels are written next to the sources, so only the first run of a
  fresh checkout pays the JIT cost.
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

from .._jit_cache import load_without_refresh

_OPTIONS = dict(cache=True, nogil=True, error_model="numpy")


def _decorator(**options):
    """njit(**options), its dispatchers loading from the disk cache without numba's registry
    refresh (emulator/_jit_cache.py `_LoadingCache`: the warm start)."""
    compile_with = njit(**options)
    return lambda fn: load_without_refresh(compile_with(fn))


jit = _decorator(**_OPTIONS, _nrt=False)
jit_alloc = _decorator(**_OPTIONS, _nrt=True)  # explicit: a callee inherits an unset _nrt from its caller

# Compile time (the first run on a fresh machine) is part of the product:
# - numba compiles a jitted callee once per distinct argument-type tuple, and a constant argument
#   has its own literal type: pass run-time values (e.g. `one.shape[0]`, not `1`) where one compiled
#   version can serve, and inline tiny helpers called with many different constants (`inline_jit`);
# - an array-to-array slice assignment pulls in numba's shape-mismatch error formatting (several
#   seconds of compiling); the kernels copy with element loops instead.
inline_jit = _decorator(**_OPTIONS, _nrt=False, inline="always")
