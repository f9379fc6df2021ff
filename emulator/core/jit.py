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
