"""Figures and tables of the inspector page. Pure: plotly figures and DataFrames from per-token arrays; no
Streamlit, so they are testable without a running app.

Clickable figures are scatters (Streamlit's chart selection does not work on heatmaps) and carry a stable id in
`customdata[0]`: the token position for the rank-surprisal scatter, the window start for the sliding-RSR curve.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from rsr_core.analysis.metrics import clipped_rank
from rsr_core.data.token_scores import TokenScores
from rsr_core.ui.token_strip import visible
from rsr_core.analysis.zones import (RANK_BIN_COLOURS, RANK_BIN_LABELS, ZONE_COLOURS, ZONE_LABELS, ZONES,
                                     ZoneThresholds, classify_zones, rank_bins, zone_summary)

ISO_RSR = (1.0, 2.0, 4.0, 8.0, 16.0)
# tokens drawn one dot each (the Inspector's default page of text); a longer trajectory: the density of all its
# tokens and a dot for each token of the page shown (2,000 dots took the browser 0.7 s more than 1,000)
DOTS_UP_TO = 1000
DENSITY_BINS = (60, 40)  # surprisal x log clipped rank
RSR_LINE_COLOUR = "#6a00ff"


def token_positions(points: list[dict]) -> list[int]:
    """Token positions of the points a chart selection returned (their `customdata[0]`)."""
    out = []
    for p in points or []:
        cd = p.get("customdata")
        if isinstance(cd, (list, tuple)) and cd:
            out.append(int(cd[0]))
        elif isinstance(cd, (int, float)):
            out.append(int(cd))
    return sorted(set(out))


def rank_surprisal_scatter(scores: TokenScores, r_max: int = 100, thresholds: ZoneThresholds = ZoneThresholds(),
                           rsr: float | None = None, iso: tuple[float, ...] = ISO_RSR,
                           window: tuple[int, int] | None = None, dots_up_to: int = DOTS_UP_TO) -> go.Figure:
    """Every token at (surprisal, clipped rank), log rank axis, one trace per zone, with iso-RSR lines
    rank = c * surprisal (a token on the line of c has r/s = c) including the trajectory's own RSR.

    A trajectory of more than `dots_up_to` tokens is drawn as the density of all its tokens (a grey heatmap of
    counts, computed here) with dots for the tokens of `window` [start, stop) only, the page of text shown: a
    32,000-token trajectory would otherwise send 32,000 selectable points, seconds of drawing in the browser.
    customdata per dot: [position, token text, unclipped rank]. Zones follow `rsr_core.analysis.zones`.
    """
    s = scores.surprisal.astype(np.float64)
    rc = clipped_rank(scores.rank, r_max)
    zones = classify_zones(scores.rank, scores.surprisal, thresholds)
    n = len(scores)
    dense = n > dots_up_to
    a, b = (0, n) if not dense or window is None else (max(0, int(window[0])), min(n, int(window[1])))
    if dense and window is None:
        a, b = 0, min(n, dots_up_to)
    x_max = max(float(s.max()) * 1.05 if n else 1.0, thresholds.surprisal * 1.2, 1.0)
    fig = go.Figure()
    if dense:
        fig.add_trace(_density(s, rc, x_max, r_max))
    xs = np.linspace(x_max / 400, x_max, 200)
    lines = [(c, False) for c in iso] + ([(float(rsr), True)] if rsr is not None and np.isfinite(rsr) else [])
    for c, own in lines:
        ys = c * xs
        keep = (ys >= 0.8) & (ys <= r_max)
        if not keep.any():
            continue
        fig.add_trace(go.Scatter(
            x=xs[keep], y=ys[keep], mode="lines", hoverinfo="name", showlegend=own,
            name=f"this trajectory's RSR = {c:.2f}" if own else f"r/s = {c:g}",
            line={"dash": "solid" if own else "dot", "width": 2 if own else 1,
                  "color": RSR_LINE_COLOUR if own else "#888888"}))
        if not own:
            i = int(np.flatnonzero(keep)[-1])
            fig.add_annotation(x=float(xs[i]), y=float(np.log10(ys[i])), text=f"{c:g}", showarrow=False,
                               font={"size": 10, "color": "#666"}, xanchor="left", yanchor="bottom")
    positions = np.arange(a, b)
    texts = np.array([visible(t) for t in scores.tokens[a:b]], dtype=object)
    where = "" if (a, b) == (0, n) else " on this page"
    for z in ZONES:
        m = zones[a:b] == z
        if not m.any():
            continue
        fig.add_trace(go.Scatter(
            x=s[a:b][m], y=rc[a:b][m], mode="markers", name=f"{ZONE_LABELS[z]} ({int(m.sum())}{where})",
            marker={"color": ZONE_COLOURS[z], "size": 6, "line": {"width": 0.5, "color": "#444"}},
            customdata=np.stack([positions[m], texts[m], scores.rank[a:b][m]], axis=1),
            hovertemplate="#%{customdata[0]} %{customdata[1]}<br>surprisal %{x:.3f} nats<br>"
                          "rank %{customdata[2]} (clipped %{y:.0f})<extra></extra>"))
    fig.update_layout(
        height=430, margin={"t": 35, "b": 10, "l": 10, "r": 10}, dragmode="lasso",
        xaxis={"title": "surprisal (nats)", "range": [0, x_max]},
        yaxis={"title": f"clipped rank (log, r_max {r_max})", "type": "log",
               "range": [np.log10(0.8), np.log10(max(r_max, 2) * 1.3)]},
        legend={"orientation": "h", "y": -0.18})
    return fig


def _density(s: np.ndarray, rc: np.ndarray, x_max: float, r_max: int) -> go.Heatmap:
    """Token counts on a grid of surprisal x log clipped rank, empty cells transparent (not selectable)."""
    x_edges = np.linspace(0.0, x_max, DENSITY_BINS[0] + 1)
    y_edges = np.logspace(np.log10(0.8), np.log10(max(r_max, 2) * 1.3), DENSITY_BINS[1] + 1)
    counts, _, _ = np.histogram2d(s, rc, bins=(x_edges, y_edges))
    z = np.where(counts.T > 0, np.log10(np.maximum(counts.T, 1)) + 1, np.nan)  # log scale: a few tokens show
    return go.Heatmap(x=(x_edges[:-1] + x_edges[1:]) / 2, y=np.sqrt(y_edges[:-1] * y_edges[1:]), z=z,
                      text=counts.T.astype(np.int64), colorscale=[[0, "#f0f0f0"], [1, "#8c8c8c"]],
                      showscale=False, zmin=0, name=f"all {len(s):,} tokens", showlegend=True,
                      hovertemplate="%{text} tokens<extra>all tokens</extra>")  # no customdata: not a token


def rank_bin_histogram(scores: TokenScores) -> go.Figure:
    """GLTR-style bars: tokens per 1-based rank bin (1-10, 11-100, 101-1000, > 1000), in GLTR's colours."""
    counts = np.bincount(rank_bins(scores.rank), minlength=len(RANK_BIN_LABELS))
    n = max(int(counts.sum()), 1)
    fig = go.Figure(go.Bar(x=list(RANK_BIN_LABELS), y=counts, marker_color=list(RANK_BIN_COLOURS),
                           text=[f"{100 * c / n:.1f} %" for c in counts], textposition="outside",
                           hovertemplate="rank %{x}: %{y} tokens<extra></extra>"))
    fig.update_layout(height=280, margin={"t": 40, "b": 10, "l": 10, "r": 10},
                      title={"text": "tokens per rank bin (1-based ranks)", "font": {"size": 13}},
                      yaxis={"title": "tokens"}, xaxis={"title": "rank"})
    return fig


