"""`python -m rsr_core app [STREAMLIT OPTIONS]`: the app, as `streamlit run app.py`, with its modules imported
before the server starts (`rsr_core.ui.launch`). Every option is passed on to `streamlit run` (e.g.
`--server.port 8502`)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "Any other option is passed on to `streamlit run`, e.g. --server.port 8502."
    parser.set_defaults(_passes_on=True)


def run(args: argparse.Namespace) -> int:
    from rsr_core.ui.launch import serve

    return serve(args.passed_on)
