"""How the app words and places text: counts in words, the two RSRs' labels, chart labels that do not overlap,
chart titles below the toolbar. (The browser test checks the same on the drawn pages.)"""
from __future__ import annotations

import itertools

import plotly.graph_objects as go
import pytest

from rsr_core.ui.labels import CHAR_PX, LINE_PX, place_labels
from rsr_core.ui.layout import MULTILINE_SHIFT_PX, TOOLBAR_PX, config, tidy, wrap_title
from rsr_core.ui.metric_labels import count, metric_label


def test_counts_in_words():
    assert count(1, "token") == "1 token"
    assert count(0, "token") == "0 tokens"
    assert count(1500, "token") == "1,500 tokens"
    assert count(1, "trajectory", "trajectories") == "1 trajectory"
    assert count(2, "trajectory", "trajectories") == "2 trajectories"


def test_a_trajectory_rsr_is_eq_7_and_a_teacher_rsr_eq_9():
    assert metric_label("rsr") == "RSR (Eq. 9)"
    assert metric_label("rsr", "trajectory") == "RSR (Eq. 7)"
    assert metric_label("avg_surprisal", "trajectory") == "mean surprisal"
    assert metric_label("n_tokens", "trajectory") == metric_label("n_tokens")


def boxes(x, y, texts, positions, width, height, x_range, y_range):
    """The label boxes the placement promises, in plot pixels (the same geometry as `place_labels`)."""
    from rsr_core.ui import labels

    out = []
    for a, b, text, pos in zip(x, y, texts, positions):
        if pos is None:
            continue
        px = (a - x_range[0]) / (x_range[1] - x_range[0]) * width
        py = (b - y_range[0]) / (y_range[1] - y_range[0]) * height
        _, fx, fy, ox, oy = next(p for p in labels._POSITIONS if p[0] == pos)
        w, h = len(text) * CHAR_PX + 2 * labels.PAD_PX, LINE_PX + labels.PAD_PX
        r = 7.0 + labels.PAD_PX
        x0, y0 = px + fx * w + ox * r, py + fy * h + oy * r
        out.append((x0, y0, x0 + w, y0 + h))
    return out


def test_labels_of_crowded_points_do_not_overlap_and_stay_inside():
    x = [1.0, 1.05, 1.1, 2.0, 3.0, 3.02, 5.0]
    y = [1.0, 1.02, 0.98, 2.0, 3.0, 3.01, 4.9]
    texts = ["table-of-values", "complete-the-square", "calculus", "terse", "advanced", "self-check", "r1-style"]
    positions = place_labels(x, y, texts, (0, 5.2), (0, 5.2), width=300, height=300)
    placed = boxes(x, y, texts, positions, 300, 300, (0, 5.2), (0, 5.2))
    assert None in positions and positions[3] is not None and positions[-1] is not None  # the crowd's left off
    for a, b in itertools.combinations(placed, 2):
        assert min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1]), (a, b)
    assert all(0 <= b[0] and b[2] <= 300 and 0 <= b[1] and b[3] <= 300 for b in placed)
    # far apart, every label fits
    assert None not in place_labels([1, 3, 5], [1, 3, 5], ["a", "b", "c"], (0, 6), (0, 6), width=300, height=300)
    assert place_labels([float("nan"), 1], [1, 1], ["x", ""], (0, 2), (0, 2)) == [None, None]


LONG_TITLE = "Share of resamples in which each teacher is in the top 3 of all the data"


@pytest.mark.parametrize("title, lines", [("Picks per teacher", 1), (LONG_TITLE, 2)])
def test_a_title_sits_below_the_toolbar(title, lines):
    fig = tidy(go.Figure(layout={"title": title, "margin": {"t": 20}}))
    assert fig.layout.title.text.count("<br>") == lines - 1
    assert fig.layout.title.pad.t == TOOLBAR_PX + (MULTILINE_SHIFT_PX if lines > 1 else 0)
    assert fig.layout.margin.t >= TOOLBAR_PX + 19 * lines  # the plot starts below the title
    assert wrap_title(title) == fig.layout.title.text
    assert tidy(go.Figure()).layout.margin.t >= TOOLBAR_PX


def test_the_toolbar_shows_on_hover_with_select_buttons_only_where_used():
    assert config()["displayModeBar"] == "hover" and "lasso2d" in config()["modeBarButtonsToRemove"]
    assert "lasso2d" not in config(selectable=True)["modeBarButtonsToRemove"]
