"""The Metrics page (AppTest) on the demo store and on a store opened with RSR_STORE: every pair of rules with its
agreement, computed here again by a plain loop over the problems; RSR against LARK; the problems they dispute,
opened side by side in the inspector; the teacher rankings; a store scored before the same-pass columns says so."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from rsr_core.data.demo import DEMO_STORE, load_demo
from tests.app_pages import chart_titles, frame_by_key, frame_with_column, open_page
from tests.test_same_pass import strip_same_pass

PAGE = "pages/metrics.py"


@pytest.fixture(scope="module")
def demo_table():
    table, _ = load_demo()
    return table


@pytest.fixture
def page(monkeypatch, tmp_path):
    return open_page(PAGE, monkeypatch, tmp_path)


def naive_picks(table: pd.DataFrame) -> pd.DataFrame:
    """Per problem the trajectory each rule keeps, by a loop over problems (ties: the smaller id)."""
    rows = []
    for pid, group in table.groupby("problem_id"):
        g = group.sort_values("trajectory_id")
        loss, rho = g["avg_surprisal"].to_numpy(), g["lark_rho"].to_numpy()
        g_hat = loss / loss.sum() * (2 * rho - (rho * loss).sum() / loss.sum())
        rows.append({"problem_id": pid, "size": len(g),
                     "RSR": g["trajectory_id"].iloc[int(np.argmin(g["rsr"].to_numpy()))],
                     "LARK": g["trajectory_id"].iloc[int(np.argmax(g_hat))],
                     "Avg-Surprisal": g["trajectory_id"].iloc[int(np.argmin(loss))]})
    return pd.DataFrame(rows)


def test_agreement_of_every_pair_as_counted_by_hand(page, demo_table):
    assert not page.exception and not page.error
    shown = frame_with_column(page, "chance").set_index("rules")
    picks = naive_picks(demo_table)
    several = picks[picks["size"] >= 2]
    for a, b in (("RSR", "LARK"), ("RSR", "Avg-Surprisal"), ("LARK", "Avg-Surprisal")):
        row = shown.loc[f"{a} · {b}"]
        assert row["problems"] == len(several)
        assert row["same pick"] == int((several[a] == several[b]).sum())
        assert row["low"] <= row["share"] <= row["high"]
        assert row["chance"] == pytest.approx(float((1 / several["size"]).mean()))
    assert {"RSR · Random", "Entropy · Random"} <= set(shown.index)  # five rules, ten pairs
    assert len(shown) == 10
    titles = chart_titles(page)
    assert any(t.startswith("Share of problems where two rules keep the same trajectory") for t in titles)
    assert any(t.startswith("RSR against LARK ρ per trajectory") for t in titles)


def test_disputed_problems_open_both_picks_side_by_side(page, demo_table):
    disputes = frame_by_key(page, "metrics_disputes")
    picks = naive_picks(demo_table).set_index("problem_id")
    differ = picks[(picks["RSR"] != picks["LARK"]) & (picks["size"] >= 2)]
    assert len(disputes) == min(20, len(differ)) and set(disputes["problem"]) <= set(differ.index)
    for row in disputes.itertuples():
        assert (row[3], row[5]) == (picks.at[row.problem, "RSR"], picks.at[row.problem, "LARK"])
    assert disputes["disagreement"].is_monotonic_decreasing
    first = disputes.iloc[0]
    page.session_state["metrics_open_pair"] = (first["RSR keeps"], first["LARK keeps"])  # what a row click sets
    page.run()
    assert not page.exception
    assert page.session_state["selected_trajectory"] == first["RSR keeps"]
    assert page.toggle(key="inspector_compare").value is True
    assert page.selectbox(key="inspector_compare_with").value == first["LARK keeps"]
    assert any("LARK ρ" == m.label for m in page.metric)  # the inspector shows LARK's rho beside RSR


def test_teacher_rankings_and_their_agreement(page, demo_table):
    ranks = frame_with_column(page, "RSR rank")
    assert sorted(ranks["teacher"]) == sorted(demo_table["teacher"].unique())
    per_teacher = demo_table.groupby("teacher")["avg_surprisal"].mean().rank(method="min")
    shown = ranks.set_index("teacher")["Avg-Surprisal rank"].astype(float)
    assert shown.sort_index().tolist() == per_teacher.sort_index().tolist()
    matrix = next(df.value for df in page.dataframe if "LARK" in df.value and "teacher" not in df.value)
    assert matrix.loc["RSR", "RSR"] == 1.0 and -1 <= matrix.loc["RSR", "LARK"] <= 1


def test_other_pooling_recomputes_g_hat(page):
    key = next(s.key for s in page.selectbox if s.label == "pool candidates by")
    page.selectbox(key=key).set_value("prompt").run()
    assert not page.exception and not page.error
    assert len(frame_with_column(page, "chance")) == 10


def open_store(monkeypatch, tmp_path, store) -> AppTest:
    return open_page(PAGE, monkeypatch, tmp_path, store=store)


def test_a_store_opened_with_rsr_store(monkeypatch, tmp_path):
    store = shutil.copytree(DEMO_STORE, tmp_path / "data" / "store")
    monkeypatch.setenv("RSR_DATA_ROOTS", str(tmp_path / "data"))
    at = open_store(monkeypatch, tmp_path, store)
    assert not at.warning, [w.value for w in at.warning]
    assert "RSR · LARK" in set(frame_with_column(at, "chance")["rules"])


def test_a_store_scored_before_the_columns_says_what_it_lacks(monkeypatch, tmp_path):
    store = shutil.copytree(DEMO_STORE, tmp_path / "data" / "old")
    strip_same_pass(store)
    monkeypatch.setenv("RSR_DATA_ROOTS", str(tmp_path / "data"))
    at = open_store(monkeypatch, tmp_path, store)
    warning = " ".join(w.value for w in at.warning)
    assert "were scored before the same-pass columns" in warning and "python -m rsr_core score" in warning
    assert any("LARK is left out" in c.value for c in at.caption)
    rules = set(frame_with_column(at, "chance")["rules"])
    assert "RSR · Avg-Surprisal" in rules and not any("LARK" in r for r in rules)  # the rest still compared
    assert all(df.key != "metrics_disputes" for df in at.dataframe)
