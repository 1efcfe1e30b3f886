"""`report TABLE`: the per-teacher dataset-level table, sorted by RSR."""
from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("table", help="trajectory table written by `score`")
    p.add_argument("--out", help="also write the report (.csv, .parquet or .jsonl)")


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from rsr_core.analysis.report import teacher_report
    from rsr_core.data.tables import read_table, write_table

    try:
        table = read_table(args.table)
    except (OSError, ValueError) as e:
        print(f"error: {args.table}: {e}", file=sys.stderr)
        return 2
    report = teacher_report(table)
    if report.empty:
        print(f"error: {args.table} has no scored trajectories", file=sys.stderr)
        return 1
    with pd.option_context("display.max_columns", None, "display.width", 200, "display.float_format", "{:.4f}".format):
        print(report.to_string(index=False))
    print("\nrsr: dataset RSR (Eq. 9: sum of per-trajectory mean clipped ranks / sum of mean surprisals); "
          "lower is better", file=sys.stderr)
    if args.out:
        write_table(report, args.out)
    return 0
