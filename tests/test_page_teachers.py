"""The Teachers page on the demo data, its figure and accuracy helpers."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from app_pages import chart_titles, editor_state, frame_by_key, frame_with_column, open_page, write_store
from rsr_core.data import demo
from rsr_core.analysis.teachers import teacher_table
from rsr_core.ui.accuracy_input import (accuracies_from_frame, correlate, correlation_display, editor_frame,
                                        read_accuracy_upload)
from rsr_core.ui.teacher_figures import (budget_figure, combined_tables, correlation_figure, iso_levels,
                                         rank_surprisal_figure, rsr_distribution_figure, teacher_display_table,
                                         teacher_from_selection, teacher_scatter, teacher_trajectories,
                                         with_accuracy)

PAGE = "pages/teachers.py"
GLANCE_TAB, RUNS_OPEN, BUDGET_OPEN = "teachers_glance_tab", "teachers_runs_open", "teachers_budget_open"
GLANCE_TABS = ("RSR against surprisal", "RSR against length", "RSR per trajectory")


@pytest.fixture(scope="module")
def demo_data():
    if not demo.available_demo_students():
        pytest.skip("the demo pool's precomputed scores are missing (make demo-scores)")
    return demo.load_demo(demo.available_demo_students()[0])


@pytest.fixture(scope="module")
def teachers(demo_data):
    return teacher_table(demo_data[0], n_resamples=200)


@pytest.fixture
def page(monkeypatch, tmp_path):
    return open_page(PAGE, monkeypatch, tmp_path)


def ranked_accuracies(teachers: pd.DataFrame) -> dict[int, float]:
    """Editor rows -> accuracies falling with the teacher's rank (so lower RSR, higher accuracy)."""
    return {i: 60.0 - 3.0 * i for i in range(len(teachers))}


# --- the page ------------------------------------------------------------------------------------------------------

def test_page_shows_one_row_per_teacher_with_its_interval(page, demo_data):
    table = frame_by_key(page, "teachers_table")
    assert sorted(table["teacher"]) == sorted(demo_data[0]["teacher"].unique())
    assert (table["rsr_low"] <= table["rsr"] + 1e-9).all() and (table["rsr"] <= table["rsr_high"] + 1e-9).all()
    assert list(table["rank"]) == sorted(table["rank"])  # best (lowest teacher score) first


def open_tab(page, tab: str) -> list[str]:
    """Open a tab of "Teachers at a glance" (what a click on it does); the titles of the charts then drawn."""
    page.session_state[GLANCE_TAB] = tab
    page.run()
    assert not page.exception
    return chart_titles(page)


def test_only_the_open_chart_of_the_glance_is_drawn(page):
    titles = chart_titles(page)  # the first tab is open
    assert any("constant RSR" in t for t in titles)
    assert not any("against length" in t or "per teacher" in t for t in titles)
    titles = open_tab(page, GLANCE_TABS[1])
    assert any("against length" in t for t in titles) and not any("constant RSR" in t for t in titles)
    assert any(t.startswith("Trajectory RSR per teacher") for t in open_tab(page, GLANCE_TABS[2]))


def test_switching_the_plane_to_rsr_draws_constant_rank_curves(page):
    page.radio(key="teachers_plane_y").set_value("rsr").run()
    assert not page.exception
    assert any("constant clipped rank" in t for t in chart_titles(page))
    open_tab(page, GLANCE_TABS[1])
    assert any("constant clipped rank" in t for t in open_tab(page, GLANCE_TABS[0]))  # the choice is kept


