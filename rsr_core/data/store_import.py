"""Import today's flat files (`score --out` trajectory table, `--tokens-out` token table) into a results store.

Memory stays bounded whatever the size: the trajectory table is read in batches (its conversations go to the
store at once; only its small metric columns stay in memory), and the token table is streamed with
`iter_batches`, consecutive rows of one trajectory grouped and appended `batch_tokens` at a time. The token
texts are checked against the conversation text at their offsets and the alternatives' texts build the
vocabulary, so what the store gives back is what the files held. A bad record is reported and skipped; the
rest is imported. An interrupted import resumes: committed trajectories are skipped.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rsr_core.analysis.metrics import R_MAX
from rsr_core.data.store import (CONVERSATION_COLUMNS, ResultsStore, StoreError, StoreWriter, StudentSettings,
                                 TokenColumns)
from rsr_core.data.token_scores import SAME_PASS_TERMS
from rsr_core.data.trajectory import Trajectory
from rsr_core.analysis.table import correct_column

TABLE_BATCH_ROWS = 1024  # rows of the trajectory table at a time (each holds a whole conversation)
TOKEN_BATCH_ROWS = 1 << 16  # token rows read at a time
BATCH_TOKENS = 1 << 18  # tokens per append
TABLE_REQUIRED = ("trajectory_id", "messages")
TOKEN_REQUIRED = ("trajectory_id", "token_id", "token", "start", "end", "turn", "surprisal", "rank", "entropy",
                  "top_ids", "top_tokens", "top_probs")


@dataclass
class ImportReport:
    """What an import did."""

    student: str = ""
    settings: StudentSettings | None = None  # what the store records for the student
    written: int = 0
    skipped: int = 0  # already in the store
    tokens: int = 0
    errors: list[str] = field(default_factory=list)


class ImportInputError(StoreError):
    """An input that cannot be imported at all (missing file or columns)."""


def read_table_batches(path: Path, rows: int = TABLE_BATCH_ROWS) -> Iterator[pd.DataFrame]:
    """The trajectory table `rows` at a time (.parquet, .csv, .jsonl), ids and text as str."""
    suffix = path.suffix.lower()
    text = {c: str for c in ("trajectory_id", "problem_id", "teacher", "run", "student", "source", "prompt",
                             "messages")}
    if suffix == ".parquet":
        for batch in iter_parquet(open_parquet(path), rows):
            yield batch.to_pandas()
    elif suffix == ".csv":
        yield from pd.read_csv(path, chunksize=rows, dtype=text, keep_default_na=False, na_values=[""])
    elif suffix in (".jsonl", ".ndjson"):
        yield from pd.read_json(path, lines=True, chunksize=rows, dtype=False)
    else:
        raise ImportInputError(f"{path}: unknown table format {suffix!r} (use .parquet, .csv or .jsonl)")


def open_parquet(path: Path) -> pq.ParquetFile:
    """A Parquet file read page by page through a 1 MB buffer, so that memory follows the batch size and not
    the size of the file's row groups (a table written in one go may be a single multi-GB row group)."""
    return pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)


