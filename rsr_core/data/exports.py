"""Flat files out of a results store: the trajectory table (with its conversations) and the token table.

Both are streamed in batches of trajectories, so exporting 165,000 trajectories needs the memory of one batch,
and each file is written under a temporary name and moved into place only when complete
(`tables.TableFileWriter`): an existing output is replaced by a complete one or not at all.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from rsr_core.analysis.lark import with_lark_g
from rsr_core.analysis.metrics import SAME_PASS_METRICS, TRAJECTORY_METRICS
from rsr_core.analysis.pools import assign_pools, resolve_pool_by
from rsr_core.analysis.selection import EXPORT_FIELDS, selection_records
from rsr_core.data.store import ResultsStore
from rsr_core.analysis.table import ID_COLUMNS, normalise_table
from rsr_core.data.tables import TAIL_COLUMNS, TableFileWriter, replacing, token_table

BATCH = 2000  # trajectories per written batch


def table_order(columns: Sequence[str]) -> list[str]:
    """Columns in the order `score` writes them: ids, metrics, others, then the tail (conversation last)."""
    known = [*ID_COLUMNS, *TRAJECTORY_METRICS, *SAME_PASS_METRICS, "lark_g"]
    head = [c for c in known if c in columns]
    tail = [c for c in TAIL_COLUMNS if c in columns]
    return head + [c for c in columns if c not in head and c not in tail] + tail


def scored_table(store: ResultsStore, student: str, ids: Sequence[str] | None = None,
                 r_max: int | None = None) -> pd.DataFrame:
    """The student's trajectory table (no conversation text) at r_max, limited to `ids` in their order."""
    table = store.trajectory_table(student, r_max=r_max)
    if ids is not None:
        order = {tid: k for k, tid in enumerate(ids)}
        table = table[table["trajectory_id"].isin(order)]
        table = table.iloc[table["trajectory_id"].map(order).astype(int).argsort()]
    return table.reset_index(drop=True)


def with_pool_lark_g(store: ResultsStore, table: pd.DataFrame) -> pd.DataFrame:
    """The table with LARK's per-problem score `lark_g` (`analysis.lark`) over its pools as `select` forms them by
    default: by problem id where every row has one, else by prompt (read from the store); unchanged without
    `lark_rho` (scores written before it was kept)."""
    if "lark_rho" not in table or table.empty:
        return table
    frame = normalise_table(table[[c for c in ("trajectory_id", "problem_id", "avg_surprisal", "lark_rho")
                                   if c in table]])
    if resolve_pool_by(frame) == "prompt":
        prompts = store.conversation_column("prompt")
        frame["prompt"] = prompts.reindex(frame["trajectory_id"].astype(str)).to_numpy()
    return table.assign(lark_g=with_lark_g(assign_pools(frame)).loc[:, "lark_g"].to_numpy())


def write_trajectory_table(store: ResultsStore, student: str, path: str | Path, ids: Sequence[str] | None = None,
                           r_max: int | None = None) -> int:
    """Write the trajectory table with prompt, messages, source and record (and tools, where the store's
    conversations offer any), as `score --out FILE` does. Returns the number of rows."""
    table = with_pool_lark_g(store, scored_table(store, student, ids, r_max))
    drop = ["trajectory_id"] if store.has_tools() else ["trajectory_id", "tools"]  # a tools column where offered
    with TableFileWriter(path) as out:
        for a in range(0, len(table), BATCH):
            part = table.iloc[a:a + BATCH].reset_index(drop=True)
            conv = store.conversations(part["trajectory_id"]).drop(columns=drop)
            part = pd.concat([part.drop(columns=[c for c in conv.columns if c in part]), conv], axis=1)
            for name in part.columns:
                if isinstance(part[name].dtype, pd.CategoricalDtype):
                    part[name] = part[name].astype(object)
            out.write(part[table_order(list(part.columns))])
    return len(table)


def write_token_table(store: ResultsStore, student: str, path: str | Path, ids: Sequence[str]) -> int:
    """Write the per-token table (`tables.token_table`) of these trajectories, in their order. Returns the rows."""
    rows = 0
    with TableFileWriter(path) as out:
        for a in range(0, len(ids), BATCH // 10):
            frame = token_table({tid: store.token_scores(student, tid) for tid in ids[a:a + BATCH // 10]})
            if len(frame):
                out.write(frame)
                rows += len(frame)
    return rows


def write_selection(selected: pd.DataFrame, path: str | Path) -> Path:
    """Write the selected rows as JSONL (`.jsonl`) or Parquet (`.parquet`) training records
    (`selection.selection_records`); returns the path. An existing file is replaced by a complete export or not at
    all (a full disk, Ctrl-C: it stays as it was)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".parquet"):
        raise ValueError(f"{path}: export as .jsonl or .parquet")
    records = selection_records(selected)
    with replacing(path) as tmp:
        if suffix == ".parquet":
            tools = ["tools"] if any("tools" in r for r in records) else []
            frame = pd.DataFrame(records, columns=["messages", *tools, *EXPORT_FIELDS])
            if tools:  # JSON text: tool specs differ in shape, which one Arrow struct type cannot hold
                frame["tools"] = [json.dumps(t, ensure_ascii=False) if isinstance(t, list) else None
                                  for t in frame["tools"]]
            frame.to_parquet(tmp, index=False)
        else:
            with tmp.open("w", encoding="utf-8") as fh:
                for record in records:
                    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path
