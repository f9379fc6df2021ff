"""HBM grows with what is touched: the corpus runs with a 16 GiB HBM setting in < 300 MB RSS."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO, needs_corpus

SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from tests.corpus_util import run_case
corpus = Path(sys.argv[2])
sizes = []
for entry in json.loads((corpus / "index.json").read_text()):
    result = run_case(corpus / entry["name"])
    assert result.settings.HBM_SIZE == 16 * 2**30, result.settings.HBM_SIZE
    sizes.append(result.state.hbm.resident_bytes)
# VmHWM is this program's own peak RSS.  (getrusage's ru_maxrss is not: Linux carries the peak of
# the forked parent - here the whole pytest process - across execve.)
hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"max_rss_kb": hwm_kb, "hbm_resident": max(sizes)}))
"""


@needs_corpus
def test_corpus_with_16gib_hbm_stays_under_300mb_rss():
    from tests.conftest import CONFORMANCE
    # The first process compiles (or loads) every jitted kernel these runs use: LLVM's compile-time
    # memory is not what this test measures.  The second one measures.
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", SCRIPT, str(REPO), str(CONFORMANCE)],
                             capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    assert stats["max_rss_kb"] < 300 * 1024, stats
    assert stats["hbm_resident"] < 16 * 2**20  # only touched pages are resident


def test_sparse_hbm_reads_zero_and_allocates_on_write():
    from emulator.core.hbm_store import PAGE_SIZE, SparseHbm
    hbm = SparseHbm(16 * 2**30)
    assert hbm.read(12 * 2**30, 8) == bytes(8)
    assert hbm.pages_used == 0
    hbm.write(12 * 2**30 + PAGE_SIZE - 2, b"\x01\x02\x03\x04")  # spans two pages
    assert hbm.pages_used == 2
    assert hbm.read(12 * 2**30 + PAGE_SIZE - 2, 4) == b"\x01\x02\x03\x04"
    assert hbm.last_nonzero_end() == 12 * 2**30 + PAGE_SIZE + 64


def test_page_table_is_sparse_whatever_the_capacity():
    from emulator.core.hbm_store import SparseHbm
    from emulator.runner import run
    from emulator.settings import load_settings

    hbm = SparseHbm(1 << 48)
    assert hbm.page_table.nbytes + hbm.pool.nbytes < 64 * 1024
    result = run("S_ADDI_INT gp1, gp0, 1\n", settings=load_settings(overrides={"HBM_SIZE": 1 << 40}))
    store = result.state.hbm
    assert store.page_table.nbytes + store.pool.nbytes < 64 * 1024   # a dense table would be 128 MiB


def test_scattered_writes_cost_what_they_write():
    """Stores 1 MiB apart: resident HBM tracks the bytes written (a few pages per store)."""
    from emulator.core.hbm_store import PAGE_SIZE
    from emulator.runner import run

    stores = 2048
    prog = (f"S_LUI_INT gp5, 256\nC_LOOP_START gp2, {stores}\nH_STORE_V gp0, gp1, a0, 0, 0\n"
            "S_ADD_INT gp1, gp1, gp5\nC_LOOP_END gp2\n")
    result = run(prog, raise_on_error=True)
    store = result.state.hbm
    # Each store writes 4 rows of 64 element bytes and 8 scale bytes: 2 pages (elements, scales).
    assert store.pages_used <= 2 * stores + 2
    assert store.resident_bytes <= (2 * stores + 2) * PAGE_SIZE <= 8 << 20        # 64 KiB pages: 256 MiB
    assert store.page_table.nbytes <= 64 * store.pages_used + 4096


def test_sparse_hbm_matches_a_flat_oracle():
    """Seeded random writes and reads (page-straddling, overlapping, beyond the capacity) against a
    plain bytearray; the table grows through several rehashes."""
    import numpy as np

    from emulator.core.hbm_store import PAGE_SIZE, SparseHbm

    rng = np.random.default_rng(15)
    capacity = 64 * PAGE_SIZE * 40
    hbm, flat = SparseHbm(capacity), bytearray(capacity)
    for _ in range(600):
        addr = int(rng.integers(0, capacity - 3 * PAGE_SIZE))
        data = rng.integers(0, 256, int(rng.integers(1, 3 * PAGE_SIZE)), dtype=np.uint8)
        hbm.write(addr, data)
        flat[addr:addr + len(data)] = data.tobytes()
        raddr = int(rng.integers(-PAGE_SIZE, capacity + PAGE_SIZE))
        n = int(rng.integers(0, 2 * PAGE_SIZE))
        expected = bytes(flat[max(raddr, 0):max(min(raddr + n, capacity), 0)])
        expected = bytes(max(0, min(-raddr, n))) + expected
        expected += bytes(n - len(expected))
        assert hbm.read(raddr, n) == expected
    assert hbm.read(0, capacity) == bytes(flat)
    nz = np.nonzero(np.frombuffer(bytes(flat), np.uint8))[0]
    assert hbm.last_nonzero_end() == -(-(int(nz[-1]) + 1) // 64) * 64
