"""`emulate`: run a PLENA program from the command line.

    emulate PROG.asm|PROG.mem [--hbm F] [--fpsram F] [--intsram F] [--vram F] [--settings F]
            [--set KEY=VALUE ...] [--hbm-model hbm2|analytic] [--hbm-size N] [--out DIR]
            [--full-dumps] [--json] [--max-instructions N] [--max-seconds S] [--profile ...]

Exit status: 0 success, 2 bad input (program, images, settings, arguments, output paths), 130 Ctrl-C, 3 the program
aborted (the reference would panic), 4 a run budget was exhausted.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import sys
import time
from pathlib import Path

from .cli_args import UNBOUNDED_NOTE, positive_int, positive_seconds
from .errors import BudgetExceeded, InputError
from .settings import SettingsError, load_settings

EXIT_OK, EXIT_INPUT, EXIT_EMULATION, EXIT_BUDGET = 0, 2, 3, 4
EXIT_INTERRUPTED = 130   # 128 + SIGINT, as shells report a Ctrl-C
DUMP_NAMES = ("vram_dump.bin", "mram_dump.bin", "fpsram_dump.bin", "intsram_dump.bin")

_SIZE_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes from `123`, `64K`, `16G`, `1GiB`, `512MB` (binary multiples, like the reference's --hbm-size)."""
    t = text.strip().upper().replace("IB", "").rstrip("B")
    num = t.rstrip("KMGT")
    suffix = t[len(num):]
    if not num.isdigit() or suffix not in _SIZE_SUFFIX:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 1048576, 64K, 16G, 1GiB)")
    return int(num) * _SIZE_SUFFIX[suffix]


def _parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SettingsError(f"--set expects KEY=VALUE, got {item!r}")
        value = value.strip()
        try:
            out[key.strip()] = int(value, 0)
        except ValueError:
            out[key.strip()] = value
    return out


class _NeedsFullParser(Exception):
    """The quick parse met something only the full parser (tool flags, help, errors) handles."""


class _QuickParser(argparse.ArgumentParser):
    def error(self, message: str):
        raise _NeedsFullParser(message)


def _optional_module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:  # pragma: no cover - the profiler and debugger ship with the emulator
        return None


def _tools() -> tuple:
    """(profiler.cli, debugger.trace): the profiling flags and the instruction trace live with their
    packages (one place each); imported only when a run asks for them."""
    return _optional_module("profiler.cli"), _optional_module("debugger.trace")


