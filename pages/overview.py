"""Home: what RSR is, the current dataset's per-teacher report, and where to go next."""
import streamlit as st

from rsr_core.ui import state
from rsr_core.ui.analysis_cache import cached_teacher_report, report_students
from rsr_core.ui.layout import button_row, chart
from rsr_core.ui.markdown import md_text
from rsr_core.ui.metric_labels import count
from rsr_core.ui.navigation import available_pages, ensure_app_runs
from rsr_core.ui.teacher_figures import report_figure

ensure_app_runs()

st.title("RSR Explorer")
st.markdown(
    "The **Rank-Surprisal Ratio** (Yang et al., arXiv 2601.14249) scores how well a teacher's reasoning trajectory "
    "suits a student model, before any training.\n"
    "For every response token the student gives a **rank** (1 = its own top choice: *relative familiarity*) "
    "and a **surprisal** −ln p in nats (*absolute unfamiliarity*: what there is to learn).\n"
    "RSR = Σ min(rank, r_max) / Σ surprisal over the trajectory; **lower is better**.\n"
    "A low RSR means improbable tokens that the student still ranks near the top: a stretch, but a reachable one.\n"
    "A dataset's RSR is the ratio of the per-trajectory means (each trajectory counts equally): it picks teachers "
    "and trajectories that train the student best.")

dataset = state.current_dataset()
table = state.current_table()
student = state.current_student()
st.caption(f"Dataset: **{md_text(dataset.label) if dataset else 'none'}** · "
           f"student: **{md_text(student or 'none')}** · r_max = {state.current_r_max()}")

st.subheader("Teachers on this dataset")
# the chart's place is drawn first, so that the browser loads its charting code while the report is computed
figure = st.empty()
with figure:
    chart(report_figure(None))
tables = {s: state.student_table(s) for s in report_students(student, state.students())}
tables = {s: t for s, t in tables.items() if not t.empty}
if not tables:
    figure.empty()
    state.say_no_scores()
else:
    st.caption(f"{count(len(table), 'trajectory', 'trajectories')} under {md_text(student)}" if not table.empty else "")
    report = cached_teacher_report(tables)
    with figure:
        chart(report_figure(report, student))
    shown = [c for c in ("student", "teacher", "n_trajectories", "rsr", "teacher_score", "rsr_simple_average",
                         "avg_surprisal", "avg_rank_clipped", "avg_length", "correct_rate", "n_runs")
             if c in report]
    st.dataframe(report[shown], hide_index=True, width="stretch", key="overview_report",
                 column_config={c: st.column_config.NumberColumn(format="%.3f") for c in
                                ("rsr", "teacher_score", "rsr_simple_average", "avg_surprisal",
                                 "avg_rank_clipped", "correct_rate")})
    st.caption("rsr: dataset RSR (Eq. 9: Σ of per-trajectory mean clipped ranks / Σ of mean surprisals); "
               "teacher_score: its mean over runs; rsr_simple_average: the plain mean of trajectory RSRs.")
    if not table.empty and table["rsr"].notna().any():
        best = table.loc[table["rsr"].idxmin()]
        worst = table.loc[table["rsr"].idxmax()]
        with button_row():
            if st.button(f"Inspect the lowest-RSR trajectory ({md_text(best['teacher'])}, {best['rsr']:.2f})",
                         key="overview_open_best"):
                state.select_trajectory(best["trajectory_id"], open_inspector=True)
            if st.button(f"Inspect the highest-RSR trajectory ({md_text(worst['teacher'])}, {worst['rsr']:.2f})",
                         key="overview_open_worst"):
                state.select_trajectory(worst["trajectory_id"], open_inspector=True)

st.subheader("Pages")
for spec in available_pages():
    if not spec.default:
        st.page_link(spec.path, label=f"{spec.title}: {spec.summary}", icon=spec.icon)
