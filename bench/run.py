"""The speed benchmark: large programs end to end through `emulate`, against the reference's wall times.

    python bench/run.py [--quick] [--repeats N] [--only SUBSTRING] [--cold]

Builds the programs of bench/programs.py (instruction mixes of the PLENA test benches' large
programs, sized to the dynamic instruction counts of the reference figures below), runs each
`--repeats` times as `emulate PROG --json` in a fresh process and prints one table: dynamic
instructions, cycles, our wall time (median), its split (start-up = imports, settings, program,
preloads and loading the compiled core; run loop; HBM2 timing model = the same run's time with the
hbm2 model minus with the analytic one), the reference's wall time and the ratio reference/ours.
Then the start-up of a small `emulate --json`, the warm per-run cost through the Python API and a
scalar/control-heavy loop's instruction rate; `--cold` adds the first run on an empty numba cache.

The reference is not installed here: its figures were measured on this kind of machine (2 cores,
quiet) for programs of these sizes.  Ours are synthetic programs with the same instruction mix, not
the same programs, so the ratios are indicative.  Machines here are shared: quote medians and ratios
of one run.  `--quick` runs programs 20x smaller once each (a smoke test of the whole benchmark).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import programs as P  # noqa: E402
from bench_core import SCALAR_HEAVY  # noqa: E402  (the scalar/control-heavy loop)

EXAMPLE = REPO / "examples" / "linear"


@dataclass
class Case:
    label: str
    target_instructions: int
    reference_seconds: float
    build: object      # outer -> BenchProgram


CASES = [
    Case("linear MLEN 64 (3.2 M)", 3_200_000, 15.7,
         lambda outer: P.linear(64, 4, rows=64, k_tiles=8, n_tiles=4, outer=outer)),
    Case("linear MLEN 64 (12.9 M)", 12_900_000, 57.0,
         lambda outer: P.linear(64, 4, rows=64, k_tiles=8, n_tiles=4, outer=outer)),
    Case("ffn MLEN 64", 3_400_000, 19.0,
         lambda outer: P.ffn(64, 4, rows=32, k_tiles=4, n_tiles=8, outer=outer)),
    Case("flash attention GQA MLEN 256", 3_000_000, 14.2,
         lambda outer: P.flash_attention_gqa(256, 4, kv_tiles=4, outer=outer)),
    Case("linear MLEN 128 BLEN 16", 540_000, 10.6,
         lambda outer: P.linear(128, 16, rows=64, k_tiles=8, n_tiles=4, outer=outer)),
    Case("moe expert MLEN 64", 4_900_000, 22.9,
         lambda outer: P.moe_expert(64, 4, rows=32, k_tiles=4, n_tiles=8, outer=outer)),
]



def _settings(overrides: dict):
    from emulator import load_settings
    return load_settings(overrides=overrides)


def _run_in_process(bp, hbm_model: str | None = None):
    from emulator import assemble, run
    overrides = dict(bp.overrides, **({"hbm_model": hbm_model} if hbm_model else {}))
    return run(assemble(bp.asm), settings=_settings(overrides), hbm=bp.hbm, vram=bp.vram,
               fp_sram=P.fp_sram_image(), raise_on_error=True)


def calibrate(case: Case, scale: float) -> object:
    """The program with `outer` chosen so its dynamic instruction count is near the target."""
    one, two = _run_in_process(case.build(1), "analytic"), _run_in_process(case.build(2), "analytic")
    per = two.instructions - one.instructions
    base = one.instructions - per
    outer = max(1, round((case.target_instructions * scale - base) / per))
    return case.build(outer)


def _write(bp, where: Path) -> list[str]:
    where.mkdir(parents=True, exist_ok=True)
    (where / "program.asm").write_text(bp.asm)
    (where / "hbm.bin").write_bytes(bp.hbm)
    (where / "vram.bin").write_bytes(bp.vram)
    (where / "fp_sram.bin").write_bytes(P.fp_sram_image())
    args = [str(where / "program.asm"), "--hbm", str(where / "hbm.bin"), "--vram", str(where / "vram.bin"),
            "--fpsram", str(where / "fp_sram.bin"), "--json", "--quiet"]
    for key, value in bp.overrides.items():
        args += ["--set", f"{key}={value}"]
    return args


@dataclass
class Timing:
    wall: float
    cpu: float      # user + system CPU seconds: what the wall time would be on an idle machine


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _emulate(args: list[str], env: dict | None = None) -> tuple[Timing, dict]:
    t0, c0 = time.perf_counter(), _children_cpu()
    done = subprocess.run([sys.executable, "-m", "emulator.cli", *args], capture_output=True, text=True, env=env)
    timing = Timing(time.perf_counter() - t0, _children_cpu() - c0)
    if done.returncode != 0:
        raise SystemExit(f"emulate {' '.join(args)} failed ({done.returncode}): {done.stderr or done.stdout}")
    return timing, json.loads(done.stdout.splitlines()[-1])


def _median(timings: list[Timing]) -> Timing:
    return Timing(statistics.median(t.wall for t in timings), statistics.median(t.cpu for t in timings))


def _median_time(fn, repeats: int) -> tuple[Timing, object]:
    timings, out = [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        timings.append(Timing(time.perf_counter() - t0, time.process_time() - c0))
    return _median(timings), out


def large_programs(args, tmp: Path) -> None:
    scale = 0.05 if args.quick else 1.0
    header = (f"{'program':30s} {'instr':>10s} {'cycles':>12s} {'wall s':>7s} {'cpu s':>6s} {'start-up':>8s} "
              f"{'loop':>6s} {'HBM2':>6s} {'Minstr/s':>8s} {'ref s':>6s} {'ratio':>6s} {'cpu ratio':>9s}")
    print(f"Large programs through `emulate --json` (median of {args.repeats}).  Split in CPU seconds: start-up "
          "(imports, inputs, loading the compiled core) / run loop / HBM2 timing model")
    print(header)
    print("-" * len(header))
    ratios, cpu_ratios = [], []
    for i, case in enumerate(CASES):
        if args.only and args.only not in case.label:
            continue
        bp = calibrate(case, scale)
        cli_args = _write(bp, tmp / str(i))
        runs = [_emulate(cli_args) for _ in range(args.repeats)]
        total = _median([t for t, _ in runs])
        summary = runs[0][1]
        inner = max(1, min(args.repeats, 3))
        loop, _ = _median_time(lambda: _run_in_process(bp, "analytic"), inner)
        with_hbm2, _ = _median_time(lambda: _run_in_process(bp), inner)
        ref = case.reference_seconds * scale
        ratios.append(ref / total.wall)
        cpu_ratios.append(ref / total.cpu)
        print(f"{case.label:30s} {summary['instructions']:10,d} {summary['cycles']:12,d} {total.wall:7.2f} "
              f"{total.cpu:6.2f} {max(total.cpu - with_hbm2.cpu, 0):8.2f} {loop.cpu:6.2f} "
              f"{max(with_hbm2.cpu - loop.cpu, 0):6.2f} {summary['instructions'] / total.wall / 1e6:8.2f} "
              f"{ref:6.1f} {ratios[-1]:5.1f}x {cpu_ratios[-1]:8.1f}x")
    if ratios:
        print(f"ratio reference/ours: wall median {statistics.median(ratios):.1f}x (min {min(ratios):.1f}x), "
              f"CPU median {statistics.median(cpu_ratios):.1f}x (min {min(cpu_ratios):.1f}x)"
              + ("; --quick: reference figures scaled by program size" if args.quick else ""))


def start_up(args) -> None:
    example = [str(EXAMPLE / "program.asm"), "--hbm", str(EXAMPLE / "hbm.bin"), "--fpsram",
               str(EXAMPLE / "fp_sram.bin"), "--json", "--quiet"]
    # A normal install has its Python bytecode compiled (pip does it; a checkout writes __pycache__
    # on first import) unless PYTHONDONTWRITEBYTECODE is set, as on some CI machines: both figures.
    cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    uncached = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    _emulate(example, cached)  # the compiled core is in the numba cache, the bytecode in __pycache__
    n = max(args.repeats, 5)
    t = _median([_emulate(example, cached)[0] for _ in range(n)])
    u = _median([_emulate(example, uncached)[0] for _ in range(n)])
    print(f"\nstart-up: `emulate --json` on the shipped example (115 instructions), warm numba cache, median of {n}: "
          f"{t.wall:.3f} s wall, {t.cpu:.3f} s CPU ({u.cpu:.3f} s CPU without Python bytecode caching)")


def warm_path(args) -> None:
    from emulator import assemble, run
    from emulator.runner import new_machine
    from emulator.settings import default_settings

    settings = default_settings()
    program = assemble((EXAMPLE / "program.asm").read_text())
    hbm, fp = (EXAMPLE / "hbm.bin").read_bytes(), (EXAMPLE / "fp_sram.bin").read_bytes()
    run(program, settings=settings, hbm=hbm, fp_sram=fp)
    n = 200 if not args.quick else 20
    t, result = _median_time(lambda: run(program, settings=settings, hbm=hbm, fp_sram=fp), n)
    setup, _ = _median_time(lambda: new_machine(program, settings=settings, hbm=hbm, fp_sram=fp), n)
    loops = []
    for _ in range(n):
        machine = new_machine(program, settings=settings, hbm=hbm, fp_sram=fp)
        loops.append(_median_time(lambda: machine.advance(1 << 62), 1)[0])
    loop = _median(loops)
    print(f"warm path: run() of the shipped example ({result.instructions} instructions) through the Python API: "
          f"median {t.wall * 1e3:.2f} ms wall, {t.cpu * 1e3:.2f} ms CPU per run ({n} runs); of which setting up "
          f"the machine (preloads included) {setup.cpu * 1e3:.2f} ms, the run loop {loop.cpu * 1e3:.2f} ms")
    scalar = assemble(SCALAR_HEAVY.format(outer=200 if args.quick else 2000))
    t, res = _median_time(lambda: run(scalar, settings=settings, raise_on_error=True), max(args.repeats, 3))
    print(f"scalar/control loop: {res.instructions:,} instructions: {res.instructions / t.wall / 1e6:.1f} M "
          f"instructions/s wall, {res.instructions / t.cpu / 1e6:.1f} M/s CPU (median of {max(args.repeats, 3)})")


def cold(args) -> None:
    example = [str(EXAMPLE / "program.asm"), "--hbm", str(EXAMPLE / "hbm.bin"), "--fpsram",
               str(EXAMPLE / "fp_sram.bin"), "--json", "--quiet"]
    with tempfile.TemporaryDirectory() as cache:
        t, _ = _emulate(example, dict(os.environ, NUMBA_CACHE_DIR=cache))
    print(f"first run on an empty numba cache (compiles the run loop, runs the example): {t.wall:.1f} s wall, "
          f"{t.cpu:.1f} s CPU")
    with tempfile.TemporaryDirectory() as cache:
        t, _ = _emulate(["--warmup", "--json"], dict(os.environ, NUMBA_CACHE_DIR=cache))
    print(f"`emulate --warmup` on an empty cache (every entry point, the static estimator too): {t.wall:.1f} s wall, "
          f"{t.cpu:.1f} s CPU")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=None, help="runs per program (default 3; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="programs 20x smaller, one run each")
    ap.add_argument("--only", metavar="SUBSTRING", help="only the large programs whose name contains this")
    ap.add_argument("--cold", action="store_true", help="also measure the first run on an empty numba cache")
    args = ap.parse_args()
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    from emulator.warmup import warm_up
    warm_up()
    with tempfile.TemporaryDirectory() as tmp:
        large_programs(args, Path(tmp))
    start_up(args)
    warm_path(args)
    if args.cold:
        cold(args)


if __name__ == "__main__":
    main()
