"""The numba options of the core, fixed in one place.

- numba's disk cache (what cache=True gives; emulator/_jit_cache.py keys its directory): only the
  first run of a fresh install pays the JIT cost.  `disk_cached` attaches it created on first use
  and loading without numba's registry refresh (both for the warm start).
- nogil=True: the service runs kernels in worker processes; releasing the GIL costs nothing.
- error_model="numpy": float division by zero gives inf/NaN as IEEE says (the reference relies
  on 1/0 = inf) instead of raising ZeroDivisionError.
- fastmath stays off: the reference's results depend on exact f32 operation order.
- _nrt=False (`jit`): no reference counting.  With numba's runtime on, every jitted function
  increfs and decrefs each array argument it receives, an atomic operation pair per array per
  call; measured as more than half the time of a scalar instruction (one call to a unit kernel
  with four array arguments took ~300 ns instead of ~7 ns).  Kernels only read and write arrays
  their caller owns, so nothing needs counting.  A kernel that allocates (np.empty, .copy())
  needs the runtime: numba refuses to compile it under `jit` ("NRT required but not enabled"),
  and it uses `jit_alloc` instead.
- no_cpython_wrapper, no_cfunc_wrapper (`Kernel`): numba builds, for every function it compiles,
  a CPython wrapper (unboxing each argument from a Python object) and a C-callback wrapper,
  though only the few entry points are ever called from Python; measured as ~22% and ~8% of the
  first run's compile (37.8 -> 26.3 s CPU).  Kernels are compiled without them for their jitted
  callers; a call from Python goes to a twin compiled with the wrapper (`Kernel.python_entry`).
  The functions Python calls in a run (emulator/warmup.py's `entry_points`) are declared so with
  `@python_entry` and compiled with the wrapper only: a jitted caller of one (the DMA kernels call
  read_bytes and write_bytes) links that version instead of compiling the function a second time.
- kernels to LLVM bitcode only (`_Library`): numba links each callee's module into its caller's
  and optimised and generated machine code for every function at every level of the call chain;
  only the entry points' code ever runs, so a kernel's compile stops after linking its callees.
"""

import llvmlite.binding as ll
from numba import config
from numba.core import compiler
from numba.core.codegen import JITCodeLibrary
from numba.core.registry import CPUDispatcher

from .._jit_cache import disk_cached

_OPTIONS = dict(nogil=True, error_model="numpy", forceinline=False)   # explicit: callees inherit an unset one
_NO_WRAPPERS = dict(no_cpython_wrapper=True, no_cfunc_wrapper=True)


class _Library(JITCodeLibrary):
    """numba's code library (one per compiled function), which for a kernel (`link_only`) stops
    after linking in its callees' modules: no module-wide optimisation and no machine code, cached
    as LLVM bitcode.  A kernel's code only ever runs as part of an entry point's (numba links every
    callee's module into its caller's), whose compile optimises and generates the whole, once
    instead of again at every level of the call chain (measured: 40 -> 30 s of CPU, the first run
    of the example in one process)."""

    link_only = False

    def _optimize_final_module(self):
        if not self.link_only:
            super()._optimize_final_module()

    def _finalize_final_module(self):
        if not self.link_only:
            return super()._finalize_final_module()
        self._finalized = True

    def serialize_using_object_code(self):
        if not self.link_only:
            return super().serialize_using_object_code()
        return (self.name, "bitcode", self._final_module.as_bitcode())

    @classmethod
    def _unserialize(cls, codegen, state):
        name, kind, data = state
        if kind != "bitcode":
            return super()._unserialize(codegen, state)
        self = codegen.create_library(name)
        self.link_only = True
        self._final_module = ll.parse_bitcode(data)
        self._finalize_final_module()
        return self


def _use_link_only_libraries(codegen) -> None:
    """Make numba's CPU code generator create `_Library`s (idempotent; done when the first kernel
    compiles or loads, not at import: creating the CPU target costs start-up)."""
    if codegen._library_class is _Library:
        return
    codegen._library_class = _Library
    set_env = codegen.set_env

    def set_env_if_defined(env_name, env):
        # a kernel's environment global is not in the JIT engine (no machine code): nothing to set
        if codegen._engine.is_symbol_defined(env_name):
            set_env(env_name, env)

    codegen.set_env = set_env_if_defined


class _KernelCompiler(compiler.Compiler):
    """numba's compiler, giving a kernel a link-only library."""

    def compile_extra(self, func):
        self.state.library = self.state.targetctx.codegen().create_library(func.__qualname__)
        self.state.library.link_only = True
        return super().compile_extra(func)


class Kernel(CPUDispatcher):
    """A jitted function as its jitted callers see it: compiled without the Python-facing wrappers,
    to LLVM bitcode (`_Library`).  Called from Python (any kernel by a test), it runs
    `python_entry`, the same function compiled with numba's CPython wrapper to machine code, with
    its own disk cache files."""

    def compile(self, sig):
        _use_link_only_libraries(self.targetctx.codegen())
        return super().compile(sig)

    def __call__(self, *args, **kwargs):
        return self.python_entry(*args, **kwargs)

    @property
    def python_entry(self) -> CPUDispatcher:
        entry = self.__dict__.get("_python_entry")
        if entry is None:
            options = {k: v for k, v in self.targetoptions.items() if k not in _NO_WRAPPERS}
            entry = disk_cached(CPUDispatcher(py_func=self.py_func, locals=self.locals, targetoptions=options),
                                suffix="-py")
            self.__dict__["_python_entry"] = entry
        return entry


def python_entry(kernel):
    """`@python_entry` over `@jit`/`@jit_alloc`: a function Python calls, compiled once, with numba's
    CPython wrapper, for Python and jitted callers alike."""
    return getattr(kernel, "python_entry", kernel)   # NUMBA_DISABLE_JIT=1: the plain function


def _decorator(**options):
    """njit(**options) with the disk cache of emulator/_jit_cache.py (instead of cache=True), as a
    `Kernel`.  With NUMBA_DISABLE_JIT=1, the plain Python function (as numba's decorators do)."""
    targetoptions = dict(options, nopython=True, **_NO_WRAPPERS)

    def decorate(fn):
        if config.DISABLE_JIT:
            return fn
        return disk_cached(Kernel(py_func=fn, locals={}, targetoptions=targetoptions, pipeline_class=_KernelCompiler))
    return decorate


jit = _decorator(**_OPTIONS, _nrt=False)
jit_alloc = _decorator(**_OPTIONS, _nrt=True)  # explicit: a callee inherits an unset _nrt from its caller

# Compile time (the first run on a fresh machine) is part of the product:
# - numba compiles a jitted callee once per distinct argument-type tuple, and a constant argument
#   has its own literal type: pass run-time values (e.g. `one.shape[0]`, not `1`) where one compiled
#   version can serve, and inline tiny helpers called with many different constants (`inline_jit`);
# - an array-to-array slice assignment pulls in numba's shape-mismatch error formatting (several
#   seconds of compiling); the kernels copy with element loops instead.
inline_jit = _decorator(**_OPTIONS, _nrt=False, inline="always")
# - `llvm_inline_jit`: compiled on its own (numba types and lowers it once, and the first run's
#   compile helper can do it: emulator/_compile_helper.py), then inlined by LLVM into its callers
#   (LLVM's alwaysinline): the machine code of an `inline_jit` function without numba inlining it.
llvm_inline_jit = _decorator(**dict(_OPTIONS, forceinline=True), _nrt=False)
