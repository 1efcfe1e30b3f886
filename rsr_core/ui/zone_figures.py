"""Figures and tables of the teaching page "The zone of proximal development". Pure: return plotly figures or
DataFrames, draw nothing, no Streamlit."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from rsr_core.analysis.zones import ZONE_COLOURS, ZONE_LABELS, ZoneThresholds, zone_of
from rsr_core.ui.labels import place_labels
from rsr_core.analysis.simulation import (PAPER_TABLE, SOURCE_LABELS, SOURCES, SimulationConfig, SourceStats,
                                     source_distributions)

# An illustrative next-token distribution after "... the mean is 32." (made-up numbers in the spirit of the
# paper's bar chart; not measured): (token, probability, reading).
ILLUSTRATIVE_NEXT_TOKENS = (
    ("Therefore", 0.40, "dominant: too familiar"),
    ("So", 0.37, "dominant: too familiar"),
    ("Thus", 0.040, "other"),
    ("Hence", 0.030, "other"),
    ("Alternatively", 0.022, "low probability, near the top: suitable"),
    ("Actually", 0.018, "low probability, near the top: suitable"),
    ("Now", 0.012, "other"),
    ("But", 0.008, "other"),
    ("Wait", 0.0015, "far down: alien"),
    ("Admittedly", 0.0002, "far down: alien"),
)
ILLUSTRATIVE_RANKS = {"Wait": 25, "Admittedly": 120}  # ranks of the tail tokens in the imagined vocabulary
READING_COLOURS = {
    "dominant: too familiar": ZONE_COLOURS["too_familiar"],
    "low probability, near the top: suitable": ZONE_COLOURS["zone"],
    "far down: alien": ZONE_COLOURS["alien"],
    "other": ZONE_COLOURS["neutral"],
}
SOURCE_COLOURS = {"A": "#3182bd", "B": "#31a354", "C": "#de2d26", "D": "#756bb1"}


def illustrative_next_token_figure() -> go.Figure:
    """Bar chart (log probability axis) of the illustrative distribution after "the mean is 32."."""
    fig = go.Figure()
    for reading, colour in READING_COLOURS.items():
        rows = [(i, tok, p) for i, (tok, p, r) in enumerate(ILLUSTRATIVE_NEXT_TOKENS) if r == reading]
        if not rows:
            continue
        labels = [f"{tok} (rank {ILLUSTRATIVE_RANKS.get(tok, i + 1)})" for i, tok, _ in rows]
        probs = [p for _, _, p in rows]
        fig.add_bar(x=labels, y=probs, name=reading, marker_color=colour,
                    customdata=[[-np.log(p)] for p in probs],
                    hovertemplate="%{x}<br>p = %{y:.4f}<br>surprisal = %{customdata[0]:.2f} nats<extra></extra>")
    order = [f"{tok} (rank {ILLUSTRATIVE_RANKS.get(tok, i + 1)})" for i, (tok, _, _) in
             enumerate(ILLUSTRATIVE_NEXT_TOKENS)]
    fig.update_layout(title="Illustrative: the student's next token after \"... the mean is 32.\"",
                      yaxis_type="log", yaxis_title="probability (log scale)", barmode="group",
                      xaxis={"categoryorder": "array", "categoryarray": order},
                      legend={"title": {"text": "reading"}, "orientation": "h", "yanchor": "bottom", "y": 1.0,
                              "x": 0}, height=420, margin={"t": 50, "b": 10})
    return fig


def student_distribution_figure(cfg: SimulationConfig) -> go.Figure:
    """The student's mixture Z over the toy vocabulary, stacked by mode, with the unrelated distribution C."""
    d = source_distributions(cfg)
    ids = np.arange(cfg.vocab_size)
    fig = go.Figure()
    fig.add_bar(x=ids, y=cfg.weight * d["A"], name=f"major mode: w·Z_A (w = {cfg.weight:.2f})",
                marker_color=SOURCE_COLOURS["A"])
    fig.add_bar(x=ids, y=(1 - cfg.weight) * d["B"], name=f"minor mode: (1−w)·Z_B (shift {cfg.shift})",
                marker_color=SOURCE_COLOURS["B"])
    fig.add_scatter(x=ids, y=d["C"], mode="markers", name="unrelated distribution C (samples X_C)",
                    marker={"color": SOURCE_COLOURS["C"], "symbol": "x", "size": 7})
    fig.update_layout(barmode="stack", title=f"Student distribution Z = w·Z_A + (1−w)·Z_B, Zipf(α = {cfg.alpha:g})",
                      xaxis_title="token id", yaxis_title="probability", height=360,
                      margin={"t": 50, "b": 10}, legend={"orientation": "h", "y": -0.25})
    return fig