def surprisal_histogram(scores: TokenScores, thresholds: ZoneThresholds = ZoneThresholds(),
                        bins: int = 40) -> go.Figure:
    """Histogram of token surprisal (nats) with the zone threshold and the mean marked; binned here, so the
    figure carries `bins` bars and not one value per token."""
    s = scores.surprisal.astype(np.float64)
    counts, edges = np.histogram(s, bins=bins, range=(0.0, max(float(s.max()) if s.size else 1.0, 1e-6)))
    fig = go.Figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges) * 0.95,
                           marker_color="#fc8d59", customdata=np.stack([edges[:-1], edges[1:]], axis=1),
                           hovertemplate="%{customdata[0]:.2f}-%{customdata[1]:.2f} nats: %{y} tokens"
                                         "<extra></extra>"))
    fig.add_vline(x=thresholds.surprisal, line={"dash": "dot", "color": "#444"},
                  annotation_text=f"zone threshold {thresholds.surprisal:g}", annotation_position="top right")
    if s.size:
        fig.add_vline(x=float(s.mean()), line={"color": RSR_LINE_COLOUR},
                      annotation_text=f"mean {s.mean():.2f}", annotation_position="top left")
    fig.update_layout(height=280, margin={"t": 40, "b": 10, "l": 10, "r": 10},
                      title={"text": "surprisal per token", "font": {"size": 13}},
                      xaxis={"title": "surprisal (nats)"}, yaxis={"title": "tokens"})
    return fig


