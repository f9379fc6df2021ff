"""Executor benchmark: dynamic instructions/s, simulated cycles/s, JIT (first run) and warm times.

    python bench/bench_core.py [--repeats 5] [--corpus DIR] [--skip-cold]

Runs two synthetic programs (matrix-heavy, scalar/loop-heavy) and, when the conformance corpus is
present, every runnable corpus program.  Times are medians of `--repeats` warm runs in this
process; the cold time is one run in a fresh process with an empty numba cache (compile + run).
Machines here are shared and noisy: compare ratios measured in one run, not absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from emulator import assemble, run  # noqa: E402
from emulator.settings import default_settings  # noqa: E402

MATRIX_HEAVY = """
; matrix-heavy: 64 x 16 column blocks of M_MM + M_MM_WO over one tile, repeated
S_ADDI_INT gp6, gp0, 4096
C_LOOP_START gp7, {outer}
S_ADDI_INT gp3, gp0, 0
S_ADDI_INT gp4, gp0, 4096
C_LOOP_START gp5, 16
M_MM 0, gp3, gp0
M_MM_WO gp4, gp0, 0
S_ADDI_INT gp3, gp3, 256
S_ADDI_INT gp4, gp4, 4
C_LOOP_END gp5
V_ADD_VV gp6, gp6, gp6, 0
C_LOOP_END gp7
"""

SCALAR_HEAVY = """
; scalar/loop-heavy: nested loops of integer and FP scalar work
S_ADDI_INT gp1, gp0, 0
C_LOOP_START gp7, {outer}
C_LOOP_START gp5, 100
S_ADDI_INT gp1, gp1, 3
S_MUL_INT gp2, gp1, gp1
S_SUB_INT gp3, gp2, gp1
S_ADD_FP f1, f1, f2
S_MUL_FP f2, f1, f1
S_ST_INT gp3, gp0, 7
S_LD_INT gp4, gp0, 7
C_LOOP_END gp5
C_LOOP_END gp7
"""


def timed(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def cold_seconds() -> float:
    """Compile + run one small program in a fresh process with an empty numba cache."""
    code = ("import time; t=time.perf_counter(); from emulator import run, assemble; "
            "run(assemble('S_ADDI_INT gp1, gp0, 1\\nV_ADD_VV gp0, gp0, gp0, 0')); print(time.perf_counter()-t)")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--corpus", type=Path, default=Path(os.environ.get("PLENA_CONFORMANCE_DIR",
                                                                      REPO.parent / "shared" / "conformance")))
    ap.add_argument("--skip-cold", action="store_true", help="do not measure the cold (JIT) time")
    args = ap.parse_args()

    if not args.skip_cold:
        print(f"cold start (empty cache: JIT compile + tiny run): {cold_seconds():.1f} s")
    t0 = time.perf_counter()
    run(assemble("S_ADDI_INT gp1, gp0, 1"))
    print(f"first run in this process (cache load): {time.perf_counter() - t0:.2f} s")

    settings = default_settings()
    rows = []
    for name, text, outer in (("matrix-heavy", MATRIX_HEAVY, 200), ("scalar/loop-heavy", SCALAR_HEAVY, 2000)):
        program = assemble(text.format(outer=outer))
        med, res = timed(lambda p=program: run(p, settings=settings, raise_on_error=True), args.repeats)
        rows.append((name, res.instructions, res.cycles, med))
    model_time = {"hbm2": 0.0, "analytic": 0.0}
    if (args.corpus / "index.json").is_file():
        sys.path.insert(0, str(REPO))
        from tests.corpus_util import run_case
        for entry in json.loads((args.corpus / "index.json").read_text()):
            if entry.get("cycles") is None:
                continue
            d = args.corpus / entry["name"]
            med, res = timed(lambda d=d: run_case(d), args.repeats)
            rows.append((entry["name"], res.instructions, res.cycles, med))
            model_time["hbm2"] += med
            model_time["analytic"] += timed(lambda d=d: run_case(d, hbm_model="analytic"), args.repeats)[0]
    print(f"\n{'program':28s} {'instr':>10s} {'cycles':>10s} {'median s':>9s} {'Minstr/s':>9s} {'Mcycles/s':>10s}")
    for name, instr, cycles, med in rows:
        print(f"{name:28s} {instr:10d} {cycles:10d} {med:9.4f} {instr / med / 1e6:9.2f} {cycles / med / 1e6:10.1f}")
    total_i = sum(r[1] for r in rows)
    total_t = sum(r[3] for r in rows)
    print(f"\noverall: {total_i / total_t / 1e6:.2f} M dynamic instructions/s over {len(rows)} programs")
    if model_time["analytic"]:
        print(f"corpus wall time, sum of medians: hbm2 {model_time['hbm2']:.3f} s, analytic "
              f"{model_time['analytic']:.3f} s (hbm2/analytic = {model_time['hbm2'] / model_time['analytic']:.2f}x)")


if __name__ == "__main__":
    main()