def test_the_per_run_table_is_drawn_when_opened(demo_data, tmp_path, monkeypatch):
    """A pool generated in two runs (a store of the demo's trajectories, each twice): the per-run table is
    computed and drawn once its expander is opened, one row per teacher and run."""
    from dataclasses import replace

    from rsr_core.data.store import ResultsStore

    demo_store = ResultsStore(demo.DEMO_STORE)
    table, scores = demo_data
    ids = table["trajectory_id"].tolist()
    trajectories, run_scores = [], {}
    for run in ("r1", "r2"):
        for traj in demo_store.trajectories(ids, student=demo.available_demo_students()[0]):
            copy = replace(traj, trajectory_id=f"{traj.trajectory_id}/{run}", run=run)
            trajectories.append(copy)
            run_scores[copy.trajectory_id] = scores[traj.trajectory_id]
    monkeypatch.setenv("RSR_STORE", str(write_store(tmp_path / "runs", trajectories, run_scores)))
    page = open_page(PAGE, monkeypatch, tmp_path)
    assert not any(e.label == "Per run" and e.proto.expanded for e in page.expander)
    assert all("run" not in df.value for df in page.dataframe)  # not drawn while closed
    page.session_state[RUNS_OPEN] = True
    page.run()
    assert not page.exception
    runs = frame_with_column(page, "run")
    assert sorted(zip(runs["teacher"], runs["run"])) == sorted(
        (teacher, run) for teacher in table["teacher"].unique() for run in ("r1", "r2"))
    assert (runs["n_trajectories"] == runs["teacher"].map(table["teacher"].value_counts())).all()


def test_a_clicked_teacher_lists_its_trajectories(page, demo_data):
    assert all(df.key != "teachers_trajectories" for df in page.dataframe)
    page.session_state["teachers_focus"] = "terse"  # what a click on the teacher's point sets
    page.run()
    assert not page.exception
    rows = frame_by_key(page, "teachers_trajectories")
    expected = demo_data[0][demo_data[0]["teacher"] == "terse"]
    assert sorted(rows["trajectory_id"]) == sorted(expected["trajectory_id"])
    assert rows["rsr"].is_monotonic_increasing


def test_a_clicked_trajectory_opens_in_the_inspector(page):
    page.session_state["teachers_open_trajectory"] = "p03-terse"  # what a click in the list sets
    page.run()
    assert not page.exception
    assert page.session_state["selected_trajectory"] == "p03-terse"
    assert all(df.key != "teachers_table" for df in page.dataframe)  # the inspector is shown instead


def test_typed_accuracies_give_the_correlation_table(page, teachers):
    assert any("a correlation needs at least 3" in i.value for i in page.info)
    shown = frame_by_key(page, "teachers_table")
    page.session_state["teachers_acc_editor"] = editor_state(ranked_accuracies(shown))
    page.run()
    assert not page.exception
    corr = frame_with_column(page, "Spearman 95% CI")
    rsr = corr[corr["column"] == "rsr"].iloc[0]
    assert rsr["Spearman"] == pytest.approx(-1.0)  # accuracies fall exactly with the RSR rank
    assert rsr["teachers"] == len(shown)
    assert any(m.value.startswith("**Best predictor**") for m in page.markdown)
    assert any("against post-training accuracy" in t for t in chart_titles(page))
    stored = page.session_state["teacher_accuracies"][page.session_state["student_name"]]
    assert stored[shown["teacher"].iloc[0]] == 60.0


def test_a_second_student_shows_the_teachers_side_by_side(page, demo_data):
    """The demo store holds every embedded student's scores: the page ranks the teachers under each."""
    students = demo.available_demo_students()
    if len(students) < 2:
        pytest.skip("precomputed demo scores for one student only")
    table, _ = demo_data
    side = frame_with_column(page, "mean rank")
    assert {f"{s} rank" for s in students} | {"mean rank"} <= set(side.columns)
    assert sorted(side["teacher"]) == sorted(table["teacher"].unique())


