"""`python -m rsr_core select SCORES --by rsr [--max|--min] [--top-b B] [--correct-only] --out selected.jsonl`.

Keeps one trajectory per problem (or the B best, `--top-b`) of a trajectory table (Parquet, CSV or JSONL) or of a
results store, prints the selection summary and writes the training records (JSONL in `messages` format, or
Parquet) with their provenance and `train_weight`. `--by lark` keeps the highest LARK score g_hat, computed over
the pools used here; with `--top-b` it weighs the kept ones by LARK's chi-square weights.
From a store only the metric columns are read, and the conversations of the selected trajectories (the prompts
of all when pooling by prompt). Exits 1 when nothing could be selected, 2 when the input or the options are
unusable.
"""
from __future__ import annotations

import argparse
import sys

import pandas as pd

from rsr_core.analysis.pools import POOL_BY
from rsr_core.analysis.selection import LARK, read_overrides, select, selection_summary
from rsr_core.data.exports import write_selection
from rsr_core.commands import checks
from rsr_core.data.score_tables import read_scores, with_conversations, with_prompts
from rsr_core.data.store import StoreError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scores", help="trajectory table (.parquet, .csv, .jsonl) or results store from "
                                       "`python -m rsr_core score`")
    parser.add_argument("--by", default="rsr",
                        help="column to select by (default rsr), 'random' for a seeded random pick, or 'lark' for "
                             "the highest LARK score g_hat (from avg_surprisal and lark_rho, per problem)")
    direction = parser.add_mutually_exclusive_group()
    direction.add_argument("--min", dest="mode", action="store_const", const="min",
                           help="keep the lowest value per problem (default; not with --by lark)")
    direction.add_argument("--max", dest="mode", action="store_const", const="max",
                           help="keep the highest value per problem (what --by lark always does)")
    parser.set_defaults(mode=None)
    parser.add_argument("--top-b", type=checks.integer(1, "trajectories kept per problem"), default=None,
                        metavar="B",
                        help="keep the B best trajectories of each problem instead of one, each with a train_weight "
                             "(the weights of a problem sum to 1): LARK's chi-square weights with --by lark, else "
                             "1/(number kept)")
    parser.add_argument("--seed", type=checks.integer(0, "a random seed"), default=0,
                        help="seed of --by random (default 0)")
    parser.add_argument("--correct-only", action="store_true",
                        help="keep only trajectories marked correct; pools without one are dropped")
    parser.add_argument("--keep-pools-without-correct", action="store_true",
                        help="with --correct-only, keep the best candidate of a pool with no correct one, "
                             "marked correct_filter_fallback")
    parser.add_argument("--include-incomplete", action="store_true",
                        help="let generations marked incomplete (complete = false: cut off, reasoning unfinished) "
                             "be picked; by default they never are")
    parser.add_argument("--overrides", help="JSON object {problem_id: trajectory_id} of manual choices")
    parser.add_argument("--pool-by", choices=POOL_BY, default="auto",
                        help="group by problem_id, by normalised prompt, or auto (problem_id when every row has one)")
    parser.add_argument("--student", help="the student whose scores to use, when the table or store holds several")
    parser.add_argument("--random-seeds", type=checks.integer(1, "random selections to average"), default=5,
                        help="random selections averaged in the summary's baseline (default 5)")
    parser.add_argument("--out", required=True, help="output file: .jsonl (messages records) or .parquet")


def check(args: argparse.Namespace) -> None:
    if args.by == LARK and args.mode == "min":
        raise checks.UsageError("--by lark keeps the highest LARK score of each problem; --min does not apply")
    checks.check_not_an_input("--out", args.out, [args.scores])
    checks.check_table_output("--out", args.out, (".jsonl", ".ndjson", ".parquet"))


def records_line(selected: pd.DataFrame, top_b: int | None) -> str:
    """'12 records (one per problem)' or '23 records (up to 2 per problem, 12 problems)'."""
    n = len(selected)
    if top_b is None:
        return f"{n} records (one per problem)"
    return f"{n} records (up to {top_b} per problem, {selected['pool_id'].nunique()} problems)"


def run(args: argparse.Namespace) -> int:
    try:
        table = read_scores(args.scores, args.student)
        if args.pool_by == "prompt":
            table = with_prompts(table)
        overrides = read_overrides(args.overrides) if args.overrides else None
        selection = select(table, by=args.by, mode=args.mode or "min", seed=args.seed, correct_only=args.correct_only,
                           keep_pools_without_correct=args.keep_pools_without_correct, overrides=overrides,
                           pool_by=args.pool_by, student=None if "store" in table.attrs else args.student,
                           include_incomplete=args.include_incomplete, top_b=args.top_b)
        chosen = with_conversations(selection.selected, table.attrs.get("store"))
    except (OSError, ValueError, KeyError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = selection_summary(table, selection, random_seeds=range(args.random_seeds))
    print(summary.to_text())
    if selection.selected.empty:
        print("error: nothing could be selected; no file written", file=sys.stderr)
        return 1
    try:
        path = write_selection(chosen, args.out)
    except OSError as exc:
        print(f"error: {checks.fault_reason(exc)} writing {args.out}; {checks.fault_advice(exc)} and run the same "
              "command again", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"\nwrote {records_line(selection.selected, args.top_b)} to {path}")
    return 0
