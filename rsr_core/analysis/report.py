"""Per-teacher dataset-level table (Eq. 9 and the paper's baselines) of a trajectory table."""
from __future__ import annotations

import pandas as pd

from rsr_core.analysis.metrics import dataset_metrics, teacher_score

COLUMNS = ["teacher", "n_trajectories", "rsr", "teacher_score", "rsr_simple_average", "avg_surprisal",
           "avg_rank_clipped", "avg_rank", "avg_length", "avg_entropy", "rank_entropy_ratio", "correct_rate"]


def teacher_report(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (student, teacher): students in the order they first appear, each sorted by dataset RSR (lower
    is better).

    `rsr` is Eq. 9 over all the teacher's trajectories; `teacher_score` is the mean of the per-run dataset RSR
    (equal to `rsr` when there is a single run).
    """
    rows = []
    for (student, teacher), g in table.groupby(["student", "teacher"], sort=False):
        row = {"student": student, "teacher": teacher, **dataset_metrics(g)}
        runs = g["run"].astype(object).where(g["run"].notna(), "") if "run" in g else pd.Series([""] * len(g))
        row["teacher_score"] = teacher_score([dataset_metrics(r)["rsr"] for _, r in g.groupby(runs.values)])
        row["n_runs"] = int(runs.nunique())
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    keep = ["student"] + [c for c in COLUMNS if c in out] + ["n_runs"]
    order = {s: k for k, s in enumerate(pd.unique(table["student"].astype(str)))}
    out["_order"] = out["student"].astype(str).map(order)
    return out.sort_values(["_order", "rsr"])[keep].reset_index(drop=True)