def simulation_table(stats: dict[str, SourceStats]) -> pd.DataFrame:
    """One row per source: this run's mean probability, surprisal, rank, RSR_token (mean of r/s) and the ratio of
    sums, beside the paper's four numbers."""
    rows = []
    for s in SOURCES:
        st, paper = stats[s], PAPER_TABLE[s]
        rows.append({
            "source": SOURCE_LABELS[s],
            "mean p": st.mean_probability, "paper p": paper[0],
            "mean surprisal": st.mean_surprisal, "paper surprisal": paper[1],
            "mean rank": st.mean_rank, "paper rank": paper[2],
            "RSR_token (mean r/s)": st.rsr_token, "paper RSR_token": paper[3],
            "Σr / Σs (Eq. 7 form)": st.rsr,
        })
    return pd.DataFrame(rows)


SIMULATION_ROWS = (  # (row label, column of simulation_table): this run, then the paper, quantity by quantity
    ("mean p", "mean p"), ("mean p, paper", "paper p"),
    ("mean surprisal", "mean surprisal"), ("mean surprisal, paper", "paper surprisal"),
    ("mean rank", "mean rank"), ("mean rank, paper", "paper rank"),
    ("RSR_token (mean r/s)", "RSR_token (mean r/s)"), ("RSR_token, paper", "paper RSR_token"),
    ("Σr / Σs (Eq. 7 form)", "Σr / Σs (Eq. 7 form)"),
)


def simulation_display(table: pd.DataFrame) -> pd.DataFrame:
    """`simulation_table` as shown: one column per source (X_A .. X_D) and one row per quantity, this run's value
    above the paper's, so the table is five columns wide and fits a narrow window."""
    out = pd.DataFrame({"quantity": [label for label, _ in SIMULATION_ROWS]})
    for k, s in enumerate(SOURCES):
        out[f"X_{s}"] = [float(table[col].iloc[k]) for _, col in SIMULATION_ROWS]
    return out


def cartoon_display(df: pd.DataFrame) -> pd.DataFrame:
    """The teaching page's cartoon table (a row per solution) as shown: a row per quantity (the cartoon's reading
    first) and a column per solution, so it fits a narrow window; values as text with the precision each needs."""
    formats = {"cartoon": "{}", "RSR": "{:.2f}", "mean surprisal": "{:.2f}", "mean clipped rank": "{:.2f}",
               "tokens": "{:,}"}
    quantities = ["cartoon", "RSR", "mean surprisal", "mean clipped rank", "tokens"] + [
        c for c in df.columns if c.startswith("% ")]
    out = pd.DataFrame({"quantity": quantities})
    for _, r in df.iterrows():
        out[r["solution"]] = [formats.get(q, "{:.1f}").format(r[q]) for q in quantities]
    return out


PLANE_PX = (340.0, 300.0)  # the plot area labels are placed for: full width in a 900 px window


@dataclass(frozen=True)
class PlanePoint:
    """A marker in the rank-surprisal plane."""

    label: str
    surprisal: float
    rank: float
    colour: str = "#222222"
    symbol: str = "circle"
    size: int = 12
    text: str | None = None  # shown beside the marker (where it fits); the label when None, nothing when ""


def _zone_polygons(thresholds: ZoneThresholds, x_max: float, y_min: float, y_max: float):
    s0, k = thresholds.surprisal, thresholds.rank
    one_top = 1.5  # the rank-1 row spans [y_min, 1.5) on the log axis
    k_top = k + 0.5
    return {
        "too_familiar": ([0, s0, s0, 0], [y_min, y_min, one_top, one_top]),
        "neutral": ([0, s0, s0, 0], [one_top, one_top, y_max, y_max]),
        "zone": ([s0, x_max, x_max, s0], [y_min, y_min, k_top, k_top]),
        "alien": ([s0, x_max, x_max, s0], [k_top, k_top, y_max, y_max]),
    }


