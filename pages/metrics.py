"""Metrics page: which trajectory would each selection rule keep, and where do RSR and LARK disagree.

For the current pools (every teacher's candidates of one problem): how often every two rules (RSR, LARK, Avg-Surprisal,
mean entropy, random) keep the same trajectory, with a 95 % Wilson interval over problems and the share chance
alone would give; trajectory RSR against LARK's rho or g_hat, coloured by teacher; the problems where RSR and LARK
disagree most, each opening both picks side by side in the inspector; the teacher ranking under each metric with
their Spearman agreement. Computation: `rsr_core.analysis.rule_agreement`, cached per table, r_max and pooling
(`analysis_cache.cached_rule_comparison`); figures: `rsr_core.ui.metrics_figures`.
"""
from __future__ import annotations

import streamlit as st

from rsr_core.analysis.metrics import SAME_PASS_METRICS, lacking_same_pass
from rsr_core.analysis.pools import POOL_BY
from rsr_core.ui import state
from rsr_core.ui.analysis_cache import cached_pools, cached_rule_comparison
from rsr_core.ui.layout import CONTROL_PX, chart, control_row, metric_row, stacking_columns
from rsr_core.ui.markdown import md_text
from rsr_core.ui.metric_labels import count, metric_label
from rsr_core.ui.metrics_figures import (agreement_figure, agreement_table, correlation_matrix, disagreement_rows,
                                        ranking_table, rsr_lark_scatter)
from rsr_core.ui.navigation import ensure_app_runs
from rsr_core.ui.selection_widgets import rule_student

ensure_app_runs()

OPEN_PAIR = "metrics_open_pair"  # (RSR's pick, LARK's pick) of a disputed problem, opened in the inspector
OPEN_ONE = "metrics_open_one"  # a trajectory clicked in the scatter
SHARE = st.column_config.NumberColumn(format="%.1f%%")
RATIO = {name: st.column_config.NumberColumn(name, format="%.3f") for name in ("share", "low", "high", "chance")}


def _open_pair(key: str, rows) -> None:
    picked = (state.get(key) or {}).get("selection", {}).get("rows", [])
    if picked:
        row = rows.iloc[picked[0]]
        state.put(OPEN_PAIR, (row["RSR keeps"], row["LARK keeps"]))


def _open_point(key: str) -> None:
    points = ((state.get(key) or {}).get("selection") or {}).get("points", [])
    if points and points[0].get("customdata") is not None:
        state.put(OPEN_ONE, str(points[0]["customdata"]))


pair, one = state.pop(OPEN_PAIR), state.pop(OPEN_ONE)
if pair:
    state.open_side_by_side(*pair)
if one:
    state.select_trajectory(one, open_inspector=True)

st.title("Metrics")
st.caption("RSR is one way to choose among teachers' trajectories. LARK (arXiv 2605.30651) is another, computed "
           "from the same forward pass: its ρ is a trajectory's mean top-50 Brier score over its mean surprisal, "
           "and its ĝ compares a candidate's ρ with the others of its problem. Here each rule keeps one trajectory "
           "per problem; the page shows where they agree, where they part, and how they rank the teachers.")
table = state.scored_table_or_stop()
lacking = int(lacking_same_pass(table).sum())
if lacking:
    st.warning(f"{count(lacking, 'trajectory', 'trajectories')} of {len(table):,} "
               f"{'was' if lacking == 1 else 'were'} scored before the same-pass columns "
               f"({', '.join(SAME_PASS_METRICS)}) were kept, so LARK has no value for "
               f"{'it' if lacking == 1 else 'them'} (left out of its picks, not counted as zero). Score the same "
               "data into the same store again (`python -m rsr_core score DATA --out STORE`) to add them; the "
               "numbers already there stay as they are.")

with control_row():
    pool_by = st.selectbox("pool candidates by", POOL_BY, key=state.keep("metrics_pool_by"), width=CONTROL_PX - 40,
                           help="auto: the problem id when every row has one, else the normalised prompt text.")
    seed = int(st.number_input("random rule's seed", 0, 2**31 - 1, 0, 1, key=state.keep("metrics_seed"),
                               width=CONTROL_PX - 40))
    y_axis = st.selectbox("LARK axis", ["lark_rho", "lark_g"], key=state.keep("metrics_y"), width=CONTROL_PX,
                          format_func=lambda c: metric_label(c, "trajectory"))
