"""`export STORE --out table.{parquet,csv,jsonl} [--tokens-out tokens.parquet] [--student NAME] [--r-max N]`: a
results store's trajectory table (with its conversations) and token table as flat files, streamed in batches,
equal to what `score --out FILE --tokens-out FILE` writes for the same trajectories."""
from __future__ import annotations

import argparse
import sys

from rsr_core.commands import checks


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="results store folder (written by `score --out FOLDER` or `import-scores`)")
    p.add_argument("--out", required=True, help="trajectory table: .parquet, .csv or .jsonl")
    p.add_argument("--tokens-out", help="per-token table (Parquet recommended)")
    p.add_argument("--student", help="the student whose results to export, when the store holds several")
    p.add_argument("--r-max", type=checks.integer(1, "ranks are clipped at r_max; the paper uses 100"), default=None,
                   help="r_max of the metric columns (default: the store's, 100)")


def check(args: argparse.Namespace) -> None:
    checks.check_table_output("--out", args.out)
    checks.check_not_an_input("--out", args.out, [args.store])
    if args.tokens_out:
        checks.check_table_output("--tokens-out", args.tokens_out)
        checks.check_not_an_input("--tokens-out", args.tokens_out, [args.store])


def run(args: argparse.Namespace) -> int:
    from rsr_core.data.exports import write_token_table, write_trajectory_table
    from rsr_core.data.score_tables import is_store, store_student
    from rsr_core.data.store import ResultsStore, StoreError

    if not is_store(args.store):
        print(f"error: {args.store} is not an RSR Explorer results store (no store.json)", file=sys.stderr)
        return 2
    try:
        store = ResultsStore(args.store)
        student = store_student(store, args.student)
        rows = write_trajectory_table(store, student, args.out, r_max=args.r_max)
        tokens = None
        if args.tokens_out:
            ids = store.trajectory_table(student, columns=["trajectory_id"])["trajectory_id"].astype(str).tolist()
            tokens = write_token_table(store, student, args.tokens_out, ids)
    except (ValueError, StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {checks.fault_reason(e)} writing the export of {args.store}; an existing file there is "
              f"unchanged; {checks.fault_advice(e)} and run the same command again", file=sys.stderr)
        return 1
    print(f"exported {rows:,} trajectories of student {student} to {args.out}"
          + (f" and {tokens:,} tokens to {args.tokens_out}" if tokens is not None else ""), file=sys.stderr)
    return 0
