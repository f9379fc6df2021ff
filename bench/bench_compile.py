"""Where the first run's time goes: numba's compile seconds per jitted function, on an empty cache.

    python bench/bench_compile.py [--top N] [--warmup] [-- EMULATE ARGS ...]

Runs `emulate` in this process (default: the shipped example, `--json`; `--warmup`: `emulate
--warmup`, every entry point) with NUMBA_CACHE_DIR pointing at a fresh temporary directory, records
numba's compile events and prints per compiled function and signature its inclusive CPU seconds (the
compiles of the callees it triggered included), its self seconds (without them: its own typing,
lowering, and the optimisation and code generation of its module with the callees linked in) and
how many signatures of that function were compiled (more than one: a literal or differently typed
argument made numba compile it again).  Then the number of compiles, the sum of self seconds and the
process's wall and CPU seconds.  Machines here are shared: compare CPU seconds of runs made close
together.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "linear"
EXAMPLE_ARGS = [str(EXAMPLE / "program.asm"), "--hbm", str(EXAMPLE / "hbm.bin"), "--fpsram",
                str(EXAMPLE / "fp_sram.bin"), "--json", "--quiet"]


def compile_recorder():
    """A numba event listener collecting (function, signature, inclusive s, self s) per compile, in
    CPU seconds of the compiling thread (steadier than wall time on a shared machine).  numba is
    imported here: NUMBA_CACHE_DIR must be set before."""
    from numba.core import event

    class CompileRecorder(event.Listener):
        def __init__(self):
            self.open: list[list[float]] = []     # per compile under way: [start, seconds in nested compiles]
            self.done: list[tuple[str, str, float, float]] = []

        def on_start(self, ev) -> None:
            self.open.append([time.thread_time(), 0.0])

        def on_end(self, ev) -> None:
            start, nested = self.open.pop()
            seconds = time.thread_time() - start
            if self.open:
                self.open[-1][1] += seconds
            fn = ev.data["dispatcher"].py_func
            self.done.append((f"{fn.__module__}.{fn.__qualname__}", str(ev.data.get("args")), seconds,
                              seconds - nested))

    return event, CompileRecorder()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--top", type=int, default=30, help="rows to print (by self seconds; default 30)")
    ap.add_argument("--warmup", action="store_true", help="measure `emulate --warmup` (every entry point)")
    ap.add_argument("emulate_args", nargs="*", help="arguments for `emulate` (after --)")
    args = ap.parse_args()
    argv = ["--warmup", "--json"] if args.warmup else (args.emulate_args or EXAMPLE_ARGS)

    with tempfile.TemporaryDirectory(prefix="plena-compile-") as cache:
        os.environ["NUMBA_CACHE_DIR"] = cache          # before numba is imported: it reads it once
        sys.path.insert(0, str(REPO))
        event, recorder = compile_recorder()
        t0, c0 = time.perf_counter(), time.process_time()
        with event.install_listener("numba:compile", recorder):
            from emulator.cli import main as emulate
            code = emulate(argv)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if code != 0:
        raise SystemExit(f"emulate {' '.join(argv)} exited with {code}")

    signatures = collections.Counter(name for name, *_ in recorder.done)
    print(f"\nCPU seconds per compile\n{'self':>7s} {'incl':>7s} {'sigs':>4s}  function (signature)")
    for name, sig, inclusive, own in sorted(recorder.done, key=lambda r: -r[3])[:args.top]:
        print(f"{own:7.2f} {inclusive:7.2f} {signatures[name]:4d}  {name} {sig[:90]}")
    twice = sorted(name for name, count in signatures.items() if count > 1)
    print(f"\n{len(recorder.done)} compiles of {len(signatures)} functions; compiled for more than one signature: "
          f"{', '.join(twice) or 'none'}")
    print(f"compiling: {sum(r[3] for r in recorder.done):.1f} s (sum of self seconds); whole `emulate "
          f"{' '.join(Path(a).name for a in argv)}`: {wall:.1f} s wall, {cpu:.1f} s CPU")


if __name__ == "__main__":
    main()
