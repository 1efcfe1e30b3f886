"""Start the app (`streamlit run app.py`) with its modules imported before the server starts.

Streamlit imports what a script needs during the first browser session's first run: pandas, pyarrow, plotly and
the app's own modules, about a second on a small machine, which the first visitor waits for. Started through
`serve`, the server has them already (`python -m rsr_core app`, `make app`).
"""
from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app.py"
PRELOAD = ("pandas", "pyarrow.dataset", "plotly.graph_objects", "rsr_core.ui.layout", "rsr_core.ui.navigation",
           "rsr_core.ui.sidebar", "rsr_core.ui.analysis_cache", "rsr_core.ui.inspector", "rsr_core.ui.teacher_figures",
           "rsr_core.ui.selection_widgets")


def preload() -> list[str]:
    """Import the modules the app's pages need (never torch: the engine loads when something is scored)."""
    import streamlit  # noqa: F401  (first: importing it sets its loggers' levels)

    quiet = logging.getLogger("streamlit.runtime.caching.cache_data_api")  # "no runtime" while decorators check
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        for name in PRELOAD:
            importlib.import_module(name)
    finally:
        quiet.setLevel(level)
    return list(PRELOAD)


def serve(options: list[str]) -> int:
    """`streamlit run app.py OPTIONS` in this process, after `preload`; returns when the server stops."""
    preload()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(APP), *options]
    return int(cli.main(standalone_mode=False) or 0)
