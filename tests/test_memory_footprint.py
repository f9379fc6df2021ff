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
