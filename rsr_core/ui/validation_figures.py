"""Tables and figures of the Validation page: the paper's correlations recomputed from its own tables.

Pure functions of `rsr_core.analysis.paper` (no session state).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from rsr_core.analysis.paper import CORRECTIONS, PRINTED_AVERAGE, PRINTED_RSR, reproduction_table
from rsr_core.data.paths import PAPER_METRICS


def rsr_student_table(corrected: bool = False) -> pd.DataFrame:
    """student, paper (|rho| of RSR as printed), ours (recomputed, with or without the corrections), difference;
    plus an 'average' row (the paper's printed average beside our mean). Values are |Spearman| (the sign is
    negative for every student)."""
    rho = reproduction_table(PAPER_METRICS, corrected=corrected).loc["RSR"]
    rows = [{"student": s, "paper": PRINTED_RSR[s], "ours": abs(float(rho[s]))} for s in PRINTED_RSR if s in rho]
    out = pd.DataFrame(rows)
    out.loc[len(out)] = {"student": "average", "paper": PRINTED_AVERAGE["RSR"], "ours": out["ours"].mean()}
    out["difference"] = out["ours"] - out["paper"]
    return out


def corrections_table() -> pd.DataFrame:
    """What `corrected=True` changes: student, teacher, new accuracy, why."""
    return pd.DataFrame([{"student": c.student, "teacher": c.teacher, "accuracy used": c.value, "why": c.reason}
                         for c in CORRECTIONS])


def abs_rho_figure(table: pd.DataFrame) -> go.Figure:
    """|rho| of every metric with accuracy: bar = our mean over students, dots = each student, diamond = the
    paper's printed average where it gives one. table: `paper.reproduction_table` output."""
    students = [c for c in table.columns if c not in ("avg |rho|", "paper avg |rho|")]
    frame = table.sort_values("avg |rho|", ascending=True)
    names = frame.index.astype(str).tolist()
    fig = go.Figure(go.Bar(x=frame["avg |rho|"], y=names, orientation="h", name="ours: mean over students",
                           marker={"color": ["#2e8b57" if n == "RSR" else "#9bb7d4" for n in names]},
                           hovertemplate="%{y}: %{x:.3f}<extra>mean |rho|</extra>"))
    for student in students:
        fig.add_trace(go.Scatter(x=frame[student].abs(), y=names, mode="markers", name=student,
                                 marker={"size": 6, "opacity": 0.7},
                                 hovertemplate="%{y}: %{x:.3f}<extra>" + student + "</extra>"))
    printed = frame["paper avg |rho|"].to_numpy(float)
    shown = np.isfinite(printed)
    fig.add_trace(go.Scatter(x=printed[shown], y=np.asarray(names)[shown], mode="markers",
                             name="paper: printed average",
                             marker={"symbol": "diamond-open", "size": 12, "color": "black", "line": {"width": 2}},
                             hovertemplate="%{y}: %{x:.3f}<extra>paper</extra>"))
    fig.update_layout(title="|Spearman| of each metric with post-training accuracy (11 teachers)",
                      xaxis={"title": "|rho|", "range": [0, 1]}, height=max(320, 60 + 28 * len(names)),
                      legend={"orientation": "h", "y": -0.15}, margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return fig
