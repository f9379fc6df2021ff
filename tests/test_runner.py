"""The run() façade: tensor placement, progress, trace, label seconds, input errors."""

from __future__ import annotations

import numpy as np
import pytest

from emulator import ImageError, InputError, assemble, run
from emulator.tensors import HbmTensor, build_hbm_image, read_mx_tensor

LOOP = "C_LOOP_START gp1, {n}\nS_ADDI_INT gp2, gp2, 1\nC_LOOP_END gp1\n"


def test_tensors_are_placed_like_the_image_writer():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    w = rng.standard_normal((64, 64)).astype(np.float32)
    result = run("S_ADDI_INT gp1, gp0, 1", tensors={"X": (x, 0), "W": (w, 4096)})
    image = build_hbm_image([HbmTensor("X", x, 0), HbmTensor("W", w, 4096)])
    assert result.state.hbm.read(0, len(image)) == image
    back = read_mx_tensor(result.state.hbm.read(0, len(image)), 4096, (64, 64))
    np.testing.assert_allclose(back, w, rtol=0.07, atol=0.05)  # E4M3: 3 mantissa bits


def test_tensor_outside_hbm_is_an_image_error():
    with pytest.raises(ImageError, match="does not fit"):
        run("S_ADDI_INT gp1, gp0, 1", tensors={"X": (np.ones((1, 64), np.float32), (1 << 34) - 8)})


def test_progress_trace_and_counters():
    calls = []
    import emulator.runner as runner
    old = runner.CHUNK_INSTRUCTIONS, runner.PROGRESS_INTERVAL_S
    runner.CHUNK_INSTRUCTIONS, runner.PROGRESS_INTERVAL_S = 1000, 0.0
    try:
        result = run(assemble(LOOP.format(n=5000)), progress=lambda i, c: calls.append((i, c)), trace_limit=10)
    finally:
        runner.CHUNK_INSTRUCTIONS, runner.PROGRESS_INTERVAL_S = old
    assert result.instructions == 1 + 2 * 5000 and result.cycles == result.instructions
    assert calls and all(i > 0 for i, _ in calls)
    assert list(result.trace.pc[:4]) == [0, 1, 2, 1] and result.trace.truncated
    assert list(result.trace.end[:3]) == [1, 2, 3]
    assert list(result.pc_count) == [1, 5000, 5000]
    assert result.state.gp[2] == 5000


def test_label_seconds_accumulate_in_execution_order():
    program = assemble(LOOP.format(n=3))
    result = run(program, seconds_labels=[np.array([0, 1, -1], dtype=np.int32)])
    assert result.label_seconds[0].tolist() == pytest.approx([1e-9, 3e-9])


def test_label_map_of_wrong_length_is_rejected():
    with pytest.raises(InputError):
        run(assemble(LOOP.format(n=3)), seconds_labels=[np.zeros(2, dtype=np.int32)])


def test_error_keeps_state_up_to_the_abort():
    result = run(assemble("S_ADDI_INT gp1, gp0, 7\nS_ADDI_INT gp2, gp0, 32\nV_ADD_VV gp2, gp2, gp2, 0\n"))
    assert result.error is not None and result.error.pc == 2 and result.error.source.line_no == 3
    assert result.state.gp[1] == 7 and result.instructions == 2


def test_repeated_runs_reuse_the_setup_but_never_share_mutable_state():
    """Runs of one Program with one Settings reuse the decoded program (emulator.runner._setup);
    each machine still gets its own dec/params, so a debugger stop armed in one machine's dec
    does not reach the next run, and other settings objects decode on their own."""
    from emulator.core.state import D_COST, D_STOP
    from emulator.runner import new_machine
    from emulator.settings import default_settings

    program = assemble("S_ADDI_INT gp1, gp0, 3\nS_ADD_FP f1, f1, f1\nS_ADDI_INT gp2, gp1, 4")
    settings = default_settings()
    first, second = new_machine(program, settings=settings), new_machine(program, settings=settings)
    assert first.dec is not second.dec and first.params is not second.params
    np.testing.assert_array_equal(first.dec, second.dec)
    first.dec[1, D_STOP] = 1
    assert new_machine(program, settings=settings).dec[1, D_STOP] == 0

    slower = settings.with_overrides({"SCALAR_FP_BASIC_CYCLES": settings.latency("SCALAR_FP_BASIC_CYCLES") + 5})
    assert new_machine(program, settings=slower).dec[1, D_COST] == first.dec[1, D_COST] + 5
    a, b = run(program, settings=settings), run(program, settings=slower)
    assert b.cycles == a.cycles + 5 and run(program, settings=settings).cycles == a.cycles
    assert int(run(program, settings=settings).state.gp[2]) == 7
