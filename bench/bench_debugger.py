"""Debugger benchmark: how much slower a program runs with breakpoints armed but never hit.

    python bench/bench_debugger.py [--repeats 7]

For the matrix-heavy and scalar/loop-heavy programs of bench_core.py, times (medians of warm
runs, session construction included) of:
  run()                    the normal path (no debugger)
  session, nothing armed   Session(...).continue_()
  pc bp if false           a conditional breakpoint on the hottest pc whose condition never holds
  global condition         `gp15 == 123456` checked before every instruction
  vram watch               a watch on a VRAM row no instruction writes (checked after every VRAM writer)
  single-step              one Python round trip per instruction (what running *without* the
                           in-loop stops would cost), on a 20000-instruction prefix
and prints each as a ratio to run().  Machines here are shared and noisy: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_core import MATRIX_HEAVY, SCALAR_HEAVY  # noqa: E402

from debugger import Session  # noqa: E402
from emulator import assemble, run  # noqa: E402
from emulator.settings import default_settings  # noqa: E402

STEP_PREFIX = 20000


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    settings = default_settings()
    last_row = settings.VECTOR_SRAM_SIZE - 1

    def session_run(program, arm=None):
        s = Session(program, settings=settings)
        if arm:
            arm(s)
        stop = s.continue_()
        assert stop.reason == "end", stop.describe()
        return s

    print(f"{'program':20s} {'variant':26s} {'median s':>9s} {'vs run()':>9s}")
    for name, text, outer in (("matrix-heavy", MATRIX_HEAVY, 200), ("scalar/loop-heavy", SCALAR_HEAVY, 2000)):
        program = assemble(text.format(outer=outer))
        session_run(program)  # warm
        base = run(program, settings=settings)
        hot = int(base.pc_count.argmax())
        variants = [
            ("run()", lambda p=program: run(p, settings=settings)),
            ("session, nothing armed", lambda p=program: session_run(p)),
            ("pc bp if false", lambda p=program: session_run(p, lambda s: s.break_at(pc=hot, condition="gp15 == 123456"))),
            ("global condition", lambda p=program: session_run(p, lambda s: s.break_at(condition="gp15 == 123456"))),
            ("vram watch", lambda p=program: session_run(p, lambda s: s.watch("vram", last_row))),
        ]
        t_run = None
        for label, fn in variants:
            t = median_time(fn, args.repeats)
            t_run = t if t_run is None else t_run
            print(f"{name:20s} {label:26s} {t:9.4f} {t / t_run:8.2f}x")

        def stepping(p=program):
            s = Session(p, settings=settings)
            for _ in range(min(STEP_PREFIX, base.instructions)):
                s.step()
        n = min(STEP_PREFIX, base.instructions)
        t_step = median_time(stepping, max(1, args.repeats // 3))
        per_instr_run = t_run / base.instructions
        print(f"{name:20s} {'single-step (Python)':26s} {t_step:9.4f} "
              f"{(t_step / n) / per_instr_run:8.0f}x per instruction ({base.instructions} instructions in all)")


if __name__ == "__main__":
    main()
