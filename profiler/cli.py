"""`plena-profile`: profile a run, estimate a program statically, or re-render a saved profile.

    plena-profile run PROG.asm [--settings S] [--hbm F] [--fp-sram F] [--int-sram F] [--vram F]
                      [--trace out.json] [--profile-json p.json] [--profile-csv p.csv]
                      [--stage-profile-out stage.json] [--sections comments|blocks|markers|pc] ...
    plena-profile static PROG.asm [--settings S] [--int-sram F] [--profile-json p.json] ...
    plena-profile show SAVED.json [--profile-csv p.csv] [--max-sections N]
    plena-profile html SAVED.json -o report.html     (one self-contained HTML page, profiler/html.py)

The `emulate` command shares the profiling flags: it calls `add_profile_args(parser)`, merges
`profile_run_kwargs(args, program)` into its `run(...)` call and then `handle_profile(args, result)`.
Exit status: 0 ok, 1 the program aborted (its profile is still written), 2 bad input (output
paths are checked before the run), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, TextIO

from emulator.cli_args import UNBOUNDED_NOTE, positive_int, positive_seconds
from emulator.errors import PlenaError
from emulator.program import Program
from emulator.result import RunResult

from .aggregate import DEFAULT_CLOCK_HZ, Profile, build_profile, profile_run
from .report import load_profile, make_console, print_report, write_csv, write_json
from .sections import SECTION_MODES, Normalization, build_sections
from .stage_profile import labels_for, stage_profile_document, to_json_text, write_stage_profile
from .trace import DEFAULT_MAX_EVENTS, DEFAULT_PER_INSTRUCTION_LIMIT, DEFAULT_TRACE_LIMIT, build_trace, write_trace

_CLOCK = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgG]?)(?:[hH][zZ])?\s*$")
_SIZE = re.compile(r"^\s*([0-9]+)\s*([kKmMgGtT]?)(?:i?[bB])?\s*$")
_SCALE = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}
_BINARY = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_clock(text: str) -> float:
    """`1e9`, `1GHz`, `800MHz`, `250 kHz` -> Hz."""
    m = _CLOCK.match(text)
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"bad clock {text!r}: give Hz, e.g. 1e9, 1GHz or 800MHz")
    return float(m.group(1)) * _SCALE[m.group(2).lower()]


def parse_size(text: str) -> int:
    """Bytes as the reference's --hbm-size: a number with an optional K/M/G/T (binary) suffix."""
    m = _SIZE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: bytes, optionally with K, M, G or T (KiB, ...)")
    return int(m.group(1)) * _BINARY[m.group(2).lower()]


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {v}")
    return v


# ----------------------------------------------------------------------------------- shared flags

def add_profile_args(parser: argparse.ArgumentParser, *, with_switch: bool = True) -> None:
    """The profiling flags (shared by `emulate` and `plena-profile run`)."""
    g = parser.add_argument_group("profiling")
    if with_switch:
        g.add_argument("--profile", action="store_true",
                       help="print the per-section cycle profile of the run")
    g.add_argument("--trace", metavar="OUT.json",
                   help="write a Chrome-trace/Perfetto timeline (open in ui.perfetto.dev or chrome://tracing)")
    g.add_argument("--profile-json", metavar="OUT.json", help="write the profile as JSON (profiler/SCHEMA.md)")
    g.add_argument("--profile-csv", metavar="OUT.csv", help="write the profile as CSV")
    g.add_argument("--html", metavar="OUT.html",
                   help="write a self-contained HTML report (charts and source heat view; opens offline)")
    g.add_argument("--stage-profile-out", metavar="OUT.json",
                   help="write the reference's --stage-profile-asm JSON (labels from the program's ASM)")
    g.add_argument("--stage-profile-asm", metavar="ASM",
                   help="ASM to take the stage labels from (default: the program's own ASM; needed for .mem)")
    g.add_argument("--sections", choices=SECTION_MODES, default=None,
                   help="what a section is: the first line of the nearest comment block (blocks, default for "
                        "ASM), the nearest `;` comment (comments), only `; @section` markers, or every pc "
                        "(default for machine code)")
    g.add_argument("--section-normalize", metavar="STEPS", default="basic",
                   help="clean comment labels: basic (default), all, or a comma list of brackets,numbers")
    g.add_argument("--clock", type=parse_clock, default=DEFAULT_CLOCK_HZ, metavar="HZ",
                   help="clock for converting cycles to time (default 1GHz, as the reference)")
    g.add_argument("--trace-limit", type=_positive_int, default=DEFAULT_TRACE_LIMIT, metavar="N",
                   help=f"instructions recorded for the timeline (default {DEFAULT_TRACE_LIMIT:,}); later ones "
                        "are shown aggregated per section")
    g.add_argument("--trace-max-events", type=_positive_int, default=DEFAULT_MAX_EVENTS, metavar="N",
                   help=f"cap on timeline slices (default {DEFAULT_MAX_EVENTS:,})")
    g.add_argument("--trace-per-instruction", type=_positive_int, default=DEFAULT_PER_INSTRUCTION_LIMIT,
                   metavar="N", help="one slice per instruction when at most N are recorded, else per "
                                     f"unit-run (default {DEFAULT_PER_INSTRUCTION_LIMIT:,})")
    g.add_argument("--peak-macs", type=float, default=None, metavar="MACS",
                   help="peak matrix MACs per cycle for utilisation (default: derived from the settings)")
    g.add_argument("--peak-hbm", type=float, default=None, metavar="BYTES",
                   help="peak HBM bytes per cycle for utilisation (default 128)")
    g.add_argument("--top", type=_positive_int, default=30, metavar="N", help="rows of the section table")


