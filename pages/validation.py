"""Validation page: the paper's correlations recomputed from its own per-teacher tables, and the same question
asked of the user's data (which metric predicts the accuracies of the user's teachers best).

Computation: `rsr_core.analysis.paper` and `rsr_core.analysis.teachers`; tables and figures:
`rsr_core.ui.validation_figures`.
"""
from __future__ import annotations

import streamlit as st

from rsr_core.analysis.paper import reproduction_table
from rsr_core.data.paths import PAPER_METRICS
from rsr_core.analysis.pools import students_of
from rsr_core.ui import state
from rsr_core.ui.accuracy_input import accuracy_input, correlation_section
from rsr_core.ui.analysis_cache import cached_teacher_table
from rsr_core.ui.layout import chart
from rsr_core.ui.markdown import md_text
from rsr_core.ui.validation_figures import abs_rho_figure, corrections_table, rsr_student_table
from rsr_core.ui.navigation import ensure_app_runs

ensure_app_runs()

F3 = st.column_config.NumberColumn(format="%.3f")
WHY = """\
The method is the paper's (scipy's Spearman, tied values sharing their mean rank); the inputs are not quite:

- **One inconsistent cell.** DeepSeek-R1-0528 on Qwen-2.5-7B is printed as 47.3 in two of the paper's tables and as
  47.8 in two others. Only 47.8 is consistent with the printed 0.918 (with the tie below broken: 0.918 against
  0.891 with 47.3).
- **Ties made by rounding.** Accuracies are printed to one decimal, which ties three pairs of teachers that the
  paper's unrounded numbers did not: on Qwen-2.5-7B QwQ-32B = Qwen-3-8B = 52.0, on Qwen-3-4B QwQ-32B = Qwen-3-8B =
  61.2, on Qwen-2.5-3B Nemotron-Super-49B-v1.5 = QwQ-32B = 33.0. A tie gives both teachers the same rank, which moves
  the correlation of an 11-teacher ranking by up to 0.03.

**Corrected** uses 47.8 and breaks each tie by 0.01 points, below the printed precision, in the direction the
printed correlation implies (found by trying both orders: the other orders give 0.909, 0.836 and 0.782). With it
the five printed RSR values are reproduced. The other metrics agree with the paper's printed averages of |rho| to
within about 0.02 either way.
"""


@st.cache_data(show_spinner=False)
def _reproduction(corrected: bool):
    return reproduction_table(PAPER_METRICS, corrected=corrected)


def paper_section() -> None:
    st.subheader("The paper's results, recomputed")
    st.markdown(
        "The paper (arXiv 2601.14249) trains five students on the trajectories of 11 teachers and reports how well "
        "each metric, computed before training, predicts the accuracy after it (Spearman over the 11 teachers). "
        "Its appendix tables print every per-teacher value; this page recomputes the correlations from them.")
    corrected = st.toggle("corrected (the 47.8 cell and the three rounding ties)", key="validation_corrected",
                          help="DeepSeek-R1-0528 on Qwen-2.5-7B = 47.8, and ties created by rounding broken by "
                               "0.01 points in the direction the printed correlation implies.")
    st.markdown("**|Spearman| of RSR with accuracy, per student**")
    st.dataframe(rsr_student_table(corrected), hide_index=True, width="stretch", key="validation_rsr",
                 column_config={c: F3 for c in ("paper", "ours", "difference")})
    table = _reproduction(corrected)
    chart(abs_rho_figure(table), key="validation_chart_rho")
    st.markdown("**Every metric (signed Spearman; negative: lower value, better student)**")
    st.dataframe(table, width="stretch", key="validation_metrics", column_config={c: F3 for c in table.columns})
    with st.expander("Why some values differ from the paper's", expanded=not corrected):
        st.markdown(WHY)
        st.dataframe(corrections_table(), hide_index=True, width="stretch", key="validation_corrections")


def own_data_section() -> None:
    st.subheader("On your own data")
    table = state.current_table()
    student = state.current_student()
    if table.empty:
        st.info("Score a dataset (or open the demo pool) in the sidebar, then give each teacher's post-training "
                "accuracy here to see which metric predicts it best.")
        return
    if len(students_of(table)) > 1 and student in students_of(table):
        table = table[table["student"].astype(str) == student]
    teachers = cached_teacher_table(table)
    st.markdown(f"Train **{md_text(student)}** on each teacher's trajectories (or take accuracies you already have) "
                f"and type them below: every metric of the {len(teachers)} teachers is correlated with them, as in the "
                "paper's Table 4.")
    acc = accuracy_input(teachers["teacher"].astype(str).tolist(), student, key="validation_acc")
    correlation_section(teachers, acc, "validation_own_correlations", "validation_chart_own")


st.title("Validation against the paper")
paper_section()
own_data_section()