def test_a_small_budget_resamples_and_reports_stability(page):
    assert not any(w.key == "teachers_budget_n" for w in page.number_input)  # computed only when opened
    page.session_state[BUDGET_OPEN] = True
    page.run()
    assert any("the sample is all the data" in i.value for i in page.info)
    page.number_input(key="teachers_budget_n").set_value(5).run()
    assert not page.exception
    assert not any("the sample is all the data" in i.value for i in page.info)
    budget = frame_with_column(page, "top_k_rate")
    assert (budget["n_sampled"] <= 5).all() and budget["selected"].sum() == page.number_input(
        key="teachers_budget_k").value
    metric = next(m for m in page.metric if m.label.startswith("same top"))
    assert metric.value.endswith("%")


# --- figure helpers ------------------------------------------------------------------------------------------------

def test_teacher_from_selection_reads_the_last_point():
    assert teacher_from_selection(None) is None
    assert teacher_from_selection({"points": []}) is None
    sel = {"points": [{"customdata": ["terse", 3.1]}, {"customdata": ["advanced", 3.9]}]}
    assert teacher_from_selection(sel) == "advanced"
    assert teacher_from_selection({"points": [{"customdata": "calculus"}]}) == "calculus"


def test_iso_levels_span_the_values():
    levels = iso_levels([2.6, 3.1, 4.1])
    assert levels == sorted(levels) and all(v > 0 for v in levels)
    assert min(levels) <= 2.6 and max(levels) >= 4.1
    assert iso_levels([np.nan]) == []


def test_each_teacher_sits_on_its_own_constant_rsr_line(teachers):
    fig = rank_surprisal_figure(teachers, levels=[3.0, 4.0])
    lines = [t for t in fig.data if t.mode == "lines"]
    assert [t.name for t in lines] == ["RSR = 3", "RSR = 4"]
    x, y = np.asarray(lines[0].x), np.asarray(lines[0].y)
    assert np.allclose(y[1:] / x[1:], 3.0)
    points = fig.data[-1]
    assert list(np.asarray(points.customdata)[:, 0]) == list(teachers["teacher"])
    assert np.allclose(np.asarray(points.y) / np.asarray(points.x), teachers["rsr"])  # slope = dataset RSR
    curves = rank_surprisal_figure(teachers, y="rsr", levels=[6.0])
    cx, cy = np.asarray(curves.data[0].x), np.asarray(curves.data[0].y)
    assert np.allclose(cx * cy, 6.0)
    with pytest.raises(ValueError):
        rank_surprisal_figure(teachers, y="avg_rank")


def test_scatter_error_bars_are_the_bootstrap_interval(teachers):
    fig = teacher_scatter(teachers, "avg_length")
    err = fig.data[0].error_y
    assert np.allclose(np.asarray(fig.data[0].y) + np.asarray(err.array), teachers["rsr_high"])
    assert np.allclose(np.asarray(fig.data[0].y) - np.asarray(err.arrayminus), teachers["rsr_low"])


def test_teacher_trajectories_and_distribution(demo_data, teachers):
    table = demo_data[0]
    rows = teacher_trajectories(table, "advanced")
    assert set(rows["trajectory_id"]) == set(table.loc[table["teacher"] == "advanced", "trajectory_id"])
    order = list(teachers["teacher"])
    fig = rsr_distribution_figure(table, order, "violin")
    assert [t.name for t in fig.data] == order and fig.data[0].type == "violin"
    assert sum(len(t.x) for t in fig.data) == len(table)
    with pytest.raises(ValueError):
        rsr_distribution_figure(table, order, "histogram")


def test_distribution_of_a_large_table_sends_no_per_trajectory_data(demo_data, teachers):
    table = demo_data[0]
    order = list(teachers["teacher"])
    boxes = rsr_distribution_figure(table, order, "box", max_points=20)
    for trace, teacher in zip(boxes.data, order):
        rsr = table.loc[table["teacher"] == teacher, "rsr"].to_numpy(float)
        assert trace.x is None and trace.customdata is None
        assert np.allclose([trace.q1[0], trace.median[0], trace.q3[0]], np.percentile(rsr, [25, 50, 75]))
        assert rsr.min() <= trace.lowerfence[0] <= trace.q1[0] and trace.q3[0] <= trace.upperfence[0] <= rsr.max()
    assert "quartiles of all" in boxes.layout.title.text
    violins = rsr_distribution_figure(table, order, "violin", max_points=20)
    assert 0 < sum(len(t.x) for t in violins.data) <= 20 + len(order) and "a sample of 20" in violins.layout.title.text


