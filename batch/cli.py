"""`plena-batch`: run a batch manifest on Dask, compare two batches.

    plena-batch run MANIFEST.toml --out DIR [--scheduler tcp://HOST:8786] [--workers N] [--resume]
                [--format parquet|csv] [--max-instructions N] [--max-seconds S] [--dumps]
                [--no-profile] [--dry-run] [--json] [--quiet]
    plena-batch compare BASE NEW [--threshold 1%] [--match sha|name] [--json]

Exit status of `run`: 0 every job succeeded, 1 some jobs failed (their rows say why), 2 bad
manifest, arguments or results directory, 130 interrupted (rows so far are kept: --resume).
Exit status of `compare`: 0 no regression, 1 a job got slower than the threshold, changed its
outputs (dump hashes) or stopped succeeding, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED_JOBS, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_REGRESSION = 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="plena-batch",
                                description="Regression sets and design-space sweeps of PLENA programs on Dask "
                                            "distributed (a local cluster by default).")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a batch manifest (TOML)",
                       description="Run every job of a manifest (programs x grid of settings) and write one row "
                                   "per job to DIR as it finishes.",
                       epilog="Exit status: 0 all jobs ok, 1 some jobs failed, 2 bad input, 130 interrupted.")
    r.add_argument("manifest", type=Path, help="batch manifest (TOML; see batch/manifest.py)")
    r.add_argument("--out", type=Path, required=True, metavar="DIR", help="results directory")
    r.add_argument("--scheduler", metavar="tcp://HOST:8786",
                   help="run on this Dask scheduler (default: a local cluster, one worker process per core)")
    r.add_argument("--workers", type=int, metavar="N", help="local cluster size (default: one per core)")
    r.add_argument("--resume", action="store_true", help="continue the batch in DIR, skipping recorded jobs")
    r.add_argument("--format", choices=("parquet", "csv"), help="result table format (default: the manifest's)")
    r.add_argument("--max-instructions", type=int, metavar="N", help="per-job dynamic instruction budget")
    r.add_argument("--max-seconds", type=float, metavar="S", help="per-job wall-time budget")
    r.add_argument("--dumps", action="store_true", help="write every job's four reference dumps")
    r.add_argument("--no-profile", action="store_true", help="do not write per-job profile JSON")
    r.add_argument("--dry-run", action="store_true", help="validate the manifest and list its jobs; run nothing")
    r.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    c = sub.add_parser("compare", help="compare two batches (exit 1 on a regression)",
                       description="Match the jobs of two batches by program and settings, print cycle deltas "
                                   "(largest first), added and removed jobs.",
                       epilog="Exit status: 0 no regression, 1 regression, 2 bad input.")
    c.add_argument("base", type=Path, help="results directory (or results file) of the baseline batch")
    c.add_argument("new", type=Path, help="results directory (or results file) of the new batch")
    c.add_argument("--threshold", default="1%", help="slowdown that counts as a regression (default 1%%)")
    c.add_argument("--match", choices=("sha", "name"), default="sha",
                   help="match programs by machine-code sha256 (default) or by name (a changed compiler)")
    c.add_argument("--json", action="store_true", help="print the comparison as one JSON object")
    c.add_argument("--limit", type=int, default=None, metavar="N", help="show the N largest deltas only")
    return p


def _err(msg: str) -> None:
    print(f"plena-batch: error: {msg}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from .manifest import ManifestError, load_manifest
    from .results import ResultsError

    if args.workers is not None and args.workers < 1:
        _err("--workers must be >= 1")
        return EXIT_INPUT
    if args.max_instructions is not None and args.max_instructions < 1:
        _err("--max-instructions must be >= 1")
        return EXIT_INPUT
    if args.max_seconds is not None and args.max_seconds <= 0:
        _err("--max-seconds must be > 0")
        return EXIT_INPUT
    try:
        plan = load_manifest(args.manifest)
    except ManifestError as exc:
        _err(str(exc))
        return EXIT_INPUT
    updates = {k: v for k, v in (("max_instructions", args.max_instructions), ("max_seconds", args.max_seconds),
                                 ("format", args.format)) if v is not None}
    if args.dumps:
        updates["dumps"] = True
    if args.no_profile:
        updates["profile"] = False
    plan.options = plan.options.model_copy(update=updates)
    if args.dry_run:
        for job in plan.jobs:
            print(f"{job.job_id}  {job.name}  {job.overrides_json()}")
        print(f"{len(plan.jobs)} jobs", file=sys.stderr)
        return EXIT_OK

    from .executor import run_batch

    try:
        summary = run_batch(plan, args.out, scheduler=args.scheduler, workers=args.workers, resume=args.resume,
                            fmt=args.format, progress=not args.quiet and not args.json)
    except ResultsError as exc:
        _err(str(exc))
        return EXIT_INPUT
    except KeyboardInterrupt:
        _err(f"interrupted; the rows so far are in {args.out} (continue with --resume)")
        return EXIT_INTERRUPTED
    except OSError as exc:   # e.g. the scheduler cannot be reached
        _err(f"{type(exc).__name__}: {exc}")
        return EXIT_INPUT
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{summary['jobs']} jobs: {summary['ok']} ok, {summary['failed']} failed, {summary['invalid']} invalid"
              f" ({summary['ran']} ran, {summary['resumed']} already recorded) in {summary['wall_seconds']:.1f} s"
              f" on {summary['workers'] or 0} workers")
        print(f"results: {summary['results']}")
    return EXIT_OK if summary["failed"] == 0 and summary["invalid"] == 0 else EXIT_FAILED_JOBS


def cmd_compare(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .compare import compare_tables, parse_threshold, print_comparison
    from .results import ResultsError, read_rows

    try:
        threshold = parse_threshold(args.threshold)
        base, new = read_rows(args.base), read_rows(args.new)
    except (ValueError, ResultsError) as exc:
        _err(str(exc))
        return EXIT_INPUT
    cmp = compare_tables(base, new, threshold, args.match)
    if args.json:
        print(json.dumps(cmp.to_dict()))
    else:
        print_comparison(cmp, Console(), args.limit)
    return EXIT_REGRESSION if cmp.regressions else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return cmd_run(args)
    return cmd_compare(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
