"""Cached computations of the pages: the teacher report, bootstrap intervals, resampling and the random-selection
baseline are worth keeping per table, once per server process.

The tables come from `rsr_core.ui.results`, shared and identified by a key (store, student, r_max, generation):
the caches are keyed on it, so a 165,000-row table is never hashed or copied, and every session gets the same
read-only result.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor

import pandas as pd
import streamlit as st

from rsr_core.analysis.pools import resolve_pool_by
from rsr_core.analysis.report import teacher_report
from rsr_core.analysis.rule_agreement import RuleComparison, compare_rules
from rsr_core.analysis.selection import (Selection, SelectionSummary, prepare_pools, select_pooled,
                                         selection_summary)
from rsr_core.analysis.teachers import (BudgetSelection, budget_selection, run_table, student_rankings,
                                        teacher_table)
from rsr_core.ui.results import TABLE_KEY, table_key, with_prompts
from rsr_core.ui.selection_widgets import default_rule, problem_rows, rule_student
from rsr_core.ui.teacher_figures import combined_tables

HEAVY_COLUMNS = ("messages", "prompt", "source")
_HASH = {pd.DataFrame: table_key}
_BACKGROUND = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rsr-prepare")  # one computation at a time
_PREPARED: dict[tuple, Future] = {}  # (table key, student) -> its default selection's computation
_PREPARED_LOCK = threading.Lock()
_LATEST: list[tuple | None] = [None]  # the table a page showed last: one still waiting is no longer on screen


def metric_view(table: pd.DataFrame, keep_prompt: bool = False) -> pd.DataFrame:
    """The table without its text columns; with keep_prompt, the prompt stays (pooling by it)."""
    drop = [c for c in HEAVY_COLUMNS if c in table and not (keep_prompt and c == "prompt")]
    if not drop:
        return table
    view = table.drop(columns=drop)
    view.attrs = dict(table.attrs)
    return view


def combined(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Several students' tables (student -> table) as one, `teacher_figures.combined_tables`, keyed by their
    keys; a single non-empty table as it is."""
    frames = {student: t for student, t in tables.items() if t is not None and not t.empty}
    if len(frames) == 1:
        return next(iter(frames.values()))
    out = combined_tables(frames)
    out.attrs = {TABLE_KEY: tuple(table_key(t) for t in frames.values())}
    return out


def report_students(student: str | None, students: list[str]) -> list[str]:
    """The students of the teacher report, in its order: the active one first, then the others with results."""
    return ([student] if student else []) + [s for s in students if s != student]


@st.cache_resource(show_spinner="Computing the teacher report…", max_entries=16, hash_funcs=_HASH)
def _report(table: pd.DataFrame) -> pd.DataFrame:
    return teacher_report(table)


