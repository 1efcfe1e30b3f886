"""Figures and tables of the Teachers page: pure functions of the teacher and trajectory tables.

Every clickable figure is a scatter whose points carry the teacher (or trajectory id) in `customdata`, so the
page can read the selection back (`teacher_from_selection`). Nothing here reads session state.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from rsr_core.ui.labels import place_labels
from rsr_core.ui.metric_labels import metric_label

TEACHER_COLUMNS = ("teacher", "rank", "n_runs", "n_trajectories", "teacher_score", "rsr", "rsr_low", "rsr_high",
                   "avg_surprisal", "avg_rank_clipped", "avg_rank", "avg_length", "correct_rate")
TRAJECTORY_COLUMNS = ("trajectory_id", "problem_id", "run", "rsr", "n_tokens", "avg_surprisal",
                      "avg_rank_clipped", "avg_rank", "correct", "truncated")
_HOVER = "<b>%{customdata[0]}</b><br>"
# the plot area the labels are placed for: the narrowest the page gives these charts (full width in a 900 px
# window, less the colour bar); in a wider window the points move apart and the labels still do not overlap
PLOT_PX = (300.0, 340.0)
HIDDEN_LABELS = "Names that would overlap are left off: hover a point for its teacher."


def teacher_display_table(teachers: pd.DataFrame) -> pd.DataFrame:
    """The per-teacher table as shown: the columns of `TEACHER_COLUMNS` present and not entirely empty."""
    cols = [c for c in TEACHER_COLUMNS if c in teachers and teachers[c].notna().any()]
    return teachers[cols].reset_index(drop=True)


def teacher_trajectories(table: pd.DataFrame, teacher: str) -> pd.DataFrame:
    """The trajectories of one teacher, best RSR first (NaN last), with a stable `trajectory_id` column."""
    rows = table[table["teacher"].astype(str) == str(teacher)]
    cols = [c for c in TRAJECTORY_COLUMNS if c in rows]
    return rows[cols].sort_values(["rsr", "trajectory_id"], na_position="last", kind="stable").reset_index(drop=True)


def teacher_from_selection(selection: Mapping | None) -> str | None:
    """The teacher of the last selected point of a plotly selection state ({"points": [{"customdata": ...}]}).

    `customdata` is the teacher or a list whose first item is the teacher; None when nothing is selected.
    """
    points = (selection or {}).get("points") or []
    for point in reversed(points):
        data = point.get("customdata")
        if isinstance(data, (list, tuple)) and data:
            data = data[0]
        if data is not None and str(data) != "":
            return str(data)
    return None


def iso_levels(values: Sequence[float], n: int = 5) -> list[float]:
    """About n round values spanning the finite `values` (at least their range, with a margin)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if not v.size:
        return []
    lo, hi = float(v.min()), float(v.max())
    span = max(hi - lo, 0.2 * hi, 1e-9)
    raw = span / max(n - 1, 1)
    step = float(10 ** np.floor(np.log10(raw)))
    step *= next((m for m in (1, 2, 2.5, 5, 10) if raw <= m * step), 10)
    start = np.floor((lo - 0.25 * span) / step) * step
    levels = np.arange(max(start, step), hi + 0.25 * span + step / 2, step)
    return [float(round(x, 10)) for x in levels]


def _padded(lo: float, hi: float, share: float = 0.08) -> tuple[float, float]:
    span = (hi - lo) or abs(hi) or 1.0
    return lo - share * span, hi + share * span


def _range(values: np.ndarray) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    return (float(v.min()), float(v.max())) if v.size else (0.0, 1.0)


