"""The trajectory table's column contract, shared by every layer: the id and text columns and how a table read
from any file becomes one form (`normalise_table`), correctness values parsed from data (`parse_correct`), and the
problem ids made from prompt text (`normalise_prompt`, `problem_hash`). Pure functions; the ground floor that the
readers, the store and the analyses all build on.
"""
from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pandas as pd

ID_COLUMNS = ["trajectory_id", "problem_id", "teacher", "run", "student"]
TEXT_COLUMNS = ("trajectory_id", "problem_id", "teacher", "student", "source", "prompt")


def normalise_prompt(text: object) -> str:
    """Lower-case prompt text with whitespace collapsed, so the same problem matches across files and teachers;
    '' for a missing value (None, NaN)."""
    if text is None or (isinstance(text, float) and text != text):
        return ""
    return re.sub(r"\s+", " ", str(text)).strip().lower()


def stable_hash(*parts: object, n: int = 16) -> str:
    """Short, stable hex digest of JSON-serialisable parts."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:n]


def problem_hash(prompt: str) -> str:
    """Problem id derived from the prompt text when the data has none."""
    return "p-" + stable_hash(normalise_prompt(prompt), n=12)


CORRECT_TRUE = frozenset({"true", "1", "1.0", "yes", "y", "t", "correct"})
CORRECT_FALSE = frozenset({"false", "0", "0.0", "no", "n", "f", "incorrect", "wrong"})


def parse_correct(value: object) -> bool | None:
    """Correctness of one value: a bool, 0/1, or (any case, outer spaces ignored) true/false, 1/0, yes/no, y/n,
    t/f, correct/incorrect/wrong; None when unknown (None, NaN, NA, '', any other value)."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        try:
            value = value.item()
        except (TypeError, ValueError):
            return None
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value) if value in (0, 1) else None
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    return True if text in CORRECT_TRUE else False if text in CORRECT_FALSE else None


def correct_column(values: pd.Series) -> pd.Series:
    """`parse_correct` of every value of a Series, as pandas 'boolean' (NA where unknown), on the same index."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("boolean")
    codes, uniques = pd.factorize(values)
    parsed = pd.array([parse_correct(v) for v in uniques] + [None], dtype="boolean")
    return pd.Series(parsed[codes], index=values.index)


def text_column(column: pd.Series) -> pd.Series:
    """str values ('' where missing) as an object column."""
    if isinstance(column.dtype, pd.CategoricalDtype):  # each category converted once
        names = np.array([str(c) for c in column.cat.categories] + [""], dtype=object)
        return pd.Series(names[column.cat.codes.to_numpy()], index=column.index, name=column.name, dtype=object)
    if isinstance(column.dtype, pd.StringDtype):  # already str: only the missing ones change
        return pd.Series(column.fillna("").to_numpy(dtype=object), index=column.index, name=column.name, dtype=object)
    values = column.astype(object)
    return values.where(values.notna(), "").astype(str).astype(object)


def normalise_table(table: pd.DataFrame) -> pd.DataFrame:
    """A copy with the id columns as str ('' where missing), `run` as str or None, `correct` as pandas 'boolean'.

    Tables read back from CSV or JSON lose these types (ids like '007' become 7, empty runs become NaN), and
    tables from a results store hold categorical columns; after this, grouping and export behave the same
    whatever the source.
    """
    out = table.copy()
    for col in TEXT_COLUMNS:
        if col in out:
            out[col] = text_column(out[col])
    if "trajectory_id" not in out:
        out["trajectory_id"] = [str(i) for i in range(len(out))]
    if "teacher" not in out:
        out["teacher"] = ""
    if "run" in out:
        runs = text_column(out["run"])
        out["run"] = runs.where(runs != "", None)  # object keeps None (a str dtype would make it NaN)
    else:
        out["run"] = pd.Series([None] * len(out), index=out.index, dtype=object)
    out["correct"] = correct_column(out["correct"]) if "correct" in out \
        else pd.Series(pd.array([pd.NA] * len(out), dtype="boolean"), index=out.index)
    return out


def text_matches(columns: list[pd.Series], text: str) -> np.ndarray:
    """[n] bool: rows where `text` (outer spaces ignored) occurs in any of the columns, case-insensitive, as
    plain text (not a pattern); all True for an empty text. The search boxes of the app's lists."""
    needle = text.strip().lower()
    if not needle or not columns:
        return np.ones(len(columns[0]) if columns else 0, dtype=bool)
    hay = text_column(columns[0]).str.lower()
    for column in columns[1:]:
        hay = hay + " " + text_column(column).str.lower()
    return hay.str.contains(needle, regex=False).to_numpy(bool)