def check_profile_outputs(args: argparse.Namespace) -> None:
    """OutputError (bad input) unless every file the profiling flags name can be written; called
    before the run."""
    from emulator.outputs import check_output_file

    for flag in ("trace", "profile_json", "profile_csv", "html", "stage_profile_out", "output"):
        path = getattr(args, flag, None)
        if path:
            check_output_file(path, "--" + flag.replace("_", "-"))


def profiling_requested(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "profile", False) or args.trace or args.profile_json or args.profile_csv
                or args.html or args.stage_profile_out or args.stage_profile_asm)


def profile_run_kwargs(args: argparse.Namespace, program: Program) -> dict[str, Any]:
    """Extra `run(...)` keyword arguments the requested outputs need (a trace, stage label maps)."""
    out: dict[str, Any] = {}
    if args.trace:
        out["trace_limit"] = args.trace_limit
    if args.stage_profile_out or args.stage_profile_asm:
        asm = Path(args.stage_profile_asm).read_text(encoding="utf-8") if args.stage_profile_asm else None
        _, maps = labels_for(program, asm)
        out["seconds_labels"] = maps.as_list()
    return out


def _sections(args: argparse.Namespace, program: Program):
    return build_sections(program, args.sections, Normalization.parse(args.section_normalize))


def _profile_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"clock_hz": args.clock, "peak_macs_per_cycle": args.peak_macs,
            "peak_hbm_bytes_per_cycle": args.peak_hbm}


def _emit(profile: Profile, args: argparse.Namespace, out: TextIO, *, print_table: bool) -> None:
    if args.profile_json:
        write_json(profile, args.profile_json)
    if args.profile_csv:
        write_csv(profile, args.profile_csv)
    if args.html:
        from .html import write_report

        write_report(profile, args.html)
    if print_table:
        print_report(profile, make_console(out), max_sections=args.top)


def handle_profile(args: argparse.Namespace, result: RunResult, out: TextIO | None = None) -> Profile | None:
    """Produce the outputs the profiling flags ask for from a finished run."""
    if not profiling_requested(args):
        return None
    out = out or sys.stdout
    smap = _sections(args, result.program)
    profile = profile_run(result, sections=smap, **_profile_kwargs(args))
    # Files first: the table goes to a stream that may be closed early (`| head`).
    if args.stage_profile_out or args.stage_profile_asm:
        asm = Path(args.stage_profile_asm).read_text(encoding="utf-8") if args.stage_profile_asm else None
        labels, maps = labels_for(result.program, asm)
        seconds = list(result.label_seconds[:3]) if len(result.label_seconds) >= 3 else None
        text = to_json_text(stage_profile_document(result, labels, maps, seconds))
        write_stage_profile(args.stage_profile_out or "stage_profile.json", text)
    if args.trace:
        doc = build_trace(result, smap, clock_hz=args.clock, per_instruction_limit=args.trace_per_instruction,
                          max_events=args.trace_max_events)
        write_trace(doc, args.trace)
    _emit(profile, args, out, print_table=bool(getattr(args, "profile", False)))
    return profile


# ----------------------------------------------------------------------------------- plena-profile

def _add_machine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("program", help="program: .asm (ASM) or .mem (machine code)")
    p.add_argument("--settings", metavar="TOML", help="plena_settings.toml (default: the shipped settings)")
    p.add_argument("--reference-defaults", action="store_true",
                   help="like the reference, fall back to its built-in defaults when the settings file lacks a key")
    p.add_argument("--hbm-model", choices=("hbm2", "analytic"), default=None, help="HBM timing model")
    p.add_argument("--hbm-size", type=parse_size, default=None, metavar="BYTES",
                   help="HBM capacity (like the reference's --hbm-size)")
    p.add_argument("--int-sram", metavar="FILE", help="INT SRAM preload (u32 LE)")


