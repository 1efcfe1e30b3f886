"""Per-teacher post-training accuracies typed in or uploaded, and their correlation with every metric.

The accuracies a user gives are kept per student in `state.get("teacher_accuracies")`
(`{student: {teacher: accuracy}}`), so the Teachers and Validation pages share them. Pure helpers first, the
widget last.
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from rsr_core.ui import state

from rsr_core.analysis.teachers import accuracy_correlations, best_predictor, read_accuracies
from rsr_core.ui.layout import chart
from rsr_core.ui.markdown import md_message, md_text
from rsr_core.ui.metric_labels import metric_label
from rsr_core.ui.teacher_figures import correlation_figure

ACCURACIES_KEY = "teacher_accuracies"
MIN_TEACHERS = 3  # a correlation over fewer teachers means nothing
#: st.dataframe column_config of `correlation_display`'s table
CORRELATION_COLUMNS = {
    **{c: st.column_config.NumberColumn(format="%.3f") for c in ("Spearman", "Pearson")},
    **{c: st.column_config.NumberColumn(format="%.2g", help="scipy's p-value (no correction for testing many "
                                                            "metrics)") for c in ("Spearman p", "Pearson p")},
}


# --- pure helpers --------------------------------------------------------------------------------------------------

def editor_frame(teachers: list[str], known: dict[str, float]) -> pd.DataFrame:
    """One row per teacher (teacher, accuracy), NaN where no accuracy is known yet."""
    return pd.DataFrame({"teacher": [str(t) for t in teachers],
                         "accuracy": [float(known.get(str(t), np.nan)) for t in teachers]})


def accuracies_from_frame(frame: pd.DataFrame) -> dict[str, float]:
    """{teacher: accuracy} of the rows whose accuracy is a finite number."""
    values = pd.to_numeric(frame["accuracy"], errors="coerce")
    return {str(t): float(v) for t, v in zip(frame["teacher"], values) if v is not None and math.isfinite(v)}


def read_accuracy_upload(name: str, data: bytes, student: str | None = None) -> dict[str, float]:
    """{teacher: accuracy} from an uploaded CSV (`teacher,accuracy[,student]`) or JSON ({teacher: accuracy}).

    Read with `rsr_core.analysis.teachers.read_accuracies`; with a `student` column, only that student's rows are kept
    (every row when `student` is None or matches none of them).
    """
    suffix = ".json" if name.lower().endswith(".json") else ".csv"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"accuracies{suffix}"
        path.write_bytes(data)
        frame = read_accuracies(path)
    if "student" in frame and student is not None and (frame["student"] == student).any():
        frame = frame[frame["student"] == student]
    frame = frame.dropna(subset=["accuracy"])
    return {str(t): float(a) for t, a in zip(frame["teacher"], frame["accuracy"])}


def correlation_display(corr: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """The paper's Table 4 layout: metric, teachers, Spearman [interval], p, Pearson [interval], p.

    corr: `teachers.accuracy_correlations` output. Sorted by |Spearman|, strongest first; the signed values are kept.
    """
    def interval(row: pd.Series, method: str) -> str:
        lo, hi = row[f"{method}_low"], row[f"{method}_high"]
        return "-" if not (np.isfinite(lo) and np.isfinite(hi)) else f"[{lo:.{digits}f}, {hi:.{digits}f}]"

    order = corr["spearman"].abs().fillna(-1).sort_values(ascending=False, kind="stable").index
    rows = []
    for _, row in corr.loc[order].iterrows():
        rows.append({"metric": metric_label(str(row["metric"])), "column": str(row["metric"]),
                     "teachers": int(row["n_teachers"]),
                     "Spearman": row["spearman"], "Spearman 95% CI": interval(row, "spearman"),
                     "Spearman p": row["spearman_p"],
                     "Pearson": row["pearson"], "Pearson 95% CI": interval(row, "pearson"),
                     "Pearson p": row["pearson_p"]})
    return pd.DataFrame(rows)


def correlate(teachers: pd.DataFrame, accuracies: dict[str, float], *, n_resamples: int = 1000,
              seed: int = 0) -> tuple[pd.DataFrame | None, str | None, str]:
    """(correlation table, best predictor, message) for one student's teacher table and its accuracies.

    The table is None, with the reason in the message, when fewer than `MIN_TEACHERS` teachers have an accuracy.
    """
    common = [t for t in teachers["teacher"].astype(str) if t in accuracies]
    if len(common) < MIN_TEACHERS:
        return None, None, (f"{len(common)} of {len(teachers)} teachers have an accuracy; a correlation needs at "
                            f"least {MIN_TEACHERS}.")
    corr = accuracy_correlations(teachers, accuracies, n_resamples=n_resamples, seed=seed)
    best = best_predictor(corr)
    return corr, best, f"over {len(common)} teachers"


# --- session state -------------------------------------------------------------------------------------------------

def stored_accuracies(student: str | None) -> dict[str, float]:
    """The accuracies given for `student` in this session."""
    return dict(state.get(ACCURACIES_KEY, {}).get(str(student), {}))


def store_accuracies(student: str | None, values: dict[str, float]) -> None:
    everything = dict(state.get(ACCURACIES_KEY, {}))
    everything[str(student)] = dict(values)
    state.put(ACCURACIES_KEY, everything)


# --- widget --------------------------------------------------------------------------------------------------------

def accuracy_input(teachers: list[str], student: str | None, key: str) -> dict[str, float]:
    """An editable table (one row per teacher) and a CSV/JSON upload; returns {teacher: accuracy}.

    `key` prefixes the widget keys (each page its own). An upload is applied once (then the table may be
    edited); what is typed or uploaded is stored per student for the other pages.
    """
    known = stored_accuracies(student)
    editor_key, upload_key, applied_key = f"{key}_editor", f"{key}_upload", f"{key}_upload_applied"
    upload = st.file_uploader("Upload accuracies (CSV `teacher,accuracy` or JSON {teacher: accuracy})",
                              type=["csv", "json"], key=upload_key,
                              help="A `student` column, if present, selects this student's rows.")
    if upload is not None and state.get(applied_key) != (upload.file_id, student):
        try:
            values = read_accuracy_upload(upload.name, upload.getvalue(), student)
        except (ValueError, KeyError, UnicodeDecodeError, pd.errors.ParserError) as e:
            st.error(f"{md_text(upload.name)}: {md_message(e)}")
        else:
            unknown = sorted(set(values) - set(teachers))
            if unknown:
                st.warning(f"{len(unknown)} teacher(s) of the file are not in the table: "
                           f"{md_text(', '.join(unknown[:10]))}")
            known.update({t: v for t, v in values.items() if t in teachers})
            store_accuracies(student, known)
            state.pop(editor_key, None)  # the uploaded values replace what was typed
            state.put(applied_key, (upload.file_id, student))
    edited = st.data_editor(
        editor_frame(teachers, known), key=editor_key, num_rows="fixed", hide_index=True, disabled=["teacher"],
        column_config={"accuracy": st.column_config.NumberColumn(
            "post-training accuracy", help="The student's accuracy after training on this teacher's "
                                           "trajectories, e.g. the paper's Acc@4 in %.", format="%.2f")})
    values = accuracies_from_frame(edited)
    if values != known:
        store_accuracies(student, values)
    return values


def correlation_section(teachers: pd.DataFrame, accuracies: dict[str, float], table_key: str, chart_key: str,
                        caption: str | None = None) -> None:
    """The best predictor, the Table 4 layout and its chart for `correlate(teachers, accuracies)`; the reason
    instead when there are too few accuracies. `caption` goes under the table."""
    corr, best, message = correlate(teachers, accuracies)
    if corr is None:
        st.info(message)
        return
    st.markdown(f"**Best predictor** {message}: **{metric_label(best)}** "
                f"(Spearman {corr.set_index('metric').loc[best, 'spearman']:+.3f}).")
    st.dataframe(correlation_display(corr), hide_index=True, width="stretch", key=table_key,
                 column_config=CORRELATION_COLUMNS)
    if caption:
        st.caption(caption)
    chart(correlation_figure(corr), key=chart_key)
