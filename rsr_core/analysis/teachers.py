"""Teacher comparison: per-teacher and per-run tables, correlation with accuracy, rankings, budgeted selection.

All functions take the trajectory table (one row per trajectory) and group it by (student, teacher[, run]).
A teacher's `rsr` is the Eq. 9 dataset RSR of all its trajectories; its `teacher_score` is the mean over runs of
the per-run dataset RSR (the paper's teacher score; a table without runs has a single run). Lower is better.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rsr_core.analysis.metrics import (METRIC_INPUTS, dataset_metrics_by, dataset_rsr, group_rows, metric_columns,
                                      metrics_of_columns, scored_columns, scored_rows, teacher_score)
from rsr_core.analysis.statistics import bootstrap_correlation, bootstrap_dataset_rsr
from rsr_core.analysis.table import normalise_table

CORRELATION_METRICS = (
    "rsr", "teacher_score", "rsr_simple_average", "avg_surprisal", "avg_rank_clipped", "avg_rank",
    "avg_length", "avg_entropy", "avg_rsr_token", "filtered_rsr_token", "rank_entropy_ratio",
    "rank_minus_surprisal", "rank_times_surprisal", "correct_rate",
)


def _prepared(table: pd.DataFrame) -> pd.DataFrame:
    """The normalised columns the teacher tables read, with a `student` column and `_run`, the run as '' where
    missing (so it can be grouped)."""
    read = [c for c in ("trajectory_id", "student", "teacher", "run", *METRIC_INPUTS) if c in table]
    out = normalise_table(table[read])
    if "student" not in out:
        out["student"] = ""
    out["_run"] = out["run"].fillna("")
    return out


def _scored_rsr(columns: dict[str, np.ndarray], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """([m] mean clipped ranks, [m] mean surprisals) of the scored trajectories among `rows` of `metric_columns`."""
    t = scored_columns({k: columns[k] for k in ("avg_rank_clipped", "avg_surprisal", "n_tokens") if k in columns},
                       rows)
    return t["avg_rank_clipped"], t["avg_surprisal"]


def run_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (student, teacher, run): n_trajectories and every dataset metric (`metrics.dataset_metrics`)."""
    return pd.DataFrame([{"student": student, "teacher": teacher, "run": run or None, **metrics}
                         for (student, teacher, run), metrics in
                         dataset_metrics_by(_prepared(table), ["student", "teacher", "_run"])])


def teacher_table(table: pd.DataFrame, *, n_resamples: int = 1000, confidence: float = 0.95,
                  seed: int | None = 0) -> pd.DataFrame:
    """One row per (student, teacher): dataset metrics, n_runs, teacher_score, a bootstrap CI of `rsr`, and
    `rank` (1 = lowest teacher_score under that student).

    `rsr_low`/`rsr_high`: percentile bootstrap interval of the Eq. 9 dataset RSR, resampling trajectories (NaN
    with `n_resamples=0`, which skips the bootstrap). `correct_rate` is NaN when the data has no correctness.
    """
    t = _prepared(table)
    columns = metric_columns(t)
    runs_of: dict[tuple, list[np.ndarray]] = {}
    for (student, teacher, _), rows in group_rows(t, ["student", "teacher", "_run"]):
        runs_of.setdefault((student, teacher), []).append(rows)
    out_rows = []
    for (student, teacher), runs in runs_of.items():
        run_rsrs = [dataset_rsr(*_scored_rsr(columns, rows)) for rows in runs]
        rows = np.sort(np.concatenate(runs))
        low = high = float("nan")
        if n_resamples > 0:
            ci = bootstrap_dataset_rsr(*_scored_rsr(columns, rows), n_resamples=n_resamples,
                                       confidence=confidence, seed=seed)
            low, high = ci.low, ci.high
        metrics = metrics_of_columns(columns, rows)
        metrics.setdefault("correct_rate", float("nan"))
        out_rows.append({"student": student, "teacher": teacher, "n_runs": len(run_rsrs),
                         "teacher_score": teacher_score(run_rsrs), "rsr_low": low, "rsr_high": high, **metrics})
    out = pd.DataFrame(out_rows)
    if out.empty:
        return out
    out["rank"] = out.groupby("student")["teacher_score"].rank(method="min", na_option="bottom").astype(int)
    first = ["student", "teacher", "rank", "n_runs", "n_trajectories", "teacher_score", "rsr", "rsr_low",
             "rsr_high"]
    return out[first + [c for c in out.columns if c not in first]].sort_values(
        ["student", "rank", "teacher"], kind="stable").reset_index(drop=True)