def _teacher_points(teachers: pd.DataFrame, x: str, y: str, *, color: str | None = "rsr",
                    error_y: bool = False, x_range: tuple[float, float] | None = None,
                    y_range: tuple[float, float] | None = None) -> go.Scatter:
    """One scatter point per teacher, with the teacher in customdata and every key number on hover, and its name
    beside it where it fits without overlapping another name or point (`labels.place_labels`; the axes' ranges
    are needed for that, the data's own by default)."""
    custom = np.column_stack([teachers["teacher"].astype(str).to_numpy(object),
                              teachers["rsr"].to_numpy(float),
                              teachers["avg_surprisal"].to_numpy(float),
                              teachers["avg_rank_clipped"].to_numpy(float),
                              teachers["avg_length"].to_numpy(float)])
    marker: dict = {"size": 13, "line": {"width": 1, "color": "white"}}
    if color and color in teachers:
        marker.update(color=teachers[color].to_numpy(float), colorscale="Viridis_r", showscale=True,
                      colorbar={"title": {"text": metric_label(color)}})
    err = None
    if error_y and y == "rsr" and {"rsr_low", "rsr_high"} <= set(teachers):
        err = {"type": "data", "symmetric": False,
               "array": (teachers["rsr_high"] - teachers["rsr"]).to_numpy(float),
               "arrayminus": (teachers["rsr"] - teachers["rsr_low"]).to_numpy(float),
               "thickness": 1, "width": 3, "color": "rgba(90,90,90,0.6)"}
    xs, ys = teachers[x].to_numpy(float), teachers[y].to_numpy(float)
    names = teachers["teacher"].astype(str).tolist()
    width = PLOT_PX[0] - (90 if color and color in teachers else 0)
    positions = place_labels(xs, ys, names, x_range or _padded(*_range(xs)), y_range or _padded(*_range(ys)),
                             width=width, height=PLOT_PX[1], marker_px=7.5)
    return go.Scatter(
        x=xs, y=ys, mode="markers+text", text=[n if p else "" for n, p in zip(names, positions)],
        textposition=[p or "top center" for p in positions], customdata=custom, marker=marker,
        error_y=err, name="teachers", showlegend=False,
        hovertemplate=_HOVER + "RSR %{customdata[1]:.3f}<br>Avg-Surprisal %{customdata[2]:.3f} nats<br>"
                      "Avg-Rank (clipped) %{customdata[3]:.2f}<br>length %{customdata[4]:.0f} tokens"
                      "<extra></extra>")


def rank_surprisal_figure(teachers: pd.DataFrame, y: str = "avg_rank_clipped",
                          levels: Sequence[float] | None = None) -> go.Figure:
    """RSR against Avg-Surprisal, one point per teacher, with iso-lines.

    y='avg_rank_clipped': mean clipped rank against mean surprisal; the iso-lines are the rays
    mean clipped rank = c x mean surprisal, i.e. constant RSR = c (a teacher's dataset RSR is exactly the slope
    from the origin to its point). y='rsr': RSR itself against mean surprisal; the iso-lines are then the curves of
    constant mean clipped rank c (RSR = c / mean surprisal).
    """
    if y not in ("avg_rank_clipped", "rsr"):
        raise ValueError(f"y must be 'avg_rank_clipped' or 'rsr', not {y!r}")
    fig = go.Figure()
    s = teachers["avg_surprisal"].to_numpy(float)
    finite = s[np.isfinite(s)]
    x_max = float(finite.max()) * 1.15 if finite.size else 1.0
    x_min = max(float(finite.min()) * 0.85, 1e-3) if finite.size else 1e-3
    ycol = teachers[y].to_numpy(float)
    y_top = float(np.nanmax(ycol)) * 1.2 if np.isfinite(ycol).any() else 1.0
    iso_of = "rsr" if y == "avg_rank_clipped" else "avg_rank_clipped"
    levels = list(levels) if levels is not None else iso_levels(teachers[iso_of].to_numpy(float))
    xs = np.linspace(0 if y == "avg_rank_clipped" else x_min, x_max, 60)
    for c in levels:
        ys = c * xs if y == "avg_rank_clipped" else c / xs
        name = f"RSR = {c:g}" if y == "avg_rank_clipped" else f"clipped rank = {c:g}"
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"dash": "dot", "width": 1, "color": "#9a9a9a"},
                                 name=name, hoverinfo="name", showlegend=False))
        # label where the line leaves the plot: the right edge, or the top edge for the steep rays
        inside = ys <= y_top
        at = int(np.flatnonzero(inside)[-1]) if inside.any() else len(xs) - 1
        fig.add_annotation(x=xs[at], y=ys[at], text=name, showarrow=False, font={"size": 10, "color": "#7a7a7a"},
                           xanchor="left" if at == len(xs) - 1 else "center",
                           yanchor="bottom" if at < len(xs) - 1 else "middle")
    x_range = (0 if y == "avg_rank_clipped" else x_min * 0.9, x_max * 1.12)
    fig.add_trace(_teacher_points(teachers, "avg_surprisal", y, x_range=x_range, y_range=(0, y_top)))
    fig.update_layout(
        title="RSR against Avg-Surprisal" + (" (dotted: constant RSR)" if y == "avg_rank_clipped"
                                             else " (dotted: constant clipped rank)"),
        xaxis={"title": "Avg-Surprisal (nats)", "range": list(x_range)},
        yaxis={"title": metric_label(y), "range": [0, y_top]},
        height=430, margin={"l": 10, "r": 10, "t": 50, "b": 10}, clickmode="event+select")
    return fig