def sliding_rsr_figure(curve: pd.DataFrame, rsr: float, window: int,
                       span: tuple[int, int] | None = None, answer_starts: list[int] | None = None,
                       span_label: str | None = None) -> go.Figure:
    """Window RSR along the trajectory (x = window centre) with the trajectory's RSR as a line; click a point to
    jump to its window. customdata per point: [start, stop]. `span` shades the span shown in the text (with
    `span_label` above it); `answer_starts` marks where each turn's thinking ends and its answer begins."""
    fig = go.Figure()
    for k, x in enumerate(answer_starts or []):
        fig.add_vline(x=x, line={"color": "#8e6fd1", "width": 2, "dash": "dot"},
                      annotation_text="thinking | answer" if k == 0 else None, annotation_position="bottom right")
    if span is not None:
        fig.add_vrect(x0=span[0], x1=span[1], fillcolor=RSR_LINE_COLOUR, opacity=0.12, line_width=0,
                      annotation_text=span_label, annotation_position="top",
                      annotation_font={"size": 11, "color": RSR_LINE_COLOUR})
    fig.add_trace(go.Scatter(
        x=curve["centre"], y=curve["rsr"], mode="lines+markers", name=f"RSR of {window}-token windows",
        marker={"size": 5, "color": "#d73027"}, line={"color": "#d73027", "width": 1.5},
        customdata=np.stack([curve["start"].to_numpy(), curve["stop"].to_numpy()], axis=1) if len(curve) else None,
        hovertemplate="tokens %{customdata[0]}-%{customdata[1]}<br>window RSR %{y:.2f}<extra></extra>"))
    title = f"RSR of {window}-token windows"
    if np.isfinite(rsr):  # named in the title: a label on the line would sit on the curve
        fig.add_hline(y=rsr, line={"color": RSR_LINE_COLOUR, "dash": "dash"})
        title += f" (dashed: the trajectory's RSR, {rsr:.2f})"
    fig.update_layout(height=300, margin={"t": 40, "b": 10, "l": 10, "r": 10}, showlegend=False,
                      title={"text": title, "font": {"size": 13}},
                      xaxis={"title": "token position (window centre)"}, yaxis={"title": "window RSR"})
    return fig


def zone_share_table(scores: TokenScores, r_max: int = 100,
                     thresholds: ZoneThresholds = ZoneThresholds()) -> pd.DataFrame:
    """Per zone: tokens, share of tokens, share of Σ clipped rank (numerator) and of Σ surprisal (denominator).

    A zone whose rank share exceeds its surprisal share pushes RSR up."""
    summary = zone_summary(scores.rank, scores.surprisal, r_max, thresholds)
    return pd.DataFrame([{"zone": ZONE_LABELS[z], "tokens": v["n_tokens"], "% tokens": 100 * v["token_share"],
                          "% of Σ clipped rank": 100 * v["rank_share"],
                          "% of Σ surprisal": 100 * v["surprisal_share"]} for z, v in summary.items()])
