"""`python -m rsr_core app [STREAMLIT OPTIONS]`: the app, as `streamlit run app.py`, with its modules imported
before the server starts.

Streamlit imports what a script needs during the first browser session's first run: pandas, pyarrow, plotly and
the app's own modules, about a second on a small machine, which the first visitor waits for. Started this way,
the server has them already. Every option is passed on to `streamlit run` (e.g. `--server.port 8502`).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app.py"
PRELOAD = ("pandas", "pyarrow.dataset", "plotly.graph_objects", "rsr_core.ui.layout", "rsr_core.ui.navigation",
           "rsr_core.ui.sidebar", "rsr_core.ui.analysis_cache", "rsr_core.ui.inspector", "rsr_core.ui.teacher_figures",
           "rsr_core.ui.selection_widgets")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "Any other option is passed on to `streamlit run`, e.g. --server.port 8502."
    parser.set_defaults(_passes_on=True)


def preload() -> list[str]:
    """Import the modules the app's pages need (never torch: the engine loads when something is scored)."""
    importlib.import_module("streamlit")  # its loggers first: importing it sets their levels
    quiet = logging.getLogger("streamlit.runtime.caching.cache_data_api")  # "no runtime" while decorators check
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        for name in PRELOAD:
            importlib.import_module(name)
    finally:
        quiet.setLevel(level)
    return list(PRELOAD)


def run(args: argparse.Namespace) -> int:
    preload()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(APP), *args.passed_on]
    return int(cli.main(standalone_mode=False) or 0)