def cached_teacher_report(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """`report.teacher_report` of one or more students' tables (student -> table; the first student's rows
    first)."""
    return _report(metric_view(combined(tables)))


@st.cache_resource(show_spinner="Computing the teacher table…", max_entries=16, hash_funcs=_HASH)
def _teacher_table(view: pd.DataFrame, n_resamples: int, seed: int) -> pd.DataFrame:
    return teacher_table(view, n_resamples=n_resamples, seed=seed)


@st.cache_resource(show_spinner=False, max_entries=16, hash_funcs=_HASH)
def _run_table(view: pd.DataFrame) -> pd.DataFrame:
    return run_table(view)


def cached_run_table(table: pd.DataFrame) -> pd.DataFrame:
    """`teachers.run_table` of a trajectory table, cached per table (a 165,000-row table: a few tenths of a second
    on every rerun of the Teachers page otherwise; shared: do not change it)."""
    return _run_table(metric_view(table))


@st.cache_resource(show_spinner="Resampling teachers…", max_entries=16, hash_funcs=_HASH)
def _budget(view: pd.DataFrame, n_per_teacher: int, top_k: int, n_resamples: int, seed: int) -> BudgetSelection:
    return budget_selection(view, n_per_teacher=n_per_teacher, top_k=top_k, n_resamples=n_resamples, seed=seed)


def cached_teacher_table(table: pd.DataFrame, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """`teachers.teacher_table` of a trajectory table, cached per table."""
    return _teacher_table(metric_view(table), n_resamples, seed)


def cached_budget_selection(table: pd.DataFrame, n_per_teacher: int, top_k: int, n_resamples: int,
                            seed: int = 0) -> BudgetSelection:
    """`teachers.budget_selection`, cached per table and settings."""
    return _budget(metric_view(table), n_per_teacher, top_k, n_resamples, seed)


def cached_student_rankings(table: pd.DataFrame) -> pd.DataFrame:
    """`teachers.student_rankings` of a table holding several students."""
    return student_rankings(cached_teacher_table(table))


@st.cache_resource(show_spinner="Selecting…", max_entries=16, hash_funcs=_HASH)
def _selection(view: pd.DataFrame, settings: tuple, overrides: tuple, student: str | None) -> Selection:
    options = {k: v for k, v in settings if k != "pool_by"}
    return select_pooled(_settings_pools(view, settings, student), **options, overrides=dict(overrides),
                         student=student)


def cached_selection(table: pd.DataFrame, settings: dict, overrides: dict[str, str],
                     student: str | None = None) -> Selection:
    """`select(table, **settings, overrides=..., student=...)`, cached (shared: do not change it)."""
    return _selection(metric_view(table, keep_prompt=True), tuple(sorted(settings.items())),
                      tuple(sorted(overrides.items())), student)


@st.cache_resource(show_spinner=False, max_entries=16, hash_funcs=_HASH)
def _pools(view: pd.DataFrame, student: str | None, pool_by: str) -> pd.DataFrame:
    if resolve_pool_by(view, pool_by) == "prompt":  # a store's table holds no text: its prompts from the store
        view = with_prompts(view)
    return prepare_pools(view, pool_by, student)


def _settings_pools(view: pd.DataFrame, settings: tuple, student: str | None) -> pd.DataFrame:
    """The cached pools of the settings' `pool_by` (the selection settings as `(name, value)` pairs)."""
    return _pools(view, student, dict(settings).get("pool_by", "auto"))


def cached_pools(table: pd.DataFrame, student: str | None, pool_by: str) -> pd.DataFrame:
    """`selection.prepare_pools(table, pool_by, student)`, cached: the selection, its summary and the page share
    it (shared: do not change it)."""
    return _pools(metric_view(table, keep_prompt=True), student, pool_by)


@st.cache_resource(show_spinner=False, max_entries=16, hash_funcs=_HASH)
def _problem_rows(view: pd.DataFrame, settings: tuple, overrides: tuple, student: str | None) -> pd.DataFrame:
    return problem_rows(_settings_pools(view, settings, student), _selection(view, settings, overrides, student),
                        dict(settings)["by"])


def cached_problem_rows(table: pd.DataFrame, settings: dict, overrides: dict[str, str],
                        student: str | None = None) -> pd.DataFrame:
    """`selection_widgets.problem_rows` of the cached pools and selection, cached: every rerun of the Selection
    page needs it, and at 5,000 problems it takes about a second (shared: do not change it)."""
    return _problem_rows(metric_view(table, keep_prompt=True), tuple(sorted(settings.items())),
                         tuple(sorted(overrides.items())), student)


@st.cache_resource(show_spinner="Comparing with random selection…", max_entries=16, hash_funcs=_HASH)
def _summary(view: pd.DataFrame, settings: tuple, overrides: tuple, student: str | None) -> SelectionSummary:
    return selection_summary(view, _selection(view, settings, overrides, student),
                             pooled=_settings_pools(view, settings, student))


def cached_selection_summary(table: pd.DataFrame, settings: dict, overrides: dict[str, str],
                             student: str | None = None) -> SelectionSummary:
    """`selection.selection_summary` of `select(table, **settings, overrides=..., student=...)`, cached.

    settings: the keyword arguments of `select` other than overrides and student (by, mode, seed, ...).
    """
    return _summary(metric_view(table, keep_prompt=True), tuple(sorted(settings.items())),
                    tuple(sorted(overrides.items())), student)


def prepare_default_selection(table: pd.DataFrame, student: str | None) -> Future | None:
    """Compute the Selection page's default selection of `table` (with its summary and problem rows) in the
    background, into the caches the page reads, so that its first opening does not wait for it (0.6 s at 5,000
    problems of 33 candidates). Once per table and student per server process, one table at a time; returns the
    new computation, or None when there is nothing to do. A page that asks for the same result meanwhile waits for
    this computation instead of repeating it. A table still waiting when another is asked for (r_max changed
    again, another student) is skipped, and prepared again if it comes back; the future's result says whether
    it was computed."""
    if table.empty:
        return None
    key = (table_key(table), student)
    with _PREPARED_LOCK:
        _LATEST[0] = key
        if key in _PREPARED:
            return None
        if len(_PREPARED) > 256:  # keys of tables long gone (each r_max and student makes one)
            _PREPARED.clear()
        _PREPARED[key] = future = _BACKGROUND.submit(_prepare, table, student, key)
    return future


def prepared_selection(table: pd.DataFrame, student: str | None) -> Future | None:
    """The computation `prepare_default_selection` started for this table and student, if any."""
    return _PREPARED.get((table_key(table), student))


def _prepare(table: pd.DataFrame, student: str | None, key: tuple) -> bool:
    with _PREPARED_LOCK:
        if _LATEST[0] != key:  # superseded before its turn came
            _PREPARED.pop(key, None)
            return False
    settings = tuple(sorted(default_rule(table).items()))
    _compute_default_selection(table, settings, rule_student(table, student))
    return True


@st.cache_resource(show_spinner=False, max_entries=1, hash_funcs=_HASH)
def _compute_default_selection(table: pd.DataFrame, settings: tuple, student: str | None) -> None:
    # cached itself only so that the caches it fills see a nested call and draw no spinner (no page is there)
    try:
        cached_problem_rows(table, dict(settings), {}, student)  # the pools and the selection on the way
        cached_selection_summary(table, dict(settings), {}, student)
    except ValueError:
        pass  # the page computes it again and says what is wrong (e.g. ambiguous pools)


@st.cache_resource(show_spinner="Comparing the selection rules…", max_entries=16, hash_funcs=_HASH)
def _rule_comparison(view: pd.DataFrame, student: str | None, pool_by: str, seed: int) -> RuleComparison:
    return compare_rules(_pools(view, student, pool_by), seed=seed)


def cached_rule_comparison(table: pd.DataFrame, student: str | None, pool_by: str = "auto",
                           seed: int = 0) -> RuleComparison:
    """`rule_agreement.compare_rules` of the table's pools (the Selection page's cached pools, LARK's g_hat
    computed over them), cached per table, pooling and seed (shared: do not change it)."""
    return _rule_comparison(metric_view(table, keep_prompt=True), student, pool_by, seed)
