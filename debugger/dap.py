"""`plena-debug --dap`: a Debug Adapter Protocol server on stdin/stdout.

Lets VS Code (or any DAP client) set breakpoints in a .asm file, step, and show the machine in
its variables panes.  One thread ("PLENA"); the stack shows the current instruction and, below
it, one frame per active hardware loop.  Scopes: Registers, Machine (pc, line, section, cycle,
instructions), Loops, Watchpoints (current values).  The debug console runs debugger commands
(`print vram 8:2`, `watch vram 8`, `compare 8 golden.npy`, ...).  Programs given as machine
code (.mem) are shown as a disassembly source (one line per pc).

launch arguments: program (required), hbm, fpsram, intsram, vram, settings (paths), set (list of
KEY=VALUE overrides), hbmModel, stopOnEntry (bool).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import BinaryIO

from emulator.asm import disassemble, load_program
from emulator.errors import PlenaError
from emulator.settings import SettingsError, load_settings

from .commands import Commands
from .session import Session
from .stops import Stop

THREAD_ID = 1
DISASSEMBLY_REF = 1
SCOPE_REGISTERS, SCOPE_MACHINE, SCOPE_LOOPS, SCOPE_WATCHES = 1, 2, 3, 4
STOP_REASONS = {"breakpoint": "breakpoint", "condition": "breakpoint", "watchpoint": "data breakpoint",
                "step": "step", "finish": "step", "limit": "pause"}


class ProtocolError(Exception):
    pass


class DapServer:
    def __init__(self, rfile: BinaryIO, wfile: BinaryIO, default_program: Path | None = None):
        self.rfile, self.wfile = rfile, wfile
        self.seq = 1
        self.session: Session | None = None
        self.commands: Commands | None = None
        self.program_path: Path | None = default_program
        self.pending: dict[str, list[dict]] = {}     # source path -> requested breakpoints before launch
        self.dap_bps: dict[str, list[int]] = {}      # source path -> session breakpoint ids
        self.configured = False
        self.started = False
        self.stop_on_entry = False
        self.running = True

    # ---------------------------------------------------------------- framing
    def read_message(self) -> dict | None:
        length = None
        while True:
            line = self.rfile.readline()
            if not line:
                return None
            line = line.strip()
            if not line:
                break
            name, _, value = line.decode("ascii", "replace").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length is None:
            raise ProtocolError("message without Content-Length")
        body = self.rfile.read(length)
        return json.loads(body.decode("utf-8"))

    def send(self, msg: dict) -> None:
        msg["seq"] = self.seq
        self.seq += 1
        data = json.dumps(msg).encode("utf-8")
        self.wfile.write(f"Content-Length: {len(data)}\r\n\r\n".encode("ascii") + data)
        self.wfile.flush()

    def respond(self, req: dict, body: dict | None = None, success: bool = True, message: str | None = None) -> None:
        msg = {"type": "response", "request_seq": req.get("seq", 0), "command": req.get("command"),
               "success": success}
        if body is not None:
            msg["body"] = body
        if message is not None:
            msg["message"] = message
        self.send(msg)

    def event(self, name: str, body: dict | None = None) -> None:
        msg = {"type": "event", "event": name}
        if body is not None:
            msg["body"] = body
        self.send(msg)

    # ---------------------------------------------------------------- loop
    def serve(self) -> int:
        while self.running:
            try:
                req = self.read_message()
            except (ProtocolError, ValueError) as exc:
                self.event("output", {"category": "stderr", "output": f"plena-debug: bad message: {exc}\n"})
                continue
            if req is None:
                break
            if req.get("type") != "request":
                continue
            handler = getattr(self, f"on_{req.get('command')}", None)
            if handler is None:
                self.respond(req, success=False, message=f"unsupported request {req.get('command')!r}")
                continue
            try:
                handler(req, req.get("arguments") or {})
            except (PlenaError, SettingsError, OSError, KeyError, TypeError, ValueError) as exc:
                self.respond(req, success=False, message=str(exc))
        return 0

    # ---------------------------------------------------------------- requests
    def on_initialize(self, req, args):
        self.respond(req, {
            "supportsConfigurationDoneRequest": True, "supportsConditionalBreakpoints": True,
            "supportsEvaluateForHovers": True, "supportsTerminateRequest": True,
            "supportsSteppingGranularity": False, "supportsStepBack": False,
            "supportsDataBreakpoints": False, "supportsReadMemoryRequest": False,
        })
        self.event("initialized")

    def on_launch(self, req, args):
        path = Path(args.get("program") or self.program_path or "")
        if not str(path) or not path.exists():
            raise ValueError(f"launch needs an existing 'program' (.asm or .mem), got {str(path)!r}")
        overrides = {}
        for item in args.get("set", []):
            key, _, value = str(item).partition("=")
            try:
                overrides[key.strip()] = int(value, 0)
            except ValueError:
                overrides[key.strip()] = value.strip()
        if args.get("hbmModel"):
            overrides["hbm_model"] = args["hbmModel"]
        settings = load_settings(args.get("settings"), overrides=overrides or None)
        program = load_program(path)

        def opt(key):
            return Path(args[key]) if args.get(key) else None

        self.session = Session(program, settings=settings, hbm=opt("hbm"), fp_sram=opt("fpsram"),
                               int_sram=opt("intsram"), vram=opt("vram"))
        self.commands = Commands(self.session)
        self.program_path = path.resolve()
        self.stop_on_entry = bool(args.get("stopOnEntry"))
        self.respond(req)
        for source, bps in self.pending.items():
            for result in self._apply_breakpoints(source, bps):
                self.event("breakpoint", {"reason": "changed", "breakpoint": result})
        self.pending.clear()
        if self.configured:
            self._start()

    def on_setBreakpoints(self, req, args):
        source = args.get("source", {})
        key = str(Path(source["path"]).resolve()) if source.get("path") else f"ref:{source.get('sourceReference')}"
        requested = args.get("breakpoints") or [{"line": ln} for ln in args.get("lines", [])]
        if self.session is None:
            self.pending[key] = requested
            results = [{"id": None, "verified": False, "line": b["line"], "message": "set when the program launches"}
                       for b in requested]
        else:
            results = self._apply_breakpoints(key, requested)
        self.respond(req, {"breakpoints": results})

    def _apply_breakpoints(self, key: str, requested: list[dict]) -> list[dict]:
        s = self.session
        for ident in self.dap_bps.pop(key, []):
            s.breakpoints.pop(ident, None)
        ids, results = [], []
        disassembly = key.startswith("ref:") or s.program.source is None
        for b in requested:
            line = int(b["line"])
            try:
                if disassembly:
                    bp = s.break_at(pc=line - 1, condition=b.get("condition") or None)
                    shown = line
                else:
                    bp = s.break_at(line=line, condition=b.get("condition") or None)
                    shown = s.location(bp.pcs[0]).line
                ids.append(bp.id)
                results.append({"id": bp.id, "verified": True, "line": shown})
            except PlenaError as exc:
                results.append({"id": None, "verified": False, "line": line, "message": str(exc)})
        self.dap_bps[key] = ids
        return results

    def on_setExceptionBreakpoints(self, req, args):
        self.respond(req, {"breakpoints": []})

    def on_configurationDone(self, req, args):
        self.configured = True
        self.respond(req)
        if self.session is not None:
            self._start()

    def _start(self):
        if self.started:
            return
        self.started = True
        if self.stop_on_entry:
            self.event("stopped", {"reason": "entry", "threadId": THREAD_ID, "allThreadsStopped": True})
        else:
            self._report(self.session.continue_())

    def on_threads(self, req, args):
        self.respond(req, {"threads": [{"id": THREAD_ID, "name": "PLENA"}]})

    def _source(self) -> dict:
        s = self.session
        if s.program.source is None:
            return {"name": f"{self.program_path.name} (disassembly)", "sourceReference": DISASSEMBLY_REF}
        return {"name": self.program_path.name, "path": str(self.program_path)}

    def _line(self, pc: int) -> int:
        loc = self.session.location(pc)
        return loc.line if loc.line is not None else pc + 1

    def on_stackTrace(self, req, args):
        s = self._need_session()
        frames = []
        if not s.finished:
            loc = s.location()
            frames.append({"id": 0, "name": f"pc {loc.pc}: {loc.text}", "source": self._source(),
                           "line": self._line(loc.pc), "column": 1})
            for depth, f in enumerate(reversed(s.loop_stack()), start=1):
                frames.append({"id": depth, "name": f"loop pc {f.start_pc}: iteration {f.iteration + 1}/{f.count}",
                               "source": self._source(), "line": self._line(f.start_pc), "column": 1})
        self.respond(req, {"stackFrames": frames, "totalFrames": len(frames)})

    def on_source(self, req, args):
        s = self._need_session()
        self.respond(req, {"content": disassemble(s.program), "mimeType": "text/x-plena-asm"})

    def on_scopes(self, req, args):
        self._need_session()
        self.respond(req, {"scopes": [
            {"name": "Registers", "variablesReference": SCOPE_REGISTERS, "expensive": False},
            {"name": "Machine", "variablesReference": SCOPE_MACHINE, "expensive": False},
            {"name": "Loops", "variablesReference": SCOPE_LOOPS, "expensive": False},
            {"name": "Watchpoints", "variablesReference": SCOPE_WATCHES, "expensive": False},
        ]})

    def on_variables(self, req, args):
        s = self._need_session()
        ref = int(args["variablesReference"])

        def var(name, value):
            return {"name": name, "value": str(value), "variablesReference": 0}

        out = []
        if ref == SCOPE_REGISTERS:
            r = s.registers()
            out += [var(f"gp{i}", v) for i, v in enumerate(r.gp)]
            out += [var(f"f{i}", f"{v:.6g}") for i, v in enumerate(r.fp)]
            out += [var(f"a{i}", v) for i, v in enumerate(r.addr)]
            out += [var("scale", r.scale), var("stride", r.stride), var("v_mask", hex(r.v_mask))]
        elif ref == SCOPE_MACHINE:
            loc = s.location() if not s.finished else None
            out += [var("pc", s.pc), var("cycle", s.cycle), var("instructions", s.instructions)]
            if loc is not None:
                out += [var("line", loc.line), var("section", loc.section), var("opcode", s.opcode(loc.pc)),
                        var("instruction", loc.text)]
        elif ref == SCOPE_LOOPS:
            for f in s.loop_stack():
                out.append(var(f"loop@pc{f.start_pc}", f"iteration {f.iteration + 1} of {f.count}, gp{f.register} = "
                                                       f"{f.remaining}, end pc {f.end_pc}"))
        elif ref == SCOPE_WATCHES:
            for w in s.watchpoints.values():
                out.append(var(f"#{w.id} {w.where}", self.commands.execute(f"print {w.memory} {w.first}:{w.count}")
                               if w.memory in ("vram", "fp_sram", "int_sram") else
                               self.commands.execute(f"x {w.memory} {w.first} {w.count}")))
        self.respond(req, {"variables": out})

    def on_evaluate(self, req, args):
        self._need_session()
        text = self.commands.execute(str(args.get("expression", "")))
        self.respond(req, {"result": text, "variablesReference": 0})

    def _move(self, req, fn):
        self._need_session()
        self.respond(req)
        self._report(fn())

    def on_next(self, req, args):
        self._move(req, self.session.next)

    def on_stepIn(self, req, args):
        self._move(req, self.session.step)

    def on_stepOut(self, req, args):
        self._move(req, self.session.finish if self.session.loop_stack() else self.session.next)

    def on_continue(self, req, args):
        self._need_session()
        self.respond(req, {"allThreadsContinued": True})
        self._report(self.session.continue_())

    def on_pause(self, req, args):
        self.respond(req, success=False, message="the machine only stops at breakpoints (runs are synchronous)")

    def on_disconnect(self, req, args):
        self.respond(req)
        self.running = False

    on_terminate = on_disconnect

    def _need_session(self) -> Session:
        if self.session is None:
            raise ValueError("no program launched yet")
        return self.session

    def _report(self, stop: Stop) -> None:
        if stop.reason in ("end", "error"):
            if stop.error is not None:
                self.event("output", {"category": "stderr", "output": f"{stop.error}\n"})
            self.event("output", {"category": "console", "output": stop.describe() + "\n"})
            self.event("exited", {"exitCode": 0 if stop.error is None else 3})
            self.event("terminated")
            return
        if stop.watch_hits:
            self.event("output", {"category": "console", "output": self.commands.show_stop(stop) + "\n"})
        body = {"reason": STOP_REASONS.get(stop.reason, "step"), "threadId": THREAD_ID, "allThreadsStopped": True,
                "description": stop.describe().splitlines()[0]}
        if stop.breakpoint is not None:
            body["hitBreakpointIds"] = [stop.breakpoint.id]
        self.event("stopped", body)


def serve(rfile: BinaryIO, wfile: BinaryIO, default_program: Path | None = None) -> int:
    return DapServer(rfile, wfile, default_program).serve()
