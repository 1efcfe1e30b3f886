"""Candidate pools: the trajectories of every teacher and run that answer the same problem.

A pool is keyed by the problem id when every row of the table has one, else by the normalised prompt text
(lower-case, whitespace collapsed), so the whole table is pooled one consistent way. Pure functions of the
trajectory table (one row per trajectory; the columns of `rsr_core.analysis.table`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from rsr_core.analysis.table import normalise_prompt, normalise_table, problem_hash, text_column

POOL_BY = ("auto", "problem_id", "prompt")


def students_of(table: pd.DataFrame) -> list[str]:
    """The distinct non-empty student names of a table, sorted ([] without a `student` column)."""
    if "student" not in table:
        return []
    return sorted(set(text_column(table["student"]).unique()) - {""})


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
    """`normalise_prompt` of every value, computed once per distinct prompt."""
    texts = text_column(prompts)
    return texts.map({p: normalise_prompt(p) for p in texts.unique()})


def resolve_pool_by(table: pd.DataFrame, by: str = "auto") -> str:
    """'problem_id' or 'prompt': what `by='auto'` means for this table (problem ids when every row has one)."""
    if by not in POOL_BY:
        raise ValueError(f"pool_by must be one of {POOL_BY}, not {by!r}")
    if by != "auto":
        return by
    if "problem_id" in table and len(table) and (text_column(table["problem_id"]) != "").all():
        return "problem_id"
    return "prompt"


def assign_pools(table: pd.DataFrame, by: str = "auto") -> pd.DataFrame:
    """The normalised table with a `pool_id` column: the problem id, or `problem_hash` of the prompt (the id a
    reader gives a problem without one).

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
        keys = {p: problem_hash(p) for p in out["prompt"].unique()}
        out["pool_id"] = out["prompt"].map(keys)
    out.attrs["pool_by"] = mode
    return out


def sort_codes(values: pd.Series) -> np.ndarray:
    """[n] integers that sort as the strings do (dense ranks in code-point order; Arrow sorts UTF-8 bytes, the
    same order): sorting 165,000 ids by these is a numpy sort, not a sort of Python strings."""
    return pc.rank(pa.array(values.astype(str), pa.string()), sort_keys="ascending", tiebreaker="dense").to_numpy()


def pool_summary(pooled: pd.DataFrame) -> pd.DataFrame:
    """One row per pool: pool_id, n_candidates, n_teachers, n_correct, n_known_correct, n_prompts, n_incomplete.

    `n_prompts` > 1 means the pool's candidates carry different prompt texts: a sign that the problem ids are
    not shared across files (record numbers, say) and that pooling by prompt is the right choice.
    """
    frame = pooled.assign(
        _correct=pooled["correct"].fillna(False).astype(bool),
        _known=pooled["correct"].notna(),
        _incomplete=(~pooled["complete"].astype("boolean").fillna(True).astype(bool)) if "complete" in pooled
        else False,
        _prompt=_normalised_prompts(pooled["prompt"]) if "prompt" in pooled else "",
    )
    grouped = frame.groupby("pool_id", sort=True)
    return pd.DataFrame({
        "n_candidates": grouped.size(),
        "n_teachers": grouped["teacher"].nunique(),
        "n_correct": grouped["_correct"].sum().astype(int),
        "n_known_correct": grouped["_known"].sum().astype(int),
        "n_prompts": grouped["_prompt"].nunique(),
        "n_incomplete": grouped["_incomplete"].sum().astype(int),
    }).reset_index()
