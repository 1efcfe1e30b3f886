"""Cached computations of the Teachers, Selection and Validation pages: bootstrap intervals, resampling and the
random-selection baseline are worth keeping per table.

Only the columns they need are passed to the cache, so hashing a table never reads the conversations.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from rsr_core.analysis.selection import SelectionSummary, select, selection_summary
from rsr_core.analysis.teachers import BudgetSelection, budget_selection, student_rankings, teacher_table

HEAVY_COLUMNS = ("messages", "prompt", "source")


def metric_view(table: pd.DataFrame, keep_prompt: bool = False) -> pd.DataFrame:
    """The table without its text columns (cheap to hash); with keep_prompt, the prompt stays (pooling by it)."""
    return table.drop(columns=[c for c in HEAVY_COLUMNS if c in table and not (keep_prompt and c == "prompt")])


@st.cache_data(show_spinner="Computing the teacher table…", max_entries=16)
def _teacher_table(view: pd.DataFrame, n_resamples: int, seed: int) -> pd.DataFrame:
    return teacher_table(view, n_resamples=n_resamples, seed=seed)


@st.cache_data(show_spinner="Resampling teachers…", max_entries=16)
def _budget(view: pd.DataFrame, n_per_teacher: int, top_k: int, n_resamples: int, seed: int) -> BudgetSelection:
    return budget_selection(view, n_per_teacher=n_per_teacher, top_k=top_k, n_resamples=n_resamples, seed=seed)


def cached_teacher_table(table: pd.DataFrame, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """`teachers.teacher_table` of a trajectory table, cached per table content."""
    return _teacher_table(metric_view(table), n_resamples, seed)


def cached_budget_selection(table: pd.DataFrame, n_per_teacher: int, top_k: int, n_resamples: int,
                            seed: int = 0) -> BudgetSelection:
    """`teachers.budget_selection`, cached per table content and settings."""
    return _budget(metric_view(table), n_per_teacher, top_k, n_resamples, seed)


def cached_student_rankings(table: pd.DataFrame) -> pd.DataFrame:
    """`teachers.student_rankings` of a table holding several students."""
    return student_rankings(cached_teacher_table(table))


@st.cache_data(show_spinner="Comparing with random selection…", max_entries=16)
def _summary(view: pd.DataFrame, settings: tuple, overrides: tuple, student: str | None) -> SelectionSummary:
    selection = select(view, **dict(settings), overrides=dict(overrides), student=student)
    return selection_summary(view, selection)


def cached_selection_summary(table: pd.DataFrame, settings: dict, overrides: dict[str, str],
                             student: str | None = None) -> SelectionSummary:
    """`selection.selection_summary` of `select(table, **settings, overrides=..., student=...)`, cached.

    settings: the keyword arguments of `select` other than overrides and student (by, mode, seed, ...).
    """
    return _summary(metric_view(table, keep_prompt=True), tuple(sorted(settings.items())),
                    tuple(sorted(overrides.items())), student)
