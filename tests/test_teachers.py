"""Teacher tables, the teacher score over runs, correlation with accuracy, rankings and budgeted selection."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rsr_core.commands import teachers as teachers_command
from rsr_core.analysis.metrics import dataset_rsr, trajectory_metrics
from rsr_core.analysis.report import COLUMNS as REPORT_COLUMNS
from rsr_core.analysis.report import teacher_report
from rsr_core.analysis.teachers import (
    accuracy_correlations,
    best_predictor,
    budget_selection,
    ranking_agreement,
    read_accuracies,
    run_table,
    student_rankings,
    teacher_table,
)


def row(tid: str, teacher: str, *, run: str | None = "r1", rank: float = 3.0, surprisal: float = 1.0, n: int = 20,
        correct: object = None, student: str = "tiny", problem: str = "p") -> dict:
    """One trajectory-table row whose metrics come from constant per-token arrays (rsr = rank / surprisal)."""
    m = trajectory_metrics(np.full(n, surprisal), np.full(n, rank), np.full(n, surprisal))
    return {"trajectory_id": tid, "problem_id": problem, "teacher": teacher, "run": run, "student": student, **m,
            "truncated": False, "correct": correct, "r_max": 100, "source": "x", "record": 1, "prompt": "q",
            "messages": "[]"}


def teachers_table(levels: dict[str, float], n: int = 60, seed: int = 0, student: str = "tiny",
                   noise: float = 0.3) -> pd.DataFrame:
    """Teachers whose trajectories have RSR around `levels[teacher]`, three runs each."""
    rng = np.random.default_rng(seed)
    rows = []
    for teacher, level in levels.items():
        for i in range(n):
            s = rng.uniform(0.4, 1.5)
            rows.append(row(f"{student}-{teacher}-{i}", teacher, run=f"r{i % 3}", surprisal=s,
                            n=int(rng.integers(10, 90)), rank=s * max(0.5, level + rng.normal(0, noise)),
                            correct=bool(rng.random() < 0.5), student=student, problem=f"p{i}"))
    return pd.DataFrame(rows)


def test_teacher_rsr_is_eq9_and_teacher_score_is_the_mean_over_runs():
    rows = [row("a1", "A", run="r1", rank=2.0), row("a2", "A", run="r1", rank=2.0), row("a3", "A", run="r1", rank=2.0),
            row("a4", "A", run="r2", rank=6.0, surprisal=2.0),
            row("b1", "B", run=None, rank=4.0), row("b2", "B", run=None, rank=2.0, surprisal=0.5)]
    out = teacher_table(pd.DataFrame(rows), n_resamples=100).set_index("teacher")
    assert out.loc["A", "rsr"] == pytest.approx((2 + 2 + 2 + 6) / (1 + 1 + 1 + 2))
    assert out.loc["A", "teacher_score"] == pytest.approx((2.0 + 3.0) / 2)  # run r1 RSR 2, run r2 RSR 3
    assert out.loc["A", "n_runs"] == 2 and out.loc["B", "n_runs"] == 1
    assert out.loc["B", "teacher_score"] == pytest.approx(out.loc["B", "rsr"]) == pytest.approx(6 / 1.5)
    assert out.loc["A", "rank"] == 1 and out.loc["B", "rank"] == 2
    assert out.loc["A", "avg_length"] == 20 and np.isnan(out.loc["A", "correct_rate"])


def test_the_report_is_the_teacher_table_in_first_appearance_order_of_students():
    table = pd.concat([teachers_table({"B": 4.0, "A": 3.0, "C": 3.5}, n=12, student="zeta"),
                       teachers_table({"A": 3.5, "C": 2.0}, n=12, student="alpha")], ignore_index=True)
    report = teacher_report(table)
    assert list(report.columns) == ["student", *REPORT_COLUMNS, "n_runs"]
    assert list(dict.fromkeys(report["student"])) == ["zeta", "alpha"]
    assert all(frame["rsr"].is_monotonic_increasing for _, frame in report.groupby("student"))
    full = teacher_table(table, n_resamples=0)
    assert full["rsr_low"].isna().all() and full["rsr_high"].isna().all()
    key = ["student", "teacher"]
    pd.testing.assert_frame_equal(report.set_index(key).sort_index(),
                                  full.set_index(key).sort_index()[list(report.columns[2:])])
    assert "correct_rate" not in teacher_report(table.drop(columns="correct"))


def test_report_and_teacher_table_take_store_tables_with_categorical_columns_and_missing_values():
    """A results store gives teacher, student, run and problem_id as Categorical columns with missing values."""
    plain = pd.concat([teachers_table({"B": 4.0, "A": 3.0}, n=12, student="zeta"),
                       teachers_table({"A": 3.5, "C": 2.0}, n=12, student="alpha")], ignore_index=True)
    plain.loc[plain.index % 4 == 0, "run"] = None
    plain.loc[plain.index % 5 == 0, "problem_id"] = None
    plain.loc[plain.index[:3], "teacher"] = None
    store = plain.astype({c: "category" for c in ("teacher", "student", "run", "problem_id")})
    assert store["run"].isna().any() and isinstance(store["teacher"].dtype, pd.CategoricalDtype)
    for compute in (teacher_report, lambda t: teacher_table(t, n_resamples=20), run_table,
                    lambda t: budget_selection(t, n_per_teacher=5, n_resamples=5).table):
        pd.testing.assert_frame_equal(compute(store), compute(plain))
    report = teacher_report(store)
    assert list(dict.fromkeys(report["student"])) == ["zeta", "alpha"]
    assert set(report["teacher"]) == {"", "A", "B", "C"} and report["n_trajectories"].sum() == len(store)
    assert report.set_index(["student", "teacher"]).loc[("zeta", "B"), "n_runs"] == 4  # r0, r1, r2 and no run


def test_teacher_table_metrics_interval_and_correctness():
    table = teachers_table({"good": 2.5, "mid": 3.2, "bad": 4.0})
    out = teacher_table(table, n_resamples=300, seed=1).set_index("teacher")
    assert out["rank"].to_dict() == {"good": 1, "mid": 2, "bad": 3}
    for teacher, frame in table.groupby("teacher"):
        got = out.loc[teacher]
        assert got["rsr"] == pytest.approx(dataset_rsr(frame["avg_rank_clipped"], frame["avg_surprisal"]))
        runs = [dataset_rsr(f["avg_rank_clipped"], f["avg_surprisal"]) for _, f in frame.groupby("run")]
        assert got["teacher_score"] == pytest.approx(np.mean(runs))
        assert got["rsr_low"] < got["rsr"] < got["rsr_high"]
        assert got["avg_surprisal"] == pytest.approx(frame["avg_surprisal"].mean())
        assert got["avg_rank"] == pytest.approx(frame["avg_rank"].mean())
        assert got["avg_length"] == pytest.approx(frame["n_tokens"].mean())
        assert got["correct_rate"] == pytest.approx(frame["correct"].mean())
        assert got["n_trajectories"] == len(frame) and got["n_runs"] == 3


def test_run_table_has_one_row_per_run():
    table = teachers_table({"A": 3.0, "B": 3.5}, n=30)
    runs = run_table(table)
    assert len(runs) == 6 and runs["n_trajectories"].sum() == 60
    a0 = table[(table["teacher"] == "A") & (table["run"] == "r0")]
    got = runs[(runs["teacher"] == "A") & (runs["run"] == "r0")].iloc[0]
    assert got["rsr"] == pytest.approx(dataset_rsr(a0["avg_rank_clipped"], a0["avg_surprisal"]))


def accuracy_for(teachers: pd.DataFrame, metric: str, slope: float) -> dict[str, float]:
    return {t: 50 + slope * v for t, v in zip(teachers["teacher"], teachers[metric])}


def test_accuracy_correlations_are_scipys_and_find_the_best_predictor():
    levels = {f"T{i}": 2.4 + 0.17 * i for i in range(9)}
    teachers = teacher_table(teachers_table(levels, n=40), n_resamples=50)
    rng = np.random.default_rng(0)
    acc = {t: 60 - 8 * r + rng.normal(0, 0.05) for t, r in zip(teachers["teacher"], teachers["rsr"])}
    acc["not scored"] = 99.0
    table = accuracy_correlations(teachers, acc, n_resamples=300).set_index("metric")
    y = np.array([acc[t] for t in teachers["teacher"]])
    for metric in ("rsr", "avg_surprisal", "avg_length", "teacher_score"):
        x = teachers[metric].to_numpy(float)
        assert table.loc[metric, "spearman"] == pytest.approx(stats.spearmanr(x, y)[0])
        assert table.loc[metric, "pearson"] == pytest.approx(stats.pearsonr(x, y)[0])
        assert table.loc[metric, "spearman_p"] == pytest.approx(stats.spearmanr(x, y)[1])
        assert table.loc[metric, "spearman_low"] <= table.loc[metric, "spearman"] <= table.loc[metric, "spearman_high"]
    assert table.loc["rsr", "n_teachers"] == 9 and table.loc["rsr", "spearman"] < -0.95
    assert best_predictor(table) in ("rsr", "teacher_score", "rsr_simple_average")
    by_length = accuracy_for(teachers, "avg_length", 0.5)
    assert best_predictor(accuracy_correlations(teachers, by_length, n_resamples=0)) == "avg_length"


def test_accuracy_correlations_need_three_matched_teachers():
    teachers = teacher_table(teachers_table({"A": 3.0, "B": 3.5, "C": 4.0}, n=10), n_resamples=10)
    with pytest.raises(ValueError, match="at least 3"):
        accuracy_correlations(teachers, {"A": 1.0, "B": 2.0, "Z": 3.0})


def test_multi_student_rankings_side_by_side():
    levels = {"A": 2.5, "B": 3.0, "C": 3.5, "D": 4.0}
    both = pd.concat([teachers_table(levels, n=30, student="small"),
                      teachers_table({t: 6.5 - v for t, v in levels.items()}, n=30, student="large", seed=1)])
    teachers = teacher_table(both, n_resamples=50)
    wide = student_rankings(teachers).set_index("teacher")
    assert wide["small rank"].to_dict() == {"A": 1, "B": 2, "C": 3, "D": 4}
    assert wide["large rank"].to_dict() == {"A": 4, "B": 3, "C": 2, "D": 1}
    small = teachers[teachers["student"] == "small"].set_index("teacher")
    assert wide.loc["B", "small score"] == pytest.approx(small.loc["B", "teacher_score"])
    agreement = ranking_agreement(teachers)
    assert agreement.loc["small", "large"] == pytest.approx(-1.0)


def test_budget_selection_picks_the_clearly_best_teachers_stably():
    levels = {"A": 2.4, "B": 2.6, "C": 3.6, "D": 3.8, "E": 4.0}
    table = teachers_table(levels, n=300, noise=0.2)
    result = budget_selection(table, n_per_teacher=100, top_k=2, n_resamples=60, seed=3)
    out = result.table.set_index("teacher")
    assert set(out.index[out["selected"]]) == {"A", "B"} and set(out.index[out["top_k_full"]]) == {"A", "B"}
    assert out.loc[["A", "B"], "top_k_rate"].min() == 1.0 and out.loc[["C", "D", "E"], "top_k_rate"].max() == 0.0
    assert result.same_set_rate == {"tiny": 1.0}
    assert (out["n_sampled"] == 100).all() and (out["n_available"] == 300).all()
    assert (out["rsr_budget_low"] <= out["rsr_budget_high"]).all()
    assert out["rank_full"].to_dict() == {"A": 1, "B": 2, "C": 3, "D": 4, "E": 5}
    again = budget_selection(table, n_per_teacher=100, top_k=2, n_resamples=60, seed=3)
    pd.testing.assert_frame_equal(again.table, result.table)


def test_budget_selection_is_unstable_for_indistinguishable_teachers_and_uses_all_when_few():
    table = teachers_table({"A": 3.0, "B": 3.0, "C": 3.0, "D": 3.0}, n=200, noise=0.8)
    result = budget_selection(table, n_per_teacher=20, top_k=2, n_resamples=100, seed=0)
    rates = result.table.set_index("teacher")["top_k_rate"]
    assert rates.sum() == pytest.approx(2.0)  # exactly k teachers per draw
    assert (rates > 0.1).all() and (rates < 0.9).all()
    assert result.same_set_rate["tiny"] < 0.6
    few = budget_selection(table, n_per_teacher=500, top_k=1, n_resamples=5).table
    assert (few["n_sampled"] == 200).all() and np.allclose(few["rsr_budget"], few["rsr_full"])


def test_read_accuracies_csv_and_json(tmp_path):
    csv = tmp_path / "acc.csv"
    csv.write_text("Teacher,Accuracy\nA,51.3\nB,44.0\n")
    assert read_accuracies(csv).to_dict("list") == {"teacher": ["A", "B"], "accuracy": [51.3, 44.0]}
    js = tmp_path / "acc.json"
    js.write_text(json.dumps({"A": 1, "B": 2.5}))
    assert read_accuracies(js)["accuracy"].tolist() == [1.0, 2.5]
    bad = tmp_path / "bad.csv"
    bad.write_text("name,score\nA,1\n")
    with pytest.raises(ValueError, match="teacher"):
        read_accuracies(bad)


def test_teachers_command_prints_tables_correlations_and_budget(tmp_path, capsys):
    levels = {"A": 2.5, "B": 3.0, "C": 3.5, "D": 4.0}
    table = teachers_table(levels, n=40)
    path = tmp_path / "scores.parquet"
    table.to_parquet(path)
    acc = tmp_path / "acc.csv"
    acc.write_text("teacher,accuracy\nA,60\nB,55\nC,50\nD,40\n")
    parser = argparse.ArgumentParser()
    teachers_command.add_arguments(parser)
    args = parser.parse_args([str(path), "--accuracy", str(acc), "--budget", "20", "--top-k", "2",
                              "--resamples", "20", "--bootstrap", "50"])
    assert teachers_command.run(args) == 0
    out = capsys.readouterr().out
    assert "teacher_score" in out and "rsr_low" in out and "runs:" in out
    assert "correlation with accuracy" in out and "best predictor:" in out
    assert "budget of 20" in out and "top_k_rate" in out
    missing = parser.parse_args([str(tmp_path / "none.parquet")])
    assert teachers_command.run(missing) == 2