def teacher_scatter(teachers: pd.DataFrame, x: str, y: str = "rsr", title: str | None = None) -> go.Figure:
    """`y` against `x`, one labelled point per teacher (RSR with its bootstrap interval), clickable."""
    xs, ys = teachers[x].to_numpy(float), teachers[y].to_numpy(float)
    lows = teachers["rsr_low"].to_numpy(float) if y == "rsr" and "rsr_low" in teachers else ys
    highs = teachers["rsr_high"].to_numpy(float) if y == "rsr" and "rsr_high" in teachers else ys
    x_range = _padded(*_range(xs), 0.12)
    y_range = _padded(min(_range(lows)[0], _range(ys)[0]), max(_range(highs)[1], _range(ys)[1]), 0.12)
    fig = go.Figure(_teacher_points(teachers, x, y, color=None, error_y=True, x_range=x_range, y_range=y_range))
    fig.update_layout(title=title or f"{metric_label(y)} against {metric_label(x)}",
                      xaxis={"title": metric_label(x), "range": list(x_range)},
                      yaxis={"title": metric_label(y), "range": list(y_range)}, height=430,
                      margin={"l": 10, "r": 10, "t": 50, "b": 10}, clickmode="event+select")
    return fig


def with_accuracy(teachers: pd.DataFrame, accuracies: Mapping[str, float]) -> pd.DataFrame:
    """The teachers that have an accuracy, with an `accuracy` column."""
    out = teachers[teachers["teacher"].astype(str).isin(accuracies)].copy()
    out["accuracy"] = [float(accuracies[str(t)]) for t in out["teacher"]]
    return out.reset_index(drop=True)


