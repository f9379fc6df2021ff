"""gdb-style debugger commands over a Session, as text in -> text out.

Shared by the interactive CLI (`plena-debug`) and the DAP server's `evaluate` (debug console).

    break 42 | break *12 | break line 42 | break section NAME | break opcode M_MM_WO
    break cycle 5000 | break instruction 100 | break if gp3 == 5 | break 42 if gp1 > 2
    tbreak ...          delete [ID] | disable ID | enable ID
    watch vram ROW[:COUNT] | watch mram TILE | watch fp_sram I[:N] | watch int_sram I[:N] | watch hbm ADDR[:N]
    step [N] | next | finish | continue
    print gp3 | print f1 | print regs | print vram ROW[:COUNT] | print mram TILE | print fp_sram I[:N]
    print int_sram I[:N] | print hbm ADDR ROWSxCOLS (an MXFP8 tensor)
    x vram|fp_sram|int_sram|hbm START [COUNT]   raw bits / bytes in hex
    set gp3 = 5 | set f1 = 0.5 | set vram ROW = V (fill) | set vram ROW = v0,v1,...
    info registers | info breakpoints | info loops | info sections
    list [LINE] | where | backtrace | compare ROW golden.npy [--atol A] [--rtol R]
"""

from __future__ import annotations

import re
import shlex

import numpy as np

from emulator.core.loop import HANDLERS
from emulator.errors import InputError

from .session import Session
from .stops import MEMORIES, Stop

COMMANDS = ("break", "tbreak", "delete", "disable", "enable", "watch", "step", "stepi", "next", "finish",
            "continue", "print", "x", "set", "info", "list", "where", "backtrace", "compare", "help", "quit")
ALIASES = {"b": "break", "s": "step", "si": "step", "n": "next", "c": "continue", "cont": "continue", "p": "print",
           "bt": "backtrace", "l": "list", "d": "delete", "i": "info", "q": "quit", "exit": "quit", "fin": "finish"}
REGISTER_WORDS = tuple([f"gp{i}" for i in range(16)] + [f"f{i}" for i in range(8)] + [f"a{i}" for i in range(16)]
                       + ["scale", "stride", "v_mask", "regs"])
INFO_TOPICS = ("registers", "breakpoints", "watchpoints", "loops", "sections")
LOCATION_WORDS = ("line", "pc", "section", "opcode", "cycle", "instruction", "if")
_SPAN = re.compile(r"^(\d+)(?::(\d+))?$")


class CommandError(InputError):
    """A command line that cannot be carried out (bad syntax, bad argument)."""


def _span(text: str, default_count: int = 1) -> tuple[int, int]:
    m = _SPAN.match(text.strip())
    if not m:
        raise CommandError(f"expected START[:COUNT], got {text!r}")
    return int(m.group(1)), int(m.group(2)) if m.group(2) else default_count


