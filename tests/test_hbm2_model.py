"""The HBM timing models on their own (no executor).

Unit tests use the numbers of /work/shared/reference/hbm2-timing.md; the conformance test
replays every program of the DMA corpus through a small interpreter of the instruction subset
those programs use (written here, independent of the emulator's executor) and compares the
reference's cycles, per-instruction cycles, HBM byte counts and loop-iteration end times.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from emulator.hbm import hbm2
from emulator.hbm.analytic import CYCLES_PER_TRANSFER, FIRST_ACCESS
from emulator.hbm.timing import HBM_MODEL_KINDS, new_timing_state, read_batch, write_block
from emulator.settings import load_settings
from isa_specs import eval_latency, load_isa
from tests.conftest import CONFORMANCE, sub_corpus_cases

KIB = 1024
ROW_STRIDE = 128 * KIB  # A >> 17 is the DRAM row


def blocks(*addrs: int) -> np.ndarray:
    return np.array(addrs, dtype=np.int64)


def read(ts, now: int, *addrs: int) -> int:
    b = blocks(*addrs)
    return int(read_batch(ts, now, b, len(b)))


def mapping(addr: int) -> tuple[int, int, int, int, int]:
    ch, pc, bg, ba, row, _col = hbm2.map_address(addr)
    return int(ch), int(pc), int(bg), int(ba), int(row)


# ------------------------------------------------------------------------------ address mapping
def test_block_transfers_go_to_four_channels():
    # A[8:6] = 0 and A[14] = 0: transfers j = 0..3 land on channels 0..3, same pc/bg/bank/row
    assert [mapping(16 * j) for j in range(4)] == [(j, 0, 0, 0, 0) for j in range(4)]
    # A[8:6] = 5: channels 5 ^ j
    assert [mapping(5 * 64 + 16 * j)[0] for j in range(4)] == [5 ^ j for j in range(4)]


def test_column_bits_flip_channel_pseudochannel_bankgroup():
    assert mapping(1 << 14) == (4, 0, 0, 0, 0)   # A[14]: channel bit 2
    assert mapping(1 << 15) == (0, 1, 0, 0, 0)   # A[15]: pseudochannel
    assert mapping(1 << 16) == (0, 0, 1, 0, 0)   # A[16]: bank-group bit 0
    assert mapping(0x10000 + 16) == (1, 0, 1, 0, 0)


def test_fields_bank_row_and_4k_coverage():
    assert mapping(1 << 12)[3] == 1 and mapping(3 << 12)[3] == 3           # A[13:12] = bank
    nodes = {mapping(a)[:3] for a in range(0, 4 * KIB, 16)}
    assert len(nodes) == 8 * 2 * 4                                          # all ch, pc, bg
    assert {mapping(a)[3] for a in range(0, 4 * KIB, 16)} == {0}
    # stride 128 KiB: same channel/pc/bg/bank, next row
    assert [mapping(k * ROW_STRIDE + 64) for k in range(3)] == [(1, 0, 0, 0, k) for k in range(3)]
    # the row is not masked to 15 bits: addresses beyond 4 GiB keep their high bits
    assert mapping(1 << 34)[4] == 1 << 17
    assert mapping((1 << 40) + ROW_STRIDE)[4] == (1 << 23) + 1


# ------------------------------------------------------------------------------ single accesses
def test_lone_read_closed_bank_hit_and_conflict():
    ts = new_timing_state("hbm2")
    assert read(ts, 5, 0) == 5 + 18                        # ACT at 6, RD at 13, data at 24
    assert read(ts, 30, 1024) == 30 + 18                   # A[10]: another bank group, closed
    assert read(ts, 50, 0) == 50 + 11                      # row hit
    assert read(ts, 100, ROW_STRIDE) == 100 + 25           # row conflict: PRE, ACT, RD


def test_back_to_back_costs_one_cycle():
    ts = new_timing_state("hbm2")
    end = read(ts, 0, 0)
    assert end == 18
    assert read(ts, end, 0) - end == 12                    # starts after that instant's tick
    ts = new_timing_state("hbm2")
    end = read(ts, 0, 0)
    assert read(ts, end + 1, 0) - (end + 1) == 11          # one idle cycle: plain row hit


def test_queue_full_refuses_34th_transfer_to_one_channel():
    st = new_timing_state("hbm2").hbm2
    addrs = [k * ROW_STRIDE for k in range(34)]            # all channel 0, pc 0, bg 0, bank 0
    accepted = [bool(hbm2.send(st, a, False)) for a in addrs]
    assert accepted == [True] * 33 + [False]
    assert bool(hbm2.send(st, 16, False))                  # channel 1 still has room
    # writes have their own 33-entry buffer
    assert [bool(hbm2.send(st, a, True)) for a in addrs] == [True] * 33 + [False]


def test_refused_reads_retry_and_complete():
    ts = new_timing_state("hbm2")
    # 40 blocks in 40 different rows of one bank: 40 transfers per channel 0..3, 7 refused first
    end = read(ts, 0, *[k * ROW_STRIDE for k in range(40)])
    # oldest first, one row at a time: ACT, RD 7 later, PRE when nRAS (17) has passed since the
    # ACT, next ACT nRP (7) later -> a new row every 24 cycles; the first data comes at 18
    assert end == 18 + 39 * 24
    views = hbm2.state_views(ts.hbm2)
    assert views["pending_reads"] == 0
    assert int(views["buf_len"].sum()) == 0 and int(views["serve_len"].sum()) == 0


def test_read_forwarded_from_queued_write():
    ts = new_timing_state("hbm2")
    t = read(ts, 0, 4096)                                  # something to be back to back with
    t = int(write_block(ts, t, 0))                         # posted: no tick is scheduled
    assert t == 18
    assert read(ts, t, 0) - t == 1                         # forwarded: completes at the next tick
    ts = new_timing_state("hbm2")
    assert int(write_block(ts, 0, 0)) == 0
    assert read(ts, 0, 0) == 0                             # cold: that tick runs in the same instant
    ts = new_timing_state("hbm2")
    assert int(write_block(ts, 0, 0)) == 0
    assert read(ts, 0, 64) == 18                           # another address is not forwarded


def test_write_queue_full_waits_for_catch_up_ticks():
    ts = new_timing_state("hbm2")
    t = 0
    for k in range(33):                                    # 33 writes to each of channels 0..3
        t = int(write_block(ts, t, k * ROW_STRIDE))
    assert t == 0
    # refused at 0; the catch-up tick at 1 (write mode: no reads) issues the ACT of the oldest
    # write, which moves it to the active buffer and frees a slot: accepted at 1
    t = int(write_block(ts, 0, 33 * ROW_STRIDE))
    assert t == 1
    assert int(hbm2.state_views(ts.hbm2)["buf_len"][0, hbm2.B_WRITE]) == 33


def _bank_of(addr: int) -> tuple[int, int]:
    """(channel, bank node within the channel) of a 16-byte address, as the open_row view indexes it."""
    ch, pc, bg, ba, _row = mapping(addr)
    org = hbm2.ORGANISATION
    return ch, (pc * org["bankgroups"] + bg) * org["banks"] + ba


@pytest.mark.parametrize("queued_writes, write_mode", [(25, 0), (26, 1)])
def test_write_mode_entered_above_high_watermark(queued_writes, write_mode):
    # channel 0: writes to bank 1 (rows 0..n-1), one read to bank 0; |write| > 25.6 -> write mode
    st = hbm2.new_hbm2_state()
    writes = [k * ROW_STRIDE + 4096 for k in range(queued_writes)]
    assert {mapping(a)[0] for a in writes + [0]} == {0}
    for a in writes:
        assert hbm2.send(st, a, True)
    assert hbm2.send(st, 0, False)
    hbm2.tick_all(st)
    v = hbm2.state_views(st)
    assert int(v["write_mode"][0]) == write_mode
    opened = 4096 if write_mode else 0                     # the first command is that request's ACT
    assert int(v["open_row"][_bank_of(opened)]) == 0
    assert int(v["open_row"][_bank_of(4096 if opened == 0 else 0)]) == -1


@pytest.mark.parametrize("queued_writes, write_mode", [(6, 0), (7, 1)])
def test_write_mode_left_below_low_watermark(queued_writes, write_mode):
    st = hbm2.new_hbm2_state()
    for k in range(queued_writes):
        assert hbm2.send(st, k * ROW_STRIDE + 4096, True)
    assert hbm2.send(st, 0, False)
    hbm2.state_views(st)["write_mode"][0] = 1              # in write mode; leave when |write| < 6.4
    hbm2.tick_all(st)
    assert int(hbm2.state_views(st)["write_mode"][0]) == write_mode


def test_pending_fifo_served_from_head_only_one_per_tick():
    st = hbm2.new_hbm2_state()
    assert hbm2.send(st, 0, False)                         # channel 0, closed bank: RD at clk 8
    done_at = []
    for _ in range(9):
        if hbm2.tick_all(st):
            done_at.append(int(st[hbm2.H_NEXT]))
    assert hbm2.send(st, 4096, True)                       # a queued write ...
    assert hbm2.send(st, 4096, False)                      # ... forwards this read: depart clk 10
    for _ in range(15):
        if hbm2.tick_all(st):
            done_at.append(int(st[hbm2.H_NEXT]))
    # the forwarded read waits behind the head (data at clk 8 + 11 = 19), then takes the next tick
    assert done_at == [19, 20]


def test_pending_fifo_overflow_is_a_clear_error():
    ts = new_timing_state("hbm2", pending_capacity=2)
    # 4 bank groups of channels 0..3: RDs 2 cycles apart, 11 cycles in flight -> 4 runs queued
    with pytest.raises(ValueError, match="pending-read FIFO overflowed"):
        read(ts, 0, 0, 1024, 2048, 3072)


# ------------------------------------------------------------------------------ worked examples
def prefetch_blocks(base: int, scale: int, rows: int, dim: int, stride: int) -> list[int]:
    out = []
    for k in range(rows):
        e = base + k * stride
        out += list(range(e & ~63, e + dim, 64))
        out.append((base + scale + int(np.float32(k) * (np.float32(stride) / np.float32(8)))) & ~63)
    return out


def test_pv_contig_p0_is_32_cycles():
    ts = new_timing_state("hbm2")
    b = prefetch_blocks(0, 0x10000, rows=4, dim=64, stride=64)
    assert b == [0, 0x10000, 64, 0x10000, 128, 0x10000, 192, 0x10000]  # per row: element, scale
    assert read(ts, 6, *b) - 6 == 32


def test_pm_contig_is_120_cycles():
    ts = new_timing_state("hbm2")
    b = prefetch_blocks(0, 0x10000, rows=64, dim=64, stride=64)
    assert len(b) == 128 and b[:4] == [0, 0x10000, 64, 0x10000] and b[-1] == 0x10000 + 448
    assert read(ts, 6, *b) - 6 == 120


def test_sv_contig_is_157_cycles():
    ts = new_timing_state("hbm2")
    t = 6
    rmw_reads = []
    for k in range(4):
        for blk in (k * 64, 0x10000):                      # element block, then the scale block
            start = t
            t = read(ts, t, blk)
            rmw_reads.append(t - start)
            t = int(write_block(ts, t, blk))
    assert rmw_reads == [18, 22, 12, 21, 21, 21, 21, 21]
    assert t - 6 == 157


# ------------------------------------------------------------------------------ interface
def test_interface_errors_and_empty_batch():
    with pytest.raises(ValueError, match="unknown HBM timing model"):
        new_timing_state("ddr4")
    assert set(HBM_MODEL_KINDS) == {"hbm2", "analytic"}
    for model in HBM_MODEL_KINDS:
        ts = new_timing_state(model)
        assert int(read_batch(ts, 7, blocks(), 0)) == 7
    ts = new_timing_state("hbm2")
    with pytest.raises(ValueError, match="multiples"):
        read(ts, 0, 32)
    with pytest.raises(ValueError, match="multiples"):
        write_block(ts, 0, 8)
    with pytest.raises(ValueError, match="larger than the block address array"):
        read_batch(ts, 0, blocks(0), 2)
    with pytest.raises(ValueError, match="built for the analytic model"):
        hbm2.hbm2_read_batch(new_timing_state("analytic").hbm2, 0, blocks(0), 1)


def test_analytic_formula():
    ts = new_timing_state("analytic")
    assert ts.kind == HBM_MODEL_KINDS["analytic"]
    assert read(ts, 10, 0) == 10 + FIRST_ACCESS
    b = prefetch_blocks(0, 0x10000, rows=4, dim=64, stride=64)
    # channels 0..3, pseudochannel 0 get 8 transfers each
    assert read(ts, 6, *b) == 6 + FIRST_ACCESS + CYCLES_PER_TRANSFER * 7
    assert read(ts, 6, *b) == 6 + FIRST_ACCESS + CYCLES_PER_TRANSFER * 7  # no state carried
    # 64 blocks contiguous: 256 transfers spread evenly over 16 pseudochannels
    assert read(ts, 0, *range(0, 64 * 64, 64)) == FIRST_ACCESS + CYCLES_PER_TRANSFER * 15
    assert int(write_block(ts, 3, 0)) == 3


# ------------------------------------------------------------------------------ corpus replay
@dataclass
class Replay:
    cycles: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    pc_cycles: dict[int, int] = field(default_factory=dict)
    pc_read: dict[int, int] = field(default_factory=dict)
    pc_written: dict[int, int] = field(default_factory=dict)
    loop_end_times: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Decoded:
    mnemonic: str
    fields: dict[str, int]
    latency: int | None  # None: decided by the HBM model


def decode_program(words: list[int], settings) -> list[Decoded]:
    """Decode with the field table of opcodes.toml; fixed latencies from its latency expressions."""
    isa = load_isa()
    names = settings.cost_names()
    out = []
    for w in words:
        op = isa.by_opcode[isa.fields["opcode"].extract(w)]
        fields = isa.decode_fields(w)
        latency = None if op.is_dma else eval_latency(op.latency, {**names, **fields})
        out.append(Decoded(op.mnemonic, fields, latency))
    return out


def _elem_bits(t) -> int:
    return int(t.sign) + t.exponent + t.mantissa


def dma_blocks(ins: Decoded, settings, gp, areg, scale_reg: int, stride_reg: int) -> list[list[int]]:
    """Per row of an H_* instruction: the 64-byte blocks it touches, as hbm2-timing.md §9 lists them.

    Prefetch rows: the element blocks, then the one block holding scale_addr(k).  Store rows:
    the element blocks, then every block the scale bytes touch.  Addresses per
    hbm-dma-mx-formats.md §1.4 (u32 element stride, f32 scale stride truncated).
    """
    f = ins.fields
    mn = ins.mnemonic
    if mn == "H_PREFETCH_M":
        dim, rows = settings.MLEN, settings.prefetch_m_rows
        dtype = settings.precision["HBM_M_WEIGHT_TYPE" if f["funct1"] == 0 else "HBM_M_KV_TYPE"]
    else:
        dim = settings.VLEN
        rows = settings.HBM_V_Prefetch_Amount if mn == "H_PREFETCH_V" else settings.HBM_V_Writeback_Amount
        dtype = settings.precision["HBM_V_ACT_TYPE" if f["funct1"] == 0 else "HBM_V_KV_TYPE"]
    eb, sb = _elem_bits(dtype.elem), _elem_bits(dtype.scale)
    ratio = eb * dtype.block // sb
    elem_len = eb * dim // 8
    scale_len = sb * (dim // dtype.block) // 8
    offset, base = gp[f["rs1"]], areg[f["rs2"]]
    stride = stride_reg if f["rs3"] == 1 else dim
    stride_scale = np.float32(stride) / np.float32(ratio)
    out = []
    for k in range(rows):
        e = base + offset + ((k * stride) & 0xFFFFFFFF)
        s = base + scale_reg + offset // ratio + int(np.float32(k) * stride_scale)
        row = list(range(e & ~63, e + elem_len, 64))
        row += list(range(s & ~63, s + scale_len, 64)) if mn == "H_STORE_V" else [s & ~63]
        out.append(row)
    return out


def run_dma_program(words: list[int], settings, model: str = "hbm2") -> Replay:
    """Interpret the DMA corpus subset: S_ADDI_INT, S_LUI_INT, C_SET_*, H_*, V_ADD_VV, M_MM, loops.

    Every non-DMA instruction costs its latency expression from opcodes.toml; DMA instructions
    cost what the HBM model says: one read batch per prefetch, a read then a write per block
    of a store (hbm2-timing.md §9).
    """
    program = decode_program(words, settings)
    ts = new_timing_state(model)
    gp = [0] * 16
    areg = [0] * 16
    scale_reg, stride_reg = 0, 1
    loops: list[int] = []
    out = Replay()
    t = 0
    pc = 0
    one = np.zeros(1, dtype=np.int64)
    while pc < len(program):
        ins = program[pc]
        f = ins.fields
        mn = ins.mnemonic
        rd, rs1, rs2 = f["rd"], f["rs1"], f["rs2"]
        next_pc = pc + 1
        start = t
        nread = nwritten = 0
        if ins.latency is None:
            rows = dma_blocks(ins, settings, gp, areg, scale_reg, stride_reg)
            if mn == "H_STORE_V":
                for blk in (b for row in rows for b in row):
                    one[0] = blk
                    t = int(read_batch(ts, t, one, 1))
                    t = int(write_block(ts, t, blk))
                    nread += 64
                    nwritten += 64
            else:
                batch = np.array([b for row in rows for b in row], dtype=np.int64)
                t = int(read_batch(ts, t, batch, len(batch)))
                nread = 64 * len(batch)
        else:
            t += ins.latency
            if mn == "S_ADDI_INT":
                gp[rd] = (gp[rs1] + f["imm18"]) & 0xFFFFFFFF
            elif mn == "S_LUI_INT":
                gp[rd] = (f["imm22"] << 12) & 0xFFFFFFFF
            elif mn == "C_SET_ADDR_REG":
                areg[rd] = (gp[rs1] << 32) | gp[rs2]
            elif mn == "C_SET_SCALE_REG":
                scale_reg = gp[rd]
            elif mn == "C_SET_STRIDE_REG":
                stride_reg = gp[rd]
            elif mn == "C_LOOP_START":
                gp[rd] = f["imm22"]
                loops.append(pc)
            elif mn == "C_LOOP_END":
                if gp[rd] > 1:
                    gp[rd] -= 1
                    next_pc = loops[-1] + 1
                else:
                    gp[rd] = 0
                    loops.pop()
            elif mn not in ("V_ADD_VV", "M_MM"):  # compute ops: only their latency matters here
                raise AssertionError(f"pc {pc}: {mn} is outside the DMA corpus subset")
        out.pc_cycles[pc] = out.pc_cycles.get(pc, 0) + (t - start)
        out.pc_read[pc] = out.pc_read.get(pc, 0) + nread
        out.pc_written[pc] = out.pc_written.get(pc, 0) + nwritten
        out.bytes_read += nread
        out.bytes_written += nwritten
        if mn == "C_LOOP_END":
            out.loop_end_times.append(t)
        pc = next_pc
    out.cycles = t
    return out


def read_words(path: Path) -> list[int]:
    return [int(tok, 16) for tok in path.read_text().split()]


def loop_iteration_ends(words: list[int], settings, model: str = "hbm2") -> list[int]:
    """End time of the program when its (single, tail) loop runs 1, 2, ... N times.

    With the loop as the tail of the program that is the time after each C_LOOP_END of the
    full run (the simulation is causal); otherwise every prefix is run with the count patched.
    """
    isa = load_isa()
    f = isa.fields
    mnemonic = [isa.by_opcode[f["opcode"].extract(w)].mnemonic for w in words]
    assert mnemonic.count("C_LOOP_START") == 1
    if mnemonic[-1] == "C_LOOP_END":
        return run_dma_program(words, settings, model).loop_end_times
    start = mnemonic.index("C_LOOP_START")
    imm = f["imm22"]
    count = imm.extract(words[start])
    ends = []
    for i in range(1, count + 1):
        patched = list(words)
        patched[start] = (words[start] & ~(imm.mask << imm.lsb)) | (i << imm.lsb)
        ends.append(run_dma_program(patched, settings, model).cycles)
    return ends


DMA_CASES = sub_corpus_cases("dma")


@pytest.mark.conformance
@pytest.mark.skipif(CONFORMANCE is None or not DMA_CASES, reason="DMA conformance corpus not found")
@pytest.mark.parametrize("case", DMA_CASES)
def test_dma_corpus_replay(case):
    d = CONFORMANCE / "dma" / case
    ref = json.loads((d / "case.json").read_text())
    settings = load_settings(d / "settings.toml")
    words = read_words(d / "program.mem")
    got = run_dma_program(words, settings)
    assert got.bytes_read == ref["hbm_bytes_read"]
    assert got.bytes_written == ref["hbm_bytes_written"]
    deterministic = ref["deterministic"]
    if deterministic:
        assert got.cycles == ref["cycles"] == ref["reference_model_cycles"]
    else:
        # the peer itself varies; a port reproduces the tick-first reference model
        assert got.cycles == ref["reference_model_cycles"]
        assert min(ref["repeat_cycles"]) <= got.cycles <= max(ref["repeat_cycles"])
    key = "cycles_total" if deterministic else "reference_model_cycles_total"
    for entry in ref["per_instruction"]:
        pc = entry["pc"]
        assert (pc, got.pc_cycles.get(pc, 0)) == (pc, entry[key]), entry["asm"]
        assert got.pc_read.get(pc, 0) == entry["hbm_bytes_read"], entry["asm"]
        assert got.pc_written.get(pc, 0) == entry["hbm_bytes_written"], entry["asm"]
    if "loop_iteration_end_cycles" in ref:
        ends = loop_iteration_ends(words, settings)
        key = "loop_iteration_end_cycles" if deterministic else "reference_model_loop_iteration_end_cycles"
        assert ends == ref[key]


@pytest.mark.conformance
@pytest.mark.skipif(CONFORMANCE is None or "loop_pv_sv_200" not in DMA_CASES, reason="DMA corpus not found")
def test_loop_prefix_runs_equal_iteration_end_times():
    """The shortcut in loop_iteration_ends (tail loop) agrees with patched-count prefix runs."""
    d = CONFORMANCE / "dma" / "loop_pv_sv_200"
    settings = load_settings(d / "settings.toml")
    words = read_words(d / "program.mem")
    isa = load_isa()
    f = isa.fields
    start = next(i for i, w in enumerate(words) if isa.by_opcode[f["opcode"].extract(w)].mnemonic == "C_LOOP_START")
    imm = f["imm22"]
    full = run_dma_program(words, settings).loop_end_times
    for count in (1, 2, 7):
        patched = list(words)
        patched[start] = (words[start] & ~(imm.mask << imm.lsb)) | (count << imm.lsb)
        assert run_dma_program(patched, settings).cycles == full[count - 1]


@pytest.mark.conformance
@pytest.mark.skipif(CONFORMANCE is None or not DMA_CASES, reason="DMA conformance corpus not found")
def test_analytic_model_runs_the_corpus_with_the_same_bytes():
    """The analytic model is an estimate: same traffic, finite cycles, never below the 1-cycle ops."""
    for case in DMA_CASES:
        d = CONFORMANCE / "dma" / case
        ref = json.loads((d / "case.json").read_text())
        got = run_dma_program(read_words(d / "program.mem"), load_settings(d / "settings.toml"), "analytic")
        assert got.bytes_read == ref["hbm_bytes_read"]
        assert got.bytes_written == ref["hbm_bytes_written"]
        n_dma = sum(e["executions"] for e in ref["per_instruction"] if e["asm"].startswith("H_"))
        assert got.cycles >= n_dma * FIRST_ACCESS
