"""plena-debug through a pseudo-terminal (pexpect), and its command layer directly."""

from __future__ import annotations

import os
import sys

import numpy as np
import pexpect
import pytest

from debugger import Session
from debugger.commands import CommandError, Commands
from emulator.tensors import f32_to_bf16_bits

PROGRAM = """\
; setup
S_ADDI_INT gp1, gp0, 64
C_LOOP_START gp7, 3
; body
V_ADD_VV gp1, gp0, gp0, 0
S_ADDI_INT gp1, gp1, 64
S_ADDI_INT gp2, gp2, 1
C_LOOP_END gp7
; tail
S_ADDI_INT gp3, gp0, 7
"""
PROMPT = r"\(plena\) "


@pytest.fixture
def files(tmp_path):
    prog = tmp_path / "prog.asm"
    prog.write_text(PROGRAM)
    vram = tmp_path / "vram.bin"
    vram.write_bytes(f32_to_bf16_bits(np.arange(64, dtype=np.float32) / 4).astype("<u2").tobytes())
    golden = tmp_path / "golden.npy"
    np.save(golden, (np.arange(64, dtype=np.float32) / 2).reshape(1, 64))
    return tmp_path, prog, vram, golden


def _spawn(tmp_path, *args):
    env = dict(os.environ, PLENA_DEBUG_HISTORY=str(tmp_path / "history"), TERM="dumb", COLUMNS="200")
    child = pexpect.spawn(sys.executable, ["-m", "debugger.cli", *args], env=env, encoding="utf-8",
                          timeout=120, dimensions=(50, 200))
    child.expect(PROMPT)
    return child


def test_interactive_session_in_a_pty(files):
    tmp_path, prog, vram, golden = files
    child = _spawn(tmp_path, str(prog), "--vram", str(vram))
    assert "line 2" in child.before and "S_ADDI_INT gp1, gp0, 64" in child.before

    child.sendline("break 5")                  # line 5: V_ADD_VV
    child.expect(r"Breakpoint #1 break line 5 \(pc 2\)")
    child.expect(PROMPT)
    child.sendline("watch vram 2")
    child.expect(r"Watchpoint #2 watch vram row 2")
    child.expect(PROMPT)
    child.sendline("continue")
    child.expect(r"Breakpoint #1 at cycle 2, after 2 instructions")
    child.expect(r"next: pc 2, line 5 \[body\]: V_ADD_VV gp1, gp0, gp0, 0")
    child.expect(PROMPT)
    child.sendline("print gp1")
    child.expect(r"gp1 = 64")
    child.expect(PROMPT)
    child.sendline("bt")
    child.expect(r"#1  loop at pc 1 \(C_LOOP_START gp7, 3, line 3\): iteration 1 of 3, gp7 = 3")
    child.expect(PROMPT)
    child.sendline("next")                     # a plain step here
    child.expect(r"Stepped at cycle 3")
    child.expect(PROMPT)
    child.sendline("")                         # an empty line repeats it
    child.expect(r"Stepped at cycle 4")
    child.expect(PROMPT)
    child.sendline("c")
    child.expect(r"Breakpoint #1 at cycle 6")
    child.expect(PROMPT)
    child.sendline("c")                        # V_ADD_VV writes row 2: the watch fires right after it
    child.expect(r"Watchpoint at cycle 7, after 7 instructions")
    child.expect(r"watch #2 vram row 2: changed 2 by pc 2 \(V_ADD_VV gp1, gp0, gp0, 0\)")
    child.expect(r"new: \[\[ 0\.\s+0\.5")
    child.expect(PROMPT)
    child.sendline("compare 2 " + str(golden))
    child.expect(r"MATCH: 0 of 64 elements differ")
    child.expect(PROMPT)
    child.sendline("set gp2 = 40")
    child.expect(r"gp2 = 40")
    child.expect(PROMPT)
    child.sendline("info breakpoints")
    child.expect(r"#1 break line 5 \(pc 2\) hits 2")
    child.expect(r"#2 watch vram row 2 hits 1")
    child.expect(PROMPT)
    child.sendline("list")
    child.expect(r"  \*\s+5  V_ADD_VV")
    child.expect(r"=> \s+6  S_ADDI_INT gp1, gp1, 64")
    child.expect(PROMPT)
    child.sendline("delete")
    child.expect(PROMPT)
    child.sendline("x vram 2 1")
    child.expect(r"row 2: 0000 3f00 3f80")
    child.expect(PROMPT)
    child.sendline("bogus")
    child.expect(r"error: unknown command 'bogus'")
    child.expect(PROMPT)
    child.sendline("continue")
    child.expect(r"Program ended at cycle 15, after 15 instructions")
    child.expect(PROMPT)
    child.sendline("print gp2")
    child.expect(r"gp2 = 42")
    child.expect(PROMPT)
    # Tab completion of a command and of an opcode
    child.send("inf\t")
    child.expect("info")
    child.send(" reg\t")
    child.expect("registers")
    child.send("\r")
    child.expect(r"gp3 = 7")
    child.expect(PROMPT)
    child.send("break opcode C_LOOP_E\t")
    child.expect("C_LOOP_END")
    child.send("\r")
    child.expect(r"Breakpoint #3 break opcode C_LOOP_END")
    child.expect(PROMPT)
    child.sendline("quit")
    child.expect(pexpect.EOF)
    history = (tmp_path / "history").read_text()
    assert "compare 2" in history and "break 5" in history