def _load_inputs(args: argparse.Namespace):
    from emulator.asm import load_program
    from emulator.settings import load_settings

    program = load_program(args.program)
    settings = load_settings(args.settings, missing="reference-defaults" if args.reference_defaults else "error")
    overrides: dict[str, Any] = {}
    if args.hbm_model:
        overrides["hbm_model"] = args.hbm_model
    if args.hbm_size is not None:
        overrides["HBM_SIZE"] = args.hbm_size
    if overrides:
        settings = settings.with_overrides(overrides)
    return program, settings


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="plena-profile", description="Where do the cycles of a PLENA program go?")
    sub = ap.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a program and profile it")
    _add_machine_args(r)
    r.add_argument("--hbm", metavar="FILE", help="HBM preload (raw bytes from address 0)")
    r.add_argument("--fp-sram", metavar="FILE", help="FP SRAM preload (f16 LE)")
    r.add_argument("--vram", metavar="FILE", help="VRAM preload (bf16 LE rows)")
    r.add_argument("--max-instructions", type=positive_int, default=None, metavar="N",
                   help="stop after N dynamic instructions (default: no limit)")
    r.add_argument("--max-seconds", type=positive_seconds, default=None, metavar="S",
                   help=f"stop after S seconds of wall time (default: no limit). {UNBOUNDED_NOTE}")
    r.add_argument("--quiet", action="store_true", help="do not print the table")
    add_profile_args(r, with_switch=False)

    s = sub.add_parser("static", help="estimate a program's cycles without executing its data path")
    _add_machine_args(s)
    s.add_argument("--max-instructions", type=positive_int, default=None, metavar="N",
                   help="stop the estimate after N dynamic instructions")
    s.add_argument("--max-seconds", type=positive_seconds, default=None, metavar="S",
                   help="stop the estimate after S seconds of wall time")
    s.add_argument("--quiet", action="store_true", help="do not print the table")
    add_profile_args(s, with_switch=False)

    sh = sub.add_parser("show", help="re-render a profile saved with --profile-json")
    sh.add_argument("saved", help="a plena-profile JSON file")
    sh.add_argument("--profile-csv", metavar="OUT.csv", help="also write it as CSV")
    sh.add_argument("--top", type=_positive_int, default=30, metavar="N", help="rows of the section table")

    h = sub.add_parser("html", help="write a saved profile as one self-contained HTML report")
    h.add_argument("saved", help="a plena-profile JSON file")
    h.add_argument("-o", "--output", metavar="OUT.html", required=True, help="where to write the report")
    h.add_argument("--title", default=None, help="page title (default: the program's name)")
    return ap


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    try:
        return _profile(argv, out)
    except KeyboardInterrupt:
        print("plena-profile: interrupted", file=sys.stderr)
        return 130


def _profile(argv: list[str] | None, out: TextIO | None) -> int:
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    try:
        check_profile_outputs(args)
        if args.command == "show":
            profile = load_profile(args.saved)
            print_report(profile, make_console(out), max_sections=args.top)
            if args.profile_csv:
                write_csv(profile, args.profile_csv)
            return 0
        if args.command == "html":
            from .html import write_report

            write_report(load_profile(args.saved), args.output, args.title)
            print(f"wrote {args.output}", file=out)
            return 0
        program, settings = _load_inputs(args)
        if args.command == "static":
            from .static import estimate

            est = estimate(program, settings, int_sram=args.int_sram, max_instructions=args.max_instructions,
                           max_wall_seconds=args.max_seconds)
            profile = build_profile(program, est.settings, est.counters, kind="static", error=est.error,
                                    estimate=est.estimate_info(), hbm_model=est.hbm_model,
                                    sections=_sections(args, program), wall_seconds=est.wall_seconds,
                                    **_profile_kwargs(args))
            _emit(profile, args, out, print_table=not args.quiet)
            if args.trace or args.stage_profile_out or args.stage_profile_asm:
                print("note: --trace and --stage-profile-* need a run (plena-profile run)", file=sys.stderr)
            return 1 if est.error else 0
        from emulator.runner import run

        result = run(program, settings=settings, hbm=args.hbm, fp_sram=args.fp_sram, int_sram=args.int_sram,
                     vram=args.vram, max_instructions=args.max_instructions, max_wall_seconds=args.max_seconds,
                     **profile_run_kwargs(args, program))
        args.profile = not args.quiet
        handle_profile(args, result, out)
        if result.error is not None:
            print(f"error: {result.error}", file=sys.stderr)
            return 1
        return 0
    except (PlenaError, ValueError, OSError) as exc:
        print(f"plena-profile: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print("plena-profile: error: not enough memory for this run (settings sizes or input files too large)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
