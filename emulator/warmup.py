"""Compile (or load from the cache) every jitted entry point ahead of time: `emulate --warmup`.

A run of a tiny program compiles the whole run loop (every unit's kernel and both HBM timing
models are called from it), the HBM store's readers and writers, the overlapped timing model (a
second run with timing = "overlapped"), and -- when the profiler is
installed -- the static estimator.  Afterwards no command compiles anything until the jitted
sources or numba change.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ._jit_cache import is_cached

# Loads 4 rows from HBM, scales them, stores them back, in a loop: touches DMA both ways.
WARMUP_ASM = """\
S_ADDI_INT gp1, gp0, 256
C_SET_SCALE_REG gp1
S_ADDI_INT gp1, gp0, 64
C_SET_STRIDE_REG gp1
S_LUI_INT gp2, 4
C_SET_ADDR_REG a0, gp0, gp0
C_SET_ADDR_REG a1, gp0, gp2
H_PREFETCH_V gp0, gp0, a0, 1, 0
S_LD_FP f1, gp0, 1
C_LOOP_START gp5, 2
V_MUL_VF gp0, gp0, f1, 0
C_LOOP_END gp5
H_STORE_V gp0, gp0, a1, 1, 0
"""


@dataclass
class WarmupReport:
    seconds: float
    was_cold: bool          # something had to be compiled (False: everything loaded from the cache)
    estimator: bool         # the static estimator was included (the profiler package is installed)


def entry_points() -> list:
    """The jitted functions Python calls directly."""
    from .core.hbm_store import absent_pages, read_bytes, rehash, write_bytes
    from .core.loop import run_loop
    from .timing.overlap import _int64_dict, critical_path, dict_items, schedule
    points = [run_loop, write_bytes, read_bytes, absent_pages, rehash, schedule, critical_path, _int64_dict, dict_items]
    try:
        from profiler.static import _estimate
    except ImportError:  # pragma: no cover - the profiler ships with the emulator
        return points
    return points + [_estimate]


def warm_up() -> WarmupReport:
    from .asm import assemble
    from .runner import run

    t0 = time.perf_counter()
    points = entry_points()
    was_cold = not all(is_cached(p) for p in points)
    program = assemble(WARMUP_ASM)
    fp_sram = np.array([0.0, 0.5], dtype=np.float16)
    result = run(program, hbm=np.linspace(-1, 1, 512, dtype=np.float32).view(np.uint8), fp_sram=fp_sram,
                 trace_limit=4, seconds_labels=[np.zeros(len(program), np.int32)], raise_on_error=True)
    result.state.hbm.read(16384, 256)
    # grow the pool past half the page table's slots, so the table grows too (rehash compiled)
    result.state.hbm.ensure_free(2 * result.state.hbm.pool.shape[0])
    from .settings import default_settings
    run(program, settings=default_settings().with_overrides({"timing": "overlapped"}),  # the overlapped model
        hbm=np.linspace(-1, 1, 512, dtype=np.float32).view(np.uint8), fp_sram=fp_sram, raise_on_error=True)
    try:
        from profiler.static import estimate
    except ImportError:  # pragma: no cover - the profiler ships with the emulator
        estimate = None
    estimator = estimate is not None
    if estimator:
        estimate(program)
    return WarmupReport(seconds=time.perf_counter() - t0, was_cold=was_cold, estimator=estimator)
