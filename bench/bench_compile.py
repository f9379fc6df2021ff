"""Where the first run's time goes: numba's compile seconds per jitted function, on an empty cache.

    python bench/bench_compile.py [--top N] [--warmup] [-- EMULATE ARGS ...]

Runs `emulate` in this process (default: the shipped example, `--json`; `--warmup`: `emulate
--warmup`, every entry point) with NUMBA_CACHE_DIR pointing at a fresh temporary directory, records
numba's compile events and prints per compiled function and signature its inclusive CPU seconds (the
compiles of the callees it triggered included), its self seconds (without them: its own typing,
lowering, and the optimisation and code generation of its module with the callees linked in) and
how many signatures of that function were compiled (more than one: a literal or differently typed
argument made numba compile it again), and whether the compile helper process compiled it
(emulator/_compile_helper.py; `--no-helper` turns it off).  Then the number of compiles, the sums of
self seconds and the run's wall time and CPU seconds, this process's and the helper's.  Machines
here are shared: compare CPU seconds of runs made close together; the wall time depends on the
second core being free.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "linear"
EXAMPLE_ARGS = [str(EXAMPLE / "program.asm"), "--hbm", str(EXAMPLE / "hbm.bin"), "--fpsram",
                str(EXAMPLE / "fp_sram.bin"), "--json", "--quiet"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--top", type=int, default=30, help="rows to print (by self seconds; default 30)")
    ap.add_argument("--warmup", action="store_true", help="measure `emulate --warmup` (every entry point)")
    ap.add_argument("--no-helper", action="store_true", help="without the compile helper process "
                    "(PLENA_COMPILE_HELPER=0: everything compiled in this process)")
    ap.add_argument("emulate_args", nargs="*", help="arguments for `emulate` (after --)")
    args = ap.parse_args()
    argv = ["--warmup", "--json"] if args.warmup else (args.emulate_args or EXAMPLE_ARGS)

    with tempfile.TemporaryDirectory(prefix="plena-compile-") as cache:
        os.environ["NUMBA_CACHE_DIR"] = cache          # before numba is imported: it reads it once
        helper_events = Path(cache) / "helper-events.json"
        os.environ["PLENA_COMPILE_EVENTS"] = str(helper_events)
        if args.no_helper:
            os.environ["PLENA_COMPILE_HELPER"] = "0"
        sys.path.insert(0, str(REPO))
        from emulator._compile_helper import compile_recorder
        event, recorder = compile_recorder()
        t0, c0, h0 = time.perf_counter(), time.process_time(), _children_cpu()
        with event.install_listener("numba:compile", recorder):
            from emulator.cli import main as emulate
            code = emulate(argv)
        wall, cpu, helper_cpu = time.perf_counter() - t0, time.process_time() - c0, _children_cpu() - h0
        helper = [tuple(r) for r in json.loads(helper_events.read_text())] if helper_events.exists() else []
    if code != 0:
        raise SystemExit(f"emulate {' '.join(argv)} exited with {code}")

    rows = [(*r, "") for r in recorder.done] + [(*r, "helper") for r in helper]
    signatures = collections.Counter(name for name, *_ in recorder.done)
    print(f"\nCPU seconds per compile\n{'self':>7s} {'incl':>7s} {'sigs':>4s}  {'where':6s}  function (signature)")
    for name, sig, inclusive, own, where in sorted(rows, key=lambda r: -r[3])[:args.top]:
        print(f"{own:7.2f} {inclusive:7.2f} {signatures[name]:4d}  {where:6s}  {name} {sig[:90]}")
    twice = sorted(name for name, count in signatures.items() if count > 1)
    print(f"\n{len(recorder.done)} compiles of {len(signatures)} functions in this process; compiled for more than one "
          f"signature: {', '.join(twice) or 'none'}")
    print(f"{len(helper)} compiles in the helper process (compiled in both: "
          f"{', '.join(sorted({r[0] for r in helper} & set(signatures))) or 'none'})")
    print(f"compiling: {sum(r[3] for r in recorder.done):.1f} s here + {sum(r[3] for r in helper):.1f} s in the helper "
          f"(sums of self seconds); whole `emulate {' '.join(Path(a).name for a in argv)}`: {wall:.1f} s wall, "
          f"{cpu:.1f} s CPU here + {helper_cpu:.1f} s CPU in the helper = {cpu + helper_cpu:.1f} s CPU")


def _children_cpu() -> float:
    """CPU seconds of this process's waited-for children (the compile helper)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
