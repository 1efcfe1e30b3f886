"""Per-teacher dataset-level table (Eq. 9 and the paper's baselines) of a trajectory table."""
from __future__ import annotations

import pandas as pd

from rsr_core.analysis.teachers import teacher_table
from rsr_core.analysis.table import text_column

COLUMNS = ["teacher", "n_trajectories", "rsr", "teacher_score", "rsr_simple_average", "avg_surprisal",
           "avg_rank_clipped", "avg_rank", "avg_length", "avg_entropy", "rank_entropy_ratio", "correct_rate"]


def teacher_report(table: pd.DataFrame) -> pd.DataFrame:
    """The `COLUMNS` and n_runs of `teachers.teacher_table` (no bootstrap), one row per (student, teacher):
    students in the order they first appear, each sorted by dataset RSR (lower is better).

    `rsr` is Eq. 9 over all the teacher's trajectories; `teacher_score` is the mean of the per-run dataset RSR
    (equal to `rsr` when there is a single run). `correct_rate` is there when the table has a `correct` column.
    """
    out = teacher_table(table, n_resamples=0)
    if out.empty:
        return out
    keep = ["student"] + [c for c in COLUMNS if c in out and (c != "correct_rate" or "correct" in table)] + ["n_runs"]
    first = pd.unique(text_column(table["student"])) if "student" in table else [""]
    order = out["student"].map({s: k for k, s in enumerate(first)})
    return out.assign(_order=order).sort_values(["_order", "rsr"], kind="stable")[keep].reset_index(drop=True)
