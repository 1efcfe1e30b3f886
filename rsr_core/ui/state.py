"""The app's session state: its keys, and the functions pages use to read and change it.

A session holds only what is its own: which dataset and student it looks at, r_max, the zone thresholds, what
is selected, its scoring run and its page settings. The results (trajectory tables, aggregates, per-token data,
conversations) are read once per server process and shared read-only by every session (`rsr_core.ui.results`),
so memory does not grow with the number of sessions. Every session-state key is named here; pages use the
functions below, not `st.session_state`.

| key | type | what |
| --- | --- | --- |
| `dataset` | Dataset | the current dataset: label, result stores, trajectories to score, read errors |
| `student_name` | str | the active student (its results are what the pages show) |
| `r_max` | int | rank clipping used by every table and view (the sidebar's number input) |
| `selected_trajectory` | str | id of the trajectory the inspector shows |
| `selected_tokens` | dict[str, list[int]] | per trajectory id, the token positions to outline (scatter, span) |
| `token_window_start` | dict[str, int] | per trajectory id, the first token of the inspector's text window |
| `scoring_job` | ScoringJob | the running or last scoring run of this session |
| `upload_folder` | UploadFolder | the session's private folder for its uploads, removed with the session |
| `zone_surprisal_threshold` | float | zone threshold s0 in nats (the sidebar's; the teaching page reads it too) |
| `zone_rank_threshold` | int | zone rank threshold k (likewise) |
| `selection_overrides` | dict[str, str] | Selection page: manual choices {problem or pool id: trajectory id} |
| `selection_result` | Selection | Selection page: the current selection |
| `teacher_accuracies` | dict | Teachers page: accuracies per student and teacher |
| `kept_<key>` | any | the last value of a page widget, restored when its page is drawn again (`keep`) |
| `_<name>` | any | the sidebar's and pages' own bookkeeping (`get`, `put`) |
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import streamlit as st

from rsr_core.analysis.metrics import R_MAX
from rsr_core.analysis.zones import RANK_THRESHOLD, SURPRISAL_THRESHOLD, ZoneThresholds
from rsr_core.data.formats import RecordError
from rsr_core.data.sources import UploadFolder
from rsr_core.data.store import StoreError
from rsr_core.data.token_scores import TokenScores
from rsr_core.data.trajectory import Trajectory
from rsr_core.ui import results
from rsr_core.ui.markdown import md_message

RMAX = "r_max"
STUDENT_NAME = "student_name"
DATASET = "dataset"
SELECTED = "selected_trajectory"
SELECTED_TOKENS = "selected_tokens"
WINDOW_START = "token_window_start"
JOB = "scoring_job"
UPLOADS = "upload_folder"
ZONE_S0 = "zone_surprisal_threshold"
ZONE_K = "zone_rank_threshold"
SELECTION_OVERRIDES = "selection_overrides"
SELECTION_RESULT = "selection_result"
TEACHER_ACCURACIES = "teacher_accuracies"
KEPT = "kept_"

INSPECTOR_PAGE = "pages/inspector.py"
# the inspector's side-by-side view: its toggle, its mode and the second trajectory (widget keys)
COMPARE, COMPARE_MODE, COMPARE_WITH = "inspector_compare", "inspector_compare_mode", "inspector_compare_with"
NO_SCORES = ("No scores yet: open the bundled demo pool or a results store, or choose a dataset and a student in "
             "the sidebar and press **Score**.")


@dataclass
class Dataset:
    """The dataset the app shows. `key` identifies the source, so the sidebar reloads only when it changes.

    stores: the results stores read, in order (the first that holds a student's results serves them);
    writable: where Score writes; trajectories: what Score scores (empty for a store opened as the dataset,
    whose own conversations are scored)."""

    key: str
    label: str
    stores: tuple[str, ...] = ()
    writable: str | None = None
    trajectories: list[Trajectory] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)
    is_demo: bool = False
    from_store: bool = False
    notes: list[str] = field(default_factory=list)  # what the reader says once (ids qualified, candidates left)


def _ss():
    return st.session_state


# --- page keys and widgets -------------------------------------------------------------------------------------

def get(key: str, default=None):
    """A session value by its key (named in this module's table)."""
    return _ss().get(key, default)


def put(key: str, value) -> None:
    _ss()[key] = value


def pop(key: str, default=None):
    return _ss().pop(key, default)


def setdefault(key: str, default):
    """The session value of `key`, set to `default` first when it has none."""
    return _ss().setdefault(key, default)


def keep(key: str, default=None) -> str:
    """Restore a widget's last value before drawing it (Streamlit drops the state of widgets not drawn, e.g. on
    another page); pair with `remember(key)` after drawing. Returns the key, for `key=state.keep(...)`."""
    ss = _ss()
    if key not in ss:
        if KEPT + key in ss:
            ss[key] = ss[KEPT + key]
        elif default is not None:
            ss[key] = default
    return key


def remember(*keys: str) -> None:
    """Store widgets' values so that `keep` brings them back."""
    ss = _ss()
    for key in keys:
        if key in ss:
            ss[KEPT + key] = ss[key]


# --- reading -------------------------------------------------------------------------------------------------

def current_dataset() -> Dataset | None:
    return _ss().get(DATASET)


def current_student() -> str | None:
    return _ss().get(STUDENT_NAME)


def current_r_max() -> int:
    return int(_ss().get(RMAX, R_MAX))


def current_thresholds() -> ZoneThresholds:
    """The zone thresholds set in the sidebar (the defaults before it has run)."""
    return ZoneThresholds(float(_ss().get(ZONE_S0, SURPRISAL_THRESHOLD)), int(_ss().get(ZONE_K, RANK_THRESHOLD)))


def current_job():
    return _ss().get(JOB)


def upload_folder() -> UploadFolder:
    """The session's private folder for uploads (created on first use). It lives as long as the session: when the
    session ends, its state is dropped and the folder removed (`UploadFolder`)."""
    folder = _ss().get(UPLOADS)
    if folder is None or not folder.alive:
        folder = UploadFolder()
        _ss()[UPLOADS] = folder
    return folder


def student_store(student: str | None = None) -> str | None:
    """The store that holds a student's results on the current dataset (the active student by default)."""
    student = student or current_student()
    dataset = current_dataset()
    if not student or dataset is None:
        return None
    return next((path for path in dataset.stores if student in results.students(path)), None)


def students() -> list[str]:
    """Every student with results on the current dataset."""
    dataset = current_dataset()
    names: list[str] = []
    for path in dataset.stores if dataset else ():
        names += [s for s in results.students(path) if s not in names]
    return names


def other_students() -> list[str]:
    """Students with results on the current dataset other than the active one (side-by-side views)."""
    return [s for s in students() if s != current_student()]


def student_table(student: str | None = None) -> pd.DataFrame:
    """A student's trajectory table at the current r_max (shared: read-only); empty before any results."""
    student = student or current_student()
    path = student_store(student)
    if path is None:
        return pd.DataFrame()
    return results.table(path, student, current_r_max())


def current_table() -> pd.DataFrame:
    """Trajectory table of the active student at the current r_max (shared: read-only; empty before scores)."""
    return student_table()


def store_problems() -> list[str]:
    """What keeps results of the current dataset's stores from being read (damaged or unknown-version student
    folders, missing files), one message each naming the file and what to do."""
    dataset = current_dataset()
    return [problem for path in (dataset.stores if dataset else ()) for problem in results.problems(path)]


def scored_table_or_stop() -> pd.DataFrame:
    """The current trajectory table; when there is none, say why (the store's damage, or how to get scores) and end
    the page's run."""
    try:
        table = current_table()
    except (StoreError, OSError, KeyError) as e:  # a store damaged after it was opened
        st.error(md_message(e.args[0] if isinstance(e, KeyError) and e.args else e))
        st.stop()
    if table.empty:
        say_no_scores()
        st.stop()
    return table


def say_no_scores() -> None:
    """Why there is nothing to show: the damage that keeps a store's results from being read, else how to get
    scores."""
    problems = store_problems()
    for problem in problems:
        st.error(md_message(problem))
    if not problems:
        st.info(NO_SCORES)


def trajectory_scores(tid: str, student: str | None = None) -> TokenScores | None:
    """Per-token results of one trajectory under the active student (or a named one); None when unknown."""
    student = student or current_student()
    path = student_store(student)
    return results.token_scores(path, student, tid) if path else None


def trajectory_row(tid: str, student: str | None = None) -> pd.Series | None:
    """The trajectory table's row of one trajectory (active or named student)."""
    student = student or current_student()
    path = student_store(student)
    if path is None:
        return None
    row = results.row_index(path, student).get(tid)
    return None if row is None else results.table(path, student, current_r_max()).iloc[row]


def has_results(tid: str, student: str | None = None) -> bool:
    student = student or current_student()
    path = student_store(student)
    return bool(path) and tid in results.row_index(path, student)


def trajectory_messages(tid: str) -> list[dict]:
    """The conversation of one trajectory (reasoning in `reasoning_content`, tool calls in `tool_calls`), [] when
    unknown."""
    return trajectory_conversation(tid)["messages"]


def trajectory_conversation(tid: str) -> dict:
    """{messages, tools (None without), ...} of one trajectory as stored; no messages when unknown."""
    dataset = current_dataset()
    for path in dataset.stores if dataset else ():
        try:
            return results.conversation(path, tid)
        except (KeyError, OSError, StoreError):
            continue
    return {"messages": [], "tools": None}


def scored_ids(student: str | None = None) -> frozenset[str]:
    student = student or current_student()
    path = student_store(student)
    return results.scored_ids(path, student) if path else frozenset()


def selected_trajectory() -> str | None:
    """The inspector's trajectory: the selected id if it has scores, else the first scored one, else None."""
    table = current_table()
    if table.empty:
        return None
    tid = _ss().get(SELECTED)
    if tid is not None and has_results(tid):
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


def open_side_by_side(first: str, second: str) -> None:
    """Open the inspector on `first` with `second` (a trajectory of the same problem) beside it."""
    _ss()[COMPARE] = True
    _ss()[COMPARE_MODE] = "trajectory"
    _ss()[COMPARE_WITH] = str(second)
    select_trajectory(first, open_inspector=True)


def set_selected_tokens(tid: str, positions) -> None:
    """Outline these token positions of trajectory `tid` in the text (replaces the previous selection)."""
    sel = dict(_ss().get(SELECTED_TOKENS, {}))
    sel[tid] = sorted({int(p) for p in positions})
    _ss()[SELECTED_TOKENS] = sel


def set_window_start(tid: str, start: int) -> None:
    starts = dict(_ss().get(WINDOW_START, {}))
    starts[tid] = max(0, int(start))
    _ss()[WINDOW_START] = starts


def set_student(student: str | None) -> None:
    _ss()[STUDENT_NAME] = student


def set_dataset(dataset: Dataset) -> None:
    """A new dataset: every selection and window of the previous one is dropped."""
    _ss()[DATASET] = dataset
    for key in (SELECTED_TOKENS, WINDOW_START):
        _ss()[key] = {}
    _ss().pop(SELECTED, None)


def set_r_max(r_max: int) -> bool:
    """Change r_max: every table is recomputed from the stored aggregates (no forward pass). Returns whether it
    changed."""
    changed = int(r_max) != current_r_max()
    _ss()[RMAX] = int(r_max)
    return changed


def set_job(job) -> None:
    _ss()[JOB] = job
