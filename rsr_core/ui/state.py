"""The app's session state: its keys, and the small functions pages use to read and change it.

Keys in `st.session_state` (pages should use the functions below, not the keys):

| key | type | what |
| --- | --- | --- |
| `table` | pd.DataFrame | trajectory table of the active student at the current r_max (empty until scored) |
| `scores` | dict[str, TokenScores] | per-token results of the active student, by trajectory id |
| `r_max` | int | rank clipping used by every table and view (the sidebar's number input) |
| `student_name` | str | the student whose numbers `table` holds |
| `other_students` | dict[str, StudentResults] | other students' results on the same dataset (side by side) |
| `dataset` | Dataset | the current dataset: label, key, trajectories, read errors |
| `selected_trajectory` | str | id of the trajectory the inspector shows |
| `selected_tokens` | dict[str, list[int]] | per trajectory id, the token positions to outline (scatter, span) |
| `token_window_start` | dict[str, int] | per trajectory id, the first token of the inspector's text window |
| `scoring_job` | ScoringJob | the running or last scoring run of this session |
| `zone_surprisal_threshold` | float | zone threshold s0 in nats (the sidebar's; the teaching page reads it too) |
| `zone_rank_threshold` | int | zone rank threshold k (likewise) |
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd
import streamlit as st

from rsr_core.data.formats import RecordError
from rsr_core.analysis.metrics import R_MAX
from rsr_core.data.tables import rescore_table
from rsr_core.data.token_scores import TokenScores
from rsr_core.data.trajectory import Trajectory
from rsr_core.analysis.zones import RANK_THRESHOLD, SURPRISAL_THRESHOLD, ZoneThresholds

TABLE = "table"
SCORES = "scores"
RMAX = "r_max"
STUDENT_NAME = "student_name"
OTHER_STUDENTS = "other_students"
DATASET = "dataset"
SELECTED = "selected_trajectory"
SELECTED_TOKENS = "selected_tokens"
WINDOW_START = "token_window_start"
JOB = "scoring_job"
ZONE_S0 = "zone_surprisal_threshold"
ZONE_K = "zone_rank_threshold"

INSPECTOR_PAGE = "pages/inspector.py"


@dataclass
class StudentResults:
    """One student's results on the current dataset."""

    table: pd.DataFrame
    scores: dict[str, TokenScores]


@dataclass
class Dataset:
    """The dataset the app shows. `key` identifies the source, so the sidebar reloads only when it changes."""

    key: str
    label: str
    trajectories: list[Trajectory] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)
    is_demo: bool = False


def _ss():
    return st.session_state


# --- reading -------------------------------------------------------------------------------------------------

def current_table() -> pd.DataFrame:
    """Trajectory table of the active student at the current r_max (empty frame before any scores)."""
    return _ss().get(TABLE, pd.DataFrame())


NO_SCORES = ("No scores yet: open the bundled demo pool, or choose a dataset and a student in the sidebar and "
             "press **Score**.")


def scored_table_or_stop() -> pd.DataFrame:
    """The current trajectory table; when there is none yet, say how to get one and end the page's run."""
    table = current_table()
    if table.empty:
        st.info(NO_SCORES)
        st.stop()
    return table


def current_scores() -> dict[str, TokenScores]:
    return _ss().get(SCORES, {})


def current_r_max() -> int:
    return int(_ss().get(RMAX, R_MAX))


def current_thresholds() -> ZoneThresholds:
    """The zone thresholds set in the sidebar (the defaults before it has run)."""
    return ZoneThresholds(float(_ss().get(ZONE_S0, SURPRISAL_THRESHOLD)), int(_ss().get(ZONE_K, RANK_THRESHOLD)))


def current_student() -> str | None:
    return _ss().get(STUDENT_NAME)


def current_dataset() -> Dataset | None:
    return _ss().get(DATASET)


def other_students() -> dict[str, StudentResults]:
    """Other students' results on the current dataset, tables at the current r_max."""
    return _ss().get(OTHER_STUDENTS, {})


def trajectory_scores(tid: str, student: str | None = None) -> TokenScores | None:
    """Per-token results of one trajectory under the active student (or a named other student)."""
    if student is None or student == current_student():
        return current_scores().get(tid)
    other = other_students().get(student)
    return other.scores.get(tid) if other else None


def trajectory_row(tid: str, student: str | None = None) -> pd.Series | None:
    """The trajectory table's row of one trajectory (active or named student)."""
    if student is None or student == current_student():
        table = current_table()
    else:
        other = other_students().get(student)
        table = other.table if other else pd.DataFrame()
    if table.empty:
        return None
    rows = table[table["trajectory_id"] == tid]
    return rows.iloc[0] if len(rows) else None


