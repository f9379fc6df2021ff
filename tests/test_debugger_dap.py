"""plena-debug --dap, driven by a scripted Debug Adapter Protocol client over stdio."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from emulator import assemble

PROGRAM = """\
; setup
S_ADDI_INT gp1, gp0, 0
C_LOOP_START gp7, 3
; body
S_ADDI_INT gp1, gp1, 5
S_ADDI_INT gp2, gp2, 1
C_LOOP_END gp7
; tail
S_ADDI_INT gp3, gp0, 7
"""


class Client:
    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, "-m", "debugger.cli", "--dap", *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.seq = 1
        self.events: list[dict] = []

    def send(self, command: str, **arguments) -> int:
        msg = {"seq": self.seq, "type": "request", "command": command, "arguments": arguments}
        self.seq += 1
        data = json.dumps(msg).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(data) + data)
        self.proc.stdin.flush()
        return msg["seq"]

    def read(self) -> dict:
        length = None
        while True:
            line = self.proc.stdout.readline()
            assert line, f"adapter closed: {self.proc.stderr.read().decode()}"
            if not line.strip():
                break
            key, _, value = line.decode().partition(":")
            assert key == "Content-Length"
            length = int(value)
        return json.loads(self.proc.stdout.read(length))

    def request(self, command: str, **arguments) -> dict:
        seq = self.send(command, **arguments)
        while True:
            msg = self.read()
            if msg["type"] == "response" and msg["request_seq"] == seq:
                assert msg["command"] == command
                return msg
            self.events.append(msg)

    def wait_event(self, name: str) -> dict:
        for i, ev in enumerate(self.events):
            if ev["event"] == name:
                return self.events.pop(i)
        while True:
            msg = self.read()
            if msg["type"] == "event" and msg["event"] == name:
                return msg
            self.events.append(msg)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture
def program(tmp_path):
    p = tmp_path / "prog.asm"
    p.write_text(PROGRAM)
    return p


def test_scripted_dap_session(program):
    c = Client()
    init = c.request("initialize", adapterID="plena", linesStartAt1=True)
    assert init["success"] and init["body"]["supportsConfigurationDoneRequest"]
    c.wait_event("initialized")
    pending = c.request("setBreakpoints", source={"path": str(program)}, breakpoints=[{"line": 5}])
    assert pending["body"]["breakpoints"][0]["verified"] is False
    launch = c.request("launch", program=str(program))
    assert launch["success"], launch
    changed = c.wait_event("breakpoint")
    assert changed["body"]["breakpoint"]["verified"] and changed["body"]["breakpoint"]["line"] == 5
    bps = c.request("setBreakpoints", source={"path": str(program)},
                    breakpoints=[{"line": 5}, {"line": 9, "condition": "gp3 == 0"}, {"line": 99}])
    got = bps["body"]["breakpoints"]
    assert [b["verified"] for b in got] == [True, True, False] and got[1]["line"] == 9
    assert c.request("configurationDone")["success"]

    stopped = c.wait_event("stopped")
    assert stopped["body"]["reason"] == "breakpoint" and stopped["body"]["threadId"] == 1
    assert c.request("threads")["body"]["threads"] == [{"id": 1, "name": "PLENA"}]
    frames = c.request("stackTrace", threadId=1)["body"]["stackFrames"]
    assert frames[0]["line"] == 5 and frames[0]["source"]["path"] == str(program.resolve())
    assert frames[1]["name"] == "loop pc 1: iteration 1/3" and frames[1]["line"] == 3
    scopes = c.request("scopes", frameId=0)["body"]["scopes"]
    assert [s["name"] for s in scopes] == ["Registers", "Machine", "Loops", "Watchpoints"]
    regs = {v["name"]: v["value"] for v in c.request("variables", variablesReference=scopes[0]["variablesReference"])["body"]["variables"]}
    assert regs["gp7"] == "3" and regs["gp1"] == "0" and regs["stride"] == "1"
    machine = {v["name"]: v["value"] for v in c.request("variables", variablesReference=2)["body"]["variables"]}
    assert machine["pc"] == "2" and machine["section"] == "body" and machine["line"] == "5"

    assert c.request("next", threadId=1)["success"]
    stopped = c.wait_event("stopped")
    assert stopped["body"]["reason"] == "step"
    frames = c.request("stackTrace", threadId=1)["body"]["stackFrames"]
    assert frames[0]["line"] == 6

    assert c.request("stepIn", threadId=1)["success"]          # one instruction
    assert c.wait_event("stopped")["body"]["reason"] == "step"
    assert c.request("stackTrace", threadId=1)["body"]["stackFrames"][0]["line"] == 7
    watch = c.request("evaluate", expression="watch int_sram 3", context="repl")
    assert watch["body"]["result"].startswith("Watchpoint #")
    watched = {v["name"] for v in c.request("variables", variablesReference=4)["body"]["variables"]}
    assert any("int_sram entry 3" in name for name in watched)
    c.request("evaluate", expression="delete", context="repl")
    assert c.request("stepOut", threadId=1)["success"]         # leave the loop: runs to line 9
    stopped = c.wait_event("stopped")
    frames = c.request("stackTrace", threadId=1)["body"]["stackFrames"]
    assert stopped["body"]["reason"] == "step" and frames[0]["line"] == 9 and len(frames) == 1
    ev = c.request("evaluate", expression="print gp1", context="repl")
    assert ev["body"]["result"] == "gp1 = 15"
    bad = c.request("evaluate", expression="print gp99", context="repl")
    assert not bad["success"] and "does not exist" in bad["message"]

    c.request("setBreakpoints", source={"path": str(program)}, breakpoints=[])
    assert c.request("continue", threadId=1)["success"]
    assert c.wait_event("exited")["body"]["exitCode"] == 0
    c.wait_event("terminated")
    assert c.request("disconnect")["success"]
    c.close()
    assert c.proc.returncode == 0


def test_dap_machine_code_program_and_errors(tmp_path):
    mem = tmp_path / "prog.mem"
    mem.write_text(assemble(PROGRAM).to_mem_text())
    c = Client()
    c.request("initialize", adapterID="plena")
    bad = c.request("launch", program=str(tmp_path / "missing.asm"))
    assert not bad["success"] and "existing 'program'" in bad["message"]
    assert c.request("launch", program=str(mem), stopOnEntry=True)["success"]
    c.request("configurationDone")
    assert c.wait_event("stopped")["body"]["reason"] == "entry"
    frames = c.request("stackTrace", threadId=1)["body"]["stackFrames"]
    ref = frames[0]["source"]["sourceReference"]
    text = c.request("source", sourceReference=ref)["body"]["content"].splitlines()
    assert text[3] == "S_ADDI_INT gp2, gp2, 1"
    got = c.request("setBreakpoints", source={"sourceReference": ref}, breakpoints=[{"line": 4}])
    assert got["body"]["breakpoints"][0]["verified"]
    c.request("continue", threadId=1)
    c.wait_event("stopped")
    assert c.request("stackTrace", threadId=1)["body"]["stackFrames"][0]["line"] == 4
    assert not c.request("pause", threadId=1)["success"]
    assert not c.request("noSuchRequest")["success"]
    c.request("disconnect")
    c.close()
