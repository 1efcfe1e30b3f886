"""`report SCORES [--student NAME]`: the per-teacher dataset-level table of a trajectory table or a results store,
sorted by RSR."""
from __future__ import annotations

import argparse
import sys

from rsr_core.commands import checks


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("table", help="trajectory table or results store written by `score`")
    p.add_argument("--student", help="the student whose results to report, when the store holds several")
    p.add_argument("--out", help="also write the report (.csv, .parquet or .jsonl)")


def check(args: argparse.Namespace) -> None:
    if args.out:
        checks.check_not_an_input("--out", args.out, [args.table])
        checks.check_table_output("--out", args.out)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from rsr_core.analysis.report import teacher_report
    from rsr_core.data.score_tables import read_scores
    from rsr_core.data.store import StoreError
    from rsr_core.data.tables import write_table

    try:
        table = read_scores(args.table, args.student)
    except (OSError, ValueError, StoreError) as e:
        print(f"error: {_located(e, args.table)}", file=sys.stderr)
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
        try:
            write_table(report, args.out)
        except OSError as e:
            print(f"error: {checks.fault_reason(e)} writing {args.out}; it was not written (an existing file there "
                  f"is unchanged); {checks.fault_advice(e)} and run the same command again", file=sys.stderr)
            return 1
    return 0


def _located(error: BaseException, path: str) -> str:
    """An error's message, with the path in front unless it names it already."""
    text = str(error)
    return text if str(path) in text else f"{path}: {text}"