def build_parser(*, full: bool = True, parser_class: type = argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The `emulate` parser; `full=False` leaves out the profiler's and debugger's flags (and imports)."""
    p = parser_class(
        prog="emulate", add_help=full,
        description="Run a PLENA program (ASM or 0x%%08X machine code) bit- and cycle-exactly like the "
                    "reference transactional emulator; print cycles, instructions and HBM traffic; write "
                    "the reference's memory dumps.",
        epilog="Exit status: 0 success, 2 bad input (also an output path that cannot be written: it is "
               "checked before the run), 3 the program aborted (where the reference panics), 4 a run budget "
               "was exhausted, 130 interrupted.  A program without instructions runs nothing in 0 cycles, as in "
               "the reference.  "
               + UNBOUNDED_NOTE)
    p.add_argument("program", type=Path, nargs="?",
                   help="program: .asm (assembled here) or .mem (one 0x%%08X word per line)")
    p.add_argument("--warmup", action="store_true",
                   help="compile the numba core now (once per install; a run on a cold cache does it "
                        "otherwise), then run PROGRAM if one is given")
    g = p.add_argument_group("inputs (the reference's file formats)")
    g.add_argument("--hbm", type=Path, help="HBM preload: raw bytes from address 0 (MXFP8 tensors)")
    g.add_argument("--fpsram", type=Path, help="FP SRAM preload: IEEE float16 little-endian, up to 1024 entries")
    g.add_argument("--intsram", type=Path, help="INT SRAM preload: uint32 little-endian, up to 1024 entries")
    g.add_argument("--vram", type=Path, help="VRAM preload: bf16 little-endian, rows of VLEN lanes")
    s = p.add_argument_group("settings")
    s.add_argument("--settings", type=Path,
                   help="plena_settings.toml (its [TRANSACTIONAL] table); default: the shipped settings")
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set MLEN=32 --set LATENCY.VECTOR_ADD_CYCLES.dc_lib_en=2")
    s.add_argument("--hbm-model", choices=("hbm2", "analytic"),
                   help="HBM timing model: hbm2 (cycle-exact, default) or analytic (quick estimate)")
    s.add_argument("--timing", choices=("sequential", "overlapped"),
                   help="sequential: the reference's timing (default); overlapped: also compute the "
                        "decoupled-units model (DMA in parallel with compute, stall attribution; "
                        "README 'Overlapped timing'), parameters from the settings' OVERLAP table")
    s.add_argument("--hbm-size", type=parse_size, metavar="N",
                   help="HBM capacity in bytes (K/M/G/T suffixes), overriding CONFIG.HBM_SIZE")
    s.add_argument("--reference-fallback", action="store_true",
                   help="like the reference, use its built-in defaults for the whole table when the "
                        "settings file lacks a key (default: report the missing key)")
    o = p.add_argument_group("outputs")
    o.add_argument("--out", type=Path, metavar="DIR",
                   help="write vram_dump.bin, mram_dump.bin, fpsram_dump.bin, intsram_dump.bin into DIR")
    o.add_argument("--full-dumps", action="store_true",
                   help="write every VRAM row and MRAM tile like the reference (its VRAM dump is 512 MiB "
                        "with the shipped settings); default: stop after the last non-zero row/tile")
    o.add_argument("--json", action="store_true",
                   help="print one JSON object: cycles, instructions, hbm_bytes_read, hbm_bytes_written, "
                        "hbm_model, wall_seconds, dumps, and error {kind, pc, opcode, line, message} on failure")
    o.add_argument("--quiet", "-q", action="store_true", help="no progress indication on stderr")
    b = p.add_argument_group("budgets (safety stops, not reference behaviour)", UNBOUNDED_NOTE)
    b.add_argument("--max-instructions", type=positive_int, metavar="N",
                   help="stop after N dynamic instructions (N >= 1; default: no limit)")
    b.add_argument("--max-seconds", type=positive_seconds, metavar="S",
                   help="stop after S seconds of wall time (S > 0; default: no limit)")
    if full:
        profiler_cli, trace_cli = _tools()
        if profiler_cli is not None:
            profiler_cli.add_profile_args(p)
        if trace_cli is not None:
            trace_cli.add_trace_args(p)
    return p


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, object, object]:
    """(args, profiler.cli or None, debugger.trace or None).  Most runs use neither tool's flags, so
    a parser without them is tried first: the profiler, the debugger and rich are imported only when
    a flag, --help or an error needs the full parser."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args, extra = build_parser(full=False, parser_class=_QuickParser).parse_known_args(argv)
        if not extra and (args.program is not None or args.warmup):
            return args, None, None
    except _NeedsFullParser:
        pass
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.program is None and not args.warmup:
        parser.error("the following arguments are required: program")
    return (args, *_tools())


class _Progress:
    """A one-line progress indication on stderr for long runs (only on a terminal)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.shown = False

    def __call__(self, instructions: int, cycles: int) -> None:
        if self.enabled:
            sys.stderr.write(f"\r  {instructions:,} instructions, {cycles:,} cycles ...")
            sys.stderr.flush()
            self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * 60 + "\r")
            sys.stderr.flush()


OVERLAP_TRACE_LIMIT = 1 << 20   # instructions whose overlapped start/end the terminal lanes use


def _report_text(summary: dict, dumps: dict) -> str:
    lines = [
        f"cycles            {summary['cycles']:,}",
        f"instructions      {summary['instructions']:,}",
        f"hbm bytes read    {summary['hbm_bytes_read']:,}",
        f"hbm bytes written {summary['hbm_bytes_written']:,}",
        f"hbm model         {summary['hbm_model']}",
        f"wall time         {summary['wall_seconds']:.3f} s",
    ]
    for name, path in dumps.items():
        lines.append(f"wrote             {path}")
    return "\n".join(lines)


def _warm_up(as_json: bool) -> None:
    from .warmup import warm_up

    report = warm_up()
    if as_json:
        print(json.dumps({"warmup": {"seconds": round(report.seconds, 3), "compiled": report.was_cold,
                                     "estimator": report.estimator}}))
    else:
        what = "compiled the numba core" if report.was_cold else "the numba core was already compiled"
        print(f"emulate: {what} ({report.seconds:.1f} s)", file=sys.stderr)


def settings_from_args(args: argparse.Namespace):
    """The Settings the settings flags of build_parser() ask for (raises SettingsError)."""
    overrides = _parse_set(args.overrides)
    if args.hbm_model:
        overrides["hbm_model"] = args.hbm_model
    if args.hbm_size is not None:
        overrides["HBM_SIZE"] = args.hbm_size
    if getattr(args, "timing", None):
        overrides["timing"] = args.timing
    return load_settings(args.settings, overrides=overrides or None,
                         missing="reference-defaults" if args.reference_fallback else "error")


def main(argv: list[str] | None = None) -> int:
    try:
        return _emulate(argv)
    except KeyboardInterrupt:
        print("emulate: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def console_main() -> None:
    """The `emulate` command: main(), then the process ends at once.  The interpreter's teardown
    (freeing every module of numba, numpy and pydantic, and the run's machine state: 0.05 s after
    the shipped example, 0.2-0.35 s after a large program) does nothing a finished command needs:
    every output file is closed by then, and stdout and stderr are flushed here."""
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # e.g. a closed pipe: the status Python itself gives a failed flush at exit
        code = code or 120
    os._exit(code)


def resume_gc() -> None:
    """Turn the cyclic garbage collector back on if the package paused it for the command's imports
    (emulator/__init__.py), with every object made so far frozen: they live as long as the process,
    so later collections need not walk them."""
    import emulator
    if emulator._GC_PAUSED_FOR_IMPORTS:
        emulator._GC_PAUSED_FOR_IMPORTS = False
        gc.freeze()
        gc.enable()


def _emulate(argv: list[str] | None) -> int:
    resume_gc()
    args, profiler_cli, trace_cli = parse_args(argv)
    if args.warmup:
        _warm_up(args.json and args.program is None)
        if args.program is None:
            return EXIT_OK
    from .asm import load_program
    from .images import write_dumps
    from .outputs import check_output_dir
    from .runner import run

    def fail_input(exc: Exception) -> int:
        if args.json:
            print(json.dumps({"error": {"kind": "input", "pc": None, "opcode": None, "line": getattr(exc, "line_no", None),
                                        "message": str(exc)}}))
        else:
            print(f"emulate: error: {exc}", file=sys.stderr)
        return EXIT_INPUT

    try:
        settings = settings_from_args(args)
        program = load_program(args.program)
        # Outputs are checked before the run: a long run must not end in an unwritable path.
        if args.out is not None:
            check_output_dir(args.out, DUMP_NAMES)
        if profiler_cli is not None:
            profiler_cli.check_profile_outputs(args)
    except (InputError, SettingsError) as exc:
        return fail_input(exc)
    if not args.json:
        for w in program.warnings:
            print(str(w), file=sys.stderr)
        for w in settings.warnings:
            print(f"warning: {w}", file=sys.stderr)

    progress = _Progress(not args.quiet and not args.json)
    profiling = profiler_cli is not None and profiler_cli.profiling_requested(args)
    try:
        extra = profiler_cli.profile_run_kwargs(args, program) if profiling else {}
        if settings.timing == "overlapped":  # the report's unit lanes need the per-instruction record
            extra["trace_limit"] = max(extra.get("trace_limit", 0), OVERLAP_TRACE_LIMIT)
        trace_summary = None
        if trace_cli is not None and args.trace_instructions is not None:
            result, trace_summary = trace_cli.traced_run(args, program, settings, hbm=args.hbm, fp_sram=args.fpsram,
                                                         int_sram=args.intsram, vram=args.vram, **extra)
        else:
            result = run(program, settings=settings, hbm=args.hbm, fp_sram=args.fpsram, int_sram=args.intsram,
                         vram=args.vram, max_instructions=args.max_instructions, max_wall_seconds=args.max_seconds,
                         progress=progress, **extra)
    except (InputError, OSError) as exc:
        progress.close()
        return fail_input(exc)
    except MemoryError:
        progress.close()
        return fail_input(InputError("not enough memory for this run (settings sizes or input files too large)"))
    progress.close()

    dumps: dict = {}
    summary = result.summary()
    if args.out is not None and result.error is None:
        st = result.state
        t0 = time.perf_counter()
        try:
            paths = write_dumps(args.out, vram_u16=st.vram[: st.vram_rows_used], vram_total_rows=settings.VECTOR_SRAM_SIZE,
                                mram_f32=st.mram[: st.mram_tiles_used] if not args.full_dumps else st.mram,
                                fpsram_bf16=st.fp_sram, intsram_u32=st.int_sram, trim=not args.full_dumps,
                                mram_total_tiles=settings.mram_tiles if args.full_dumps else None)
        except InputError as exc:
            return fail_input(exc)
        dumps = {name: str(path) for name, path in paths.items()}
        summary["dump_seconds"] = round(time.perf_counter() - t0, 6)
    summary["dumps"] = dumps
    if trace_summary is not None:
        summary["trace"] = {"path": str(args.trace_instructions), "records": trace_summary.records,
                            "truncated": trace_summary.truncated}
        print(trace_summary.message(), file=sys.stderr)

    if profiling and result.error is None:
        try:
            # With --json the table goes to stderr so stdout stays one JSON object.
            profiler_cli.handle_profile(args, result, out=sys.stderr if args.json else sys.stdout)
        except (InputError, OSError) as exc:
            return fail_input(exc)

    if args.json:
        print(json.dumps(summary))
    elif result.error is None:
        print(_report_text(summary, dumps))
        if result.overlap is not None:
            print()
            from .timing.report import overlap_report_text  # only overlapped runs need it
            print(overlap_report_text(result.overlap, result.cycles, program.source_ref))
    if result.error is not None:
        if not args.json:
            print(f"emulate: {result.error}", file=sys.stderr)
            print(f"  after {result.instructions:,} instructions, {result.cycles:,} cycles", file=sys.stderr)
        return EXIT_BUDGET if isinstance(result.error, BudgetExceeded) else EXIT_EMULATION
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    console_main()