def iter_parquet(pf: pq.ParquetFile, rows: int, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Record batches of a Parquet file, one row group at a time: a reader over several row groups keeps what it
    read of each until the iteration ends."""
    for i in range(pf.num_row_groups):
        yield from pf.iter_batches(batch_size=rows, row_groups=[i], columns=columns)


def _missing(columns, required) -> list[str]:
    return [c for c in required if c not in columns]


def _text(value) -> str | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _trajectory(rec: dict) -> Trajectory:
    """A Trajectory from one table row (messages as JSON text); ValueError saying what is wrong."""
    tid = _text(rec.get("trajectory_id"))
    if not tid:
        raise ValueError("no trajectory_id")
    raw = rec.get("messages")
    try:
        messages = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as e:
        raise ValueError(f"trajectory {tid}: messages is not valid JSON ({e})") from None
    if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
        raise ValueError(f"trajectory {tid}: messages is not a list of {{role, content}} objects")
    record = rec.get("record")
    tools = rec.get("tools")
    try:
        tools = json.loads(tools) if isinstance(tools, str) and tools.strip() else None
    except json.JSONDecodeError as e:
        raise ValueError(f"trajectory {tid}: tools is not valid JSON ({e})") from None
    return Trajectory(trajectory_id=tid, problem_id=_text(rec.get("problem_id")) or "",
                      teacher=_text(rec.get("teacher")) or "", messages=messages, run=_text(rec.get("run")),
                      source=_text(rec.get("source")) or "",
                      record=0 if record is None or pd.isna(record) else int(record), tools=tools or None)


class _TableImport:
    """Phase 1: conversations into the store, the rest of each row (metric columns) kept in memory."""

    def __init__(self, path: Path, student: str, r_max: int, report: ImportReport):
        self.path, self.student, self.r_max, self.report = path, student, r_max, report
        self.rows: list[pd.DataFrame] = []
        self.seen: dict[str, int] = {}
        self.rejected: set[str] = set()  # ids whose table row was reported and skipped

    def batch(self, frame: pd.DataFrame, first_row: int, writer: StoreWriter) -> None:
        keep, trajectories = [], []
        for j, rec in enumerate(frame.to_dict("records")):
            where = f"{self.path}, row {first_row + j}"
            try:
                t = _trajectory(rec)
            except ValueError as e:
                self.report.errors.append(f"{where}: {e}")
                continue
            problem = self._row_problem(rec, t.trajectory_id)
            if problem:
                self.report.errors.append(f"{where}: trajectory {t.trajectory_id}: {problem}")
                if t.trajectory_id not in self.seen:
                    self.rejected.add(t.trajectory_id)
                continue
            self.seen[t.trajectory_id] = first_row + j
            keep.append(j)
            trajectories.append(t)
        clashes = writer.add_conversations(trajectories)
        for tid, problem in clashes.items():
            self.report.errors.append(f"{self.path}, row {self.seen[tid]}: trajectory {tid}: {problem}")
            self.rejected.add(tid)
        keep = [j for j, t in zip(keep, trajectories) if t.trajectory_id not in clashes]
        trajectories = [t for t in trajectories if t.trajectory_id not in clashes]
        slim = frame.iloc[keep].drop(columns=[c for c in CONVERSATION_COLUMNS if c in frame.columns])
        slim = slim.assign(trajectory_id=[t.trajectory_id for t in trajectories])
        for name in ("correct", "truncated"):
            if name in slim.columns:
                slim[name] = correct_column(slim[name])
        self.rows.append(slim)

    def _row_problem(self, rec: dict, tid: str) -> str | None:
        if tid in self.seen:
            return f"appears again (first at row {self.seen[tid]}); this row is skipped"
        student = _text(rec.get("student"))
        if student is not None and student != self.student:
            return f"scored under student {student!r}, this import is for {self.student!r}"
        r_max = rec.get("r_max")
        if r_max is not None and not pd.isna(r_max) and int(r_max) != self.r_max:
            return f"r_max {int(r_max)}, the other rows have {self.r_max}"
        return None

    def table(self) -> pd.DataFrame:
        frame = pd.concat(self.rows, ignore_index=True) if self.rows else pd.DataFrame(columns=["trajectory_id"])
        return frame.set_index("trajectory_id", drop=False)


def _runs(ids: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, list[str]]:
    """([R + 1] row offsets, [R] ids) of the runs of equal consecutive ids."""
    arr = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    codes = arr.dictionary_encode().indices.to_numpy(zero_copy_only=False)
    if codes.size == 0:
        return np.zeros(1, np.int64), []
    starts = np.concatenate([[0], np.flatnonzero(codes[1:] != codes[:-1]) + 1])
    return np.append(starts, codes.size).astype(np.int64), arr.take(pa.array(starts)).to_pylist()


def _fixed_lists(column: pa.ChunkedArray, k: int) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """(values, [rows] offset of each row's first value, [rows] bool: the row has exactly k values) of a list
    column."""
    arr = column.combine_chunks()
    lengths = pc.list_value_length(arr).fill_null(-1).to_numpy(zero_copy_only=False)
    return arr.values, np.asarray(arr.offsets)[:-1].astype(np.int64), lengths == k


class _TokenImport:
    """Phase 2: stream the token table, group rows per trajectory, append in batches of ~BATCH_TOKENS."""

    def __init__(self, path: Path, table: pd.DataFrame, rejected: set[str], writer: StoreWriter,
                 reader: ResultsStore, k: int, report: ImportReport, batch_tokens: int):
        self.path, self.table, self.rejected, self.k = path, table, rejected, k
        self.writer, self.reader, self.report, self.batch_tokens = writer, reader, report, batch_tokens
        self.seen: set[str] = set()

    def run(self, pf: pq.ParquetFile, columns: list[str], progress: Callable | None) -> None:
        pending: list[pa.RecordBatch] = []
        rows = 0
        for batch in iter_parquet(pf, TOKEN_BATCH_ROWS, columns):
            pending.append(batch)
            rows += batch.num_rows
            if rows >= self.batch_tokens:
                rest = self._process(pa.Table.from_batches(pending), final=False)
                pending, rows = rest.to_batches(), rest.num_rows
                if progress:
                    progress(self.report)
        if pending:
            self._process(pa.Table.from_batches(pending), final=True)

    def _process(self, table: pa.Table, final: bool) -> pa.Table:
        """Import the complete runs of `table`; return the rows of the last run when more may follow."""
        offsets, ids = _runs(table.column("trajectory_id"))
        if not ids:
            return table.slice(0, 0)
        n = len(ids) if final else len(ids) - 1
        if n == 0:
            return table
        self._import_runs(table.slice(0, int(offsets[n])), offsets[:n + 1], ids[:n])
        return table.slice(int(offsets[n]))

    def _import_runs(self, table: pa.Table, offsets: np.ndarray, ids: list[str]) -> None:
        good, problems = [], {}
        lists = {name: _fixed_lists(table.column(name), self.k) for name in ("top_ids", "top_probs", "top_tokens")}
        ok_rows = np.logical_and.reduce([ok for _, _, ok in lists.values()])
        position = table.column("position").to_numpy() if "position" in table.column_names else None
        order = np.arange(table.num_rows)
        for j, tid in enumerate(ids):
            a, b = int(offsets[j]), int(offsets[j + 1])
            problem = self._run_problem(tid, a, b, ok_rows, position, order)
            if problem:
                problems[tid] = problem
            elif tid in self.table.index:
                good.append(j)
            self.seen.add(tid)
        for tid, p in problems.items():
            self.report.errors.append(f"{self.path}: trajectory {tid}: {p}")
        if not good:
            return
        rows = np.concatenate([order[offsets[j]:offsets[j + 1]] for j in good])
        lengths = np.array([offsets[j + 1] - offsets[j] for j in good], dtype=np.int64)
        firsts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        sub = table.take(pa.array(rows))
        col = lambda name, dtype: np.asarray(sub.column(name).to_numpy(), dtype=dtype)  # noqa: E731
        top = {name: values.take(pa.array((starts[rows][:, None] + np.arange(self.k)).ravel()))
               for name, (values, starts, _) in lists.items()}
        columns = TokenColumns(
            trajectory_id=[ids[j] for j in good], lengths=lengths, token_id=col("token_id", np.int64),
            start=col("start", np.int64), end=col("end", np.int64), turn=col("turn", np.int32),
            surprisal=col("surprisal", np.float32), rank=col("rank", np.int64), entropy=col("entropy", np.float32),
            top_ids=np.asarray(top["top_ids"].to_numpy(), np.int64).reshape(-1, self.k),
            top_probs=np.asarray(top["top_probs"].to_numpy(), np.float32).reshape(-1, self.k),
            truncated=self._first(sub, "truncated", firsts, bool, False),
            n_context=self._first(sub, "n_context", firsts, np.int64, 0),
            tokens=sub.column("token").combine_chunks(), top_tokens=top["top_tokens"],
            **{name: col(name, np.float32) for name in SAME_PASS_TERMS  # kept where the token table has them
               if name in sub.column_names and not sub.column(name).null_count})
        trajectories = [self._trajectory(tid) for tid in columns.trajectory_id]
        result = self.writer.append_columns(trajectories, columns, self.table.loc[columns.trajectory_id])
        self._count(result, columns)

    def _first(self, table: pa.Table, name: str, rows: np.ndarray, dtype, default) -> np.ndarray:
        if name not in table.column_names:
            return np.full(rows.size, default, dtype=dtype)
        return np.asarray(table.column(name).take(pa.array(rows)).to_numpy(zero_copy_only=False), dtype=dtype)

    def _run_problem(self, tid: str, a: int, b: int, ok_rows: np.ndarray, position, order: np.ndarray) -> str | None:
        """Why the token rows [a, b) of one trajectory cannot be imported (sorting them by position if needed)."""
        if tid in self.seen:
            return "its token rows are not contiguous (sorted by trajectory); a second run of them is skipped"
        if tid not in self.table.index:
            return None if tid in self.rejected else "has token rows but no row in the trajectory table"
        if not ok_rows[a:b].all():
            return f"top_ids, top_tokens and top_probs must hold {self.k} values on every row"
        if position is not None:
            pos = position[a:b]
            if not (pos == np.arange(b - a)).all():
                sort = np.argsort(pos, kind="stable")
                if not (pos[sort] == np.arange(b - a)).all():
                    return f"positions are not 0 .. {b - a - 1}"
                order[a:b] = a + sort
        return None

    def _trajectory(self, tid: str) -> Trajectory:
        """The conversation phase 1 stored (its metadata is in the table rows)."""
        conv = self.reader.conversation(tid)
        return Trajectory(trajectory_id=tid, problem_id="", teacher="", messages=conv["messages"],
                          source=conv["source"] or "", record=int(conv["record"] or 0), tools=conv["tools"])

    def _count(self, result, columns: TokenColumns) -> None:
        self.report.written += len(result.written)
        self.report.skipped += len(result.skipped)
        lengths = dict(zip(columns.trajectory_id, columns.lengths.tolist()))
        self.report.tokens += sum(lengths[t] for t in result.written)
        self.report.errors += [f"{self.path}: {e}" for e in result.errors]

    def finish(self) -> None:
        """Rows of the trajectory table without token rows: empty trajectories are imported, others reported."""
        missing = [tid for tid in self.table.index if tid not in self.seen]
        empty = []
        for tid in missing:
            n = self.table.at[tid, "n_tokens"] if "n_tokens" in self.table.columns else None
            if n is not None and not pd.isna(n) and int(n) == 0:
                empty.append(tid)
            elif tid not in self.writer:
                self.report.errors.append(f"trajectory {tid}: no token rows in {self.path}"
                                          + (f" (the table says {int(n)} tokens)" if n is not None and not pd.isna(n)
                                             else ""))
        if empty:
            z = np.zeros(0)
            rows = self.table.loc[empty]
            columns = TokenColumns(
                trajectory_id=empty, lengths=np.zeros(len(empty), np.int64), token_id=z.astype(np.int64),
                start=z.astype(np.int64), end=z.astype(np.int64), turn=z.astype(np.int32),
                surprisal=z.astype(np.float32), rank=z.astype(np.int64), entropy=z.astype(np.float32),
                top_ids=np.zeros((0, self.k), np.int64), top_probs=np.zeros((0, self.k), np.float32),
                truncated=rows["truncated"].to_numpy(bool) if "truncated" in rows else np.zeros(len(empty), bool),
                n_context=rows["n_context"].to_numpy(np.int64) if "n_context" in rows
                else np.zeros(len(empty), np.int64), tokens=[], top_tokens=[])
            result = self.writer.append_columns([self._trajectory(t) for t in empty], columns, rows)
            self._count(result, columns)


def table_student(trajectories: str | Path, student: str | None = None) -> str:
    """The name the scores are filed under: `student_name(student)` when one is given, else the trajectory
    table's student column (its first row). ImportInputError when neither says."""
    from rsr_core.data.students import student_name

    if student:
        return student_name(student)
    path = Path(trajectories)
    if not path.is_file():
        raise ImportInputError(f"{path}: no such file")
    first = next(read_table_batches(path, rows=64), None)
    return _peek_settings(first if first is not None else pd.DataFrame(), path, None, R_MAX)[0]


def _peek_settings(first: pd.DataFrame, table_path: Path, student: str | None,
                   r_max: int | None) -> tuple[str, int]:
    """(student, r_max) of the import: the options, else the table's first row."""
    if student is None:
        values = first["student"].dropna().astype(str).unique() if "student" in first.columns else []
        if len(values) == 0:
            raise ImportInputError(f"{table_path}: no student column; name the student with --student")
        student = values[0]
    if r_max is None:
        values = first["r_max"].dropna().unique() if "r_max" in first.columns else []
        r_max = int(values[0]) if len(values) else R_MAX
    return student, int(r_max)


def _top_k(pf: pq.ParquetFile, path: Path) -> int:
    for batch in pf.iter_batches(batch_size=1, columns=["top_ids"]):
        if batch.num_rows:
            return len(batch.column(0)[0].as_py())
    raise ImportInputError(f"{path}: the token table has no rows")


def import_flat_files(trajectories: str | Path, tokens: str | Path, out: str | Path, *, student: str | None = None,
                      fingerprint: str = "", dtype: str = "", max_len: int = 0, r_max: int | None = None,
                      batch_tokens: int = BATCH_TOKENS, compact: bool = False,
                      progress: Callable[[ImportReport], None] | None = None,
                      settings: StudentSettings | None = None) -> ImportReport:
    """Import a trajectory table and its token table into the store at `out`.

    settings: what identifies the numbers (the student's weights, dtype, max_len, rendering), when the caller knows
    them; they are recorded, also over the unknown settings of an earlier import, so that `score` can add to the
    results. ImportInputError when the input cannot be read at all (missing file or columns); else a report with
    one message per skipped record."""
    table_path, tokens_path = Path(trajectories), Path(tokens)
    for p in (table_path, tokens_path):
        if not p.is_file():
            raise ImportInputError(f"{p}: no such file")
    pf = open_parquet(tokens_path)
    missing = _missing(pf.schema_arrow.names, TOKEN_REQUIRED)
    if missing:
        raise ImportInputError(f"{tokens_path}: missing columns {', '.join(missing)} (expected the token table of "
                           f"`score --tokens-out`)")
    k = _top_k(pf, tokens_path)
    batches = read_table_batches(table_path)
    first = next(batches, None)
    if first is None or first.empty:
        raise ImportInputError(f"{table_path}: the trajectory table has no rows")
    missing = _missing(first.columns, TABLE_REQUIRED)
    if missing:
        raise ImportInputError(f"{table_path}: missing columns {', '.join(missing)} (expected the trajectory table of "
                           f"`score --out`, which has them)")
    name, r_max = _peek_settings(first, table_path, student, r_max)
    report = ImportReport(student=name)
    if settings is None:
        settings = StudentSettings(student=name, fingerprint=fingerprint, dtype=dtype, max_len=max_len, top_k=k,
                                   r_max=r_max)
    else:
        settings = StudentSettings(**{**settings.to_json(), "student": name, "top_k": k, "r_max": r_max})
    report.settings = settings
    with StoreWriter(out, settings, adopt_settings=True) as writer:
        phase1 = _TableImport(table_path, name, r_max, report)
        row = 1
        for frame in [first]:
            phase1.batch(frame, row, writer)
            row += len(frame)
        for frame in batches:
            phase1.batch(frame, row, writer)
            row += len(frame)
        reader = ResultsStore(out)
        columns = [c for c in pf.schema_arrow.names if c in TOKEN_REQUIRED + ("position", "truncated", "n_context")]
        phase2 = _TokenImport(tokens_path, phase1.table(), phase1.rejected, writer, reader, k, report, batch_tokens)
        phase2.run(pf, columns, progress)
        phase2.finish()
        reader.close()
        if compact:
            writer.compact()
    return report
