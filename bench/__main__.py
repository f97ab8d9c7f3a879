"""`python -m bench [--quick] [backup|orchestration|cutover|chaos]`: run the benchmarks, print their tables."""

from __future__ import annotations

import argparse
import sys

BENCHMARKS = ("backup", "orchestration", "cutover", "chaos")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="~100 MB database; 10 and 100 tenants")
    parser.add_argument(
        "which",
        nargs="*",
        metavar="backup|orchestration|cutover|chaos",
        help="which benchmarks (default: backup and orchestration)",
    )
    parser.add_argument("--entries", type=int, help="journal entries to seed (overrides the size)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="backup: interleaved runs of (a), (b), (b0), (c); medians are shown (default 3)",
    )
    parser.add_argument(
        "--tenants", type=int, nargs="+", help="release sizes to run (overrides 10 100 1000)"
    )
    parser.add_argument(
        "--no-deadlock-detector",
        action="store_true",
        help="let a workflow task run 60 s instead of the SDK's 2 s before it counts as deadlocked",
    )
    parser.add_argument("--kills", type=int, default=20, help="chaos: worker kills (default 20)")
    args = parser.parse_args(argv)
    which = args.which or ["backup", "orchestration"]  # cutover, chaos: asked by name
    unknown = sorted(set(which) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}: choose from {', '.join(BENCHMARKS)}")
    if "backup" in which:
        from bench.backup import print_backup_report, run_backup_bench

        print_backup_report(run_backup_bench(args.quick, args.entries, rounds=args.rounds))
    if "cutover" in which:
        from bench.cutover import print_cutover_report, run_cutover_bench

        print_cutover_report(run_cutover_bench(args.quick, args.entries))
    if "orchestration" in which:
        from bench.orchestration import print_orchestration_report, run_orchestration_bench

        runs = run_orchestration_bench(
            args.quick, args.tenants, deadlock_detector=not args.no_deadlock_detector
        )
        print_orchestration_report(runs)
        if runs.failures:
            return 1
    if "chaos" in which:
        from bench.chaos import print_chaos_report, run_chaos_bench

        chaos = run_chaos_bench(args.kills)
        print_chaos_report(chaos)
        if any(run.outcome != "Completed" for run in chaos):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
