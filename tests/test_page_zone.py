"""The teaching page renders on its own and its widgets change what it shows."""
import importlib.util
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).parents[1] / "pages" / "zone.py")


@pytest.fixture
def page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def simulation(at: AppTest) -> pd.DataFrame:
    """The simulation table: one row per quantity (this run's above the paper's), one column per source."""
    table = next(df.value for df in at.dataframe if "quantity" in df.value.columns)
    return table.set_index("quantity")[["X_A", "X_B", "X_C", "X_D"]]


def test_page_renders_the_simulation_table_next_to_the_papers(page):
    table = simulation(page)
    assert list(table.loc["RSR_token, paper"]) == [1.69, 1.30, 2.23, 1.62]
    assert abs(table.loc["RSR_token (mean r/s)", "X_B"] - 1.30) < 0.03
    assert list(table.index[:2]) == ["mean p", "mean p, paper"]  # this run's value above the paper's
    assert metric(page, "lowest RSR_token").startswith("X_B")


def test_moving_the_mixture_weight_changes_the_table(page):
    before = simulation(page).loc["mean p"].tolist()
    page.slider(key="zpd_weight").set_value(0.6).run()
    assert not page.exception
    after = simulation(page).loc["mean p"].tolist()
    assert after != before
    assert after[1] > before[1]  # a heavier minor mode: X_B tokens become more probable


def test_moving_the_token_probability_moves_the_token(page):
    s_before, r_before = metric(page, "surprisal"), metric(page, "rank")
    page.select_slider(key="zpd_token_p").set_value(0.5).run()
    assert not page.exception
    assert metric(page, "surprisal") == "0.69 nats"
    assert metric(page, "surprisal") != s_before and metric(page, "rank") != r_before
    assert metric(page, "rank") == "1"


def test_setting_the_rank_by_hand_makes_the_token_alien(page):
    page.checkbox(key="zpd_manual_rank").check().run()
    page.slider(key="zpd_token_rank").set_value(60).run()
    assert not page.exception
    assert metric(page, "rank") == "60"
    assert any("**alien**" in c.value for c in page.caption)


def test_zone_thresholds_come_from_session_state_when_the_app_sets_them():
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["r_max"] = 50
    at.session_state["zone_surprisal_threshold"] = 5.0
    at.session_state["zone_rank_threshold"] = 3
    at.run()
    assert not at.exception
    assert {w.key for w in at.number_input}.isdisjoint({"zpd_s0", "zpd_k"})  # the app owns the thresholds
    assert any("surprisal 5 nats, rank 3" in c.value for c in at.caption)


def test_page_local_thresholds_change_the_tokens_zone(page):
    assert any("**in the zone**" in c.value for c in page.caption)  # p = 0.02: 3.9 nats, rank 7
    page.number_input(key="zpd_k").set_value(5).run()
    assert not page.exception
    assert any("**alien**" in c.value for c in page.caption)


def test_cartoon_section_shows_the_demo_scores_or_says_why_not(page):
    if importlib.util.find_spec("rsr_core.ui.demo") is None:
        assert any("demo scores" in i.value for i in page.info)
        return
    strips = [h.proto.body for h in page.html if "rsr-tok" in h.proto.body]
    assert len(strips) == 3, [i.value for i in page.info]
    assert all('data-t="0"' in s for s in strips)
    # one column per solution (four columns fit a narrow window), the cartoon's reading in the first row
    from rsr_core.analysis.metrics import trajectory_rsr
    from rsr_core.ui.demo import load_demo_scores

    table = next(df.value for df in page.dataframe if "completing the square" in df.value.columns)
    assert list(table.columns) == ["quantity", "table of values", "completing the square", "calculus"]
    rows = table.set_index("quantity")
    assert list(rows.loc["cartoon"]) == ["too familiar", "just right", "too informative"]
    scores = load_demo_scores()[1]["p01-calculus"]
    assert rows.loc["RSR", "calculus"] == f"{trajectory_rsr(scores.surprisal, scores.rank, 100):.2f}"
    assert rows.loc["tokens", "calculus"] == f"{len(scores):,}"