def _int(text: str, what: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise CommandError(f"{what} must be an integer, got {text!r}") from None


def _floats(values: np.ndarray) -> str:
    return np.array2string(np.asarray(values), precision=6, max_line_width=110, threshold=4096,
                           suppress_small=False, floatmode="maxprec")


class Commands:
    """Parses and runs one command line against `session`; returns the text to show."""

    def __init__(self, session: Session):
        self.session = session

    # ---------------------------------------------------------------- dispatch
    def execute(self, line: str) -> str:
        line = line.strip()
        if not line:
            return ""
        word, _, rest = line.partition(" ")
        name = ALIASES.get(word.lower(), word.lower())
        if name == "stepi":
            name = "step"
        if name not in COMMANDS:
            raise CommandError(f"unknown command {word!r} (try 'help')")
        if name == "quit":
            return ""
        return getattr(self, f"cmd_{name}")(rest.strip())

    # ---------------------------------------------------------------- breakpoints
    def parse_location(self, text: str) -> dict:
        """Keyword arguments of Session.break_at for a location (see the module docstring)."""
        cond = None
        m = re.search(r"(?:^|\s)if\s+(.+)$", text)
        if m:
            cond = m.group(1).strip()
            text = text[: m.start()].strip()
        words = text.split(None, 1)
        out: dict = {}
        if not words:
            if cond is None:
                raise CommandError("break needs a location or a condition, e.g. 'break 42', 'break if gp3 == 5'")
        elif words[0].startswith("*"):
            out["pc"] = _int(words[0][1:] + (words[1] if len(words) > 1 else ""), "pc")
        elif words[0].lower() in ("line", "pc", "section", "opcode", "cycle", "instruction"):
            if len(words) < 2:
                raise CommandError(f"break {words[0]} needs a value")
            key, value = words[0].lower(), words[1].strip()
            out[key] = value if key in ("section", "opcode") else _int(value, key)
        elif len(words) == 1 and re.fullmatch(r"\d+", words[0]):
            # gdb: a bare number is a source line; machine code has no lines, so it is a pc there
            key = "line" if self.session.program.source is not None else "pc"
            out[key] = int(words[0])
        elif len(words) == 1 and words[0].upper() in HANDLERS:
            out["opcode"] = words[0]
        else:
            out["section"] = text
        if cond is not None:
            out["condition"] = cond
        return out

    def cmd_break(self, rest: str, temporary: bool = False) -> str:
        bp = self.session.break_at(temporary=temporary, **self.parse_location(rest))
        return f"{'Temporary breakpoint' if temporary else 'Breakpoint'} {bp.describe()}"

    def cmd_tbreak(self, rest: str) -> str:
        return self.cmd_break(rest, temporary=True)

    def cmd_delete(self, rest: str) -> str:
        if not rest:
            self.session.delete()
            return "Deleted all breakpoints and watchpoints"
        for item in rest.split():
            self.session.delete(_int(item, "breakpoint id"))
        return f"Deleted {rest}"

    def cmd_disable(self, rest: str) -> str:
        for item in rest.split():
            self.session.enable(_int(item, "breakpoint id"), False)
        return f"Disabled {rest}"

    def cmd_enable(self, rest: str) -> str:
        for item in rest.split():
            self.session.enable(_int(item, "breakpoint id"), True)
        return f"Enabled {rest}"

    def cmd_watch(self, rest: str) -> str:
        parts = rest.split()
        if len(parts) != 2 or parts[0].lower().replace("-", "_") not in MEMORIES:
            raise CommandError(f"usage: watch {'|'.join(MEMORIES)} START[:COUNT]")
        first, count = _span(parts[1])
        w = self.session.watch(parts[0], first, count)
        return f"Watchpoint {w.describe()}"

    # ---------------------------------------------------------------- moving
    def cmd_step(self, rest: str) -> str:
        return self.show_stop(self.session.step(_int(rest, "step count") if rest else 1))

    def cmd_next(self, rest: str) -> str:
        return self.show_stop(self.session.next())

    def cmd_finish(self, rest: str) -> str:
        return self.show_stop(self.session.finish())

    def cmd_continue(self, rest: str) -> str:
        return self.show_stop(self.session.continue_())

    def show_stop(self, stop: Stop) -> str:
        lines = [stop.describe()]
        for hit in stop.watch_hits:
            rows = np.isin(np.arange(hit.watch.first, hit.watch.first + hit.watch.count), hit.changed)
            old, new = np.asarray(hit.old), np.asarray(hit.new)
            if old.ndim >= 1 and old.shape[0] == hit.watch.count and hit.watch.memory in ("vram", "mram"):
                old, new = old[rows], new[rows]
            lines.append(f"  old: {_floats(old)}")
            lines.append(f"  new: {_floats(new)}")
        return "\n".join(lines)

    # ---------------------------------------------------------------- reading and writing state
    def cmd_print(self, rest: str) -> str:
        s = self.session
        parts = rest.split()
        if not parts:
            raise CommandError("print what? e.g. 'print gp3', 'print vram 8:2', 'print regs'")
        what = parts[0].lower()
        if what in ("regs", "registers"):
            return self.cmd_info("registers")
        if what in ("pc", "cycle", "instructions"):
            return str(getattr(s, what))
        if what == "vram":
            first, count = _span(parts[1] if len(parts) > 1 else "")
            return _floats(s.vram_rows(first, count))
        if what == "mram":
            return _floats(s.mram_tile(_int(parts[1] if len(parts) > 1 else "", "tile")))
        if what in ("fp_sram", "fpsram"):
            first, count = _span(parts[1] if len(parts) > 1 else "")
            return _floats(s.fp_sram(first, count))
        if what in ("int_sram", "intsram"):
            first, count = _span(parts[1] if len(parts) > 1 else "")
            return str(s.int_sram(first, count).tolist())
        if what == "hbm":
            if len(parts) != 3 or "x" not in parts[2]:
                raise CommandError("usage: print hbm ADDR ROWSxCOLS (an MXFP8 tensor)")
            shape = tuple(_int(d, "dimension") for d in parts[2].lower().split("x"))
            return _floats(s.hbm_tensor(_int(parts[1], "address"), shape))
        return f"{rest.strip()} = {s.register(what)}"

    def cmd_x(self, rest: str) -> str:
        s = self.session
        parts = rest.split()
        if len(parts) < 2:
            raise CommandError("usage: x vram|mram|fp_sram|int_sram|hbm START [COUNT]")
        what, start = parts[0].lower(), _int(parts[1], "start")
        count = _int(parts[2], "count") if len(parts) > 2 else 1
        if what == "vram":
            return "\n".join(f"row {start + i}: " + " ".join(f"{int(v):04x}" for v in row)
                             for i, row in enumerate(s.vram_bits(start, count)))
        if what == "mram":
            tile = s.mram_tile(start).reshape(-1).view(np.uint32)
            return " ".join(f"{int(v):08x}" for v in tile[: max(count, 1) * s.settings.MLEN])
        if what in ("fp_sram", "fpsram"):
            s._check_range("FP SRAM entry", start, count, s.machine.fpsram.shape[0])
            return " ".join(f"{int(v):04x}" for v in s.machine.fpsram[start:start + count])
        if what in ("int_sram", "intsram"):
            return " ".join(f"{int(v):08x}" for v in s.int_sram(start, count))
        if what == "hbm":
            data = s.hbm_bytes(start, count)
            return "\n".join(f"{start + i:#010x}: " + data[i:i + 16].hex(" ") for i in range(0, len(data), 16))
        raise CommandError(f"unknown memory {what!r}")

    def cmd_set(self, rest: str) -> str:
        target, sep, value = rest.partition("=")
        if not sep:
            raise CommandError("usage: set REG = VALUE | set vram ROW = V[,V...]")
        target, value = target.strip(), value.strip()
        s = self.session
        if target.lower().startswith("vram"):
            row = _int(target.split()[1] if len(target.split()) > 1 else "", "row")
            vals = [float(v) for v in value.split(",")]
            s.set_vram_row(row, vals * s.settings.VLEN if len(vals) == 1 else vals)
            return f"vram {row} = {_floats(s.vram_rows(row)[0])}"
        try:
            number = int(value, 0)
        except ValueError:
            try:
                number = float(value)
            except ValueError:
                raise CommandError(f"not a number: {value!r}") from None
        s.set_register(target, number)
        return f"{target} = {s.register(target)}"

    def cmd_info(self, rest: str) -> str:
        s = self.session
        topic = rest.strip().lower()
        if topic in ("registers", "regs", "reg", "r"):
            r = s.registers()
            rows = ["  ".join(f"gp{i:<2}= {r.gp[i]:<10}" for i in range(j, j + 4)) for j in range(0, 16, 4)]
            rows.append("  ".join(f"f{i} = {r.fp[i]:<12.6g}" for i in range(8)))
            rows += ["  ".join(f"a{i:<2}= {r.addr[i]:<10}" for i in range(j, j + 4)) for j in range(0, 16, 4)]
            rows.append(f"scale = {r.scale}  stride = {r.stride}  v_mask = {r.v_mask:#x}")
            rows.append(f"pc = {s.pc}  cycle = {s.cycle}  instructions = {s.instructions}")
            return "\n".join(rows)
        if topic in ("breakpoints", "break", "b", "watchpoints", "watch"):
            items = [bp.describe() for bp in s.breakpoints.values()] + [w.describe() for w in s.watchpoints.values()]
            return "\n".join(items) if items else "No breakpoints or watchpoints."
        if topic in ("loops", "loop"):
            return self.cmd_backtrace("")
        if topic in ("sections", "section"):
            return "\n".join(sorted(set(s._section_names)))
        raise CommandError(f"info what? ({', '.join(INFO_TOPICS)})")

    # ---------------------------------------------------------------- where we are
    def cmd_list(self, rest: str) -> str:
        s = self.session
        bp_pcs = {p for bp in s.breakpoints.values() for p in bp.pcs}
        here = s.pc if not s.finished else None
        if s.program.source is None:
            center = _int(rest, "pc") if rest else (here or 0)
            lo, hi = max(0, center - 5), min(len(s.program), center + 6)
            return "\n".join(f"{'=>' if p == here else '  '}{'*' if p in bp_pcs else ' '} pc {p:<6} "
                             f"{s.location(p).text}" for p in range(lo, hi))
        lines = (s.program.asm_text or "").split("\n")
        if rest:
            center = _int(rest, "line")
        else:
            center = s.location().line if here is not None else len(lines)
        pc_of_line = {src.line_no: pc for pc, src in enumerate(s.program.source)}
        lo, hi = max(1, center - 5), min(len(lines), center + 5)
        out = []
        for ln in range(lo, hi + 1):
            pc = pc_of_line.get(ln)
            mark = "=>" if pc is not None and pc == here else "  "
            star = "*" if pc in bp_pcs else " "
            out.append(f"{mark}{star}{ln:>5}  {lines[ln - 1]}")
        return "\n".join(out)

    def cmd_where(self, rest: str) -> str:
        s = self.session
        if s.finished:
            return f"Program {'aborted' if s.error else 'ended'} at cycle {s.cycle} after {s.instructions} instructions"
        return f"{s.location().describe()}  (cycle {s.cycle}, {s.instructions} instructions)"

    def cmd_backtrace(self, rest: str) -> str:
        s = self.session
        out = [f"#0  {self.cmd_where('')}"]
        for depth, f in enumerate(reversed(s.loop_stack()), start=1):
            loc = s.location(f.start_pc)
            out.append(f"#{depth}  loop at pc {f.start_pc} ({loc.text}, line {loc.line}): iteration "
                       f"{f.iteration + 1} of {f.count}, gp{f.register} = {f.remaining}")
        return "\n".join(out)

    def cmd_compare(self, rest: str) -> str:
        try:
            parts = shlex.split(rest)
        except ValueError as exc:
            raise CommandError(f"compare: {exc}") from None
        opts = {"--atol": 1e-2, "--rtol": 1e-2}
        args = []
        i = 0
        while i < len(parts):
            if parts[i] in opts and i + 1 < len(parts):
                try:
                    opts[parts[i]] = float(parts[i + 1])
                except ValueError:
                    raise CommandError(f"{parts[i]} needs a number") from None
                i += 2
            else:
                args.append(parts[i])
                i += 1
        if len(args) != 2:
            raise CommandError("usage: compare ROW golden.npy [--atol A] [--rtol R]")
        first, _ = _span(args[0])
        return self.session.compare(first, args[1], atol=opts["--atol"], rtol=opts["--rtol"]).describe()

    def cmd_help(self, rest: str) -> str:
        return __doc__.split("\n\n", 2)[2].rstrip()

    # ---------------------------------------------------------------- completion
    def completions(self, line: str, text: str) -> list[str]:
        """Words that can follow `line` (the text before the cursor), starting with `text`."""
        words = line.split()
        if len(words) == 0 or (len(words) == 1 and not line.endswith(" ")):
            pool = COMMANDS + tuple(ALIASES)
        else:
            cmd = ALIASES.get(words[0].lower(), words[0].lower())
            if cmd in ("watch", "x"):
                pool = MEMORIES + ("mram",)
            elif cmd == "print":
                pool = REGISTER_WORDS + MEMORIES
            elif cmd == "set":
                pool = REGISTER_WORDS[:-1] + ("vram",)
            elif cmd == "info":
                pool = INFO_TOPICS
            elif cmd in ("break", "tbreak"):
                if len(words) >= 2 and words[-1 if line.endswith(" ") else -2].lower() == "opcode":
                    pool = tuple(h for h in HANDLERS if h != "INVALID")
                elif len(words) >= 2 and words[-1 if line.endswith(" ") else -2].lower() == "section":
                    pool = tuple(sorted(set(self.session._section_names)))
                elif len(words) >= 2 and words[-1 if line.endswith(" ") else -2].lower() == "if":
                    pool = REGISTER_WORDS[:-1] + ("cycle", "instructions", "loop_depth")
                else:
                    pool = LOCATION_WORDS
            else:
                pool = ()
        return sorted({w for w in pool if w.lower().startswith(text.lower())})
