"""The bundled demo pool for the app, read once per process and shared (see `rsr_core.data.demo`)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from rsr_core.data import demo
from rsr_core.data.formats import RecordError, read_trajectories
from rsr_core.data.token_scores import TokenScores
from rsr_core.data.trajectory import Trajectory


@st.cache_resource(show_spinner=False)
def load_demo_scores(student_name: str | None = None) -> tuple[pd.DataFrame, dict[str, TokenScores]]:
    """(trajectory table at r_max = 100, {trajectory_id: TokenScores}) of the demo pool under a student
    (None: the default one), shared read-only. Raises FileNotFoundError when there are no precomputed scores."""
    return demo.load_demo(student_name or demo.DEFAULT_STUDENT)


@st.cache_resource(show_spinner=False)
def demo_trajectories() -> tuple[list[Trajectory], list[RecordError]]:
    """The demo pool's trajectories (what a Score run under another student scores), shared read-only."""
    return read_trajectories(demo.CANDIDATES)
