"""The Validation page: the paper's correlations recomputed, the corrected toggle, and accuracies of one's own."""
from __future__ import annotations

import numpy as np
import pytest

from app_pages import chart_titles, editor_state, frame_with_column, open_page
from rsr_core.analysis.paper import CORRECTIONS, PRINTED_AVERAGE, reproduction_table
from rsr_core.data.paths import PAPER_METRICS
from rsr_core.ui.validation_figures import abs_rho_figure, corrections_table, rsr_student_table

PAGE = "pages/validation.py"


@pytest.fixture
def page(monkeypatch, tmp_path):
    return open_page(PAGE, monkeypatch, tmp_path)


def rsr_row(at, student: str):
    table = frame_with_column(at, "ours")
    return table.set_index("student").loc[student]


def test_page_shows_the_rsr_table_the_metric_table_and_the_chart(page):
    assert rsr_row(page, "Qwen-2.5-7B")["ours"] == pytest.approx(0.888, abs=5e-4)
    assert rsr_row(page, "Qwen-3-14B")["ours"] == pytest.approx(0.855, abs=5e-4)
    metrics = frame_with_column(page, "paper avg |rho|")
    assert "RSR" in set(metrics.index) | set(metrics.get("metric", []))
    assert any(t.startswith("|Spearman| of each metric") for t in chart_titles(page))
    assert any("47.3" in m.value for m in page.markdown)  # the explanation of the differences is shown


def test_corrected_toggle_reproduces_the_printed_values(page):
    page.toggle(key="validation_corrected").set_value(True).run()
    assert not page.exception
    assert rsr_row(page, "Qwen-2.5-7B")["ours"] == pytest.approx(0.918, abs=5e-4)
    assert rsr_row(page, "Qwen-3-4B")["ours"] == pytest.approx(0.818, abs=5e-4)
    assert rsr_row(page, "average")["ours"] == pytest.approx(0.856, abs=5e-4)
    assert abs(rsr_row(page, "Qwen-2.5-3B")["difference"]) < 1e-3


def test_typed_accuracies_find_the_best_predictor_of_the_users_teachers(page):
    assert any("a correlation needs at least 3" in i.value for i in page.info)
    teachers = next(df.value for df in page.dataframe if df.key == "validation_acc_editor")["teacher"]
    page.session_state["validation_acc_editor"] = editor_state({i: 70.0 - 2 * i for i in range(len(teachers))})
    page.run()
    assert not page.exception
    corr = frame_with_column(page, "Spearman 95% CI")
    assert len(corr) >= 10 and corr["Spearman"].abs().is_monotonic_decreasing
    assert any(m.value.startswith("**Best predictor** over") for m in page.markdown)


def test_accuracies_given_on_another_page_are_used_here(page):
    teachers = next(df.value for df in page.dataframe if df.key == "validation_acc_editor")["teacher"].tolist()
    student = page.session_state["student_name"]
    page.session_state["teacher_accuracies"] = {student: {t: float(i) for i, t in enumerate(teachers)}}
    page.run()
    assert not page.exception
    editor = next(df.value for df in page.dataframe if df.key == "validation_acc_editor")
    assert editor["accuracy"].tolist() == [float(i) for i in range(len(teachers))]
    assert frame_with_column(page, "Spearman 95% CI") is not None


# --- helpers -------------------------------------------------------------------------------------------------------

def test_rsr_student_table_with_and_without_corrections():
    raw, fixed = rsr_student_table(False).set_index("student"), rsr_student_table(True).set_index("student")
    assert raw.loc["Qwen-2.5-7B", "ours"] == pytest.approx(0.888, abs=5e-4)
    assert fixed.loc["Qwen-2.5-7B", "ours"] == pytest.approx(0.918, abs=5e-4)
    assert (fixed["difference"].abs() < 1e-3).all()
    assert raw.loc["average", "paper"] == PRINTED_AVERAGE["RSR"]
    assert raw.loc["average", "ours"] == pytest.approx(raw.drop(index="average")["ours"].mean())


def test_corrections_table_lists_every_change():
    table = corrections_table()
    assert len(table) == len(CORRECTIONS)
    assert table.iloc[0]["accuracy used"] == 47.8 and "47.3" in table.iloc[0]["why"]


def test_abs_rho_figure_marks_the_printed_averages():
    table = reproduction_table(PAPER_METRICS, corrected=True)
    fig = abs_rho_figure(table)
    bars, printed = fig.data[0], fig.data[-1]
    assert list(bars.x) == sorted(bars.x)  # strongest on top
    assert dict(zip(bars.y, bars.marker.color))["RSR"] == "#2e8b57"
    assert np.allclose(bars.x, table.loc[list(bars.y), "avg |rho|"])
    assert len(printed.x) == int(np.isfinite(table["paper avg |rho|"]).sum())
    assert len(fig.data) == 2 + 5  # bars, five students, the printed averages