def read_accuracies(path: str | Path) -> pd.DataFrame:
    """Per-teacher accuracies from CSV (`teacher,accuracy` and optionally `student`) or JSON {teacher: acc}.

    Returns columns teacher, accuracy[, student]. An accuracy column may also be named `acc` or `value`.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        frame = pd.DataFrame({"teacher": list(data), "accuracy": [float(v) for v in data.values()]})
    else:
        frame = pd.read_csv(path, dtype={"teacher": str, "student": str})
        frame.columns = [str(c).strip().lower() for c in frame.columns]
        name = next((c for c in ("accuracy", "acc", "value") if c in frame), None)
        if "teacher" not in frame or name is None:
            raise ValueError(f"{path}: need columns 'teacher' and 'accuracy'")
        frame = frame.rename(columns={name: "accuracy"})
    frame["accuracy"] = pd.to_numeric(frame["accuracy"], errors="coerce")
    return frame[[c for c in ("student", "teacher", "accuracy") if c in frame]]


def accuracy_correlations(teachers: pd.DataFrame, accuracy: Mapping[str, float] | pd.Series, *,
                          metrics: tuple[str, ...] | None = None, n_resamples: int = 1000,
                          confidence: float = 0.95, seed: int | None = 0) -> pd.DataFrame:
    """Spearman and Pearson of every metric with post-training accuracy over teachers (the paper's Table 4).

    teachers: one row per teacher (a `teacher` column and metric columns), e.g. `teacher_table` of one student.
    accuracy: teacher -> accuracy. Teachers present on only one side are left out. Intervals resample teachers.
    Returns one row per metric: n_teachers, spearman, spearman_low, spearman_high, spearman_p, and the same for
    pearson. The sign is kept (RSR correlates negatively: lower RSR, better student).
    """
    acc = pd.Series(accuracy, dtype=float) if not isinstance(accuracy, pd.Series) else accuracy.astype(float)
    acc.index = acc.index.astype(str)
    frame = teachers.set_index(teachers["teacher"].astype(str))
    common = [t for t in frame.index if t in acc.index and np.isfinite(acc[t])]
    if len(common) < 3:
        raise ValueError(f"need accuracies for at least 3 teachers of the table, got {len(common)}")
    y = acc.loc[common].to_numpy(float)
    names = metrics or tuple(m for m in CORRELATION_METRICS if m in frame)
    rows = []
    for metric in names:
        x = pd.to_numeric(frame.loc[common, metric], errors="coerce").to_numpy(float)
        row: dict[str, object] = {"metric": metric, "n_teachers": int(np.isfinite(x).sum())}
        for method in ("spearman", "pearson"):
            c = bootstrap_correlation(x, y, method=method, n_resamples=n_resamples, confidence=confidence,
                                      seed=seed)
            row.update({method: c.rho, f"{method}_low": c.low, f"{method}_high": c.high, f"{method}_p": c.p_value})
        rows.append(row)
    return pd.DataFrame(rows)


def best_predictor(correlations: pd.DataFrame, method: str = "spearman") -> str | None:
    """The metric whose |correlation| with accuracy is largest (None when no metric has one).

    correlations: `accuracy_correlations` output (a `metric` column, or metrics as the index).
    """
    frame = correlations.set_index("metric") if "metric" in correlations else correlations
    values = frame[method].abs().dropna()
    return str(values.idxmax()) if len(values) else None


def student_rankings(teachers: pd.DataFrame, column: str = "teacher_score") -> pd.DataFrame:
    """The same teachers under each student side by side: one row per teacher, `<student> score`/`rank` columns.

    teachers: `teacher_table` output (several students). Sorted by the mean rank over students.
    """
    out = pd.DataFrame(index=pd.Index(sorted(teachers["teacher"].unique()), name="teacher"))
    rank_cols = []
    for student, frame in teachers.groupby("student", sort=True):
        s = frame.set_index("teacher")
        out[f"{student} score"] = s[column]
        out[f"{student} rank"] = s[column].rank(method="min", na_option="bottom").astype("Int64")
        rank_cols.append(f"{student} rank")
    out["mean rank"] = out[rank_cols].mean(axis=1)
    return out.sort_values(["mean rank"], kind="stable").reset_index()


def ranking_agreement(teachers: pd.DataFrame, column: str = "teacher_score") -> pd.DataFrame:
    """students x students Spearman correlation of the teachers' scores (how much the rankings agree)."""
    wide = teachers.pivot(index="teacher", columns="student", values=column)
    return wide.corr(method="spearman")


@dataclass
class BudgetSelection:
    """Top-k teachers from `n_per_teacher` sampled trajectories each, and how stable that choice is."""

    table: pd.DataFrame  # one row per (student, teacher), see `budget_selection`
    same_set_rate: dict[str, float] = field(default_factory=dict)  # student -> share of resamples with full top-k
    n_per_teacher: int = 200
    top_k: int = 3
    n_resamples: int = 200


def _top_k(values: np.ndarray, k: int) -> np.ndarray:
    """[m] bool: the k lowest finite values (NaN never makes the top k; ties to the earlier teacher)."""
    order = np.argsort(np.where(np.isfinite(values), values, np.inf), kind="stable")
    mask = np.zeros(values.size, dtype=bool)
    mask[order[:k]] = True
    return mask & np.isfinite(values)


def budget_selection(table: pd.DataFrame, *, n_per_teacher: int = 200, top_k: int = 3, n_resamples: int = 200,
                     seed: int | None = 0, confidence: float = 0.95) -> BudgetSelection:
    """Rank teachers by the dataset RSR of `n_per_teacher` trajectories sampled from each (the paper's budgeted
    teacher selection; all of a teacher's trajectories when it has fewer) and keep the top k.

    Draw 0 is the budget sample a user would take; draws 0..n_resamples-1 measure stability. Columns per
    (student, teacher): n_available, n_sampled, rsr_full, rank_full, top_k_full (on every trajectory),
    rsr_budget, rank_budget, selected (draw 0), rsr_budget_low/high (percentiles over draws) and top_k_rate
    (share of draws in which the teacher is in the top k). `same_set_rate[student]`: share of draws whose top-k
    set equals the full-data top k.
    """
    t = scored_rows(_prepared(table))
    rng = np.random.default_rng(seed)
    n_draws = max(1, n_resamples)
    rows, same = [], {}
    for student, frame in t.groupby("student", sort=True):
        groups = [(teacher, g) for teacher, g in frame.groupby("teacher", sort=True)]
        r = [g["avg_rank_clipped"].to_numpy(float) for _, g in groups]
        s = [g["avg_surprisal"].to_numpy(float) for _, g in groups]
        full = np.array([dataset_rsr(ri, si) for ri, si in zip(r, s)])
        draws = np.empty((n_draws, len(groups)))
        for b in range(n_draws):
            for j, (ri, si) in enumerate(zip(r, s)):
                idx = rng.choice(ri.size, size=min(n_per_teacher, ri.size), replace=False)
                draws[b, j] = dataset_rsr(ri[idx], si[idx])
        in_top = np.array([_top_k(d, top_k) for d in draws])
        full_top = _top_k(full, top_k)
        same[student] = float(np.mean([(row == full_top).all() for row in in_top]))
        tail = (1 - confidence) / 2 * 100
        for j, (teacher, _) in enumerate(groups):
            col = draws[:, j][np.isfinite(draws[:, j])]
            low, high = np.percentile(col, [tail, 100 - tail]) if col.size else (np.nan, np.nan)
            rows.append({"student": student, "teacher": teacher, "n_available": int(r[j].size),
                         "n_sampled": int(min(n_per_teacher, r[j].size)), "rsr_full": full[j],
                         "top_k_full": bool(full_top[j]), "rsr_budget": draws[0, j], "selected": bool(in_top[0, j]),
                         "rsr_budget_low": float(low), "rsr_budget_high": float(high),
                         "top_k_rate": float(in_top[:, j].mean())})
    out = pd.DataFrame(rows)
    if not out.empty:
        for name, source in (("rank_full", "rsr_full"), ("rank_budget", "rsr_budget")):
            out[name] = out.groupby("student")[source].rank(method="min", na_option="bottom").astype(int)
        first = ["student", "teacher", "rank_budget", "selected", "top_k_rate", "rsr_budget", "rsr_budget_low",
                 "rsr_budget_high", "rank_full", "top_k_full", "rsr_full", "n_sampled", "n_available"]
        out = out[first].sort_values(["student", "rank_budget", "teacher"], kind="stable").reset_index(drop=True)
    return BudgetSelection(table=out, same_set_rate=same, n_per_teacher=n_per_teacher, top_k=top_k,
                           n_resamples=n_draws)
