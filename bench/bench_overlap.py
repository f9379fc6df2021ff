"""Overlapped-timing benchmark: wall time of overlapped vs sequential runs (target: <= 2x).

    python bench/bench_overlap.py [--repeats 5] [--corpus DIR] [--table]

Runs the shipped example, bench_core's two synthetic programs (scaled up) and every runnable
program of the conformance corpus (main, dma/) in both timing modes; prints per-program medians
of warm runs, their ratio, and the ratio of the summed medians.  `--table` also prints the
markdown table of cycles (sequential, overlapped, ratio, top stall) used by
docs/overlapped-timing.md.  Machines here are shared and noisy: read the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_core import MATRIX_HEAVY, SCALAR_HEAVY, timed  # noqa: E402

from emulator import assemble, run  # noqa: E402
from emulator.asm import load_program  # noqa: E402
from emulator.settings import default_settings  # noqa: E402

OVERLAPPED = {"timing": "overlapped"}


def top_stall(o) -> str:
    if not o.stalls:
        return "-"
    s = o.stalls[0]
    what = f"{s.cause} {s.resource}".strip()
    return f"{s.unit} {what} on pc {s.blocker_pc} ({s.cycles:,})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--corpus", type=Path, default=Path(os.environ.get("PLENA_CONFORMANCE_DIR",
                                                                      REPO.parent / "shared" / "conformance")))
    ap.add_argument("--table", action="store_true", help="print the markdown table of cycle ratios")
    args = ap.parse_args()

    seq_settings = default_settings()
    ov_settings = seq_settings.with_overrides(OVERLAPPED)
    run(assemble("S_ADDI_INT gp1, gp0, 1"), settings=ov_settings)  # load the compiled kernels

    jobs = []
    corpus_labels: set[str] = set()
    ex = REPO / "examples" / "linear"
    example = load_program(ex / "program.asm")
    jobs.append(("examples/linear", lambda s, p=example: run(p, settings=s, hbm=ex / "hbm.bin",
                                                             fp_sram=ex / "fp_sram.bin", raise_on_error=True)))
    for name, text, outer in (("matrix-heavy (x200)", MATRIX_HEAVY, 200), ("scalar/loop-heavy (x2000)", SCALAR_HEAVY, 2000)):
        program = assemble(text.format(outer=outer))
        jobs.append((name, lambda s, p=program: run(p, settings=s, raise_on_error=True)))
    if (args.corpus / "index.json").is_file():
        from tests.conftest import sub_corpus_cases
        from tests.corpus_util import case_settings, run_case
        names = [e["name"] for e in json.loads((args.corpus / "index.json").read_text()) if e.get("cycles") is not None]
        dirs = [args.corpus / n for n in names] + [args.corpus / "dma" / n for n in sub_corpus_cases("dma")]
        for d in dirs:
            label = d.name if d.parent == args.corpus else f"dma/{d.name}"
            corpus_labels.add(label)
            jobs.append((label, lambda s, d=d: run_case(d, overlap=OVERLAPPED if s.timing == "overlapped" else None)))

    rows = []
    for name, job in jobs:
        t_seq, seq = timed(lambda: job(seq_settings), args.repeats)
        t_ov, ov = timed(lambda: job(ov_settings), args.repeats)
        rows.append((name, seq, ov, t_seq, t_ov))

    print(f"{'program':34s} {'instr':>9s} {'seq s':>8s} {'ovl s':>8s} {'ovl/seq':>8s}")
    for name, seq, ov, t_seq, t_ov in rows:
        print(f"{name:34s} {seq.instructions:9d} {t_seq:8.4f} {t_ov:8.4f} {t_ov / t_seq:8.2f}")
    ratios = [r[4] / r[3] for r in rows]
    print(f"\nwall-time ratio overlapped/sequential: median {statistics.median(ratios):.2f}, "
          f"max {max(ratios):.2f} ({rows[ratios.index(max(ratios))][0]}), "
          f"sum of medians {sum(r[4] for r in rows) / sum(r[3] for r in rows):.2f}  (target <= 2)")
    shipped = [r for r in rows if r[0] == "examples/linear" or r[0] in corpus_labels]
    if shipped:
        t_seq, t_ov = sum(r[3] for r in shipped), sum(r[4] for r in shipped)
        print(f"corpus + shipped example only ({len(shipped)} programs): sum of medians {t_ov / t_seq:.2f}, "
              f"median ratio {statistics.median(r[4] / r[3] for r in shipped):.2f}")

    if args.table:
        print("\n| program | sequential cycles | overlapped cycles | overlapped/sequential | top stall (unit, cause, resource, on pc, cycles) |")
        print("|---|---:|---:|---:|---|")
        for name, seq, ov, _, _ in sorted(rows, key=lambda r: r[2].overlap.cycles / max(r[1].cycles, 1)):
            o = ov.overlap
            print(f"| {name} | {seq.cycles:,} | {o.cycles:,} | {o.cycles / max(seq.cycles, 1):.3f} | {top_stall(o)} |")


if __name__ == "__main__":
    main()
