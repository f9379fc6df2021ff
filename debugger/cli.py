"""`plena-debug`: an interactive, gdb-style debugger for PLENA programs.

    plena-debug PROG.asm|PROG.mem [the emulate input and settings flags] [-x FILE] [--dap]

Commands: see `help` (debugger/commands.py).  Command history is kept in ~/.plena_debug_history
(PLENA_DEBUG_HISTORY overrides the path); Tab completes commands, registers, memories, opcodes
and section names.  An empty line repeats the last step/next/continue.  With --dap it speaks
the Debug Adapter Protocol on stdin/stdout instead (debugger/dap.py).

Exit status: 0 normal, 2 bad input (program, images, settings).
"""

from __future__ import annotations

import cmd
import os
import sys
from pathlib import Path

from emulator.cli import build_parser, settings_from_args
from emulator.errors import InputError, PlenaError
from emulator.settings import SettingsError

from .commands import ALIASES, COMMANDS, Commands
from .session import Session

REPEATABLE = {"step", "next", "continue", "finish"}
HISTORY_LENGTH = 1000


def _history_path() -> Path:
    return Path(os.environ.get("PLENA_DEBUG_HISTORY", Path.home() / ".plena_debug_history"))


class DebugShell(cmd.Cmd):
    prompt = "(plena) "

    def __init__(self, session: Session, stdin=None, stdout=None):
        super().__init__(stdin=stdin, stdout=stdout)
        self.commands = Commands(session)
        self.session = session
        self.intro = (f"plena-debug: {session.program.name or 'program'}, {len(session.program)} instructions. "
                      f"Type 'help' for commands.\n{self.commands.cmd_where('')}")

    def onecmd(self, line: str) -> bool:
        if not line.strip():
            return self.emptyline()
        word = line.strip().split(" ", 1)[0].lower()
        if ALIASES.get(word, word) == "quit":
            return True
        if line.strip() == "EOF":
            self.stdout.write("\n")
            return True
        self.lastcmd = line
        try:
            out = self.commands.execute(line)
        except (PlenaError, OSError) as exc:
            out = f"error: {exc}"
        if out:
            self.stdout.write(out + "\n")
        return False

    def emptyline(self) -> bool:
        word = self.lastcmd.strip().split(" ", 1)[0].lower() if self.lastcmd else ""
        if ALIASES.get(word, word) in REPEATABLE:
            return self.onecmd(self.lastcmd)
        return False

    def completenames(self, text, *ignored):
        return self.commands.completions("", text)

    def completedefault(self, text, line, begidx, endidx):
        return self.commands.completions(line[:begidx], text)

    def complete(self, text, state):
        # cmd.Cmd only completes arguments of commands with a do_* method; ours have none.
        if state == 0:
            import readline
            line = readline.get_line_buffer()
            begidx = readline.get_begidx()
            self.completion_matches = self.commands.completions(line[:begidx], text)
        try:
            return self.completion_matches[state]
        except IndexError:
            return None

    def get_names(self):
        return [f"do_{c}" for c in COMMANDS]


def _load_history() -> None:
    try:
        import readline
    except ImportError:  # pragma: no cover - no readline on this platform
        return
    readline.set_history_length(HISTORY_LENGTH)
    readline.set_completer_delims(" \t\n=,")
    try:
        readline.read_history_file(_history_path())
    except OSError:
        pass


def _save_history() -> None:
    try:
        import readline
        readline.write_history_file(_history_path())
    except (ImportError, OSError):
        pass


def build_debug_parser():
    p = build_parser()
    p.prog = "plena-debug"
    p.description = ("Debug a PLENA program: breakpoints (pc, line, section, opcode, cycle, instruction count, "
                     "register conditions), watchpoints (VRAM rows, MRAM tiles, FP/INT SRAM, HBM bytes), stepping "
                     "and state inspection.  Takes the same inputs as emulate.")
    g = p.add_argument_group("debugger")
    g.add_argument("--dap", action="store_true",
                   help="speak the Debug Adapter Protocol on stdin/stdout (for VS Code and other DAP clients)")
    g.add_argument("-x", "--commands", type=Path, metavar="FILE", help="run the commands in FILE first")
    g.add_argument("--batch", action="store_true", help="exit after the -x commands instead of prompting")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--dap" in argv and not any(a.endswith((".asm", ".mem", ".hex")) for a in argv):
        from .dap import serve
        return serve(sys.stdin.buffer, sys.stdout.buffer)
    parser = build_debug_parser()
    args = parser.parse_args(argv)
    if args.dap:
        from .dap import serve
        return serve(sys.stdin.buffer, sys.stdout.buffer, default_program=args.program)
    if args.program is None:
        parser.error("a program (.asm or .mem) is required, unless --dap")
    from emulator.asm import load_program
    try:
        settings = settings_from_args(args)
        program = load_program(args.program)
        session = Session(program, settings=settings, hbm=args.hbm, fp_sram=args.fpsram, int_sram=args.intsram,
                          vram=args.vram)
    except (InputError, SettingsError, OSError) as exc:
        print(f"plena-debug: error: {exc}", file=sys.stderr)
        return 2
    shell = DebugShell(session)
    if args.commands is not None:
        try:
            script = args.commands.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            print(f"plena-debug: error: cannot read {str(args.commands)!r}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        for line in script:
            if line.strip() and not line.lstrip().startswith("#"):
                print(f"{shell.prompt}{line}")
                if shell.onecmd(line):
                    return 0
        if args.batch:
            return 0
    interactive = sys.stdin.isatty()
    if interactive:
        _load_history()
    try:
        shell.cmdloop()
    except KeyboardInterrupt:
        print()
    finally:
        if interactive:
            _save_history()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
