"""A trajectory table from wherever the scores are kept: a flat table (`score --out X.parquet`) or a results store
(`score --out STORE`), for the commands that analyse scores (`report`, `teachers`, `select`, `export`).

A store gives its metric columns only (read lazily, no conversation text): what the reports need. The text is
added where a command needs it and only for those rows: the prompts to pool by prompt (`with_prompts`, one column
of the conversations), the conversations of the selected trajectories to export them (`with_conversations`).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from rsr_core.data.store import CONVERSATION_COLUMNS, ResultsStore, StoreError
from rsr_core.data.tables import read_trajectory_table
from rsr_core.analysis.table import normalise_table


def is_store(path: str | Path) -> bool:
    """Whether `path` is a results store (a folder with store.json)."""
    return (Path(path) / "store.json").is_file()


def store_student(store: ResultsStore, student: str | None) -> str:
    """The student whose results to read: the one named, else the store's only one; ValueError naming the choices
    (and what keeps damaged ones from being read) otherwise."""
    names = store.students()
    damaged = store.problems()
    why = (" " + " ".join(damaged)) if damaged else ""
    if student is not None:
        if student not in names:
            raise ValueError(f"{store.root} holds no results of student {student!r} (students: "
                             f"{', '.join(names) or 'none'}).{why}")
        return student
    if len(names) == 1:
        return names[0]
    if not names:
        raise ValueError(f"{store.root} holds no results yet.{why}")
    raise ValueError(f"{store.root} holds the results of {len(names)} students ({', '.join(names)}); choose one with "
                     "--student")


def read_scores(path: str | Path, student: str | None = None, r_max: int | None = None) -> pd.DataFrame:
    """The trajectory table of a flat file, or of one student of a store (at `r_max`, exact from its aggregates;
    the store's own r_max by default), normalised (`tables.normalise_table`). A store's table carries its path in
    `attrs["store"]`. ValueError (StoreError for a damaged store) with a message naming the path otherwise."""
    path = Path(path)
    if path.is_dir() and not is_store(path):
        raise ValueError(f"{path} is a folder but not an RSR Explorer results store (no store.json); give a "
                         "trajectory table (.parquet, .csv, .jsonl) or a store written by `score --out FOLDER`")
    if not is_store(path):
        return read_trajectory_table(path)
    store = ResultsStore(path)
    name = store_student(store, student)
    table = normalise_table(store.trajectory_table(name, r_max=r_max))
    table.attrs["store"] = str(path)
    return table


def with_prompts(table: pd.DataFrame) -> pd.DataFrame:
    """A store's table with the prompt of every row (to pool by prompt text); a flat table as it is."""
    if "prompt" in table or "store" not in table.attrs:
        return table
    prompts = ResultsStore(table.attrs["store"]).conversation_column("prompt")
    out = table.assign(prompt=prompts.reindex(table["trajectory_id"].astype(str)).to_numpy())
    out.attrs = dict(table.attrs)
    return out


def with_conversations(rows: pd.DataFrame, store_path: str | Path | None = None) -> pd.DataFrame:
    """Rows of a store's table with their conversations (prompt, messages, source, record, tools), read for those
    rows only (a selection to export); rows that have them already stay as they are."""
    path = store_path or rows.attrs.get("store")
    if path is None or "messages" in rows or rows.empty:
        return rows
    try:
        conv = ResultsStore(path).conversations(rows["trajectory_id"].astype(str)).drop(columns="trajectory_id")
    except KeyError as e:
        raise StoreError(f"{path}: {e.args[0]}") from None
    keep = rows.drop(columns=[c for c in CONVERSATION_COLUMNS if c in rows]).reset_index(drop=True)
    out = pd.concat([keep, conv.reset_index(drop=True)], axis=1)
    out.attrs = dict(rows.attrs)
    return out
