"""Tables out of per-token results: the trajectory table (one row per trajectory) and the long token table.

Both are plain pandas frames that write to Parquet, CSV or JSONL. The token table keeps unclipped ranks, so the
trajectory table can be recomputed for any r_max without another forward pass (`trajectory_table` again).
`read_table` gives a table back in one form whatever the file format (`normalise_table`).
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd

from rsr_core.analysis.metrics import R_MAX, SAME_PASS_METRICS, same_pass_metrics, trajectory_metrics
from rsr_core.analysis.segments import part_rsr, token_parts
from rsr_core.data.paths import TABLE_SUFFIXES
from rsr_core.data.token_scores import SAME_PASS_TERMS, TokenScores
from rsr_core.analysis.table import ID_COLUMNS, normalise_table
from rsr_core.data.trajectory import Trajectory, assistant_texts, turn_part_starts

TAIL_COLUMNS = ["coverage", "truncated", "n_context", "correct", "correct_source", "complete", "candidate", "reference",
                "edited_from", "edit", "r_max", "source", "record", "prompt", "messages", "tools"]
META_COLUMNS = {"candidate": "Int64", "complete": "boolean", "reference": "string", "correct_source": "string",
                "edited_from": "string", "edit": "string"}


def coverage(scores: TokenScores, messages: list[dict]) -> float:
    """Share of the teacher's response characters that were scored: 1.0 unless the conversation was truncated."""
    total = sum(len(text) for text in assistant_texts(messages))
    return sum(len(text) for text in scores.tokens) / total if total else float("nan")


def scores_parts(messages: list[dict], scores: TokenScores) -> np.ndarray:
    """[T] part of each scored token of a conversation (`segments.token_parts`: thinking, answer, tool calls)."""
    answers, tools = turn_part_starts(messages)
    if len(answers) <= int(scores.turn.max(initial=-1)):  # scores that do not fit the conversation: no parts
        return np.full(len(scores), 1, np.int8)
    return token_parts(scores.offsets, scores.turn, answers, tools)


def trajectory_row(t: Trajectory, scores: TokenScores, student: str, r_max: int = R_MAX) -> dict:
    """One row of the trajectory table."""
    return {
        "trajectory_id": t.trajectory_id, "problem_id": t.problem_id, "teacher": t.teacher, "run": t.run,
        "student": student,
        **trajectory_metrics(scores.surprisal, scores.rank, scores.entropy, r_max),
        **same_pass_metrics(scores.surprisal, scores.brier, scores.lark_brier),
        **part_rsr(scores.surprisal, scores.rank, scores_parts(t.messages, scores), r_max, tool_calls=t.has_tool_calls),
        "coverage": coverage(scores, t.messages), "truncated": bool(scores.truncated),
        "n_context": int(scores.n_context),
        "correct": t.correct, **{k: v for k, v in t.meta.items() if k in META_COLUMNS},
        "r_max": int(r_max), "source": t.source, "record": int(t.record),
        "prompt": t.prompt, "messages": json.dumps(t.messages, ensure_ascii=False),
        **({"tools": json.dumps(t.tools, ensure_ascii=False)} if t.tools else {}),
    }


def trajectory_table(trajectories: Iterable[Trajectory], scores: dict[str, TokenScores], student: str,
                     r_max: int = R_MAX) -> pd.DataFrame:
    """Trajectory table (README: formats) of every trajectory that has scores, in input order."""
    return pairs_table([(t, scores[t.trajectory_id]) for t in trajectories if t.trajectory_id in scores], student,
                       r_max)


def pairs_table(pairs: Iterable[tuple[Trajectory, TokenScores]], student: str, r_max: int = R_MAX) -> pd.DataFrame:
    """The trajectory table of (trajectory, its scores) pairs, in their order."""
    frame = pd.DataFrame([trajectory_row(t, s, student, r_max) for t, s in pairs])
    if frame.empty:
        return frame
    frame["correct"] = frame["correct"].astype("boolean")
    for name in SAME_PASS_METRICS:  # None (terms unknown) reads as NaN
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(np.float64)
    for name, dtype in META_COLUMNS.items():
        if name in frame:
            frame[name] = frame[name].astype(dtype)
    return frame


def rescore_table(table: pd.DataFrame, scores: dict[str, TokenScores], r_max: int) -> pd.DataFrame:
    """The same trajectory table under another r_max, from stored unclipped ranks (no forward pass)."""
    out = table.copy()
    metrics = [trajectory_metrics(scores[tid].surprisal, scores[tid].rank, scores[tid].entropy, r_max)
               for tid in out["trajectory_id"]]
    for name in metrics[0] if metrics else []:
        out[name] = [m[name] for m in metrics]
    out["r_max"] = int(r_max)
    return out


