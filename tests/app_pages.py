"""Open one page of the app in AppTest on the bundled demo data, with the shared sidebar state."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import keep_app_navigation

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 180


def open_page(page: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: Path | None = None) -> AppTest:
    """The app (app.py: navigation and the sidebar, which loads the demo's precomputed scores, or the results
    store `store` opened with RSR_STORE) showing `page`."""
    from rsr_core.data.demo import available_demo_students

    if store is None and not available_demo_students():
        pytest.skip("the demo pool's precomputed scores are missing (make demo-scores)")
    monkeypatch.setenv("RSR_CACHE_DIR", str(tmp_path / "cache"))
    if store is not None:
        monkeypatch.setenv("RSR_STORE", str(store))
    keep_app_navigation(monkeypatch)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def frame_by_key(at: AppTest, key: str):
    """The DataFrame shown by the st.dataframe / st.data_editor with this key."""
    for df in at.dataframe:
        if df.key == key:
            return df.value
    raise KeyError(f"no dataframe with key {key!r} on the page")


def frame_with_column(at: AppTest, column: str):
    """The first DataFrame on the page that has this column (st.dataframe without selection has no key)."""
    for df in at.dataframe:
        value = df.value
        if column in value.columns:
            return value
    raise KeyError(f"no dataframe with a column {column!r} on the page")


def chart_titles(at: AppTest) -> list[str]:
    """The titles of the plotly charts on the page (long ones are drawn on several lines: read as one)."""
    import json

    titles = []
    for chart in at.get("plotly_chart"):
        title = json.loads(chart.proto.spec).get("layout", {}).get("title", {})
        text = title.get("text", "") if isinstance(title, dict) else str(title)
        titles.append(text.replace("<br>", " "))
    return titles


def editor_state(values: dict[int, float]) -> dict:
    """The edit state of a keyed st.data_editor that sets `accuracy` in these rows."""
    return {"edited_rows": {i: {"accuracy": float(v)} for i, v in values.items()}, "added_rows": [],
            "deleted_rows": []}


def write_store(path: Path, trajectories, scores: dict, student: str = "smollm2-135m-instruct") -> Path:
    """A results store at `path` holding these trajectories' scores under `student` (as `score --out` writes)."""
    from rsr_core.data.store import StoreWriter, StudentSettings
    from rsr_core.data.tables import trajectory_table

    with StoreWriter(path, StudentSettings(student=student, dtype="float32")) as writer:
        result = writer.append(trajectories, scores, trajectory_table(trajectories, scores, student))
    assert not result.errors, result.errors
    return path


def app_table(at: AppTest):
    """The active student's trajectory table as the app shows it (read from the dataset's stores)."""
    import pandas as pd

    from rsr_core.data.store import ResultsStore, StoreError

    dataset, student = at.session_state["dataset"], at.session_state["student_name"]
    for path in dataset.stores:
        try:
            store = ResultsStore(path)
        except StoreError:
            continue
        if student in store.students():
            return store.trajectory_table(student, r_max=at.session_state["r_max"])
    return pd.DataFrame()
