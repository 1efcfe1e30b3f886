"""`python -m rsr_core teachers SCORES [--student NAME] [--accuracy acc.csv] [--budget 200 --top-k 3 --resamples 200]`.

SCORES is a trajectory table or a results store.

Prints the per-teacher table (dataset RSR with its bootstrap interval, teacher score over runs, the baseline
metrics), the per-run table, the teachers side by side when several students scored them, the correlation of
every metric with post-training accuracy when accuracies are given, and the budgeted teacher selection.
"""
from __future__ import annotations

import argparse
import sys

import pandas as pd

from rsr_core.commands import checks
from rsr_core.data.score_tables import read_scores
from rsr_core.data.store import StoreError
from rsr_core.analysis.teachers import (
    accuracy_correlations,
    best_predictor,
    budget_selection,
    read_accuracies,
    run_table,
    student_rankings,
    teacher_table,
)

_SHOWN = ["student", "teacher", "rank", "n_runs", "n_trajectories", "teacher_score", "rsr", "rsr_low",
          "rsr_high", "avg_surprisal", "avg_rank_clipped", "avg_rank", "avg_length", "correct_rate"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scores", help="trajectory table (.parquet, .csv, .jsonl) or results store")
    parser.add_argument("--student", help="the student whose results to compare, when the store holds several")
    parser.add_argument("--accuracy", help="CSV with teacher,accuracy[,student] (or JSON {teacher: accuracy})")
    parser.add_argument("--budget", type=checks.integer(1, "trajectories per teacher"),
                        help="trajectories sampled per teacher for budgeted selection (the paper uses 200)")
    parser.add_argument("--top-k", type=checks.integer(1, "teachers kept"), default=3,
                        help="teachers kept by budgeted selection (default 3)")
    parser.add_argument("--resamples", type=checks.integer(1, "resamples of the budgeted selection"), default=200,
                        help="resamples for selection stability")
    parser.add_argument("--bootstrap", type=checks.integer(0, "0 leaves the intervals out"), default=1000,
                        help="bootstrap resamples of the intervals (0: none)")
    parser.add_argument("--seed", type=checks.integer(0, "a random seed"), default=0,
                        help="seed of every resampling")


def _fmt(frame: pd.DataFrame) -> str:
    shown = frame.dropna(axis=1, how="all")
    return shown.to_string(index=False, float_format=lambda v: f"{v:.3f}")


def _correlations(teachers: pd.DataFrame, acc: pd.DataFrame, args: argparse.Namespace) -> list[str]:
    lines = []
    for student, frame in teachers.groupby("student", sort=True):
        rows = acc[acc["student"] == student] if "student" in acc else acc
        values = dict(zip(rows["teacher"].astype(str), rows["accuracy"]))
        try:
            table = accuracy_correlations(frame, values, n_resamples=args.bootstrap, seed=args.seed)
        except ValueError as exc:
            lines.append(f"\ncorrelation with accuracy{f' ({student})' if student else ''}: {exc}")
            continue
        lines += [f"\ncorrelation with accuracy over teachers{f' ({student})' if student else ''}:", _fmt(table),
                  f"best predictor: {best_predictor(table)}"]
    return lines


def run(args: argparse.Namespace) -> int:
    try:
        table = read_scores(args.scores, args.student)
        acc = read_accuracies(args.accuracy) if args.accuracy else None
    except (OSError, ValueError, KeyError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if table.empty:
        print("error: the table has no trajectories", file=sys.stderr)
        return 1
    teachers = teacher_table(table, n_resamples=args.bootstrap, seed=args.seed)
    lines = ["teachers (rank by teacher score = mean over runs of the dataset RSR; lower is better):",
             _fmt(teachers[[c for c in _SHOWN if c in teachers]])]
    runs = run_table(table)
    if runs["run"].notna().any():
        lines += ["\nruns:", _fmt(runs[[c for c in ("student", "teacher", "run", "n_trajectories", "rsr",
                                                      "avg_surprisal", "avg_rank_clipped", "avg_length",
                                                      "correct_rate") if c in runs]])]
    if teachers["student"].nunique() > 1:
        lines += ["\nthe same teachers under each student:", _fmt(student_rankings(teachers))]
    if acc is not None:
        lines += _correlations(teachers, acc, args)
    if args.budget:
        budget = budget_selection(table, n_per_teacher=args.budget, top_k=args.top_k,
                                  n_resamples=args.resamples, seed=args.seed)
        lines += [f"\nteacher selection on a budget of {args.budget} trajectories per teacher, top {args.top_k} "
                  f"({budget.n_resamples} resamples):", _fmt(budget.table)]
        lines += [f"top-{args.top_k} set equal to the full-data top-{args.top_k} in {rate:.0%} of resamples"
                  + (f" ({student})" if student else "") for student, rate in budget.same_set_rate.items()]
    print("\n".join(lines))
    return 0
