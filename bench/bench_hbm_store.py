"""Cost of scattered HBM writes in the sparse HBM store (emulator/core/hbm_store.py).

    python bench/bench_hbm_store.py [--stores 16384] [--stride-mib 1] [--repeats 3]

Runs, in a fresh process per measurement, a program of `--stores` H_STORE_V instructions whose
destinations lie `--stride-mib` MiB apart in a 16 GiB HBM (every store touches new pages), and
the same number of stores that all hit 4 addresses.  Prints the median wall time of the run and
the process's peak RSS (VmHWM), and the scattered/clustered ratios: with a store whose cost tracks
the bytes written, both stay close to 1.  JIT compilation is excluded (a warm-up run first).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from emulator.runner import run
stores, stride_mib = int(sys.argv[2]), int(sys.argv[3])
outer, inner = max(1, stores // 4096), min(stores, 4096)
asm = f'''S_LUI_INT gp5, {256 * stride_mib}
S_ADDI_INT gp6, gp0, 0
C_LOOP_START gp2, {outer}
C_SET_ADDR_REG a1, gp6, gp0
S_ADDI_INT gp1, gp0, 0
C_LOOP_START gp3, {inner}
H_STORE_V gp0, gp1, a1, 0, 0
S_ADD_INT gp1, gp1, gp5
C_LOOP_END gp3
S_ADDI_INT gp6, gp6, {1 if stride_mib else 0}
C_LOOP_END gp2
'''
run("S_ADDI_INT gp1, gp0, 1\nH_STORE_V gp0, gp0, a0, 0, 0\n")   # compile / load the JIT cache
t = time.perf_counter()
result = run(asm, raise_on_error=True)
wall = time.perf_counter() - t
hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"wall": wall, "rss_mb": hwm_kb / 1024, "resident_mb": result.state.hbm.resident_bytes / 2**20,
                  "written_mb": result.hbm_bytes_written / 2**20}))
"""


def measure(stores: int, stride_mib: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(REPO), str(stores), str(stride_mib)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stores", type=int, default=16384)
    ap.add_argument("--stride-mib", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows = {}
    for label, stride in (("scattered", args.stride_mib), ("clustered", 0)):
        runs = [measure(args.stores, stride) for _ in range(args.repeats)]
        rows[label] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        r = rows[label]
        print(f"{label:10s} {args.stores} stores: wall {r['wall']:.3f} s  peak RSS {r['rss_mb']:.0f} MB  "
              f"HBM resident {r['resident_mb']:.1f} MB  HBM written {r['written_mb']:.1f} MB")
    s, c = rows["scattered"], rows["clustered"]
    print(f"scattered/clustered: wall x{s['wall'] / c['wall']:.2f}, peak RSS x{s['rss_mb'] / c['rss_mb']:.2f}")


if __name__ == "__main__":
    main()