state.remember("metrics_pool_by", "metrics_seed", "metrics_y")

student = rule_student(table, state.current_student())
try:
    comparison = cached_rule_comparison(table, student, pool_by, seed)
    pooled = cached_pools(table, student, pool_by)
except ValueError as e:
    st.error(md_text(str(e)))
    st.stop()

sizes = comparison.picks["pool_size"]
with metric_row():
    st.metric("problems", f"{len(sizes):,}", width="content")
    st.metric("with two or more candidates", f"{int((sizes >= 2).sum()):,}", width="content")
    st.metric("trajectories", f"{int(sizes.sum()):,}", width="content")
    st.metric("rules compared", len(comparison.available()), width="content")
missing = comparison.availability[~comparison.availability["available"]]
for row in missing.itertuples():
    st.caption(f"{row.rule} is left out: {md_text(row.reason)}.")

st.subheader("Do the rules keep the same trajectory?")
if len(comparison.agreement):
    left, right = stacking_columns([3, 2], key="metrics_agreement")
    with left:
        chart(agreement_figure(comparison), key="metrics_agreement_chart")
    with right:
        st.dataframe(agreement_table(comparison), hide_index=True, width="stretch",
                     column_config={**RATIO, "problems": st.column_config.NumberColumn(
                         "problems", help="Problems with two or more candidates where both rules keep one")})
    st.caption("Share: problems where both rules keep the same trajectory; low–high: its 95 % Wilson interval over "
               "problems; chance: the share two uniform random picks would reach (the mean of 1 / candidates). "
               "Problems of one candidate are left out (every rule agrees there).")
else:
    st.info("Fewer than two rules can be compared on these data.")

st.subheader("RSR against LARK, trajectory by trajectory")
if "LARK" in comparison.available():
    chart(rsr_lark_scatter(pooled, y_axis), key="metrics_scatter", on_select=lambda: _open_point("metrics_scatter"),
          selection_mode=("points",))
    st.caption("RSR keeps the lowest value of its problem, LARK the highest ĝ (ρ is a trajectory's own; ĝ weighs it "
               "against the other candidates of its problem). Click a point to open the trajectory in the "
               "inspector.")

    st.subheader("Where RSR and LARK disagree most")
    rows = disagreement_rows(comparison)
    if rows.empty:
        st.info("RSR and LARK keep the same trajectory in every problem.")
    else:
        st.dataframe(rows, key="metrics_disputes", hide_index=True, width="stretch", selection_mode="single-row",
                     on_select=lambda: _open_pair("metrics_disputes", rows),
                     column_config={"disagreement": st.column_config.NumberColumn(
                         "disagreement", format="%.2f",
                         help="How far each rule's pick sits in the other rule's order within the problem (0: "
                              "its own pick, 1: its worst candidate), summed: 0 to 2")})
        st.caption(f"{count(len(comparison.disagreements), 'problem')} where they keep different trajectories; the "
                   f"{len(rows)} most disputed here. Click a row to read both picks side by side in the inspector.")
else:
    st.info("LARK needs the same-pass columns (lark_rho); these scores have none.")

st.subheader("The teachers under each metric")
left, right = stacking_columns([3, 2], key="metrics_rankings")
with left:
    ranks = ranking_table(comparison)
    st.dataframe(ranks, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(c, format="%.3f") for c in ranks.columns
                                if c not in ("teacher", "trajectories") and not c.endswith(" rank")})
    st.caption("Rank 1 is the best teacher under that metric: lowest dataset RSR (Eq. 9), mean surprisal and mean "
               "entropy; highest mean LARK ĝ.")
with right:
    matrix = correlation_matrix(comparison)
    if matrix.shape[0] >= 2:
        st.dataframe(matrix, width="stretch",
                     column_config={c: st.column_config.NumberColumn(c, format="%.2f") for c in matrix.columns})
        st.caption("Spearman's ρ between two metrics' teacher rankings: 1 when they rank the teachers alike, "
                   "−1 when in reverse (empty with fewer than three teachers).")
