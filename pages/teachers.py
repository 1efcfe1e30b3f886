"""Teachers page: compare the teachers of the current dataset for the current student.

The per-teacher table (dataset RSR with its bootstrap interval, teacher score, the baseline metrics), scatterplots
with one clickable point per teacher, each teacher's trajectories (click one to open it in the inspector), the
correlation of every metric with post-training accuracies the user gives, the same teachers under other students,
and teacher selection on a budget. Computation: `rsr_core.analysis.teachers`; figures: `rsr_core.ui.teacher_figures`.
"""
from __future__ import annotations

import streamlit as st

from rsr_core.analysis.pools import students_of
from rsr_core.analysis.teachers import ranking_agreement
from rsr_core.ui import state
from rsr_core.ui.accuracy_input import accuracy_input, correlation_section
from rsr_core.ui.metric_labels import count, metric_label
from rsr_core.ui.analysis_cache import (cached_budget_selection, cached_run_table, cached_student_rankings,
                                       cached_teacher_table, combined)
from rsr_core.ui.layout import CONTROL_PX, chart, control_row, metric_row
from rsr_core.ui.markdown import md_text
from rsr_core.ui.teacher_figures import (HIDDEN_LABELS, budget_figure, rank_surprisal_figure,
                                         rsr_distribution_figure, teacher_display_table, teacher_from_selection,
                                         teacher_scatter, teacher_trajectories, with_accuracy)
from rsr_core.ui.navigation import ensure_app_runs

ensure_app_runs()

FOCUS = "teachers_focus"  # the teacher whose trajectories are listed (selectbox; chart and table clicks set it)
OPEN = "teachers_open_trajectory"  # a trajectory clicked in the list, opened in the inspector on the next run
CHARTS = ("teachers_chart_plane", "teachers_chart_length", "teachers_chart_accuracy")
GLANCE_TAB = "teachers_glance_tab"  # which chart of "Teachers at a glance" is open (only that one is drawn)
GLANCE_TABS = ("RSR against surprisal", "RSR against length", "RSR per trajectory")
RUNS_OPEN = "teachers_runs_open"  # the per-run table's expander (drawn only while open)
BUDGET_OPEN = "teachers_budget_open"  # the budget section's expander (computed and drawn only while open)
NUM = {c: st.column_config.NumberColumn(metric_label(c), format="%.3f") for c in (
    "teacher_score", "rsr", "rsr_low", "rsr_high", "avg_surprisal", "avg_rank_clipped", "avg_rank", "avg_length",
    "correct_rate", "top_k_rate", "rsr_budget", "rsr_budget_low", "rsr_budget_high", "rsr_full")}
NUM.update({  # short headers (the table stays narrow), the full meaning on hover
    "teacher_score": st.column_config.NumberColumn("teacher score", format="%.3f",
                                                   help="Mean of the dataset RSR over the teacher's runs (the "
                                                        "paper's score); equal to RSR with one run"),
    "rsr": st.column_config.NumberColumn("RSR", format="%.3f", help="Dataset RSR of the teacher's trajectories "
                                                                    "(Eq. 9); lower is better"),
    "rsr_low": st.column_config.NumberColumn("RSR low", format="%.3f",
                                             help="95 % percentile bootstrap interval over trajectories: low end"),
    "rsr_high": st.column_config.NumberColumn("RSR high", format="%.3f", help="… and high end"),
    "avg_rank": st.column_config.NumberColumn("Avg-Rank", format="%.3f", help="Mean rank, unclipped"),
    "avg_length": st.column_config.NumberColumn("length", format="%.1f", help="Mean length in student tokens"),
    "correct_rate": st.column_config.NumberColumn("correct", format="%.3f",
                                                  help="Share of the trajectories marked correct"),
    "n_runs": st.column_config.NumberColumn("runs", help="Generation runs of the teacher"),
    "n_trajectories": st.column_config.NumberColumn("trajectories"),
})


# --- callbacks: a click sets the focus teacher or the trajectory to open -------------------------------------------

def _focus_from_chart(key: str) -> None:
    teacher = teacher_from_selection((state.get(key) or {}).get("selection"))
    if teacher:
        state.put(FOCUS, teacher)


def _focus_from_table(key: str, teachers: list[str]) -> None:
    rows = (state.get(key) or {}).get("selection", {}).get("rows", [])
    if rows:
        state.put(FOCUS, teachers[rows[0]])


def _open_from_list(key: str, ids: list[str]) -> None:
    rows = (state.get(key) or {}).get("selection", {}).get("rows", [])
    if rows:
        state.put(OPEN, ids[rows[0]])


