"""The first run on an empty cache compiles the core in two processes.

numba compiles one function at a time per process (under a global lock), so a cold run used one
of the machine's cores.  `start` launches a helper process (`python -m emulator._compile_helper`)
as soon as a run finds the run loop uncompiled; `call` hands it the run loop's argument types and
runs the loop, and stops the helper once the loop is compiled.  The helper type-checks a copy of
the run loop whose DMA kernels (the first large kernels the loop reaches, compiled here meanwhile)
are replaced by stubs: typing a call compiles the callee, with exactly the argument types the real
loop passes, into the shared disk cache.  The cache's claims (emulator/_jit_cache.py) make the two
processes compile each function once between them: this process loads what the helper compiled,
and waits for what it is compiling.

Nothing depends on the helper: if it fails, is killed, or compiles something the loop does not
need, this process compiles what it needs itself.  PLENA_COMPILE_HELPER=0 turns it off.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
import types

# The run loop's kernels this process compiles first (the helper stubs them out), with their return
# type; they call the HBM store and both HBM timing models, about a third of the loop's compile.
_COMPILED_HERE_FIRST = {"h_prefetch": "int64", "store_pages_needed": "int64", "h_store": "int64"}

_helper: subprocess.Popen | None = None


def enabled() -> bool:
    import numba
    return (os.environ.get("PLENA_COMPILE_HELPER", "1") != "0" and bool(numba.config.CACHE_DIR)
            and not numba.config.DISABLE_JIT and len(os.sched_getaffinity(0)) >= 2)


def start() -> None:
    """Launch the helper (it imports the core while this process sets the machine up)."""
    global _helper
    if _helper is not None or not enabled():
        return
    import numba
    env = dict(os.environ, NUMBA_CACHE_DIR=numba.config.CACHE_DIR, OPENBLAS_NUM_THREADS="1")
    try:
        _helper = subprocess.Popen([sys.executable, "-m", "emulator._compile_helper"], stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    except OSError:
        _helper = None


def pending() -> bool:
    """A helper waits for the run loop's argument types."""
    return _helper is not None


def call(run_loop, args: tuple):
    """run_loop(*args), the helper compiling part of it meanwhile; the helper is stopped after."""
    try:
        argtypes = tuple(run_loop.typeof_pyval(a) for a in args)
        _helper.stdin.write(pickle.dumps(argtypes))
        _helper.stdin.close()
    except (OSError, ValueError):   # it is gone already: compile everything here
        pass
    try:
        return run_loop(*args)
    finally:
        stop()


def stop() -> None:
    global _helper
    helper, _helper = _helper, None
    if helper is None:
        return
    if helper.poll() is None:
        helper.terminate()
    try:
        helper.wait(timeout=10)
    except subprocess.TimeoutExpired:
        helper.kill()
        helper.wait()


def _stub(return_type: str):
    """A jitted function of any arguments returning a value of `return_type`."""
    import numpy as np
    from numba import njit
    value = getattr(np, return_type)(0)
    return njit(lambda *args: value, no_cpython_wrapper=True, no_cfunc_wrapper=True)


def compile_run_loop_tail(argtypes: tuple) -> None:
    """Type-check the run loop with the kernels of _COMPILED_HERE_FIRST stubbed out, compiling every
    other callee (into the disk cache) on the way; the copy itself is not lowered."""
    from numba.core import compiler, typed_passes
    from numba.core.compiler_lock import global_compiler_lock

    from .core import loop

    py_func = loop.run_loop.py_func
    scope = dict(py_func.__globals__, **{name: _stub(t) for name, t in _COMPILED_HERE_FIRST.items()})
    copy = types.FunctionType(py_func.__code__, scope, py_func.__name__, py_func.__defaults__, py_func.__closure__)

    class TypeOnly(compiler.CompilerBase):
        def define_pipelines(self):
            pm = compiler.DefaultPassBuilder.define_nopython_pipeline(self.state)
            cut = next(i for i, (p, _) in enumerate(pm.passes) if p is typed_passes.NopythonTypeInference)
            del pm.passes[cut + 1:]
            pm.finalize()
            return [pm]

    dispatcher = loop.run_loop
    flags = compiler.Flags()
    dispatcher.targetdescr.options.parse_as_flags(flags, dispatcher.targetoptions)
    typingctx, targetctx = dispatcher.targetdescr.typing_context, dispatcher.targetdescr.target_context
    with global_compiler_lock:
        typingctx.refresh()
        targetctx.refresh()
        try:
            compiler.compile_extra(typingctx, targetctx, copy, argtypes, None, flags, {}, pipeline_class=TypeOnly)
        except compiler.CompilerError:   # "All available pipelines exhausted": no lowering, as intended
            pass


def compile_recorder():
    """A numba event listener collecting (function, signature, inclusive s, self s) per compile, in
    CPU seconds of the compiling thread (steadier than wall time on a shared machine): what
    bench/bench_compile.py prints, the helper's compiles included (PLENA_COMPILE_EVENTS)."""
    from numba.core import event

    class CompileRecorder(event.Listener):
        def __init__(self):
            self.open: list[list[float]] = []     # per compile under way: [start, seconds in nested compiles]
            self.done: list[tuple[str, str, float, float]] = []

        def on_start(self, ev) -> None:
            self.open.append([time.thread_time(), 0.0])

        def on_end(self, ev) -> None:
            start, nested = self.open.pop()
            seconds = time.thread_time() - start
            if self.open:
                self.open[-1][1] += seconds
            fn = ev.data["dispatcher"].py_func
            self.done.append((f"{fn.__module__}.{fn.__qualname__}", str(ev.data.get("args")), seconds,
                              seconds - nested))

    return event, CompileRecorder()


def _main() -> None:
    argtypes = pickle.loads(sys.stdin.buffer.read())   # blocks until the run loop is about to compile
    events_file = os.environ.get("PLENA_COMPILE_EVENTS")
    if not events_file:
        compile_run_loop_tail(argtypes)
        return
    event, recorder = compile_recorder()
    try:
        with event.install_listener("numba:compile", recorder):
            compile_run_loop_tail(argtypes)
    finally:
        with open(events_file, "w") as f:
            json.dump(recorder.done, f)


if __name__ == "__main__":
    _main()