def trajectory_messages(tid: str) -> list[dict]:
    """The conversation of one trajectory (reasoning in `reasoning_content`), [] when unknown."""
    row = trajectory_row(tid)
    if row is None or "messages" not in row or not isinstance(row["messages"], str):
        return []
    return json.loads(row["messages"])


def selected_trajectory() -> str | None:
    """The inspector's trajectory: the selected id if it has scores, else the first scored one, else None."""
    table = current_table()
    tid = _ss().get(SELECTED)
    if table.empty:
        return None
    if tid in set(table["trajectory_id"]):
        return tid
    return str(table["trajectory_id"].iloc[0])


def selected_tokens(tid: str) -> list[int]:
    return list(_ss().get(SELECTED_TOKENS, {}).get(tid, []))


def window_start(tid: str) -> int:
    return int(_ss().get(WINDOW_START, {}).get(tid, 0))


# --- changing --------------------------------------------------------------------------------------------------

def select_trajectory(tid: str, open_inspector: bool = False) -> None:
    """Make `tid` the inspector's trajectory; with open_inspector, switch to the inspector page (other pages'
    "open in inspector")."""
    _ss()[SELECTED] = str(tid)
    if open_inspector:
        st.switch_page(INSPECTOR_PAGE)


def set_selected_tokens(tid: str, positions) -> None:
    """Outline these token positions of trajectory `tid` in the text (replaces the previous selection)."""
    sel = dict(_ss().get(SELECTED_TOKENS, {}))
    sel[tid] = sorted({int(p) for p in positions})
    _ss()[SELECTED_TOKENS] = sel


def set_window_start(tid: str, start: int) -> None:
    starts = dict(_ss().get(WINDOW_START, {}))
    starts[tid] = max(0, int(start))
    _ss()[WINDOW_START] = starts


def set_results(student: str, table: pd.DataFrame, scores: dict[str, TokenScores]) -> None:
    """Make `student` the active student with these results (table rescored to the current r_max)."""
    r_max = current_r_max()
    if not table.empty and int(table["r_max"].iloc[0]) != r_max:
        table = rescore_table(table, scores, r_max)
    _ss()[TABLE], _ss()[SCORES], _ss()[STUDENT_NAME] = table, scores, student


def set_other_student(student: str, table: pd.DataFrame, scores: dict[str, TokenScores]) -> None:
    """Keep another student's results on the same dataset (for side-by-side views)."""
    others = dict(other_students())
    r_max = current_r_max()
    if not table.empty and int(table["r_max"].iloc[0]) != r_max:
        table = rescore_table(table, scores, r_max)
    others[student] = StudentResults(table, scores)
    _ss()[OTHER_STUDENTS] = others


def switch_student(student: str) -> bool:
    """Make `student` active: the active results move to `other_students`, and the new student's results, if
    known, come back from there. Returns whether results for `student` were known."""
    others = dict(other_students())
    current = current_student()
    if current and current != student and not current_table().empty:
        others[current] = StudentResults(current_table(), current_scores())
    known = others.pop(student, None)
    _ss()[OTHER_STUDENTS] = others
    if known:
        set_results(student, known.table, known.scores)
    else:
        set_results(student, pd.DataFrame(), {})
    return known is not None


def set_dataset(dataset: Dataset) -> None:
    """A new dataset: every result, selection and window of the previous one is dropped."""
    _ss()[DATASET] = dataset
    for key in (OTHER_STUDENTS, SELECTED_TOKENS, WINDOW_START):
        _ss()[key] = {}
    _ss()[TABLE], _ss()[SCORES] = pd.DataFrame(), {}
    _ss().pop(SELECTED, None)


def set_r_max(r_max: int) -> bool:
    """Change r_max: every table is recomputed from the stored unclipped ranks (no forward pass). Returns whether
    anything changed."""
    r_max = int(r_max)
    if r_max == current_r_max() and (current_table().empty or int(current_table()["r_max"].iloc[0]) == r_max):
        return False
    _ss()[RMAX] = r_max
    if not current_table().empty:
        _ss()[TABLE] = rescore_table(current_table(), current_scores(), r_max)
    others = {}
    for name, res in other_students().items():
        others[name] = StudentResults(rescore_table(res.table, res.scores, r_max) if not res.table.empty
                                      else res.table, res.scores)
    _ss()[OTHER_STUDENTS] = others
    return True
