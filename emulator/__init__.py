"""plena-emulator: a bit- and cycle-exact emulator of the PLENA accelerator's reference
transactional emulator.

    from emulator import run, assemble, load_settings
    result = run(assemble(asm_text), settings=load_settings("plena_settings.toml"), hbm="hbm.bin",
                 fp_sram="fp_sram.bin")
    result.cycles, result.instructions, result.state.vram, result.error

Data flows one way: ASM/.mem -> Program (emulator.asm) -> machine state (emulator.core, numba)
-> RunResult (emulator.result) -> profile (profiler).
"""

from ._jit_cache import configure as _configure_jit_cache

_configure_jit_cache()

from .asm import assemble, disassemble, disassemble_word, load_program, parse_mem  # noqa: E402
from .errors import (  # noqa: E402
    AssemblerError, BudgetExceeded, EmulationError, ImageError, InputError, MemFileError, PlenaError,
)
from .program import Program, SourceLine  # noqa: E402
from .result import MachineState, RunResult  # noqa: E402
from .runner import run  # noqa: E402
from .settings import Settings, SettingsError, default_settings, load_settings  # noqa: E402

__all__ = [
    "run", "assemble", "disassemble", "disassemble_word", "parse_mem", "load_program",
    "load_settings", "default_settings", "Settings", "SettingsError", "Program", "SourceLine",
    "RunResult", "MachineState", "PlenaError", "InputError", "AssemblerError", "MemFileError",
    "ImageError", "EmulationError", "BudgetExceeded",
]
