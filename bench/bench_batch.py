"""Batch throughput on Dask: jobs/s of one batch on a LocalCluster of 1 vs 2 worker processes.

    python bench/bench_batch.py [--repeats 3] [--corpus DIR] [--scale N] [--workers 1 2]

The batch is the conformance corpus (when present; else examples/sweep) under both HBM models,
with `--scale` copies of every job made distinct by a setting that changes no result (a
different MAX_LOOP_INSTRUCTIONS, a limit no program reaches).  Each cluster is started and warmed
once (start-up is reported on its own); then the batch runs `--repeats` times into fresh
directories and the median jobs/s is reported, with the 2-worker/1-worker ratio.  The machine is
shared and noisy: read the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from distributed import Client  # noqa: E402

from batch.executor import WarmUpPlugin, local_cluster, run_batch  # noqa: E402
from batch.manifest import load_manifest  # noqa: E402


def corpus_dir(arg: str | None) -> Path | None:
    path = Path(arg or os.environ.get("PLENA_CONFORMANCE_DIR") or REPO.parent / "shared" / "conformance")
    return path if (path / "index.json").is_file() else None


def write_manifest(d: Path, corpus: Path | None, scale: int) -> Path:
    # MAX_LOOP_INSTRUCTIONS is only a safety limit: copies with different (huge) limits run the
    # same, and each copy is a distinct job (its own settings key).
    knob = "MAX_LOOP_INSTRUCTIONS = " + json.dumps([10**9 + i for i in range(scale)])
    if corpus is not None:
        jobs = f'[[jobs]]\nprogram = "{corpus}/*/program.mem"\ncase_dir = true\nsettings_fallback = "reference"\n'
    else:
        ex = REPO / "examples"
        jobs = "".join(f'[[jobs]]\nprogram = "{p}"\nhbm = "{ex}/linear/hbm.bin"\nfpsram = "{ex}/linear/fp_sram.bin"\n'
                       for p in [ex / "linear" / "program.asm", *sorted((ex / "sweep").glob("*.asm"))])
    path = d / "bench.toml"
    path.write_text(f'[batch]\nname = "bench"\n{jobs}\n[grid]\nhbm_model = ["hbm2", "analytic"]\n{knob}\n')
    return path


def measure(workers: int, manifest: Path, repeats: int, profile: bool = True) -> dict:
    t0 = time.perf_counter()
    cluster = local_cluster(workers)
    client = Client(cluster)
    client.register_plugin(WarmUpPlugin())
    startup = time.perf_counter() - t0
    rates, walls = [], []
    try:
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as out:
                plan = load_manifest(manifest)
                plan.options = plan.options.model_copy(update={"profile": profile})
                t = time.perf_counter()
                summary = run_batch(plan, Path(out) / "r", client=client)
                wall = time.perf_counter() - t
                assert summary["ok"] + summary["failed"] + summary["invalid"] == len(plan.jobs)
                walls.append(wall)
                rates.append(len(plan.jobs) / wall)
    finally:
        client.close()
        cluster.close()
    return {"workers": workers, "jobs": len(plan.jobs), "startup_s": startup,
            "median_wall_s": statistics.median(walls), "median_jobs_per_s": statistics.median(rates),
            "runs_jobs_per_s": rates}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--corpus", help="conformance corpus directory (default: PLENA_CONFORMANCE_DIR or ../shared)")
    ap.add_argument("--scale", type=int, default=2, help="copies of each job (default 2)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--no-profile", action="store_true",
                    help="skip the per-job profile JSON (for machine-code programs it costs most of a job)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    corpus = corpus_dir(args.corpus)
    with tempfile.TemporaryDirectory() as d:
        manifest = write_manifest(Path(d), corpus, args.scale)
        results = [measure(w, manifest, args.repeats, not args.no_profile) for w in args.workers]
    if args.json:
        print(json.dumps(results))
        return
    print(f"batch: {'conformance corpus' if corpus else 'examples/sweep'} x 2 HBM models x {args.scale} "
          f"= {results[0]['jobs']} jobs, profiles {'off' if args.no_profile else 'on'}; "
          f"median of {args.repeats} runs per cluster size")
    for r in results:
        print(f"  {r['workers']} worker(s): {r['median_jobs_per_s']:7.1f} jobs/s  (median wall {r['median_wall_s']:.2f} s,"
              f" cluster start + warm-up {r['startup_s']:.1f} s)")
    if len(results) >= 2:
        base = results[0]
        for r in results[1:]:
            print(f"  speed-up {r['workers']} vs {base['workers']} workers: "
                  f"{r['median_jobs_per_s'] / base['median_jobs_per_s']:.2f}x")


if __name__ == "__main__":
    main()