def rsr_distribution_figure(table: pd.DataFrame, order: Sequence[str] | None = None,
                            kind: str = "box", max_points: int = 5000) -> go.Figure:
    """Distribution of trajectory RSR per teacher (box or violin).

    order: teachers top to bottom (e.g. by rank). Every trajectory is drawn as a point, carrying (trajectory_id,
    teacher) in customdata, while the table has at most `max_points` rows. Beyond, the browser gets no
    per-trajectory data, so that 165,000 trajectories stay light: boxes are drawn from their quartiles and
    fences computed here, violins from a seeded sample of `max_points` trajectories in all (the title says so).
    """
    if kind not in ("box", "violin"):
        raise ValueError(f"kind must be 'box' or 'violin', not {kind!r}")
    teachers = list(order) if order is not None else sorted(table["teacher"].astype(str).unique())
    every = len(table) <= max_points
    names = table["teacher"].astype(str).to_numpy(object)
    rows_of = pd.Series(np.arange(len(names))).groupby(names, sort=False).indices  # teacher -> [m] positions
    rsr = table["rsr"].to_numpy(float)
    fig = go.Figure()
    for teacher in teachers:
        at = rows_of.get(teacher, np.zeros(0, dtype=int))
        if not every and kind == "box":
            fig.add_trace(go.Box(name=teacher, orientation="h", **_box_statistics(rsr[at])))
            continue
        rows = table.iloc[at]
        if not every:
            rows = rows.sample(n=min(len(rows), max(1, max_points * len(rows) // len(table))), random_state=0)
        common = dict(x=rows["rsr"].to_numpy(float), name=teacher, orientation="h",
                      customdata=np.column_stack([rows["trajectory_id"].astype(str).to_numpy(object),
                                                  rows["teacher"].astype(str).to_numpy(object)]),
                      hovertemplate="<b>%{customdata[0]}</b><br>RSR %{x:.3f}<extra>%{customdata[1]}</extra>")
        if kind == "box":
            fig.add_trace(go.Box(boxpoints="all", jitter=0.4, pointpos=0, marker={"size": 4}, **common))
        else:
            fig.add_trace(go.Violin(points="all" if every else False, jitter=0.4, pointpos=0,
                                    box={"visible": True}, meanline={"visible": True}, marker={"size": 4},
                                    **common))
    title = "Trajectory RSR per teacher"
    if not every:
        title += (f" (quartiles of all {len(table):,} trajectories)" if kind == "box"
                  else f" (a sample of {max_points:,} of {len(table):,} trajectories)")
    fig.update_layout(title=title, xaxis_title="trajectory RSR (lower is better)",
                      yaxis={"autorange": "reversed"}, showlegend=False,
                      height=max(260, 60 + 42 * len(teachers)), margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return fig


def _box_statistics(values: np.ndarray) -> dict:
    """Plotly box parameters of [n] values: quartiles (linear interpolation, as plotly's), mean, and Tukey's
    fences (the most extreme values within 1.5 IQR of the box). Each is a one-element list: one box."""
    v = values[np.isfinite(values)]
    if not v.size:
        return {"q1": [np.nan], "median": [np.nan], "q3": [np.nan]}
    q1, median, q3 = np.percentile(v, [25, 50, 75])
    iqr = q3 - q1
    inside = v[(v >= q1 - 1.5 * iqr) & (v <= q3 + 1.5 * iqr)]
    return {"q1": [q1], "median": [median], "q3": [q3], "mean": [float(v.mean())],
            "lowerfence": [float(inside.min())], "upperfence": [float(inside.max())]}


def correlation_figure(corr: pd.DataFrame, method: str = "spearman") -> go.Figure:
    """Signed correlation of every metric with accuracy, with its bootstrap interval, strongest |rho| on top."""
    frame = corr.assign(_abs=corr[method].abs()).sort_values("_abs", ascending=False, kind="stable",
                                                             na_position="last").iloc[::-1]
    rho = frame[method].to_numpy(float)
    fig = go.Figure(go.Bar(
        x=rho, y=[metric_label(m) for m in frame["metric"]], orientation="h",
        marker={"color": np.where(rho < 0, "#3b6fb6", "#c0504d")},
        error_x={"type": "data", "symmetric": False, "array": (frame[f"{method}_high"] - frame[method]).to_numpy(float),
                 "arrayminus": (frame[method] - frame[f"{method}_low"]).to_numpy(float), "thickness": 1},
        hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_layout(title=f"{method.capitalize()} with post-training accuracy (bars: 95% bootstrap interval)",
                      xaxis={"title": f"{method.capitalize()} rho", "range": [-1.05, 1.05]},
                      height=max(280, 40 + 26 * len(frame)), margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return fig


def report_figure(report: pd.DataFrame | None, student: str | None = None) -> go.Figure:
    """Dataset RSR per teacher (`report.teacher_report` rows of one student: `student` when the report has it,
    else its first), best on top, with the teacher's trajectories and mean clipped rank and surprisal on hover.
    Without a report: the empty chart, saying that the report is being computed."""
    title = "Dataset RSR per teacher (lower is better)"
    if report is None:
        fig = go.Figure()
        fig.add_annotation(text="computing the report…", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
        fig.update_layout(title=title, height=220, xaxis={"visible": False}, yaxis={"visible": False},
                          margin={"l": 10, "r": 10, "t": 50, "b": 10})
        return fig
    rows = report
    if "student" in report and len(report):
        names = report["student"].astype(str)
        rows = report[names == (str(student) if str(student) in set(names) else names.iloc[0])]
    rows = rows.sort_values("rsr", kind="stable", na_position="last")
    fig = go.Figure(go.Bar(
        x=rows["rsr"].to_numpy(float), y=rows["teacher"].astype(str), orientation="h", marker={"color": "#2f6f4f"},
        customdata=np.column_stack([rows["n_trajectories"].to_numpy(int), rows["avg_rank_clipped"].to_numpy(float),
                                    rows["avg_surprisal"].to_numpy(float)]),
        hovertemplate="<b>%{y}</b>: RSR %{x:.3f}<br>%{customdata[0]} trajectories · mean clipped rank "
                      "%{customdata[1]:.2f} · mean surprisal %{customdata[2]:.3f}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="dataset RSR (Eq. 9)",
                      yaxis={"autorange": "reversed"}, showlegend=False,
                      height=max(220, 60 + 26 * len(rows)), margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return fig


def budget_figure(budget_table: pd.DataFrame, top_k: int) -> go.Figure:
    """How often each teacher lands in the top k over the resamples; the budget sample's picks in colour."""
    frame = budget_table.sort_values(["top_k_rate", "teacher"], ascending=[True, False])
    fig = go.Figure(go.Bar(
        x=frame["top_k_rate"].to_numpy(float), y=frame["teacher"].astype(str), orientation="h",
        marker={"color": np.where(frame["selected"].to_numpy(bool), "#2e8b57", "#b0b0b0")},
        customdata=frame["teacher"].astype(str),
        hovertemplate="%{y}: in the top %{meta} in %{x:.0%} of resamples<extra></extra>", meta=top_k))
    fig.update_layout(title=f"Share of resamples in which each teacher is in the top {top_k} "
                            "(green: picked by the budget sample)",
                      xaxis={"title": f"top-{top_k} rate", "range": [0, 1], "tickformat": ".0%"},
                      height=max(240, 60 + 30 * len(frame)), margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return fig


def combined_tables(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One trajectory table of several students' tables (empty ones left out).

    tables: student -> its trajectory table; a row without a `student` value is filed under the mapping's key.
    """
    frames = []
    for student, frame in tables.items():
        if frame is None or frame.empty:
            continue
        names = frame["student"].astype(object) if "student" in frame else pd.Series(None, index=frame.index)
        names = names.where(names.notna() & (names.astype(str) != ""), str(student))
        frames.append(frame.assign(student=names.astype(str)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
