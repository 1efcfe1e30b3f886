"""`python -m rsr_core reproduce-paper [--json] [--corrected]`: the paper's metric/accuracy correlations.

Recomputes, from the paper's own per-teacher tables (`data/paper_teacher_metrics.csv`), the Spearman correlation
of every metric with post-training accuracy for each of the five students, beside the printed values.
`--json` prints {metric: {student: rho}} (signed rho; RSR under the key "RSR").
"""
from __future__ import annotations

import argparse
import json

import pandas as pd

from rsr_core.analysis.paper import explanation, paper_correlations, reproduction_table, rsr_comparison
from rsr_core.data.paths import PAPER_METRICS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print {metric: {student: rho}} as JSON")
    parser.add_argument("--corrected", action="store_true",
                        help="use DeepSeek-R1-0528 = 47.8 on Qwen-2.5-7B and break the three rounding ties")


def run(args: argparse.Namespace) -> int:
    if args.json:
        rho = paper_correlations(PAPER_METRICS, corrected=args.corrected)
        data = {metric: {student: (None if pd.isna(v) else round(float(v), 6)) for student, v in row.items()}
                for metric, row in rho.iterrows()}
        print(json.dumps(data, indent=2))
        return 0
    fmt = lambda v: f"{v:.3f}"  # noqa: E731
    which = "corrected values" if args.corrected else "the published (rounded) values"
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(f"Spearman of each metric with post-training accuracy over 11 teachers, from {which}:")
        print(reproduction_table(PAPER_METRICS, corrected=args.corrected).to_string(float_format=fmt, na_rep="-"))
        print("\n|Spearman| of RSR with accuracy: printed in the paper, and recomputed here:")
        print(rsr_comparison(PAPER_METRICS).to_string(float_format=fmt))
    print("\n" + explanation())
    return 0