def token_table(scores: dict[str, TokenScores]) -> pd.DataFrame:
    """Long table, one row per response token: ids, text, offsets, surprisal, unclipped rank, entropy, top-k."""
    frames = []
    for tid, s in scores.items():
        n = len(s)
        frames.append(pd.DataFrame({
            "trajectory_id": [tid] * n, "position": np.arange(n), "token_id": s.token_ids, "token": s.tokens,
            "start": s.offsets[:, 0] if n else [], "end": s.offsets[:, 1] if n else [], "turn": s.turn,
            "surprisal": s.surprisal, "rank": s.rank, "entropy": s.entropy,
            "top_ids": list(s.top_ids), "top_tokens": s.top_tokens, "top_probs": list(s.top_probs),
            "truncated": [bool(s.truncated)] * n, "n_context": [int(s.n_context)] * n,
            **{name: getattr(s, name) for name in SAME_PASS_TERMS if getattr(s, name) is not None},
        }))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def scores_from_token_table(frame: pd.DataFrame) -> dict[str, TokenScores]:
    """Inverse of `token_table`."""
    out = {}
    for tid, g in frame.groupby("trajectory_id", sort=False):
        g = g.sort_values("position")
        out[str(tid)] = TokenScores(
            token_ids=g["token_id"].to_numpy(np.int64), tokens=g["token"].astype(str).tolist(),
            offsets=g[["start", "end"]].to_numpy(np.int64), turn=g["turn"].to_numpy(np.int32),
            surprisal=g["surprisal"].to_numpy(np.float32), rank=g["rank"].to_numpy(np.int64),
            entropy=g["entropy"].to_numpy(np.float32),
            top_ids=np.stack([np.asarray(v, np.int64) for v in g["top_ids"]]),
            top_tokens=[list(map(str, v)) for v in g["top_tokens"]],
            top_probs=np.stack([np.asarray(v, np.float32) for v in g["top_probs"]]),
            truncated=bool(g["truncated"].iloc[0]), n_context=int(g["n_context"].iloc[0]),
            **{name: g[name].to_numpy(np.float32) for name in SAME_PASS_TERMS
               if name in g and g[name].notna().all()},
        )
    return out


def temporary_beside(path: Path) -> Path:
    """A new empty file beside `path` (`.NAME.*.part`) to write `path` under, with the permissions a plain open
    would give it (the umask's, not mkstemp's private 0600), since it becomes `path`."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(name, 0o666 & ~mask)
    return Path(name)


class TableFileWriter:
    """Writes a table in batches to .parquet, .csv or .jsonl, under a temporary name in the target's folder; the
    file is moved into place only by `close()` (or leaving the `with` block without an error), so an existing
    output is replaced by a complete one or not at all."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.suffix = self.path.suffix.lower()
        if self.suffix not in TABLE_SUFFIXES:
            raise ValueError(f"{self.path}: unsupported output type {self.suffix!r} (use .parquet, .csv or .jsonl)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temporary_beside(self.path)
        self._parquet = None
        self._rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        if self.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.tmp, table.schema)
            elif table.schema != self._parquet.schema:
                table = table.cast(self._parquet.schema)
            self._parquet.write_table(table)
        elif self.suffix == ".csv":
            frame.to_csv(self.tmp, mode="a", header=self._rows == 0, index=False)
        else:
            with open(self.tmp, "a", encoding="utf-8") as f:
                frame.to_json(f, orient="records", lines=True, force_ascii=False)
        self._rows += len(frame)

    def close(self) -> None:
        """Finish the file and move it into place; on any failure (a full disk, say) drop it and re-raise."""
        try:
            if self._parquet is not None:
                writer, self._parquet = self._parquet, None
                writer.close()
            with open(self.tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop what was written; the target stays as it was. Never raises: it runs while another error (a full
        disk, Ctrl-C) is on its way."""
        if self._parquet is not None:
            writer, self._parquet = self._parquet, None
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - the file is dropped anyway
                pass
        try:
            self.tmp.unlink(missing_ok=True)
        except OSError:
            pass

    def __enter__(self) -> "TableFileWriter":
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary file beside `path` to write in the block; moved into place (fsynced) when the block ends without
    an error, deleted when it raises (a full disk, Ctrl-C): `path` is replaced by a complete file or not at all.
    For files that are not tables (those go through `TableFileWriter`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_beside(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """Write by suffix: .parquet, .csv or .jsonl; atomically (a complete file or the old one)."""
    with TableFileWriter(path) as out:
        out.write(frame)


TRAJECTORY_TABLE_REQUIRED = ("n_tokens", "rsr", "avg_surprisal", "avg_rank_clipped", "avg_rank")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a table written by `write_table` (or a JSON array), normalised with `normalise_table`."""
    return normalise_table(_read_frame(Path(path)))


def read_trajectory_table(path: str | Path) -> pd.DataFrame:
    """`read_table` of a trajectory table (what `score --out` writes); ValueError naming the missing columns when
    the file is some other table."""
    path = Path(path)
    frame = _read_frame(path)
    missing = [c for c in TRAJECTORY_TABLE_REQUIRED if c not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns[:12])) + (", ..." if len(frame.columns) > 12 else "")
        raise ValueError(f"{path} is not a trajectory table: it has no {', '.join(missing)} column"
                         f"{'s' if len(missing) > 1 else ''} (its columns: {found or 'none'}). A trajectory table is "
                         "what `python -m rsr_core score --out FILE` writes")
    return normalise_table(frame)


def _read_frame(path: Path) -> pd.DataFrame:
    """A table file as read, by its suffix, not normalised."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif suffix == ".csv":
        frame = pd.read_csv(path, dtype={c: str for c in ID_COLUMNS + ["source", "prompt", "messages"]})
    elif suffix in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as fh:
            frame = pd.DataFrame([json.loads(line) for line in fh if line.strip()])
    elif suffix == ".json":
        frame = pd.DataFrame(json.loads(path.read_text(encoding="utf-8")))
    else:
        raise ValueError(f"{path}: unknown table format {suffix!r} (use .parquet, .csv, .jsonl or .json)")
    return frame