def _clickable_chart(fig, key: str) -> None:
    chart(fig, key=key, on_select=lambda: _focus_from_chart(key), selection_mode=("points",))


# --- sections ------------------------------------------------------------------------------------------------------

def teacher_table_section(teachers, table) -> None:
    st.subheader("Teachers")
    st.caption(
        "**RSR** is the dataset RSR of all the teacher's trajectories (Eq. 9: sum of the trajectories' mean clipped "
        "ranks over the sum of their mean surprisals, every trajectory counted equally), with a 95 % bootstrap "
        "interval over trajectories. **Teacher score** is the mean of the dataset RSR over the teacher's runs "
        "(the paper's score; equal to RSR with one run); `rank` sorts by it, 1 = lowest = best. Avg-Rank is "
        "unclipped. Click a row to list its trajectories.")
    shown = teacher_display_table(teachers)
    key = "teachers_table"
    names = shown["teacher"].astype(str).tolist()
    st.dataframe(shown, key=key, hide_index=True, width="stretch", column_config=NUM, selection_mode="single-row",
                 on_select=lambda: _focus_from_table(key, names))
    if "run" not in table or not any(str(r) != "" for r in table["run"].dropna().unique()):
        return
    box = st.expander("Per run", key=RUNS_OPEN, on_change="rerun")  # computed and drawn only while open
    if box.open is not False:
        runs = cached_run_table(table)
        with box:
            cols = [c for c in ("teacher", "run", "n_trajectories", "rsr", "avg_surprisal", "avg_rank_clipped",
                                "avg_length", "correct_rate") if c in runs and runs[c].notna().any()]
            st.dataframe(runs[cols], hide_index=True, width="stretch", column_config=NUM)


def scatter_section(teachers, table) -> None:
    st.subheader("Teachers at a glance")
    # only the open tab is drawn (switching tabs reruns the page): three charts at once were a second of the
    # browser's time on every rerun
    plane, length, spread = st.tabs(list(GLANCE_TABS), key=GLANCE_TAB, on_change="rerun")
    with plane:
        if plane.open is not False:
            # one chart a row: side by side, each would be 200 px wide in a 900 px window
            y = st.radio("vertical axis", ["avg_rank_clipped", "rsr"], horizontal=True,
                         key=state.keep("teachers_plane_y"),
                         format_func=lambda c: "mean clipped rank (iso-lines: constant RSR)"
                         if c == "avg_rank_clipped" else "RSR (iso-lines: constant clipped rank)")
            state.remember("teachers_plane_y")
            _clickable_chart(rank_surprisal_figure(teachers, y=y), CHARTS[0])
    with length:
        if length.open is not False:
            _clickable_chart(teacher_scatter(teachers, "avg_length", "rsr", "RSR against length"), CHARTS[1])
            st.caption("Vertical bars: 95 % bootstrap interval of RSR.")
    with spread:
        if spread.open is not False:
            kind = st.radio("distribution", ["box", "violin"], horizontal=True,
                            key=state.keep("teachers_distribution_kind"))
            state.remember("teachers_distribution_kind")
            chart(rsr_distribution_figure(table, teachers["teacher"].astype(str).tolist(), kind),
                  key="teachers_chart_distribution")
    st.caption("Click a point to list the teacher's trajectories below. " + HIDDEN_LABELS)


def trajectories_section(teachers, table) -> None:
    names = teachers["teacher"].astype(str).tolist()
    if state.get(FOCUS) not in names:
        state.pop(FOCUS, None)
    teacher = st.selectbox("Trajectories of", names, index=None, key=FOCUS,
                           placeholder="click a teacher in a chart or the table, or choose one")
    if teacher is None:
        return
    rows = teacher_trajectories(table, teacher)
    key = "teachers_trajectories"
    st.caption(f"{count(len(rows), 'trajectory', 'trajectories')} of **{md_text(teacher)}**, best RSR first. Click "
               "one to open it in the inspector.")
    st.dataframe(rows, key=key, hide_index=True, width="stretch", selection_mode="single-row",
                 column_config={**NUM, "rsr": st.column_config.NumberColumn("RSR", format="%.3f",
                                                                          help="RSR of the trajectory (Eq. 7)")},
                 on_select=lambda: _open_from_list(key, rows["trajectory_id"].astype(str).tolist()))