def test_history_is_recalled_with_the_up_arrow(files):
    tmp_path, prog, vram, _ = files
    child = _spawn(tmp_path, str(prog))
    child.sendline("print gp7")
    child.expect(r"gp7 = 0")
    child.expect(PROMPT)
    child.sendline("quit")
    child.expect(pexpect.EOF)
    child = _spawn(tmp_path, str(prog))
    child.send("\x1b[A")                       # up arrow: the previous session's last command
    child.send("\r")
    child.expect(r"quit|gp7 = 0")
    child.close()


def test_machine_code_programs_show_disassembly(files, tmp_path):
    from emulator import assemble
    mem = tmp_path / "prog.mem"
    mem.write_text(assemble(PROGRAM).to_mem_text())
    child = _spawn(tmp_path, str(mem))
    assert "pc 0, (no source)" in child.before and "S_ADDI_INT gp1, gp0, 64" in child.before
    child.sendline("break 4")                  # machine code: a bare number is a pc
    child.expect(r"break pc 4")
    child.expect(PROMPT)
    child.sendline("continue")
    child.expect(r"next: pc 4, \(no source\) \[pc 4\]: S_ADDI_INT gp2, gp2, 1")
    child.expect(PROMPT)
    child.sendline("list")
    child.expect(r"=>\* pc 4\s+S_ADDI_INT gp2, gp2, 1")
    child.expect(PROMPT)
    child.sendline("quit")
    child.expect(pexpect.EOF)


def test_bad_program_exits_with_status_2(tmp_path):
    bad = tmp_path / "bad.asm"
    bad.write_text("NOT_AN_OP gp1\n")
    out = pexpect.run(f"{sys.executable} -m debugger.cli {bad}", withexitstatus=True, encoding="utf-8", timeout=300)
    assert out[1] == 2 and "unknown mnemonic" in out[0]


def test_script_batch_mode(files, capfd):
    from debugger.cli import main
    tmp_path, prog, vram, _ = files
    script = tmp_path / "cmds.txt"
    script.write_text("break section tail\ncontinue\nprint gp2\n")
    assert main([str(prog), "--vram", str(vram), "-x", str(script), "--batch"]) == 0
    out = capfd.readouterr().out
    assert "next: pc 6, line 10 [tail]" in out and "gp2 = 3" in out


def test_command_errors_are_messages_not_crashes():
    c = Commands(Session(PROGRAM))
    for line in ("break", "watch vram", "watch nowhere 3", "print", "x vram", "set gp1 5", "compare 2",
                 "break line x", "info nothing", "step x"):
        with pytest.raises(CommandError):
            c.execute(line)
    assert c.completions("", "co") == ["compare", "cont", "continue"]
    assert "V_ADD_VV" in c.completions("break opcode ", "V_A")
    assert c.completions("break section ", "b") == ["body"]
    assert c.completions("print ", "gp1") == ["gp1", "gp10", "gp11", "gp12", "gp13", "gp14", "gp15"]


def test_no_program_is_a_usage_error(capsys):
    from debugger.cli import main
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2 and "a program (.asm or .mem) is required" in capsys.readouterr().err
