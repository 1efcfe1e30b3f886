"""Validation against the paper: its metric/accuracy correlations recomputed from its per-teacher tables."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rsr_core.commands import reproduce_paper
from rsr_core.data.paths import PAPER_METRICS
from rsr_core.analysis.paper import (
    ACCURACY_METRIC,
    CORRECTIONS,
    PRINTED_AVERAGE,
    PRINTED_RSR,
    STUDENTS,
    load_paper_metrics,
    paper_correlations,
    reproduction_table,
    rsr_comparison,
)

SHARED_CSV = Path(__file__).resolve().parents[1] / ".." / "shared" / "docs" / "paper_teacher_metrics.csv"
FROM_ROUNDED = {"Qwen-3-14B": 0.855, "LLaMA-3.1-8B": 0.845, "Qwen-2.5-7B": 0.888, "Qwen-3-4B": 0.829,
                "Qwen-2.5-3B": 0.815}


def test_shipped_table_has_eleven_teachers_five_students_and_the_accuracies():
    frame = load_paper_metrics(PAPER_METRICS)
    assert PAPER_METRICS.is_file()
    assert set(frame["student"]) == {*STUDENTS, "all"}
    assert frame["teacher"].nunique() == 11
    acc = frame[frame["metric"] == ACCURACY_METRIC]
    assert len(acc) == 55 and acc.groupby("student").size().eq(11).all()
    if SHARED_CSV.is_file():
        pd.testing.assert_frame_equal(frame, pd.read_csv(SHARED_CSV))


def test_rsr_spearman_from_the_rounded_values():
    rho = paper_correlations(PAPER_METRICS).loc["RSR"]
    for student, expected in FROM_ROUNDED.items():
        assert rho[student] < 0  # lower RSR, better student
        assert abs(rho[student]) == pytest.approx(expected, abs=5e-4)
    assert rho.abs().mean() == pytest.approx(0.846, abs=1e-3)


def test_corrected_values_reproduce_every_printed_rsr_correlation():
    rho = paper_correlations(PAPER_METRICS, corrected=True).loc["RSR"]
    for student, printed in PRINTED_RSR.items():
        assert abs(rho[student]) == pytest.approx(printed, abs=5e-4)
    assert rho.abs().mean() == pytest.approx(PRINTED_AVERAGE["RSR"], abs=1e-3)


def test_corrections_touch_only_the_listed_accuracy_cells():
    raw, fixed = load_paper_metrics(PAPER_METRICS), load_paper_metrics(PAPER_METRICS, corrected=True)
    changed = raw[raw["value"] != fixed["value"]]
    assert sorted(zip(changed["student"], changed["teacher"])) == sorted((c.student, c.teacher) for c in CORRECTIONS)
    assert (changed["metric"] == ACCURACY_METRIC).all()
    deltas = fixed.loc[changed.index, "value"].to_numpy() - changed["value"].to_numpy()
    assert sorted(np.round(deltas, 3)) == [0.01, 0.01, 0.01, 0.5]


def test_the_other_tie_order_does_not_reproduce_the_printed_value():
    """The tie-break direction is what the printed 0.918 requires: QwQ-32B ahead of Qwen-3-8B."""
    frame = load_paper_metrics(PAPER_METRICS)
    sub = frame[frame["student"] == "Qwen-2.5-7B"]
    rsr = sub[sub["metric"] == "RSR"].set_index("teacher")["value"]
    acc = sub[sub["metric"] == ACCURACY_METRIC].set_index("teacher")["value"].loc[rsr.index].copy()
    acc["DeepSeek-R1-0528"] = 47.8
    acc["Qwen-3-8B"] += 0.01
    assert abs(stats.spearmanr(rsr, acc)[0]) == pytest.approx(0.909, abs=5e-4)


def test_every_metric_is_correlated_for_every_student():
    rho = paper_correlations(PAPER_METRICS)
    names = set(load_paper_metrics(PAPER_METRICS)["metric"]) - {ACCURACY_METRIC}
    assert set(rho.index) == names and rho.index[0] == "RSR" and list(rho.columns) == list(STUDENTS)
    assert rho.notna().all().all()
    assert rho.loc["RSR (200)", "Qwen-3-14B"] == pytest.approx(-0.855, abs=5e-4)


def test_recomputed_averages_are_close_to_the_printed_ones():
    table = reproduction_table(PAPER_METRICS)
    for metric, printed in PRINTED_AVERAGE.items():
        assert table.loc[metric, "avg |rho|"] == pytest.approx(printed, abs=0.025), metric
    assert table.loc["RSR", "avg |rho|"] == table["avg |rho|"].drop(["RSR (200)"]).max()


def test_rsr_comparison_table():
    table = rsr_comparison(PAPER_METRICS)
    assert list(table.columns) == ["paper", "from rounded values", "corrected"]
    assert table.loc["Qwen-2.5-7B"].tolist() == pytest.approx([0.918, 0.888, 0.918], abs=5e-4)
    assert table.loc["average", "corrected"] == pytest.approx(0.856, abs=1e-3)


def run_command(argv: list[str], capsys) -> str:
    parser = argparse.ArgumentParser()
    reproduce_paper.add_arguments(parser)
    assert reproduce_paper.run(parser.parse_args(argv)) == 0
    return capsys.readouterr().out


def test_command_json_prints_metric_student_rho(capsys):
    data = json.loads(run_command(["--json"], capsys))
    assert set(data) == set(load_paper_metrics(PAPER_METRICS)["metric"]) - {ACCURACY_METRIC}
    assert set(data["RSR"]) == set(STUDENTS)
    assert [abs(data["RSR"][s]) for s in FROM_ROUNDED] == pytest.approx(list(FROM_ROUNDED.values()), abs=5e-4)
    fixed = json.loads(run_command(["--json", "--corrected"], capsys))
    assert abs(fixed["RSR"]["Qwen-2.5-7B"]) == pytest.approx(0.918, abs=5e-4)


def test_command_table_shows_printed_values_and_the_explanation(capsys):
    out = run_command([], capsys)
    assert "0.918" in out and "0.888" in out and "47.8" in out and "tie" in out
    assert "Avg-Surprisal" in out and "paper avg |rho|" in out


def test_rsr_is_the_strongest_predictor_for_every_student():
    rho = paper_correlations(PAPER_METRICS).abs().drop("RSR (200)")
    assert (rho.idxmax() == "RSR").all()
