"""Candidate pools: the trajectories of every teacher and run that answer the same problem.

A pool is keyed by the problem id when every row of the table has one, else by the normalised prompt text
(lower-case, whitespace collapsed), so the whole table is pooled one consistent way. Pure functions of the
trajectory table (one row per trajectory; the columns are those `rsr_core.data.tables.trajectory_table` writes).
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd

from rsr_core.data.tables import read_table as _read_any_table
from rsr_core.data.trajectory import normalise_prompt as _normalise_text

POOL_BY = ("auto", "problem_id", "prompt")
_WS = re.compile(r"\s+")
_TRUE = {"true", "1", "yes", "y", "t", "correct"}
_FALSE = {"false", "0", "no", "n", "f", "incorrect", "wrong"}
_TEXT_COLUMNS = ("trajectory_id", "problem_id", "teacher", "student", "source", "prompt")


def normalise_prompt(text: object) -> str:
    """`rsr_core.data.trajectory.normalise_prompt`, with '' for a missing value."""
    if text is None or (isinstance(text, float) and text != text):
        return ""
    return _normalise_text(str(text))


def _missing(value: object) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _as_correct(value: object) -> object:
    """bool, or pd.NA where correctness is unknown (None, NaN, '', unrecognised text)."""
    if _missing(value):
        return pd.NA
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return bool(value)
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else pd.NA


def _text_column(column: pd.Series) -> pd.Series:
    """str values ('' where missing) as an object column."""
    values = column.astype(object)
    return values.where(values.notna(), "").astype(str).astype(object)


def _correct_column(column: pd.Series) -> pd.Series:
    """pandas 'boolean' with NA for unknown; a bool or 'boolean' column is taken as it is."""
    if pd.api.types.is_bool_dtype(column):
        return column.astype("boolean")
    lookup = {v: _as_correct(v) for v in column.dropna().unique()}
    return pd.Series(pd.array([lookup.get(v, pd.NA) if not _missing(v) else pd.NA for v in column],
                              dtype="boolean"), index=column.index)


def normalise_table(table: pd.DataFrame) -> pd.DataFrame:
    """A copy with the id columns as str ('' where missing), `run` as str or None, `correct` as pandas 'boolean'.

    Tables read back from CSV or JSON lose these types (ids like '007' become 7, empty runs become NaN); every
    function here calls this first so that grouping and export behave the same whatever the file format.
    """
    out = table.copy()
    for col in _TEXT_COLUMNS:
        if col in out:
            out[col] = _text_column(out[col])
    if "trajectory_id" not in out:
        out["trajectory_id"] = [str(i) for i in range(len(out))]
    if "teacher" not in out:
        out["teacher"] = ""
    if "run" in out:
        runs = _text_column(out["run"])
        out["run"] = runs.where(runs != "", None)  # object keeps None (a str dtype would make it NaN)
    else:
        out["run"] = pd.Series([None] * len(out), index=out.index, dtype=object)
    out["correct"] = _correct_column(out["correct"]) if "correct" in out \
        else pd.Series(pd.array([pd.NA] * len(out), dtype="boolean"), index=out.index)
    return out


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a trajectory table written as Parquet, CSV, JSONL or JSON, normalised with `normalise_table`."""
    return normalise_table(_read_any_table(path))


def students_of(table: pd.DataFrame) -> list[str]:
    """The distinct non-empty student names of a table, sorted ([] without a `student` column)."""
    if "student" not in table:
        return []
    return sorted(set(_text_column(table["student"]).unique()) - {""})


def for_student(table: pd.DataFrame, student: str | None = None) -> pd.DataFrame:
    """The rows scored under `student`; with `student=None`, the table itself when it holds at most one student.

    A table may hold the same trajectories scored under several students; pooling them together would compare
    numbers from different students, so that is refused with the list of students to choose from.
    """
    names = students_of(table)
    if student is None:
        if len(names) > 1:
            raise ValueError(f"the table holds scores under {len(names)} students ({', '.join(names)}); "
                             "choose one")
        return table
    if student not in names:
        raise ValueError(f"no student {student!r} in the table (students: {', '.join(names) or 'none'})")
    return table[table["student"].astype(str) == student]


def _normalised_prompts(prompts: pd.Series) -> pd.Series:
    """`normalise_prompt` of every value, vectorised."""
    return _text_column(prompts).str.replace(_WS, " ", regex=True).str.strip().str.lower()


def _prompt_key(text: object) -> str:
    return "prompt-" + hashlib.sha1(normalise_prompt(text).encode("utf-8")).hexdigest()[:16]


def resolve_pool_by(table: pd.DataFrame, by: str = "auto") -> str:
    """'problem_id' or 'prompt': what `by='auto'` means for this table (problem ids when every row has one)."""
    if by not in POOL_BY:
        raise ValueError(f"pool_by must be one of {POOL_BY}, not {by!r}")
    if by != "auto":
        return by
    if "problem_id" in table and len(table) and (_text_column(table["problem_id"]) != "").all():
        return "problem_id"
    return "prompt"


def assign_pools(table: pd.DataFrame, by: str = "auto") -> pd.DataFrame:
    """The normalised table with a `pool_id` column (the problem id, or 'prompt-' + a hash of the normalised prompt).

    by: 'auto' (problem id when every row has one, else prompt), 'problem_id' or 'prompt'.
    """
    out = normalise_table(table)
    mode = resolve_pool_by(out, by)
    if mode == "problem_id":
        if (out["problem_id"] == "").any():
            raise ValueError("pool_by='problem_id' but some rows have no problem_id; use 'prompt' or 'auto'")
        out["pool_id"] = out["problem_id"]
    else:
        if "prompt" not in out:
            raise ValueError("pooling by prompt needs a 'prompt' column")
        keys = {p: _prompt_key(p) for p in out["prompt"].unique()}
        out["pool_id"] = out["prompt"].map(keys)
    out.attrs["pool_by"] = mode
    return out


def pool_summary(pooled: pd.DataFrame) -> pd.DataFrame:
    """One row per pool: pool_id, n_candidates, n_teachers, n_correct, n_known_correct, n_prompts.

    `n_prompts` > 1 means the pool's candidates carry different prompt texts: a sign that the problem ids are
    not shared across files (record numbers, say) and that pooling by prompt is the right choice.
    """
    frame = pooled.assign(
        _correct=pooled["correct"].fillna(False).astype(bool),
        _known=pooled["correct"].notna(),
        _prompt=_normalised_prompts(pooled["prompt"]) if "prompt" in pooled else "",
    )
    grouped = frame.groupby("pool_id", sort=True)
    return pd.DataFrame({
        "n_candidates": grouped.size(),
        "n_teachers": grouped["teacher"].nunique(),
        "n_correct": grouped["_correct"].sum().astype(int),
        "n_known_correct": grouped["_known"].sum().astype(int),
        "n_prompts": grouped["_prompt"].nunique(),
    }).reset_index()
