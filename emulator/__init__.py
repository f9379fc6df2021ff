"""plena-emulator: a bit- and cycle-exact emulator of the PLENA accelerator's reference
transactional emulator.

    from emulator import run, assemble, load_settings
    result = run(assemble(asm_text), settings=load_settings("plena_settings.toml"), hbm="hbm.bin",
                 fp_sram="fp_sram.bin")
    result.cycles, result.instructions, result.state.vram, result.error

Data flows one way: ASM/.mem -> Program (emulator.asm) -> machine state (emulator.core, numba)
-> RunResult (emulator.result) -> profile (profiler).
"""

import os as _os
import sys as _sys


def _is_emulate_command(argv: list[str]) -> bool:
    """Whether this process's command line (sys.orig_argv) runs `emulate` / `python -m emulator.cli`."""
    if len(argv) > 1 and _os.path.basename(argv[1]) == "emulate":
        return True
    return "-m" in argv and argv[argv.index("-m") + 1:argv.index("-m") + 2] == ["emulator.cli"]


_GC_PAUSED_FOR_IMPORTS = False
# The `emulate` command does no linear algebra, but numpy's import starts OpenBLAS's thread pool,
# whose idle threads spin for ~0.1 s of CPU (a fifth of a warm start, and the other core of a
# loaded 2-core machine).  Only the command gets one BLAS thread (unless its environment says
# otherwise); a program importing the package keeps its BLAS as it is.
if "numpy" not in _sys.modules and _is_emulate_command(list(getattr(_sys, "orig_argv", ()))):
    _os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # Importing numba, numpy and pydantic creates a few hundred thousand objects, and the cyclic
    # garbage collector walks them again and again while they load (~150 passes, 0.05-0.06 s of a
    # 0.4 s start-up) although none of them is garbage.  The command pauses it for its imports;
    # emulator.cli.resume_gc() turns it back on with everything loaded so far frozen out of its way.
    import gc as _gc

    _GC_PAUSED_FOR_IMPORTS = _gc.isenabled()
    _gc.disable()

from ._jit_cache import configure as _configure_jit_cache  # noqa: E402

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
