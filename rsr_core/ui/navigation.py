"""The app's pages: one registry that `app.py` turns into `st.navigation` and the overview turns into links.

Add a page by adding a `PageSpec`; an optional page is listed only when its file exists.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rsr_core.data.paths import PROJECT_ROOT


@dataclass(frozen=True)
class PageSpec:
    path: str  # relative to the project root (where app.py is)
    title: str
    icon: str
    summary: str  # one line for the overview's links
    default: bool = False
    optional: bool = True  # listed only when the file exists


PAGES = (
    PageSpec("pages/overview.py", "Overview", ":material/home:", "what RSR is and the dataset's teachers",
             default=True, optional=False),
    PageSpec("pages/inspector.py", "Inspector", ":material/search:",
             "one trajectory token by token: why its RSR is what it is", optional=False),
    PageSpec("pages/zone.py", "The zone", ":material/school:",
             "the idea behind RSR: the zone of proximal development"),
    PageSpec("pages/teachers.py", "Teachers", ":material/groups:", "compare teachers for one student"),
    PageSpec("pages/selection.py", "Selection", ":material/checklist:",
             "pick one trajectory per problem and export it"),
    PageSpec("pages/metrics.py", "Metrics", ":material/compare_arrows:",
             "RSR against LARK and the other rules: where they agree, where they part"),
    PageSpec("pages/validation.py", "Validation", ":material/insights:",
             "RSR against the paper's published results"),
)


def available_pages(root: Path = PROJECT_ROOT) -> list[PageSpec]:
    """The pages to show: the required ones and every optional one whose file exists."""
    return [p for p in PAGES if not p.optional or (root / p.path).is_file()]


def ensure_app_runs() -> None:
    """Call first in every page file: make sure app.py (navigation, shared sidebar, state) runs around the page.

    A server whose main script has a `pages/` folder beside it starts in Streamlit's legacy multipage mode, which
    runs a page file *alone* when its URL (e.g. /inspector) is the first one opened in the process; `st.navigation`
    in app.py switches that mode off, but only once app.py has run. So a page run alone switches it off itself and
    reruns: the rerun executes app.py, which runs the same page (same URL, same page hash) with the sidebar.
    """
    import streamlit as st

    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a Streamlit without this internal: nothing to fix
        return
    if getattr(PagesManager, "uses_pages_directory", None):
        PagesManager.uses_pages_directory = False
        st.rerun()
