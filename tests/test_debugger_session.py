"""The debugger's Python API: stepping is exact, breakpoints and watchpoints stop where expected."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from debugger import Session
from emulator import assemble, run
from emulator.asm import load_program, parse_mem
from emulator.core.state import VRAM_ROWS_USED
from emulator.errors import InputError
from emulator.tensors import bf16_bits_to_f32, f32_to_bf16_bits

from .conftest import CONFORMANCE, needs_corpus
from .corpus_util import case_settings, compare_dumps

NESTED = """\
S_ADDI_INT gp1, gp0, 0
C_LOOP_START gp7, 3
C_LOOP_START gp5, 4
S_ADDI_INT gp1, gp1, 1
C_LOOP_END gp5
S_ADDI_INT gp2, gp2, 10
C_LOOP_END gp7
S_ADDI_INT gp3, gp0, 99
"""
# pc:  0 ADDI   1 START gp7   2 START gp5   3 ADDI gp1   4 END gp5   5 ADDI gp2   6 END gp7   7 ADDI gp3
# dynamic: 1 + 3 * (1 + 4*2 + 2) + 1 = 36 instructions (every op costs 1 cycle)


def _case_dir(name: str) -> Path:
    return CONFORMANCE / name


def _case_session(name: str, asm: bool = False) -> Session:
    d = _case_dir(name)

    def opt(f: str):
        p = d / f
        return p if p.exists() else None

    program = load_program(d / "program.asm") if asm else parse_mem((d / "program.mem").read_text(), name=name)
    return Session(program, settings=case_settings(d), hbm=opt("hbm.bin"), fp_sram=opt("fp_sram.bin"),
                   int_sram=opt("int_sram.bin"), vram=opt("vram_preload.bin"))


def _run_case(name: str, **kwargs):
    d = _case_dir(name)

    def opt(f: str):
        p = d / f
        return p if p.exists() else None

    return run(parse_mem((d / "program.mem").read_text(), name=name), settings=case_settings(d), hbm=opt("hbm.bin"),
               fp_sram=opt("fp_sram.bin"), int_sram=opt("int_sram.bin"), vram=opt("vram_preload.bin"), **kwargs)


def _same_state(a, b) -> None:
    assert a.cycles == b.cycles
    assert a.instructions == b.instructions
    assert (a.error is None) == (b.error is None)
    assert a.hbm_bytes_read == b.hbm_bytes_read and a.hbm_bytes_written == b.hbm_bytes_written
    np.testing.assert_array_equal(a.pc_count, b.pc_count)
    np.testing.assert_array_equal(a.pc_cycles, b.pc_cycles)
    sa, sb = a.state, b.state
    assert sa.vram_rows_used == sb.vram_rows_used
    np.testing.assert_array_equal(sa.vram[: sa.vram_rows_used], sb.vram[: sb.vram_rows_used])
    np.testing.assert_array_equal(sa.mram, sb.mram)
    np.testing.assert_array_equal(sa.fp_sram, sb.fp_sram)
    np.testing.assert_array_equal(sa.int_sram, sb.int_sram)
    np.testing.assert_array_equal(sa.gp, sb.gp)
    np.testing.assert_array_equal(sa.fp, sb.fp)
    end = max(sa.hbm.last_nonzero_end(), sb.hbm.last_nonzero_end())
    assert sa.hbm.read(0, end) == sb.hbm.read(0, end)


# ------------------------------------------------------------------ stepping is exact

STEP_CASES = ["de_loop", "de_linear_loop", "de_h_store", "aten_linear", "moe_topk", "aten_rope",
              "dma/loop_pm_200", "dma/gap_mm_sv_pv"]


@needs_corpus
@pytest.mark.conformance
@pytest.mark.parametrize("name", STEP_CASES)
def test_single_stepping_matches_an_uninterrupted_run(name):
    if not (_case_dir(name) / "case.json").exists():
        pytest.skip(f"{name} not in this corpus")
    whole = _run_case(name)
    s = _case_session(name)
    steps = 0
    while not s.finished:
        stop = s.step()
        steps += 1
        assert stop.reason in ("step", "end"), stop.describe()
        assert stop.instructions == steps
    assert steps == whole.instructions
    stepped = s.result()
    _same_state(stepped, whole)
    if (_case_dir(name) / "expected").is_dir():
        assert compare_dumps(stepped, _case_dir(name)).identical
    exp = json.loads((_case_dir(name) / "case.json").read_text()).get("expected", {})
    if exp.get("cycles") is not None:
        assert stepped.cycles == exp["cycles"]


@needs_corpus
@pytest.mark.conformance
@pytest.mark.parametrize("name", ["de_linear_loop", "dma/loop_pm_200"])
def test_uneven_steps_and_continues_match_an_uninterrupted_run(name):
    whole = _run_case(name)
    s = _case_session(name)
    sizes = [1, 7, 3, 50, 2]
    i = 0
    while not s.finished:
        s.step(sizes[i % len(sizes)])
        i += 1
        if i == 6:  # a breakpoint armed but never hit must not change anything either
            s.break_at(condition="gp15 == 123456")
            s.watch("vram", s.settings.VECTOR_SRAM_SIZE - 1)
            s.continue_()
    _same_state(s.result(), whole)


# ------------------------------------------------------------------ breakpoints, hand-checked

def test_pc_breakpoint_in_nested_loops_stops_every_inner_iteration():
    s = Session(NESTED)
    s.break_at(pc=3)
    seen = []
    while True:
        stop = s.continue_()
        if stop.reason != "breakpoint":
            break
        assert stop.pc == 3
        outer, inner = s.loop_stack()
        seen.append((s.registers().gp[1], outer.iteration, inner.iteration, s.instructions))
    assert stop.reason == "end"
    assert [g for g, *_ in seen] == list(range(12))
    assert [(o, i) for _, o, i, _ in seen] == [(o, i) for o in range(3) for i in range(4)]
    # before the first body: ADDI, START, START; each inner iteration adds 2, each outer 2 + 1
    assert [n for *_, n in seen[:5]] == [3, 5, 7, 9, 14]
    assert s.result().cycles == run(NESTED).cycles == 36


def test_line_section_and_opcode_breakpoints():
    asm = "; setup\nS_ADDI_INT gp1, gp0, 5\n\n; body\nC_LOOP_START gp2, 2\nS_ADDI_INT gp3, gp3, 1\n" \
          "C_LOOP_END gp2\n; tail\nS_ADDI_INT gp4, gp0, 1\n"
    s = Session(asm)
    bp = s.break_at(line=3)          # blank line: the next instruction (line 5, pc 1)
    assert bp.pcs == (1,)
    s.break_at(section="tail")
    s.break_at(opcode="c_loop_end")
    stops = [s.continue_() for _ in range(5)]
    assert [(st.reason, st.pc) for st in stops] == [("breakpoint", 1), ("breakpoint", 3), ("breakpoint", 3),
                                                    ("breakpoint", 4), ("end", None)]
    assert stops[0].location.line == 5 and stops[0].location.section == "body"
    assert stops[3].location.text == "S_ADDI_INT gp4, gp0, 1"


def test_temporary_breakpoint_and_delete():
    s = Session(NESTED)
    s.break_at(pc=5, temporary=True)
    assert s.continue_().pc == 5
    assert not s.breakpoints
    assert s.continue_().reason == "end"
    with pytest.raises(InputError):
        s.delete(99)


@needs_corpus
def test_c_break_loop_stops():
    # ops/break_inner_outer_continues: C_BREAK pops the inner loop; the outer one goes on.
    s = Session(assemble((_case_dir("ops") / "break_inner_outer_continues" / "program.asm").read_text()))
    s.break_at(pc=5)   # S_ST_INT gp1, gp3, 200, right after C_BREAK
    hits = []
    while (stop := s.continue_()).reason == "breakpoint":
        frames = s.loop_stack()
        hits.append((s.registers().gp[3], s.registers().gp[1], len(frames), frames[0].iteration))
    assert hits == [(1, 0, 1, 0), (2, 0, 1, 1), (3, 0, 1, 2)]
    assert stop.reason == "end" and s.instructions == 1 + 3 * 6 + 2   # START, 3 x (START..END), 2 stores


def test_register_conditions():
    s = Session(NESTED)
    s.break_at(condition="gp1 == 7")           # anywhere: stops when it becomes true
    stop = s.continue_()
    assert stop.reason == "condition" and stop.pc == 4 and s.registers().gp[1] == 7
    assert s.continue_().reason == "end"       # it stays true but does not fire again

    s = Session(NESTED)
    s.break_at(pc=3, condition="gp5 <= 2")     # at pc 3 whenever it holds there
    got = []
    while (stop := s.continue_()).reason == "breakpoint":
        got.append(s.registers().gp[5])
    assert got == [2, 1] * 3


def test_cycle_and_instruction_breakpoints():
    program = assemble(NESTED.replace("S_ADDI_INT gp2, gp2, 10", "V_RED_SUM f1, gp0, 0"))
    whole = run(program, trace_limit=1000)
    s = Session(program)
    s.break_at(instruction=17)
    assert s.continue_().instructions == 17
    s.break_at(cycle=40)
    stop = s.continue_()
    first = int(np.argmax(whole.trace.start >= 40))
    assert stop.reason == "condition" and stop.instructions == first and stop.cycle == whole.trace.start[first]
    assert s.continue_().reason == "end"


def test_next_steps_over_a_loop_and_finish_leaves_one():
    s = Session(NESTED)
    s.step()
    stop = s.next()                       # at pc 1 (outer START): over the whole outer loop
    assert stop.reason == "finish" and stop.pc == 7 and s.registers().gp[1] == 12
    s = Session(NESTED)
    s.run_until(pc=3)
    stop = s.finish()                     # leave the inner loop
    assert stop.pc == 5 and s.registers().gp[1] == 4 and len(s.loop_stack()) == 1
    s.break_at(pc=3)
    assert s.next().pc == 6               # a plain step
    assert s.finish().pc == 3             # a breakpoint inside the loop wins over finish


# ------------------------------------------------------------------ watchpoints

@needs_corpus
@pytest.mark.conformance
def test_watch_on_a_vram_row_written_by_a_matrix_write_out():
    name = "aten_linear"
    d = _case_dir(name)
    s = _case_session(name, asm=True)
    np.testing.assert_array_equal(s.program.words, parse_mem((d / "program.mem").read_text()).words)
    row = 4096 // s.settings.VLEN           # the result tile's first row (";Result: (64, 64) at VRAM[4096]")
    # Oracle: single-step a second session and diff the row after every instruction.
    oracle = _case_session(name, asm=True)
    changes = []
    before = oracle.vram_bits(row)
    while not oracle.finished and len(changes) < 2:
        pc = oracle.pc
        oracle.step()
        now = oracle.vram_bits(row)
        if not np.array_equal(now, before):
            changes.append((pc, oracle.instructions, before, now))
        before = now
    assert len(changes) == 2
    w = s.watch("vram", row)
    for pc, count, old, new in changes:
        stop = s.continue_()
        assert stop.reason == "watchpoint"
        assert stop.writer.pc == pc and stop.writer.text.startswith("M_MM_WO")
        assert stop.writer.line == 61
        assert stop.instructions == count
        (hit,) = stop.watch_hits
        assert hit.watch is w and hit.changed == (row,)
        np.testing.assert_array_equal(hit.old, bf16_bits_to_f32(old))
        np.testing.assert_array_equal(hit.new, bf16_bits_to_f32(new))
    assert w.hits == 2


def test_watch_int_sram_and_fp_sram_entries():
    asm = "S_ADDI_INT gp1, gp0, 7\nS_ST_INT gp1, gp0, 5\nS_ST_INT gp1, gp0, 5\nS_ST_INT gp1, gp0, 6\n" \
          "S_LD_FP f1, gp0, 0\nS_ST_FP f1, gp0, 9\n"
    s = Session(asm, fp_sram=np.array([1.5], dtype=np.float16))
    s.watch("int_sram", 5)
    s.watch("fp_sram", 9)
    stop = s.continue_()
    assert stop.reason == "watchpoint" and stop.writer.pc == 1 and stop.pc == 2
    assert stop.watch_hits[0].old.tolist() == [0] and stop.watch_hits[0].new.tolist() == [7]
    stop = s.continue_()      # the second store writes the same value: no change, no stop
    assert stop.writer.pc == 5 and stop.watch_hits[0].new.tolist() == [1.5]
    assert s.continue_().reason == "end"


@needs_corpus
@pytest.mark.conformance
def test_watch_hbm_bytes_written_by_h_store():
    name = "de_h_store"
    oracle = _run_case(name)
    s = _case_session(name)
    written = np.nonzero(np.frombuffer(oracle.state.hbm.read(0, oracle.state.hbm.last_nonzero_end()), np.uint8)
                         != np.frombuffer(s.hbm_bytes(0, oracle.state.hbm.last_nonzero_end()), np.uint8))[0]
    assert written.size
    first = int(written[0])
    s.watch("hbm", first, 16)
    stop = s.continue_()
    assert stop.reason == "watchpoint" and s.opcode(stop.writer.pc) == "H_STORE_V"
    assert first in stop.watch_hits[0].changed
    s.delete()
    s.continue_()
    _same_state(s.result(), oracle)


# ------------------------------------------------------------------ state, writes, compare

def test_state_reads_and_what_if_writes():
    asm = "S_ADDI_INT gp1, gp0, 64\nV_ADD_VV gp1, gp0, gp0, 0\nS_ADDI_INT gp2, gp1, 1\n"
    s = Session(asm, vram=np.ones((1, 64), dtype=np.float32).astype("<u2") * 0x3F80)
    s.step()
    s.set_register("gp1", 128)                 # what if the destination were row 2?
    s.set_vram_row(0, np.full(64, 0.25))
    s.step(2)
    assert s.registers().gp[2] == 129
    np.testing.assert_array_equal(s.vram_rows(2)[0], np.full(64, 0.5, dtype=np.float32))
    np.testing.assert_array_equal(s.vram_rows(1)[0], np.zeros(64, dtype=np.float32))
    s.set_register("f3", 0.1)
    assert s.register("f3") == pytest.approx(0.1, rel=1e-2)
    with pytest.raises(InputError):
        s.set_register("gp16", 1)
    with pytest.raises(InputError):
        s.vram_rows(-1)


def test_compare_reports_the_first_mismatches(tmp_path):
    asm = "S_ADDI_INT gp1, gp0, 64\nV_ADD_VV gp1, gp0, gp0, 0\n"
    vals = np.arange(64, dtype=np.float32) / 8
    s = Session(asm, vram=f32_to_bf16_bits(vals).reshape(1, 64))
    s.continue_()
    want = np.stack([vals, 2 * vals])
    assert s.compare(0, want).ok
    want[1, 5] += 1.0
    np.save(tmp_path / "golden.npy", want)
    res = s.compare(0, tmp_path / "golden.npy", atol=1e-3, rtol=0)
    assert not res.ok and res.mismatched == 1 and res.first_mismatches[0].index == (1, 5)
    assert res.first_mismatches[0].got == 2 * vals[5] and res.max_abs_error == 1.0
    assert "MISMATCH: 1 of 128" in res.describe()


def test_errors_stop_with_the_abort():
    s = Session("C_LOOP_END gp1\n")
    stop = s.continue_()
    assert stop.reason == "error" and stop.error.kind == "loop" and s.finished
    assert s.step().reason == "error"
    with pytest.raises(InputError):
        Session(NESTED).break_at(pc=99)
    with pytest.raises(InputError):
        Session(NESTED).break_at(condition="gp3 = 1")
    with pytest.raises(InputError):
        Session(NESTED).break_at(section="nope")


@needs_corpus
@pytest.mark.conformance
@pytest.mark.parametrize("name", ["aten_linear", "de_h_store", "moe_topk", "de_loop", "aten_rope", "de_v_shift_v"])
def test_only_the_listed_writers_change_each_memory(name):
    """Watchpoints check only after MEMORY_WRITERS opcodes: prove no other opcode changes memory."""
    from debugger.stops import MEMORY_WRITERS
    s = _case_session(name)
    m = s.machine

    def snapshot():
        used = max(int(m.ctrl[VRAM_ROWS_USED]), 1)
        hbm_end = max(m.store.last_nonzero_end(), 64)
        return {"vram": m.vram[:used + 64].copy(), "mram": m.mram.copy(), "fp_sram": m.fpsram.copy(),
                "int_sram": m.intsram.copy(), "hbm": m.store.read(0, hbm_end + 4096)}

    seen = set()
    while not s.finished:
        op = s.opcode(s.pc)
        before = snapshot()
        s.step()
        after = snapshot()
        for mem in MEMORY_WRITERS:
            a, b = before[mem], after[mem]
            same = a == b if isinstance(a, bytes) else np.array_equal(a, b)
            if not same:
                assert op in MEMORY_WRITERS[mem], f"{op} changed {mem}"
                seen.add((op, mem))
    assert seen


@needs_corpus
@pytest.mark.conformance
def test_watch_on_an_mram_tile_filled_by_prefetches():
    name = "aten_linear"
    oracle = _case_session(name)
    changes = []
    before = oracle.mram_tile(0)
    while not oracle.finished and len(changes) < 3:
        pc = oracle.pc
        oracle.step()
        now = oracle.mram_tile(0)
        if not np.array_equal(now.view(np.uint32), before.view(np.uint32)):
            changes.append((pc, oracle.instructions, before, now))
        before = now
    assert changes
    s = _case_session(name)
    s.watch("mram", 0)
    for pc, count, old, new in changes:
        stop = s.continue_()
        assert stop.reason == "watchpoint" and stop.writer.pc == pc and s.opcode(pc) == "H_PREFETCH_M"
        assert stop.instructions == count and stop.watch_hits[0].changed == (0,)
        np.testing.assert_array_equal(stop.watch_hits[0].old[0], old)
        np.testing.assert_array_equal(stop.watch_hits[0].new[0], new)


def test_hbm_tensors_decode_like_the_tensor_reader():
    from emulator.tensors import read_mx_tensor
    ex = Path(__file__).resolve().parents[1] / "examples" / "linear"
    image = (ex / "hbm.bin").read_bytes()
    s = Session(ex / "program.asm", hbm=ex / "hbm.bin", fp_sram=ex / "fp_sram.bin")
    np.testing.assert_array_equal(s.hbm_tensor(0, (4, 64)), read_mx_tensor(image, 0, (4, 64)))
    np.testing.assert_array_equal(s.hbm_tensor(4096, (64, 64)), read_mx_tensor(image, 4096, (64, 64)))
    assert s.hbm_bytes(4096, 8) == image[4096:4104]
    s.run_until(section="store")
    assert s.compare(16, np.load(ex / "expected_y.npy"), atol=1e-2, rtol=1e-2).ok
