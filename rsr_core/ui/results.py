"""The results every session reads, held once per server process and shared read-only (`st.cache_resource`).

A results store (`rsr_core.data.store`) is opened once; a student's trajectory table is read once per store
generation (a writer's commit makes a new one) and its rank aggregates give the table at any other r_max without
reading a token. Per-token data and conversations are read only for the trajectories on screen, a few hundred
kept. Nothing here is copied into a session: callers must treat what they get as read-only.
"""
from __future__ import annotations


import pandas as pd
import streamlit as st

from rsr_core.analysis import aggregates as agg
from rsr_core.analysis.part_aggregates import PartAggregates
from rsr_core.data.store import ResultsStore, StoreError
from rsr_core.data.token_scores import TokenScores

TABLE_KEY = "rsr_key"  # table.attrs[TABLE_KEY]: identifies a shared table (analysis caches key on it)


@st.cache_resource(show_spinner=False, max_entries=16)
def store(path: str) -> ResultsStore:
    """The results store at `path`, opened once per process."""
    return ResultsStore(path)


def students(path: str) -> list[str]:
    """Students with results in the store at `path` ([] when there is no store there yet)."""
    try:
        return store(path).students()
    except (StoreError, OSError):
        return []


def problems(path: str) -> list[str]:
    """What keeps results of the store at `path` from being read (`ResultsStore.problems`); [] for no store."""
    try:
        return store(path).problems()
    except (StoreError, OSError):
        return []


def generation(path: str, student: str) -> int:
    """Grows with every commit of the student's results (a reader reloads then)."""
    return store(path).generation(student)


@st.cache_resource(show_spinner="Reading the trajectory table…", max_entries=8)
def _stored_table(path: str, student: str, gen: int) -> pd.DataFrame:
    return store(path).trajectory_table(student)


@st.cache_resource(show_spinner="Reading the rank aggregates…", max_entries=4)
def _aggregates(path: str, student: str, gen: int) -> list[agg.RankAggregates]:
    return store(path).rank_aggregate_parts(student)


@st.cache_resource(show_spinner=False, max_entries=4)
def _part_aggregates(path: str, student: str, gen: int) -> list[PartAggregates]:
    return store(path).part_aggregate_parts(student)


@st.cache_resource(show_spinner=False, max_entries=12)
def _table(path: str, student: str, r_max: int, gen: int) -> pd.DataFrame:
    stored = _stored_table(path, student, gen)
    if r_max == store(path).settings(student).r_max:
        frame = stored.copy(deep=False)
    else:
        frame = agg.table_at_r_max(stored, _aggregates(path, student, gen), r_max,
                                   _part_aggregates(path, student, gen))
    frame.attrs[TABLE_KEY] = (path, student, int(r_max), gen)
    return frame


def table(path: str, student: str, r_max: int) -> pd.DataFrame:
    """The student's trajectory table at r_max (no conversation text), shared by every session: do not change it."""
    return _table(path, student, int(r_max), generation(path, student))


@st.cache_resource(show_spinner=False, max_entries=12)
def _row_index(path: str, student: str, gen: int) -> dict[str, int]:
    ids = _stored_table(path, student, gen)["trajectory_id"]
    return {tid: k for k, tid in enumerate(ids.tolist())}


def row_index(path: str, student: str) -> dict[str, int]:
    """{trajectory_id: row} of the student's table (every r_max shares the row order)."""
    return _row_index(path, student, generation(path, student))


@st.cache_resource(show_spinner=False, max_entries=256)
def _token_scores(path: str, student: str, tid: str, gen: int) -> TokenScores:
    return store(path).token_scores(student, tid)


def token_scores(path: str, student: str, tid: str) -> TokenScores | None:
    """One trajectory's per-token results, or None when the store holds none for it."""
    try:
        return _token_scores(path, student, tid, generation(path, student))
    except (KeyError, StoreError):
        return None


@st.cache_resource(show_spinner=False, max_entries=256)
def conversation(path: str, tid: str) -> dict:
    """One trajectory's conversation: {trajectory_id, prompt, messages, source, record}."""
    return store(path).conversation(tid)


@st.cache_resource(show_spinner=False, max_entries=8)
def _scored_ids(path: str, student: str, gen: int) -> frozenset[str]:
    return frozenset(store(path).scored_ids(student))


def scored_ids(path: str, student: str) -> frozenset[str]:
    return _scored_ids(path, student, generation(path, student))


@st.cache_resource(show_spinner=False, max_entries=8)
def _unscored(path: str, stamp: tuple, student_path: str | None, student: str, gen: int) -> tuple[list[str], int]:
    done = store(student_path).scored_index(student) if student_path else frozenset()
    return store(path).unscored_ids(done)


def unscored_ids(path: str, student_path: str | None, student: str) -> tuple[list[str], int]:
    """(ids of the conversations in the store at `path` without results of `student`, whose results are in the
    store at `student_path` (None: nowhere yet), sorted; how many conversations there are). Shared, do not
    change the list."""
    gen = generation(student_path, student) if student_path else -1
    return _unscored(path, store(path).conversations_stamp(), student_path, student, gen)


@st.cache_resource(show_spinner="Reading the prompts…", max_entries=2)
def _prompts(path: str, stamp: tuple) -> pd.Series:
    return store(path).conversation_column("prompt")


def with_prompts(frame: pd.DataFrame) -> pd.DataFrame:
    """A shared table (or a part of one) with the `prompt` of each row from its store's conversations (read once
    per process, when a page first pools by prompt); a frame that has prompts, or no store, as it is."""
    key = frame.attrs.get(TABLE_KEY)
    while isinstance(key, tuple) and key and isinstance(key[0], tuple):  # several students' tables together
        key = key[0]
    if "prompt" in frame or not isinstance(key, tuple) or not key:
        return frame
    path = key[0]
    prompts = _prompts(path, store(path).conversations_stamp())
    out = frame.assign(prompt=prompts.reindex(frame["trajectory_id"].astype(str)).to_numpy())
    out.attrs = dict(frame.attrs)
    return out


def table_key(frame: pd.DataFrame) -> object:
    """What identifies a shared table, a concatenation of them or a part of one, for the analysis caches: the
    source's key (pandas carries `attrs` into filtered frames) plus which rows and columns it holds."""
    key = frame.attrs.get(TABLE_KEY)
    if key is None:
        return ("content", int(pd.util.hash_pandas_object(frame.astype(str), index=True).sum()))
    rows = int(pd.util.hash_array(frame.index.to_numpy()).sum()) if len(frame) else 0
    return key, len(frame), rows, tuple(frame.columns)