def rank_surprisal_plane(points: list[PlanePoint], thresholds: ZoneThresholds = ZoneThresholds(),
                         r_max: int = 100, x_max: float | None = None,
                         iso_rsr: tuple[float, ...] = (1, 2, 4, 8, 16), title: str | None = None,
                         arrows: list[tuple[PlanePoint, PlanePoint]] | None = None) -> go.Figure:
    """Surprisal (x, nats) against clipped rank (y, log scale) with the zones shaded and iso-RSR lines
    rank = c · surprisal, on which every token or trajectory with r/s = c lies."""
    x_needed = max([p.surprisal for p in points] + [thresholds.surprisal]) * 1.15
    x_max = float(x_max or max(6.0, x_needed))
    y_min, y_max = 0.8, r_max * 1.3
    fig = go.Figure()
    for z, (xs, ys) in _zone_polygons(thresholds, x_max, y_min, y_max).items():
        fig.add_scatter(x=xs, y=ys, fill="toself", mode="none", fillcolor=ZONE_COLOURS[z], opacity=0.35,
                        name=ZONE_LABELS[z], hoverinfo="name", legendgroup="zones")
    xs = np.linspace(0.02, x_max, 200)
    for c in iso_rsr:
        ys = c * xs
        keep = (ys >= y_min) & (ys <= r_max)
        if not keep.any():
            continue
        fig.add_scatter(x=xs[keep], y=ys[keep], mode="lines", line={"dash": "dot", "color": "#777", "width": 1},
                        name=f"r/s = {c:g}", showlegend=False, hoverinfo="name")
        i = np.flatnonzero(keep)[-1]
        fig.add_annotation(x=float(xs[i]), y=float(np.log10(ys[i])), text=f"RSR {c:g}", showarrow=False,
                           font={"size": 10, "color": "#555"}, xanchor="right", yanchor="bottom")
    for a, b in arrows or []:
        fig.add_annotation(x=b.surprisal, y=float(np.log10(max(b.rank, y_min))), ax=a.surprisal,
                           ay=float(np.log10(max(a.rank, y_min))), xref="x", yref="y", axref="x", ayref="y",
                           showarrow=True, arrowhead=2, arrowcolor="#444", text="")
    texts = [p.text if p.text is not None else p.label for p in points]
    positions = place_labels([p.surprisal for p in points], [max(p.rank, y_min) for p in points], texts,
                             (0.0, x_max), (y_min, y_max), width=PLANE_PX[0], height=PLANE_PX[1], log_y=True,
                             marker_px=max(p.size for p in points) / 2 if points else 7)
    for p, text, position in zip(points, texts, positions):
        fig.add_scatter(x=[p.surprisal], y=[max(p.rank, y_min)], mode="markers+text", name=p.label,
                        text=[text if position else ""], textposition=position or "top center",
                        marker={"color": p.colour, "symbol": p.symbol, "size": p.size,
                                "line": {"width": 1, "color": "#000"}},
                        hovertemplate=f"{p.label}<br>surprisal %{{x:.3f}} nats<br>rank %{{y:.2f}}<extra></extra>")
    fig.update_layout(title=title, height=460, margin={"t": 50 if title else 20, "b": 10},
                      xaxis={"title": "surprisal (nats): absolute unfamiliarity", "range": [0, x_max]},
                      yaxis={"title": f"rank, clipped at {r_max} (log): relative familiarity", "type": "log",
                             "range": [np.log10(y_min), np.log10(y_max)]},
                      legend={"orientation": "h", "y": -0.2})
    return fig


def simulation_points(stats: dict[str, SourceStats]) -> list[PlanePoint]:
    """The four sources' mean (surprisal, rank) as plane markers."""
    return [PlanePoint(label=f"X_{s}", surprisal=stats[s].mean_surprisal, rank=stats[s].mean_rank,
                       colour=SOURCE_COLOURS[s], symbol="diamond", size=11) for s in SOURCES]


def zone_label(rank: int, surprisal: float, thresholds: ZoneThresholds) -> str:
    """Readable zone name of one token."""
    return ZONE_LABELS[zone_of(rank, surprisal, thresholds)]
