"""plena-debug: a step debugger for PLENA programs over the emulator's jitted core.

    from debugger import Session
    s = Session(Path("prog.asm"), hbm="hbm.bin", fp_sram="fp_sram.bin")
    s.break_at(line=42)
    stop = s.continue_()

Session (Python API), the interactive CLI (`plena-debug PROG`), the Debug Adapter Protocol server
(`plena-debug --dap`) and the instruction trace (`emulate --trace-instructions FILE`).
"""

from .session import CompareResult, LoopFrame, Mismatch, Registers, Session
from .stops import Breakpoint, Condition, Location, Stop, WatchHit, Watchpoint

__all__ = ["Session", "Stop", "Location", "Breakpoint", "Watchpoint", "WatchHit", "Condition", "Registers",
           "LoopFrame", "CompareResult", "Mismatch"]
