"""Start the app (`streamlit run app.py`) with its modules imported before the server starts.

Streamlit imports what a script needs during the first browser session's first run: pandas, pyarrow, plotly and
the app's own modules, about a second on a small machine, which the first visitor waits for. Started through
`serve`, the server has them already (`python -m rsr_core app`, `make app`), and it reads the store named by
`RSR_STORE` while it starts, instead of when the first visitor asks for it.
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

if TYPE_CHECKING:
    import pandas as pd

APP = Path(__file__).resolve().parents[2] / "app.py"
PRELOAD = ("pandas", "pyarrow.dataset", "plotly.graph_objects", "rsr_core.ui.layout", "rsr_core.ui.navigation",
           "rsr_core.ui.sidebar", "rsr_core.ui.analysis_cache", "rsr_core.ui.inspector", "rsr_core.ui.teacher_figures",
           "rsr_core.ui.selection_widgets")


def preload() -> list[str]:
    """Import the modules the app's pages need (never torch: the engine loads when something is scored)."""
    quiet = logging.getLogger("streamlit.runtime.caching.cache_data_api")  # "no runtime" while decorators check
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        for name in PRELOAD:
            importlib.import_module(name)
    finally:
        quiet.setLevel(level)
    return list(PRELOAD)


def prepare_start_store() -> pd.DataFrame | None:
    """Read what the first pages need of the store named by `RSR_STORE` into the caches every session shares: each
    student's trajectory table at the default r_max and their teacher report, what is left to score, the index of
    trajectory rows, then the default selection. The report, or None when there is no such store (the sidebar
    says why when a page opens it)."""
    from rsr_core.data.paths import STORE_ENV, PathRefused, allowed_path, data_roots
    from rsr_core.data.store import StoreError

    text = os.environ.get(STORE_ENV, "").strip()
    try:
        return _read_store_tables(str(allowed_path(text, data_roots()))) if text else None
    except (PathRefused, StoreError, OSError):  # the page that opens it says what is wrong
        return None


# cached itself only so that the caches it fills see a nested call and draw no spinner: no page is there to show it
@st.cache_resource(show_spinner=False, max_entries=1)
def _read_store_tables(path: str) -> pd.DataFrame | None:
    from rsr_core.analysis.metrics import R_MAX
    from rsr_core.ui import results
    from rsr_core.ui.analysis_cache import cached_teacher_report, prepare_default_selection, report_students
    from rsr_core.ui.sidebar import default_student

    students = results.students(path)
    if not students:
        return None
    student = default_student(students)
    tables = {s: results.table(path, s, R_MAX) for s in report_students(student, students)}
    tables = {s: t for s, t in tables.items() if not t.empty}
    results.unscored_ids(path, path, student)  # the sidebar's count of what is left to score
    results.row_index(path, student)  # where each trajectory's row is, for every page that opens one
    if not tables:
        return None
    report = cached_teacher_report(tables)
    if student in tables:
        prepare_default_selection(tables[student], student)
    return report


def serve(options: list[str]) -> int:
    """`streamlit run app.py OPTIONS` in this process, after `preload`, reading the start-up store (`RSR_STORE`)
    while the server starts; returns when the server stops."""
    preload()
    threading.Thread(target=prepare_start_store, name="rsr-start-store", daemon=True).start()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(APP), *options]
    return int(cli.main(standalone_mode=False) or 0)