def test_display_table_drops_empty_columns(teachers):
    shown = teacher_display_table(teachers.assign(correct_rate=np.nan))
    assert "correct_rate" not in shown and shown.columns[0] == "teacher"


def test_combined_tables_keeps_each_students_name(demo_data):
    table = demo_data[0]
    both = combined_tables({"a": table.drop(columns=["student"]), "b": table.assign(student="b"),
                            "c": pd.DataFrame()})
    assert sorted(both["student"].unique()) == ["a", "b"] and len(both) == 2 * len(table)


def test_with_accuracy_and_budget_and_correlation_figures(teachers, demo_data):
    acc = {t: 50.0 - i for i, t in enumerate(teachers["teacher"][:4])}
    sub = with_accuracy(teachers, acc)
    assert list(sub["teacher"]) == list(acc) and list(sub["accuracy"]) == list(acc.values())
    corr, best, _ = correlate(teachers, acc, n_resamples=100)
    fig = correlation_figure(corr)
    assert len(fig.data[0].x) == len(corr)
    assert fig.data[0].y[-1] == correlation_display(corr)["metric"].iloc[0]  # strongest on top
    from rsr_core.analysis.teachers import budget_selection

    budget = budget_selection(demo_data[0], n_per_teacher=5, top_k=2, n_resamples=20)
    bars = budget_figure(budget.table, 2).data[0]
    picked = dict(zip(bars.y, bars.marker.color))
    chosen = budget.table.loc[budget.table["selected"], "teacher"]
    assert all(picked[t] == "#2e8b57" for t in chosen) and sum(c == "#2e8b57" for c in picked.values()) == 2


# --- accuracy helpers ----------------------------------------------------------------------------------------------

def test_editor_frame_round_trip():
    frame = editor_frame(["a", "b", "c"], {"b": 41.5})
    assert frame["accuracy"].isna().tolist() == [True, False, True]
    frame.loc[0, "accuracy"] = 50
    assert accuracies_from_frame(frame) == {"a": 50.0, "b": 41.5}


def test_upload_reads_csv_with_a_student_column_and_json():
    csv = b"teacher,accuracy,student\nA,50,s1\nB,40,s1\nA,10,s2\n"
    assert read_accuracy_upload("acc.csv", csv, "s2") == {"A": 10.0}
    assert read_accuracy_upload("acc.csv", b"teacher,acc\nA,50\nB,\n", None) == {"A": 50.0}
    assert read_accuracy_upload("acc.json", json.dumps({"A": 1, "B": 2.5}).encode(), "s") == {"A": 1.0, "B": 2.5}
    with pytest.raises(ValueError):
        read_accuracy_upload("acc.csv", b"name,score\nA,1\n", None)


def test_correlate_needs_three_teachers_and_sorts_by_strength(teachers):
    names = list(teachers["teacher"])
    corr, best, message = correlate(teachers, {names[0]: 1.0, names[1]: 2.0})
    assert corr is None and best is None and "at least 3" in message
    acc = {t: float(-r) for t, r in zip(teachers["teacher"], teachers["rsr"])}  # accuracy = -RSR
    corr, best, message = correlate(teachers, acc, n_resamples=100)
    assert best in ("rsr", "teacher_score")
    shown = correlation_display(corr)
    assert shown["Spearman"].abs().is_monotonic_decreasing
    assert shown.loc[shown["column"] == "rsr", "Spearman"].iloc[0] == pytest.approx(-1.0)
    assert shown["Spearman 95% CI"].iloc[0].startswith("[")