def accuracy_section(teachers, student) -> None:
    st.subheader("Against post-training accuracy")
    st.caption("Type the student's accuracy after training on each teacher's trajectories (or upload them) to see "
               "which metric predicts it. The paper finds RSR correlates negatively: lower RSR, better student.")
    acc = accuracy_input(teachers["teacher"].astype(str).tolist(), student, key="teachers_acc")
    if len(acc) >= 2:
        _clickable_chart(teacher_scatter(with_accuracy(teachers, acc), "accuracy", "rsr",
                                         "RSR against post-training accuracy"), CHARTS[2])
    correlation_section(teachers, acc, "teachers_correlations", "teachers_chart_correlations",
                        caption="Intervals: 95 % percentile bootstrap over teachers. With a dozen teachers they are "
                                "wide; read them before trusting a ranking of metrics.")


def students_section(table) -> None:
    tables = {state.current_student() or "": table}
    tables.update({name: state.student_table(name) for name in state.other_students()})
    students = combined(tables)
    if students.empty or len(students_of(students)) < 2:
        return
    st.subheader("The same teachers under each student")
    st.caption("Teacher score and rank under each student, sorted by the mean rank. A teacher that suits one "
               "student may not suit another: RSR depends on the student.")
    st.dataframe(cached_student_rankings(students), hide_index=True, width="stretch", key="teachers_students",
                 column_config={c: st.column_config.NumberColumn(format="%.3f")
                                for c in students.columns if c.endswith(" score")})
    agreement = ranking_agreement(cached_teacher_table(students))
    with st.expander("Agreement of the rankings (Spearman between students)"):
        st.dataframe(agreement, width="stretch")


def budget_section(table, n_teachers: int) -> None:
    st.subheader("Teacher selection on a budget")
    st.caption("Rank the teachers by the dataset RSR of N sampled trajectories each (the paper uses 200) and keep "
               "the top k. Resampling says how stable that choice is: if the top k changes from sample to sample, "
               "N is too small.")
    box = st.expander("Resample the teachers", key=BUDGET_OPEN, on_change="rerun")  # computed only while open
    if box.open is False:
        return
    with box:
        budget_view(table, n_teachers)


def budget_view(table, n_teachers: int) -> None:
    with control_row():
        n = st.number_input("N per teacher", 1, 100_000, 200, 10, key=state.keep("teachers_budget_n"),
                            width=CONTROL_PX - 40)
        k = st.number_input("top k", 1, max(1, n_teachers), min(3, max(1, n_teachers - 1)), 1,
                            key=state.keep("teachers_budget_k"), width=CONTROL_PX - 40)
        resamples = st.number_input("resamples", 1, 2000, 200, 50, key=state.keep("teachers_budget_resamples"),
                                    width=CONTROL_PX - 40)
        seed = st.number_input("seed", 0, 2**31 - 1, 0, 1, key=state.keep("teachers_budget_seed"),
                               width=CONTROL_PX - 40)
    state.remember("teachers_budget_n", "teachers_budget_k", "teachers_budget_resamples", "teachers_budget_seed")
    budget = cached_budget_selection(table, int(n), int(k), int(resamples), int(seed))
    with metric_row():
        for student, rate in budget.same_set_rate.items():
            st.metric(f"same top {int(k)} as all the data", f"{rate:.0%}", width="content",
                      help=f"Share of the {budget.n_resamples} resamples of {int(n)} trajectories per teacher "
                           f"whose top {int(k)} equals the top {int(k)} of all the data ({md_text(student)})")
    frame = budget.table.drop(columns=["student"])
    if (frame["n_sampled"] >= frame["n_available"]).all():
        st.info(f"Every teacher has at most {int(n)} trajectories: the sample is all the data.")
    st.dataframe(frame, hide_index=True, width="stretch", column_config=NUM, key="teachers_budget_table")
    chart(budget_figure(budget.table, int(k)), key="teachers_chart_budget")


# --- page ----------------------------------------------------------------------------------------------------------

if state.get(OPEN) is not None:
    state.select_trajectory(state.pop(OPEN), open_inspector=True)

st.title("Teachers")
table = state.scored_table_or_stop()
student = state.current_student()
if "student" in table and len(students_of(table)) > 1 and student in students_of(table):
    table = table[table["student"].astype(str) == student]
st.markdown(f"Student **{md_text(student)}**, r_max = {state.current_r_max()}: "
            f"{count(len(table), 'trajectory', 'trajectories')} from {count(table['teacher'].nunique(), 'teacher')}. "
            "Lower RSR is better.")
teachers = cached_teacher_table(table)
teacher_table_section(teachers, table)
scatter_section(teachers, table)
trajectories_section(teachers, table)
accuracy_section(teachers, student)
students_section(table)
budget_section(table, len(teachers))
