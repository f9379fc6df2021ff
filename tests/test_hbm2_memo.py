"""The HBM2 model's batch memo (emulator/hbm/hbm2.py, "Batch memo"): replaying a read batch from
a record must leave exactly the state running it would.

* Against the oracle (tests/hbm2_oracle.py), call by call, on sequences built to hit: a few DMA
  shapes repeated at bases that rename to the same key (other rows, bank groups, channels),
  with back-to-back, short, long and "behind" gaps, writes ticked through right before a batch
  (its channels drained but their ready cycles and ACT times not yet stale), posted writes and
  stores in between (the channels they touch are not drained: those batches are run), reads
  forwarded from queued writes, open-row collisions with the previous batch, and refusals.
* Memo on against memo off: the full state arrays (scratch slots aside) after every call.
"""

from __future__ import annotations

import numpy as np
import pytest

from emulator.hbm import hbm2
from tests.test_hbm2_differential import ROW, SCALE_BASE, prefetch_blocks, run_both

KIB = 1024


def _prefetch(base: int, rows: int, stride: int, dim: int = 64) -> list[int]:
    out = []
    for k in range(rows):
        e = base + k * stride
        out += list(range(e & ~63, e + dim, 64))
        out.append((SCALE_BASE + base // 8 + int(np.float32(k) * (np.float32(stride) / np.float32(8)))) & ~63)
    return out


# Shapes of read batches, each a function of a base that moves the whole batch.
SHAPES = (
    lambda base: _prefetch(base, 4, 64),                                  # H_PREFETCH_V-like
    lambda base: _prefetch(base, 16, 64),
    lambda base: _prefetch(base, 8, 4096),
    lambda base: [base + k * ROW for k in range(5)],                      # row conflicts in one bank
    lambda base: [base + (k % 4) * 4 * KIB + (k // 4) * ROW for k in range(48)],  # refusals (>33 per channel)
    lambda base: [base + 64 * k for k in range(8)] + [base + ROW + 1024 * k for k in range(4)],
)


def repeated_calls(seed: int, n_calls: int):
    """(kind, gap kind, gap, blocks) like test_hbm2_differential.random_calls, built to hit the memo."""
    rng = np.random.default_rng(seed)
    written: list[int] = []
    for _ in range(n_calls):
        gap_kind = rng.choice(["back_to_back", "short", "medium", "long", "behind"], p=[0.3, 0.2, 0.3, 0.1, 0.1])
        gap = {"back_to_back": 0, "short": int(rng.integers(1, 6)), "medium": int(rng.integers(6, 80)),
               "long": int(rng.integers(3000, 9000)), "behind": 0}[gap_kind]
        # bases that rename to few keys: whole rows, bank / bank-group / channel steps
        base = ROW * int(rng.integers(0, 3)) + 4 * KIB * int(rng.integers(0, 2)) + 512 * int(rng.integers(0, 2))
        what = rng.choice(["read", "store", "write", "forward", "prefetch", "ticks"],
                          p=[0.7, 0.08, 0.07, 0.05, 0.05, 0.05])
        if what == "ticks":
            # drained right before the next call, which starts with recent ready cycles and ACTs
            yield "ticks", "back_to_back", int(rng.integers(9, 16)), [base + 1024 * k for k in range(2)]
        elif what == "read":
            yield "read", gap_kind, gap, SHAPES[int(rng.integers(0, len(SHAPES)))](base)
        elif what == "prefetch":
            yield "read", gap_kind, gap, prefetch_blocks(rng, base)
        elif what == "store":
            blocks = [base + 64 * k for k in range(int(rng.integers(1, 4)))]
            yield "store", gap_kind, gap, blocks
            written += blocks
        elif what == "write":
            blocks = [base + k * ROW for k in range(int(rng.integers(1, 6)))]
            yield "write", gap_kind, gap, blocks
            written += blocks
        else:
            pool = written[-20:] or [0]
            yield "read", gap_kind, gap, [pool[int(i)] for i in rng.integers(0, len(pool), 3)]


@pytest.mark.parametrize("seed", range(8))
def test_memo_hits_match_the_oracle(seed):
    st = run_both(seed, 200, calls_of=repeated_calls)
    stats = hbm2.memo_stats(st)
    # the sequences exercise all three paths
    assert stats["hits"] > 15 and stats["misses"] > 5 and stats["skips"] > 5, stats


@pytest.mark.parametrize("seed", range(2))
def test_memo_clearing_a_full_arena_matches_the_oracle(seed):
    """An arena with room for a few records is cleared again and again."""
    st = run_both(seed, 150, calls_of=repeated_calls, memo_slots=1500)
    stats = hbm2.memo_stats(st)
    assert stats["clears"] > 5 and stats["hits"] >= 3, stats


def test_memo_on_random_sequences_matches_the_oracle():
    """The general random sequences (mostly misses and skips) with the memo on, already covered
    by test_hbm2_differential, here with an arena small enough to clear."""
    run_both(7, 150, memo_slots=1500)


# ------------------------------------------------------------------------------ memo on vs off
def scratch_free(st: np.ndarray) -> np.ndarray:
    """The state array with every slot that is scratch zeroed and the memo left out: the cached
    scan of each channel (recomputed after any change), buffer window slots outside the live
    entries, serve-ring slots outside the live runs, and the memo's header counters."""
    hbm2.synchronise(st)
    cap = int(st[hbm2.H_SERVE_CAP])
    out = st[:hbm2.SERVE_BASE + hbm2.N_CH * 2 * cap].copy()
    out[hbm2.H_MEMO:hbm2.N_HEADER] = 0
    for ch in range(hbm2.N_CH):
        cb = hbm2.CH_BASE + ch * hbm2.CH_SIZE
        for off in (hbm2.C_WM_SETTLED, hbm2.C_PLAN_OK, hbm2.C_ACT_AT, hbm2.C_ACT_POS, hbm2.C_ACT_CMD,
                    hbm2.C_SRC_AT, hbm2.C_SRC_POS, hbm2.C_SRC_CMD):
            out[cb + off] = 0
        for kind in range(hbm2.N_BUF_KINDS):
            head, tail = int(st[cb + hbm2.C_HEAD + kind]), int(st[cb + hbm2.C_TAIL + kind])
            buf = cb + kind * hbm2.BUF_STRIDE
            for i in range(hbm2.WINDOW):
                if not head <= i < tail or st[buf + hbm2.C_RBW + i] == hbm2.DEAD:
                    for field in (hbm2.C_ADDR, hbm2.C_RBW, hbm2.C_ARRIVE):
                        out[buf + field + i] = 0
        first = hbm2.SERVE_BASE + ch * 2 * cap
        head, n = int(st[cb + hbm2.C_SHEAD]), int(st[cb + hbm2.C_SLEN])
        live = {(head + i) % cap for i in range(n)}
        for i in range(cap):
            if i not in live:
                out[first + i] = out[first + cap + i] = 0
    return out


@pytest.mark.parametrize("seed", range(4))
def test_memo_replay_leaves_the_state_a_run_leaves(seed):
    on, off = hbm2.new_hbm2_state(), hbm2.new_hbm2_state(memo_slots=0)
    t = prev_now = 0
    one = np.zeros(1, dtype=np.int64)
    for call, (kind, gap_kind, gap, blocks) in enumerate(repeated_calls(seed, 200)):
        now = prev_now if gap_kind == "behind" else t + gap
        prev_now = now
        if kind == "read":
            b = np.array(blocks, dtype=np.int64)
            t_on = int(hbm2.hbm2_read_batch(on, now, b, len(b)))
            t_off = int(hbm2.hbm2_read_batch(off, now, b, len(b)))
        else:
            t_on = t_off = now
            for blk in blocks:
                if kind == "store":
                    one[0] = blk
                    t_on = int(hbm2.hbm2_read_batch(on, t_on, one, 1))
                    t_off = int(hbm2.hbm2_read_batch(off, t_off, one, 1))
                t_on = int(hbm2.hbm2_write_block(on, t_on, blk))
                t_off = int(hbm2.hbm2_write_block(off, t_off, blk))
        assert t_on == t_off, f"seed {seed}, call {call}"
        t = t_on
        np.testing.assert_array_equal(scratch_free(on), scratch_free(off), err_msg=f"seed {seed}, call {call}")
    assert hbm2.memo_stats(on)["hits"] > 15
    assert hbm2.memo_stats(off) == {"hits": 0, "misses": 0, "skips": 0, "rests": 0, "clears": 0}


def test_memo_slots_must_not_be_negative():
    with pytest.raises(ValueError, match="memo_slots"):
        hbm2.new_hbm2_state(memo_slots=-1)


# ------------------------------------------------------------------------------ what the key must tell apart
def _on_and_off(steps):
    """Run steps [("ticks", write blocks, ticks) | ("read", blocks, gap)] on a memo state and a
    memo-less one, comparing results and states after each; returns the memo state."""
    on, off = hbm2.new_hbm2_state(), hbm2.new_hbm2_state(memo_slots=0)
    t = 0
    for i, (kind, blocks, n) in enumerate(steps):
        if kind == "ticks":
            for st in (on, off):
                for blk in blocks:
                    assert hbm2.hbm2_write_block(st, t, blk) == t
                for _ in range(n):
                    hbm2.tick_all(st)
        else:
            b = np.array(blocks, dtype=np.int64)
            got = [int(hbm2.hbm2_read_batch(st, t + n, b, len(b))) for st in (on, off)]
            assert got[0] == got[1], f"step {i}"
            t = got[0]
        np.testing.assert_array_equal(scratch_free(on), scratch_free(off), err_msg=f"step {i}")
    return on


# Writes ticked through just before a read (channels 0..3, pseudochannel 0): of row 2 of bank 0
# after writes to row 1 there (bank ready cycles: WR->PRE), or of row 1 of bank 0 after writes to
# row 1 of bank 1 (WR->RD at the bank group) or of bank group 1 (WR->RD at the pseudochannel).
# Each iteration reopens row 1 of bank 0 afterwards.  (write blocks, read blocks, ticks)
RECENT_WRITES = {
    "bank": ([ROW], [2 * ROW], range(2, 20)),
    "bank group": ([ROW + 4 * KIB], [ROW + 512 * 8], range(1, 16)),
    "pseudochannel": ([ROW + 1 * KIB], [ROW + 512 * 8], range(1, 16)),
}


@pytest.mark.parametrize("writes", RECENT_WRITES, ids=list(RECENT_WRITES))
def test_key_tells_apart_how_recent_the_last_commands_are(writes):
    """The same read after more or fewer ticks of draining: each start is another key (a key
    without the ready cycles would replay one start's outcome for another); each start seen
    before must hit."""
    write, read, ticks_range = RECENT_WRITES[writes]
    steps = [("read", [ROW], 0)]
    for ticks in [*ticks_range, *ticks_range]:
        steps += [("ticks", write, ticks), ("read", read, 0), ("read", [ROW], 300)]
    stats = hbm2.memo_stats(_on_and_off(steps))
    assert stats["hits"] >= len(ticks_range), stats


def test_key_tells_apart_how_recent_the_last_acts_are():
    """A read that activates a closed bank of pseudochannel 0 after four ACTs there (writes to
    row 3 or 4 of four banks, by turns), after more or fewer ticks: the nFAW limit the ACT
    history imposes.  Done on quad 0 (channels 0..3), then again on quad 1 (+256: 4..7), where
    every start must hit."""
    steps = []
    for quad in (0, 256):
        banks = [bg * KIB + ba * 4 * KIB for ba in (1, 2, 3) for bg in range(4)]   # 12 closed banks
        for i, ticks in enumerate(range(14, 26)):
            writes = [(3 + i % 2) * ROW + quad + bg * KIB for bg in range(4)]
            steps += [("ticks", writes, ticks), ("read", [quad + banks[i]], 0), ("read", [quad + 512], 300)]
    stats = hbm2.memo_stats(_on_and_off(steps))
    assert stats["hits"] >= 12, stats


def test_key_tells_apart_rows_and_quads():
    """Pairs that rename to the same banks on closed banks and differ only in which of the
    batch's rows or quads a block goes to: the second of each pair must not be replayed from the
    first (its final open rows or the quad it opens a bank in would be wrong)."""
    stats = hbm2.memo_stats(_on_and_off([
        # rows: bank 0 rows 0 and 1, then bank 1 in row 0 / in row 1 (banks 2 and 3 for the second)
        ("read", [0, ROW, 4 * KIB], 100), ("read", [8 * KIB, 8 * KIB + ROW, 12 * KIB + ROW], 100),
        # quads: bank groups 1, 2, 3 in quads 0, 1, 0 / in quads 0, 1, 1 (bank 1 for the second)
        ("read", [1 * KIB, 256 + 2 * KIB, 3 * KIB + ROW], 100),
        ("read", [5 * KIB, 256 + 6 * KIB, 256 + 7 * KIB + ROW], 100),
        # the first of each again in pseudochannel 1 (+512: closed banks again): these hit
        ("read", [512, 512 + ROW, 512 + 4 * KIB], 100),
        ("read", [512 + 1 * KIB, 512 + 256 + 2 * KIB, 512 + 3 * KIB + ROW], 100),
    ]))
    assert stats["hits"] >= 2, stats


def test_memo_rests_after_a_run_of_misses_and_wakes_up_on_a_hit():
    """Batches that never repeat put the memo to rest (it looks up only every 16th batch); a
    shape that then repeats is found by one of those lookups and hits from then on."""
    rng = np.random.default_rng(5)
    cold = [("read", prefetch_blocks(rng, 64 * int(rng.integers(0, 1 << 16))), 30)
            for _ in range(hbm2.MEMO_REST_AFTER + 20)]
    repeated = [("read", _prefetch(4 * KIB * (i % 2), 4, 64), 200) for i in range(60)]
    stats = hbm2.memo_stats(_on_and_off(cold + repeated))
    assert stats["rests"] > 10 and stats["hits"] >= 60 - 2 * hbm2.MEMO_PROBE_EVERY, stats
