"""Figures and tables of the Metrics page: how often the selection rules agree, RSR against LARK per trajectory,
and the teacher ranking under each metric. Computation: `rsr_core.analysis.rule_agreement`."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from rsr_core.analysis.rule_agreement import RULES, RuleComparison, pair_matrix
from rsr_core.ui.metric_labels import metric_label

TEACHER_COLOURS = qualitative.Plotly + qualitative.D3[1:]  # one per teacher (the paper has 11)
SCATTER_POINTS = 20_000  # trajectories drawn at most in the scatter (a seeded sample beyond that)


def agreement_figure(comparison: RuleComparison) -> go.Figure:
    """The share of problems where each pair of rules keeps the same trajectory, as a heatmap (diagonal 1)."""
    matrix = pair_matrix(comparison.agreement, "share")
    low, high = pair_matrix(comparison.agreement, "low"), pair_matrix(comparison.agreement, "high")
    names = list(matrix.columns)
    text = [[("" if not np.isfinite(matrix.iat[i, j]) else
              f"{matrix.iat[i, j]:.0%}" if i == j else
              f"{matrix.iat[i, j]:.0%}<br>({low.iat[i, j]:.0%}–{high.iat[i, j]:.0%})")
             for j in range(len(names))] for i in range(len(names))]
    fig = go.Figure(go.Heatmap(z=matrix.to_numpy(float), x=names, y=names, zmin=0, zmax=1, colorscale="Blues",
                               text=text, texttemplate="%{text}", hovertemplate="%{y} and %{x}: %{z:.1%} of the "
                               "problems<extra></extra>", colorbar={"title": "same pick", "tickformat": ".0%"}))
    fig.update_layout(title="Share of problems where two rules keep the same trajectory (95% Wilson interval)",
                      height=120 + 70 * len(names), margin={"l": 10, "r": 10, "b": 10},
                      yaxis={"autorange": "reversed"})
    return fig


def agreement_table(comparison: RuleComparison) -> pd.DataFrame:
    """One row per pair of rules, for display: pair, problems, same pick, share, interval, chance."""
    a = comparison.agreement
    return pd.DataFrame({"rules": a["rule_a"] + " · " + a["rule_b"], "problems": a["n_problems"],
                         "same pick": a["n_same"], "share": a["share"], "low": a["low"], "high": a["high"],
                         "chance": a["chance"]})


def sample_rows(n: int, limit: int = SCATTER_POINTS, seed: int = 0) -> np.ndarray:
    """[m] sorted row positions of a seeded sample of at most `limit` of n rows (all when n <= limit)."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def rsr_lark_scatter(pooled: pd.DataFrame, y: str = "lark_rho") -> go.Figure:
    """Trajectory RSR (x) against LARK's rho or g_hat (y), one colour per teacher; a trajectory's id in its
    customdata (a click opens it)."""
    x_all = pooled["rsr"].to_numpy(np.float64, na_value=np.nan)
    y_all = pooled[y].to_numpy(np.float64, na_value=np.nan) if y in pooled else np.full(len(pooled), np.nan)
    defined = np.flatnonzero(np.isfinite(x_all) & np.isfinite(y_all))
    rows = defined[sample_rows(defined.size)]
    frame = pooled.iloc[rows]
    fig = go.Figure()
    teachers = frame["teacher"].astype(str).to_numpy()
    for k, teacher in enumerate(sorted(set(teachers))):
        mine = teachers == teacher
        fig.add_trace(go.Scattergl(
            x=x_all[rows][mine], y=y_all[rows][mine], mode="markers", name=teacher,
            marker={"size": 6, "opacity": 0.7, "color": TEACHER_COLOURS[k % len(TEACHER_COLOURS)]},
            customdata=frame["trajectory_id"].astype(str).to_numpy()[mine],
            hovertemplate=f"{teacher}<br>%{{customdata}}<br>RSR %{{x:.3f}}<br>{metric_label(y)} %{{y:.4f}}"
                          "<extra></extra>"))
    shown = f" (a random {rows.size:,} of {defined.size:,})" if rows.size < defined.size else ""
    fig.update_layout(title=f"RSR against {metric_label(y)} per trajectory{shown}", height=460,
                      xaxis={"title": "RSR (Eq. 7), lower is better", "type": "log"},
                      yaxis={"title": f"{metric_label(y)}, higher is better"},
                      legend={"title": "teacher"}, margin={"l": 10, "r": 10, "b": 10})
    return fig


def ranking_table(comparison: RuleComparison) -> pd.DataFrame:
    """Teachers with their score and rank under each available metric, best RSR first."""
    r = comparison.rankings
    out = pd.DataFrame({"teacher": r["teacher"], "trajectories": r["n_trajectories"]})
    for rule in RULES.values():
        if rule.column and f"rank_{rule.column}" in r and rule.name in comparison.available():
            out[f"{rule.name} rank"] = r[f"rank_{rule.column}"]
            out[rule.name] = r[rule.column]
    first = "RSR rank" if "RSR rank" in out else out.columns[0]
    return out.sort_values(first, kind="stable").reset_index(drop=True)


def correlation_matrix(comparison: RuleComparison) -> pd.DataFrame:
    """Spearman's rho between the teacher rankings of every two metrics, by rule name."""
    names = {rule.column: rule.name for rule in RULES.values() if rule.column}
    pairs = comparison.correlations.rename(columns={"metric_a": "rule_a", "metric_b": "rule_b"})
    pairs = pairs.assign(rule_a=pairs["rule_a"].map(names), rule_b=pairs["rule_b"].map(names))
    return pair_matrix(pairs, "rho")


def disagreement_rows(comparison: RuleComparison, n: int = 20) -> pd.DataFrame:
    """The n problems where RSR's and LARK's picks differ most, for display."""
    d = comparison.disagreements.head(n)
    return pd.DataFrame({"problem": d["pool_id"], "candidates": d["pool_size"],
                         "RSR keeps": d["a_trajectory_id"], "its teacher": d["a_teacher"],
                         "LARK keeps": d["b_trajectory_id"], "LARK's teacher": d["b_teacher"],
                         "disagreement": d["score"]}).reset_index(drop=True)
