"""The numba options of the core, fixed in one place.

- cache=True: compiled kernels are written next to the sources, so only the first run of a
  fresh checkout pays the JIT cost.
- nogil=True: the service runs kernels in worker processes; releasing the GIL costs nothing.
- error_model="numpy": float division by zero gives inf/NaN as IEEE says (the reference relies
  on 1/0 = inf) instead of raising ZeroDivisionError.
- fastmath stays off: the reference's results depend on exact f32 operation order.
"""

from numba import njit

jit = njit(cache=True, nogil=True, error_model="numpy")

# Compile time (the first run on a fresh machine) is part of the product:
# - numba compiles a jitted callee once per distinct argument-type tuple, and a constant argument
#   has its own literal type: pass run-time values (e.g. `one.shape[0]`, not `1`) where one compiled
#   version can serve, and inline tiny helpers called with many different constants (`inline_jit`);
# - an array-to-array slice assignment pulls in numba's shape-mismatch error formatting (several
#   seconds of compiling); the kernels copy with element loops instead.
inline_jit = njit(cache=True, nogil=True, error_model="numpy", inline="always")
