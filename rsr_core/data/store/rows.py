"""Stored rows back into objects, for the reader: the id indexes (trajectory id -> where its rows are) and what is
cached with a student's manifest, a trajectory's token rows as `TokenScores`, the trajectory table as a compact
pandas frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rsr_core.data.store.layout import INDEX_COLUMNS
from rsr_core.data.token_scores import TokenScores


class _IdIndex:
    """trajectory_id -> a row of integer columns (where its data is), with lookups in microseconds."""

    def __init__(self, ids: Sequence[str] | pd.Series, columns: dict[str, np.ndarray], parts: list[str]):
        self.ids = pd.Index(ids)
        self.columns = columns  # name -> [n] int array; "part" holds positions in `parts`
        self.parts = parts

    @classmethod
    def concat(cls, pieces: list[tuple[pa.Array, dict[str, np.ndarray]]], parts: list[str]) -> "_IdIndex":
        """One piece (ids, columns) per part, in the order of `parts`."""
        names = {name for _, cols in pieces for name in cols}
        ids = pa.concat_arrays([i.cast(pa.string()) for i, _ in pieces]) if pieces else pa.array([], pa.string())
        columns = {name: np.concatenate([cols[name] for _, cols in pieces]) if pieces else np.zeros(0, np.int64)
                   for name in names}
        columns["part"] = (np.concatenate([np.full(len(i), k, np.int32) for k, (i, _) in enumerate(pieces)])
                           if pieces else np.zeros(0, np.int32))
        return cls(ids.to_pandas(), columns, parts)

    def __contains__(self, trajectory_id: str) -> bool:
        return trajectory_id in self.ids

    def row(self, trajectory_id: str) -> dict:
        """{column: value} of one id (the last one if it were there twice); KeyError if absent."""
        pos = self.ids.get_loc(trajectory_id)
        if not isinstance(pos, (int, np.integer)):  # never written twice, but read defensively
            pos = np.flatnonzero(np.asarray(pos))[-1] if isinstance(pos, np.ndarray) else pos.stop - 1
        out = {name: values[pos].item() for name, values in self.columns.items()}
        out["part"] = self.parts[out["part"]]
        return out


@dataclass
class _StudentState:
    stamp: tuple
    manifest: dict
    index: _IdIndex | None = None  # trajectory_id -> part, _row_group, _offset, _length, truncated, n_context
    vocab: np.ndarray | None = None  # [V] object: token id -> text


def _student_index(folder: Path, parts: list[dict]) -> _IdIndex:
    """The id index of a student's parts (in `folder`): part, _row_group, _offset, _length, truncated, n_context."""
    pieces = []
    for p in parts:
        t = pq.read_table(folder / f"{p['id']}.meta.parquet",
                          columns=["trajectory_id", *INDEX_COLUMNS, "truncated", "n_context"])
        pieces.append((t.column(0).combine_chunks(),
                       {n: t.column(n).to_numpy() for n in t.column_names[1:]}))
    return _IdIndex.concat(pieces, [p["id"] for p in parts])


def _conversation_index(folder: Path, parts: list[dict]) -> _IdIndex:
    """The id index of the conversations' parts (in `folder`): part, row_group, row."""
    pieces = []
    for p in parts:
        f = pq.ParquetFile(folder / f"{p['id']}.parquet")
        sizes = [f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)]
        ids = f.read(columns=["trajectory_id"]).column(0).combine_chunks()
        f.close()
        pieces.append((ids, {
            "row_group": np.repeat(np.arange(len(sizes), dtype=np.int32), sizes),
            "row": (np.concatenate([np.arange(n, dtype=np.int32) for n in sizes]) if sizes
                    else np.zeros(0, np.int32))}))
    return _IdIndex.concat(pieces, [p["id"] for p in parts])


def _compact_frame(table: pa.Table) -> pd.DataFrame:
    """A pandas frame of the trajectory table that stays small for 165,000 rows: repeated strings categorical,
    the rest Arrow-backed strings; nullable booleans and integers keep their nulls."""
    columns = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_null(col.type):
            col = col.cast(pa.string())
            repeated = pc.count_distinct(col, mode="all").as_py() <= max(1, len(col) // 2)
            columns[name] = (pd.Categorical(col.to_pandas()) if name != "trajectory_id" and repeated
                             else col.to_pandas())
        elif pa.types.is_boolean(col.type):
            nullable = col.null_count or name == "correct"  # as trajectory_table: correctness may be unknown
            columns[name] = col.to_pandas().astype("boolean" if nullable else bool)
        elif pa.types.is_integer(col.type) and col.null_count:
            columns[name] = col.to_pandas().astype("Int64")
        else:
            columns[name] = col.to_pandas()
    return pd.DataFrame(columns)


def _token_scores(rows: pa.Table | None, k: int, texts: list[str], vocab: np.ndarray, truncated: bool,
                  n_context: int) -> TokenScores:
    """TokenScores from one trajectory's token rows ([T] rows; None for a trajectory with no tokens)."""
    if rows is None:
        e = np.zeros(0)
        return TokenScores(token_ids=e.astype(np.int64), tokens=[], offsets=np.zeros((0, 2), np.int64),
                           turn=e.astype(np.int32), surprisal=e.astype(np.float32), rank=e.astype(np.int64),
                           entropy=e.astype(np.float32), top_ids=np.zeros((0, k), np.int64), top_tokens=[],
                           top_probs=np.zeros((0, k), np.float32), truncated=truncated, n_context=n_context)
    col = lambda name, dtype: np.asarray(rows.column(name).to_numpy(), dtype=dtype)  # noqa: E731
    t = rows.num_rows
    fixed = lambda name, dtype: np.asarray(  # noqa: E731
        rows.column(name).combine_chunks().flatten().to_numpy(), dtype=dtype).reshape(t, k)
    start, end, turn = col("start", np.int64), col("end", np.int64), col("turn", np.int32)
    top_ids = fixed("top_ids", np.int64)
    lark = rows.column("lark_brier") if "lark_brier" in rows.column_names else None
    return TokenScores(
        token_ids=col("token_id", np.int64),
        tokens=[texts[j][a:b] for j, a, b in zip(turn.tolist(), start.tolist(), end.tolist())],
        offsets=np.stack([start, end], axis=1), turn=turn, surprisal=col("surprisal", np.float32),
        rank=col("rank", np.int64), entropy=col("entropy", np.float32), top_ids=top_ids,
        top_tokens=vocab[top_ids].tolist(), top_probs=fixed("top_probs", np.float32),
        lark_brier=col("lark_brier", np.float32) if lark is not None and not lark.null_count else None,
        truncated=truncated, n_context=n_context)
