"""The bundled demo pool for the app, cached per process (see `rsr_core.data.demo`)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from rsr_core.data import demo
from rsr_core.data.formats import RecordError, read_trajectories
from rsr_core.data.token_scores import TokenScores
from rsr_core.data.trajectory import Trajectory


@st.cache_data(show_spinner=False)
def load_demo_scores(student_name: str | None = None) -> tuple[pd.DataFrame, dict[str, TokenScores]]:
    """(trajectory table at r_max = 100, {trajectory_id: TokenScores}) of the demo pool under a student
    (None: the default one). Raises FileNotFoundError when its precomputed files are missing."""
    return demo.load_demo_scores(student_name)


@st.cache_data(show_spinner=False)
def demo_trajectories() -> tuple[list[Trajectory], list[RecordError]]:
    """The demo pool's trajectories (what a Score run under another student scores)."""
    return read_trajectories(demo.CANDIDATES)
