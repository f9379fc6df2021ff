"""Command-line assembler and disassembler.

    plena-asm PROG.asm [-o PROG.mem]     machine code, one `0x%08X` word per line (the reference's
                                         format); warnings go to stderr
    plena-disasm PROG.mem [-o PROG.asm]  canonical ASM, one line per word

`-` reads standard input.  Exit status: 0 on success, 2 on bad input (the error is printed on
stderr), which is also argparse's status for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .asm import MACHINE_CODE_SUFFIXES, assemble, disassemble, parse_mem
from .errors import InputError

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def _read(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot read {source!r}: it is not UTF-8 text") from exc
    except OSError as exc:
        raise InputError(f"cannot read {source!r}: {exc.strerror or exc}") from exc


def _write(output: str | None, text: str) -> None:
    if output is None or output == "-":
        sys.stdout.write(text)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write {output!r}: {exc.strerror or exc}") from exc


def _name(source: str) -> str | None:
    return None if source == "-" else Path(source).stem


def asm_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="plena-asm",
        description="Assemble PLENA ASM into machine code (one 0x%08X word per line), "
                    "byte-identical to the PLENA compiler's assembler.",
    )
    parser.add_argument("source", help="ASM file ('-' for standard input)")
    parser.add_argument("-o", "--output", help="write the machine code here instead of standard output")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print warnings")
    parser.add_argument("--werror", action="store_true", help="treat warnings as errors (exit status 2)")
    args = parser.parse_args(argv)
    try:
        program = assemble(_read(args.source), name=_name(args.source))
        if not args.quiet or args.werror:
            for warning in program.warnings:
                print(f"{args.source}: {warning}", file=sys.stderr)
        if args.werror and program.warnings:
            print(f"{args.source}: {len(program.warnings)} warning(s) treated as errors", file=sys.stderr)
            return EXIT_BAD_INPUT
        _write(args.output, program.to_mem_text())
    except InputError as exc:
        print(f"{args.source}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


def disasm_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="plena-disasm",
        description="Disassemble PLENA machine code into canonical ASM (undecodable words become "
                    "`.word 0xXXXXXXXX ; reason`). A .asm input is assembled first (canonicalises it).",
    )
    parser.add_argument("source", help=f"machine-code file ({', '.join(MACHINE_CODE_SUFFIXES)} or any "
                                       "non-.asm name; '-' for standard input)")
    parser.add_argument("-o", "--output", help="write the ASM here instead of standard output")
    args = parser.parse_args(argv)
    try:
        text = _read(args.source)
        if Path(args.source).suffix.lower() == ".asm":
            program = assemble(text, name=_name(args.source))
        else:
            program = parse_mem(text, name=_name(args.source))
        _write(args.output, disassemble(program))
    except InputError as exc:
        print(f"{args.source}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(asm_main())
