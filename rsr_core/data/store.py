"""The results store: one folder per dataset that `score`, the app, the demo data and a distributed run share.

Why. The study behind this tool scores 165,000 trajectories (11 teachers x 5,000 problems x 3 runs) of ~10,000
tokens each: 1.65 billion tokens per student. Held as Python objects that is far beyond any machine; flat
Parquet tables must be read whole. The store keeps every number on disk in a layout where each reader touches
only what it needs: the app loads the trajectory table (a few MB) and the per-trajectory rank aggregates (~4 KB
per 10k-token trajectory, `rsr_core.analysis.aggregates`) and recomputes every metric at any r_max from them; the
inspector reads one trajectory's tokens (one Parquet row group); a conversation is read on its own.

Layout (format `rsr-explorer-store`, version 1)::

    STORE/                                  one dataset
      store.json                            {"format": "rsr-explorer-store", "version": 1}
      conversations/                        shared by every student of the dataset
        manifest.json                       the committed parts (atomic: written last)
        c000001.parquet ...                 trajectory_id, prompt, messages (JSON text), source, record, digest;
                                            row groups of about 1 M characters
      students/<student, %-quoted>/
        manifest.json                       settings (student, fingerprint, dtype, max_len, top_k, r_max, extra),
                                            the committed parts and vocabulary parts
        vocab/v000001.parquet ...           token_id -> decoded text (deltas; the union is the vocabulary)
        parts/p000001.meta.parquet          one row per trajectory: the trajectory table (ids, metric columns at
                                            the manifest's r_max, truncated, n_context, correct, any extra column;
                                            no prompt/messages text) + where its tokens are (_row_group,
                                            _offset, _length; _length -1 = no per-token data stored)
              p000001.aggs.arrow            its rank aggregates (Arrow IPC, uncompressed: memory-mapped, read
                                            at disk speed), rows aligned with the meta file
              p000001.tokens.parquet        one row per response token: token_id, start, end (offsets into the
                                            text of assistant turn `turn`), turn, surprisal f32, rank (unclipped)
                                            , entropy f32, top_ids [K], top_probs [K]; no per-token strings

Why this way:

- **No per-token strings.** A token's text is `_assistant_texts(messages)[turn][start:end]`, and the writer checks
  that this equals the scored token text before it commits; the alternatives' text is one vocabulary per student
  (id -> decoded text). This is most of the saving over the flat token table (~34 bytes a token on disk).
- **Row groups of whole trajectories**, up to `ROW_GROUP_TOKENS` (64k) tokens (a longer trajectory gets its own):
  reading one trajectory reads and decodes one row group (~20 ms), and a part of 256 MB has a few hundred row
  groups, never hundreds of thousands.
- **Atomic, incremental, resumable writes.** Each append writes its part files under temporary names, fsyncs
  them, renames them, and only then rewrites manifest.json (temporary file, fsync, rename, fsync of the folder).
  A file is part of the store only once the manifest names it: a kill -9 at any point leaves the last committed
  manifest, whose files are all complete; leftovers are deleted when the next writer opens. The writer knows the
  committed trajectory ids, so a killed run resumes without rescoring them, and an append skips ids already
  committed (no duplicates). Memory is constant in what was written, but for the set of committed ids.
- **Few files without a compaction step.** Appends produce small parts; after each commit the writer merges the
  newest `MERGE_FANOUT` (8) parts of the same size tier into one (size-tiered, like an LSM tree), streaming row
  group by row group, so every token is rewritten about log8(part size / append size) times and a student has a
  few dozen parts. Parts above `PART_FULL_BYTES` are left alone. `compact()` merges everything that is not full
  (after a run with many tiny appends, say), atomically in the same way.
- **Settings identify the numbers.** A student folder holds the results of one student under one set of
  settings; a writer with other settings is refused (`SettingsMismatch`) rather than filed under a second folder:
  two sets of numbers under one student name would be compared as if they were one.
- **Versioned.** store.json and every manifest carry the format and version; a reader refuses a version it
  does not know (`StoreVersionError`), rather than misreading it.
- **One writer per student** (a lock file; a second writer is refused). Writers of different students share the
  conversations folder under a short lock. A distributed run sends its scored batches to one writer per student.
  Readers never lock: they read the manifest they find and reread it when it changes.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import threading
import time
import urllib.parse
import uuid
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from rsr_core.analysis import aggregates as agg
from rsr_core.analysis.metrics import R_MAX, TRAJECTORY_METRICS
from rsr_core.data.token_scores import TokenScores
from rsr_core.data.trajectory import Trajectory

FORMAT = "rsr-explorer-store"
VERSION = 1
STUDENT_FORMAT = FORMAT + "/student"
CONVERSATIONS_FORMAT = FORMAT + "/conversations"

ROW_GROUP_TOKENS = 1 << 16  # tokens of whole trajectories per row group
CONVERSATION_ROW_GROUP_CHARS = 1 << 20  # characters of conversations per row group
PART_FULL_BYTES = 256 << 20  # a part this big is never merged again
MERGE_FANOUT = 8  # merge this many parts of one size tier
TIER_BASE_BYTES = 1 << 20  # tier of a part: floor(log_8(bytes / 1 MiB))

CONVERSATION_COLUMNS = ("prompt", "messages", "source", "record")
INDEX_COLUMNS = ("_row_group", "_offset", "_length")
NOT_STORED = -1  # _length of a trajectory whose per-token data is not in the store

_TABLE_TYPES = {
    "trajectory_id": pa.string(), "problem_id": pa.string(), "teacher": pa.string(), "run": pa.string(),
    "student": pa.string(), "n_tokens": pa.int64(), "truncated": pa.bool_(), "n_context": pa.int64(),
    "correct": pa.bool_(), "r_max": pa.int64(),
    **{m: pa.float64() for m in TRAJECTORY_METRICS if m != "n_tokens"},
}
_CONVERSATION_SCHEMA = pa.schema([("trajectory_id", pa.string()), ("prompt", pa.string()), ("messages", pa.string()),
                                  ("source", pa.string()), ("record", pa.int64()), ("digest", pa.string())])
_VOCAB_SCHEMA = pa.schema([("token_id", pa.int32()), ("text", pa.string())])


def _token_parquet_options() -> dict:
    """Parquet options of tokens.parquet (~34 bytes a token): zstd, dictionaries for ids, byte-stream-split
    floats, delta-coded offsets. A fresh dict each time: pyarrow edits the one it is given."""
    return dict(compression="zstd", write_statistics=False, use_dictionary=["token_id", "top_ids", "turn"],
                column_encoding={"start": "DELTA_BINARY_PACKED", "end": "DELTA_BINARY_PACKED",
                                 "surprisal": "BYTE_STREAM_SPLIT", "entropy": "BYTE_STREAM_SPLIT",
                                 "top_probs": "BYTE_STREAM_SPLIT"})
_INT32_MAX = np.iinfo(np.int32).max


class StoreError(Exception):
    """A store that cannot be used as asked: not a store, locked, missing data, inconsistent input."""


class StoreVersionError(StoreError):
    """The store (or one of its manifests) has a format version this code does not read."""


class SettingsMismatch(StoreError):
    """A writer's settings differ from those the student's results were written with."""


def _assistant_texts(messages: list[dict]) -> list[str]:
    """The text of each assistant turn, in order: what TokenScores.offsets index into (turn k -> element k).

    The one place that decides it; point it at `trajectory.assistant_text` once that renders reasoning too.
    """
    return [m.get("content") or "" for m in messages if m.get("role") == "assistant"]


@dataclass
class StudentSettings:
    """What identifies a student's numbers; stored in its manifest and compared when a writer opens it."""

    student: str
    fingerprint: str = ""  # the weights (Student.fingerprint); "" when unknown (imported files)
    dtype: str = ""  # e.g. "float32", "bfloat16"
    max_len: int = 0  # truncation length in tokens; 0 when unknown
    top_k: int = 5  # alternatives stored per token
    r_max: int = R_MAX  # r_max of the stored metric columns (the aggregates give any other)
    extra: dict = field(default_factory=dict)  # anything else the numbers depend on (chat template hash, ...)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> "StudentSettings":
        return cls(**{k: obj[k] for k in ("student", "fingerprint", "dtype", "max_len", "top_k", "r_max", "extra")
                      if k in obj})

    def differences(self, other: "StudentSettings") -> list[str]:
        """'name: ours != theirs' for every setting that differs."""
        a, b = self.to_json(), other.to_json()
        return [f"{k}={b[k]!r} (stored: {a[k]!r})" for k in a if a[k] != b[k]]


@dataclass
class AppendResult:
    """What one append did: ids written, ids skipped as already committed, and one message per bad record."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def extend(self, other: "AppendResult") -> None:
        self.written += other.written
        self.skipped += other.skipped
        self.errors += other.errors


# ---------------------------------------------------------------------------------------------- files on disk


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_path(final: Path) -> Path:
    """A temporary name beside `final`; names starting with .tmp- are never part of the store."""
    return final.with_name(f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-{final.name}")


def _publish(pairs: Iterable[tuple[Path, Path]]) -> None:
    """fsync each temporary file, rename it to its final name, fsync the folders."""
    folders = set()
    for tmp, final in pairs:
        _fsync(tmp)
        os.replace(tmp, final)
        folders.add(final.parent)
    for folder in folders:
        _fsync(folder)


def _write_json(path: Path, obj: dict) -> None:
    """Replace `path` atomically by `obj` as JSON (temporary file, fsync, rename, fsync of the folder)."""
    tmp = _tmp_path(path)
    tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False), encoding="utf-8")
    _publish([(tmp, path)])


def _read_json(path: Path, fmt: str) -> dict:
    """A manifest or store.json, checked for its format and version."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise StoreError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise StoreError(f"{path}: not an RSR Explorer results store file (format {obj.get('format')!r}, "
                         f"expected {fmt!r})" if isinstance(obj, dict) else f"{path}: not a store file")
    if obj.get("version") != VERSION:
        raise StoreVersionError(f"{path}: store format version {obj.get('version')!r} is not supported: this "
                                f"version of RSR Explorer reads version {VERSION}. Use the RSR Explorer version "
                                f"that wrote it, or import the results again with this one.")
    return obj


def _files_bytes(paths: Iterable[Path]) -> int:
    return int(sum(p.stat().st_size for p in paths if p.exists()))


class _Lock:
    """An exclusive lock on a file (flock): released when closed or when the process dies, even by kill -9."""

    def __init__(self, path: Path, what: str, wait_s: float = 0.0):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() >= deadline:
                    holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip()
                    os.close(self.fd)
                    raise StoreError(f"{what} is being written by another process"
                                     + (f" (pid {holder})" if holder else "")) from e
                time.sleep(0.05)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1


class _LRU:
    """A small least-recently-used cache; `close` is called on what it evicts."""

    def __init__(self, maxsize: int, close: Callable | None = None):
        self.maxsize, self.close, self.items = maxsize, close, OrderedDict()

    def get(self, key, make: Callable):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = make()
        self.items[key] = value
        while len(self.items) > self.maxsize:
            _, old = self.items.popitem(last=False)
            if self.close:
                self.close(old)
        return value

    def clear(self) -> None:
        while self.items:
            _, old = self.items.popitem()
            if self.close:
                self.close(old)


def _close_parquet(f: pq.ParquetFile) -> None:
    f.close()


def student_folder_name(student: str) -> str:
    """The folder a student's results are filed under: its name %-quoted (a hub id has a slash)."""
    name = urllib.parse.quote(student, safe="")
    return "%2E" + name[1:] if name.startswith(".") else name


def _tier(nbytes: int) -> int:
    return max(0, int(math.log(max(nbytes, 1) / TIER_BASE_BYTES, MERGE_FANOUT))) if nbytes > TIER_BASE_BYTES else 0


def _merge_plan(parts: list[dict]) -> tuple[int, int] | None:
    """(a, b) when parts[a:b] should be merged now (size-tiered), else None."""
    tail = len(parts)
    while tail > 0 and parts[tail - 1]["bytes"] < PART_FULL_BYTES:
        tail -= 1
    small = len(parts) - tail
    if small >= MERGE_FANOUT and len({_tier(p["bytes"]) for p in parts[-MERGE_FANOUT:]}) == 1:
        return len(parts) - MERGE_FANOUT, len(parts)
    if small >= 2 * MERGE_FANOUT:
        return tail, len(parts)
    return None


def _runs_to_compact(parts: list[dict]) -> list[tuple[int, int]]:
    """Maximal runs [a, b) of two or more adjacent parts that are not full, last first."""
    runs, a = [], None
    for i, p in enumerate(parts + [{"bytes": PART_FULL_BYTES}]):
        if p["bytes"] < PART_FULL_BYTES:
            a = i if a is None else a
        else:
            if a is not None and i - a >= 2:
                runs.append((a, i))
            a = None
    return runs[::-1]


# ------------------------------------------------------------------------------------------ per-token columns


@dataclass
class TokenColumns:
    """Per-token results of N trajectories, concatenated: T tokens, K alternatives each.

    The writer's input in columns, so that an import or a generator never builds a Python object per token.
    """

    trajectory_id: list[str]  # [N]
    lengths: np.ndarray  # [N] int64, tokens of each trajectory
    token_id: np.ndarray  # [T] int64
    start: np.ndarray  # [T] int64, character offsets into the text of assistant turn `turn`
    end: np.ndarray  # [T] int64
    turn: np.ndarray  # [T] int32
    surprisal: np.ndarray  # [T] float32
    rank: np.ndarray  # [T] int64, unclipped
    entropy: np.ndarray  # [T] float32
    top_ids: np.ndarray  # [T, K] int64
    top_probs: np.ndarray  # [T, K] float32
    truncated: np.ndarray  # [N] bool
    n_context: np.ndarray  # [N] int64
    tokens: list[str] | pa.Array | None = None  # [T] text of each token, checked against the conversation
    top_tokens: list[str] | pa.Array | None = None  # [T * K] text of each alternative (vocabulary)

    @property
    def offsets(self) -> np.ndarray:
        """[N + 1] token offsets of the trajectories."""
        out = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=out[1:])
        return out

    @classmethod
    def from_scores(cls, ids: Sequence[str], scores: Sequence[TokenScores], top_k: int) -> "TokenColumns":
        """Columns of TokenScores that passed `scores_problem` (same K)."""
        cat = lambda arrays, dtype: (np.concatenate([np.asarray(a, dtype=dtype) for a in arrays])  # noqa: E731
                                     if arrays else np.zeros(0, dtype))
        offsets = [np.asarray(s.offsets, np.int64).reshape(-1, 2) for s in scores]
        return cls(
            trajectory_id=list(ids), lengths=np.array([len(s) for s in scores], dtype=np.int64),
            token_id=cat([s.token_ids for s in scores], np.int64),
            start=cat([o[:, 0] for o in offsets], np.int64), end=cat([o[:, 1] for o in offsets], np.int64),
            turn=cat([s.turn for s in scores], np.int32), surprisal=cat([s.surprisal for s in scores], np.float32),
            rank=cat([s.rank for s in scores], np.int64), entropy=cat([s.entropy for s in scores], np.float32),
            top_ids=cat([np.asarray(s.top_ids).reshape(-1, top_k) for s in scores], np.int64).reshape(-1, top_k),
            top_probs=cat([np.asarray(s.top_probs).reshape(-1, top_k) for s in scores],
                          np.float32).reshape(-1, top_k),
            truncated=np.array([bool(s.truncated) for s in scores], dtype=bool),
            n_context=np.array([int(s.n_context) for s in scores], dtype=np.int64),
            tokens=[t for s in scores for t in s.tokens],
            top_tokens=[t for s in scores for row in s.top_tokens for t in row],
        )

    def take(self, index: Sequence[int]) -> "TokenColumns":
        """The trajectories at positions `index`, in that order."""
        index = np.asarray(index, dtype=np.int64)
        if index.size == len(self.lengths) and (index == np.arange(index.size)).all():
            return self
        offsets = self.offsets
        rows = (np.concatenate([np.arange(offsets[j], offsets[j + 1]) for j in index]) if index.size
                else np.zeros(0, np.int64))
        k = self.top_ids.shape[1]
        pick = lambda v: None if v is None else (  # noqa: E731
            v.take(pa.array(rows)) if isinstance(v, pa.Array) else [v[i] for i in rows.tolist()])
        top_rows = (rows[:, None] * k + np.arange(k)).ravel()
        pick_top = lambda v: None if v is None else (  # noqa: E731
            v.take(pa.array(top_rows)) if isinstance(v, pa.Array) else [v[i] for i in top_rows.tolist()])
        return TokenColumns(
            trajectory_id=[self.trajectory_id[j] for j in index.tolist()], lengths=self.lengths[index],
            token_id=self.token_id[rows], start=self.start[rows], end=self.end[rows], turn=self.turn[rows],
            surprisal=self.surprisal[rows], rank=self.rank[rows], entropy=self.entropy[rows],
            top_ids=self.top_ids[rows], top_probs=self.top_probs[rows], truncated=self.truncated[index],
            n_context=self.n_context[index], tokens=pick(self.tokens), top_tokens=pick_top(self.top_tokens))

    def aggregates(self) -> agg.RankAggregates:
        return agg.batch_aggregates(self.surprisal, self.rank, self.entropy, self.lengths)

    def arrow(self) -> pa.Table:
        """The token rows as written to tokens.parquet."""
        k = self.top_ids.shape[1]
        return pa.table({
            "token_id": self.token_id.astype(np.int32), "start": self.start.astype(np.int32),
            "end": self.end.astype(np.int32), "turn": self.turn.astype(np.int32),
            "surprisal": self.surprisal.astype(np.float32), "rank": self.rank.astype(np.int32),
            "entropy": self.entropy.astype(np.float32),
            "top_ids": pa.FixedSizeListArray.from_arrays(pa.array(self.top_ids.astype(np.int32).ravel()), k),
            "top_probs": pa.FixedSizeListArray.from_arrays(pa.array(self.top_probs.astype(np.float32).ravel()), k),
        })


def token_schema(top_k: int) -> pa.Schema:
    """Schema of tokens.parquet for K = top_k alternatives."""
    return pa.schema([("token_id", pa.int32()), ("start", pa.int32()), ("end", pa.int32()), ("turn", pa.int32()),
                      ("surprisal", pa.float32()), ("rank", pa.int32()), ("entropy", pa.float32()),
                      ("top_ids", pa.list_(pa.int32(), top_k)), ("top_probs", pa.list_(pa.float32(), top_k))])


def scores_problem(s: TokenScores, top_k: int) -> str | None:
    """Why one TokenScores cannot be stored (inconsistent shapes, another K), or None."""
    t = len(s)
    shapes = {"token_ids": np.shape(s.token_ids), "turn": np.shape(s.turn), "rank": np.shape(s.rank),
              "entropy": np.shape(s.entropy)}
    bad = [f"{k} has shape {v}" for k, v in shapes.items() if v != (t,)]
    if np.shape(s.offsets) not in ((t, 2),) and not (t == 0 and np.size(s.offsets) == 0):
        bad.append(f"offsets has shape {np.shape(s.offsets)}")
    for name in ("top_ids", "top_probs"):
        shape = np.shape(getattr(s, name))
        if shape != (t, top_k) and not (t == 0 and np.size(getattr(s, name)) == 0):
            bad.append(f"{name} has shape {shape}, expected ({t}, {top_k})")
    if len(s.tokens) != t:
        bad.append(f"{len(s.tokens)} token texts for {t} tokens")
    if len(s.top_tokens) != t or any(len(row) != top_k for row in s.top_tokens):
        bad.append(f"top_tokens is not {t} rows of {top_k}")
    return "; ".join(bad) or None


def _digest(messages: list[dict]) -> str:
    """Stable digest of a conversation (key order and JSON spacing do not matter)."""
    blob = json.dumps(messages, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


class _Vocabulary:
    """A student's vocabulary in memory: token id -> text, and the entries not committed yet."""

    def __init__(self, texts: list[str | None]):
        self.texts = texts
        self.pending: dict[int, str] = {}
        self._known: np.ndarray | None = None
        self._arrow: pa.Array | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def add(self, entries: dict[int, str]) -> None:
        """Add entries; StoreError when one gives another text for a known id."""
        for i, text in entries.items():
            if i < len(self.texts) and self.texts[i] is not None and self.texts[i] != text:
                raise StoreError(f"the vocabulary differs from the stored one at token {i}: {text!r} against "
                                 f"{self.texts[i]!r}")
        new = {i: t for i, t in entries.items() if i >= len(self.texts) or self.texts[i] is None}
        if not new:
            return
        self.texts += [None] * max(0, max(new) + 1 - len(self.texts))
        for i, t in new.items():
            self.texts[i] = t
        self.pending.update(new)
        self._known = self._arrow = None

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """[n] whether each of [n] ids has a text."""
        if self._known is None:
            self._known = np.array([t is not None for t in self.texts] + [False], dtype=bool)
        return self._known[np.minimum(ids, len(self.texts))]

    def arrow(self) -> pa.Array:
        """[V] texts as an Arrow array ("" where unknown)."""
        if self._arrow is None:
            self._arrow = pa.array([t if t is not None else "" for t in self.texts], pa.string())
        return self._arrow


def _token_problems(columns: TokenColumns, texts: Sequence[list[str]]) -> dict[int, str]:
    """{position: problem} for the trajectories whose tokens do not fit their conversation text.

    texts: [N] the assistant turn texts of each trajectory (`_assistant_texts`). The store rebuilds a token's text
    as texts[turn][start:end], so that must be the token text the scorer recorded.
    """
    problems = {}
    offsets = columns.offsets
    tokens = columns.tokens.to_pylist() if isinstance(columns.tokens, pa.Array) else columns.tokens
    for j, turns in enumerate(texts):
        a, b = int(offsets[j]), int(offsets[j + 1])
        if a == b:
            continue
        turn, start, end = columns.turn[a:b], columns.start[a:b], columns.end[a:b]
        if turn.min() < 0 or turn.max() >= len(turns):
            problems[j] = f"token turn {int(turn.max())} but the conversation has {len(turns)} assistant turns"
            continue
        sizes = np.array([len(t) for t in turns], dtype=np.int64)[turn]
        if (start < 0).any() or (end < start).any() or (end > sizes).any():
            bad = int(np.flatnonzero((start < 0) | (end < start) | (end > sizes))[0])
            problems[j] = (f"token {bad}: offsets {int(start[bad])}-{int(end[bad])} lie outside the text of "
                           f"assistant turn {int(turn[bad])} ({int(sizes[bad])} characters)")
            continue
        if tokens is not None:
            rebuilt = [turns[k][x:y] for k, x, y in zip(turn.tolist(), start.tolist(), end.tolist())]
            if rebuilt != tokens[a:b]:
                bad = next(i for i, (u, v) in enumerate(zip(rebuilt, tokens[a:b])) if u != v)
                problems[j] = (f"token {bad} is {tokens[a + bad]!r} but the conversation text at its offsets is "
                               f"{rebuilt[bad]!r} (offsets must index the text of its assistant turn)")
    return problems


# --------------------------------------------------------------------------------------------- row-group packing


class _TokenPacker:
    """Writes whole trajectories into row groups of at most ROW_GROUP_TOKENS rows (a longer one on its own)."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.path, self.schema = path, schema
        self.writer: pq.ParquetWriter | None = None
        self.pending: list[pa.Table] = []
        self.rows = 0
        self.row_group = 0

    def add(self, rows: pa.Table) -> tuple[int, int]:
        """(row group, offset) of one trajectory's rows; (-1, 0) for none."""
        n = rows.num_rows
        if n == 0:
            return -1, 0
        if self.rows and self.rows + n > ROW_GROUP_TOKENS:
            self.flush()
        where = (self.row_group, self.rows)
        self.pending.append(rows)
        self.rows += n
        return where

    def flush(self) -> None:
        if not self.pending:
            return
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, self.schema, **_token_parquet_options())
        table = pa.concat_tables(self.pending).cast(self.schema)
        self.writer.write_table(table, row_group_size=max(table.num_rows, 1))
        self.pending, self.rows = [], 0
        self.row_group += 1

    def close(self) -> bool:
        """Flush; True when a file was written."""
        self.flush()
        if self.writer is not None:
            self.writer.close()
        return self.writer is not None


class _ConversationPacker:
    """Writes conversation rows into row groups of about CONVERSATION_ROW_GROUP_CHARS characters."""

    def __init__(self, path: Path):
        self.path = path
        self.writer = pq.ParquetWriter(path, _CONVERSATION_SCHEMA, compression="zstd")
        self.pending: list[pa.Table] = []
        self.chars = 0

    def add(self, table: pa.Table) -> None:
        sizes = (pc.utf8_length(table["messages"]).to_numpy(zero_copy_only=False)
                 + pc.utf8_length(table["prompt"]).fill_null(0).to_numpy(zero_copy_only=False))
        a = 0
        for i, size in enumerate(sizes.tolist()):
            if self.chars and self.chars + size > CONVERSATION_ROW_GROUP_CHARS:
                self.pending.append(table.slice(a, i - a))
                self.flush()
                a = i
            self.chars += size
        self.pending.append(table.slice(a))

    def flush(self) -> None:
        table = pa.concat_tables([t for t in self.pending if t.num_rows]) if self.pending else None
        if table is not None and table.num_rows:
            self.writer.write_table(table.cast(_CONVERSATION_SCHEMA), row_group_size=table.num_rows)
        self.pending, self.chars = [], 0

    def close(self) -> None:
        self.flush()
        self.writer.close()


def _write_ipc(path: Path, tables: Iterable[pa.Table], schema: pa.Schema) -> None:
    with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, schema) as writer:
        for table in tables:
            for batch in table.cast(schema).to_batches():
                writer.write_batch(batch)


def _read_ipc(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as source:
        return ipc.open_file(source).read_all()


# ------------------------------------------------------------------------------------------------ table rows


def _table_arrow(frame: pd.DataFrame) -> pa.Table:
    """A trajectory-table frame (no conversation columns) as Arrow, known columns with fixed types."""
    frame = frame.reset_index(drop=True)
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    out = pa.Table.from_pandas(frame, preserve_index=False)
    for i, name in enumerate(out.column_names):
        have = out.schema.field(name).type
        want = _TABLE_TYPES.get(name, pa.string() if pa.types.is_large_string(have) else have)
        if have != want:
            out = out.set_column(i, name, out.column(name).cast(want))
    return out.replace_schema_metadata(None)


def _aggs_arrow(ids: Sequence[str], aggregates: agg.RankAggregates) -> pa.Table:
    table = agg.to_arrow(aggregates)
    return table.add_column(0, "trajectory_id", pa.array(list(ids), pa.string()))


_AGGS_SCHEMA = pa.schema([("trajectory_id", pa.string()), *agg.ARROW_SCHEMA])


def _compact_frame(table: pa.Table) -> pd.DataFrame:
    """A pandas frame of the trajectory table that stays small for 165,000 rows: repeated strings categorical,
    the rest Arrow-backed strings; nullable booleans and integers keep their nulls."""
    columns = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_null(col.type):
            col = col.cast(pa.string())
            n_unique = pc.count_distinct(col, mode="all").as_py()
            if name != "trajectory_id" and n_unique <= max(1, len(col) // 2):
                columns[name] = pd.Categorical(col.to_pandas())
            else:
                columns[name] = col.to_pandas()
        elif pa.types.is_boolean(col.type):
            nullable = col.null_count or name == "correct"  # as trajectory_table: correctness may be unknown
            columns[name] = col.to_pandas().astype("boolean" if nullable else bool)
        elif pa.types.is_integer(col.type) and col.null_count:
            columns[name] = col.to_pandas().astype("Int64")
        else:
            columns[name] = col.to_pandas()
    return pd.DataFrame(columns)


# --------------------------------------------------------------------------------------------------- manifests


def _ensure_store(root: Path) -> None:
    """Create the store's folder and store.json, or check the one there."""
    marker = root / "store.json"
    if marker.exists():
        _read_json(marker, FORMAT)
        return
    if root.exists() and any(p for p in root.iterdir() if not p.name.startswith(".")):
        raise StoreError(f"{root} exists and is not an RSR Explorer results store (no store.json)")
    root.mkdir(parents=True, exist_ok=True)
    _write_json(marker, {"format": FORMAT, "version": VERSION})


def _part_files(folder: Path, part: dict) -> list[Path]:
    names = [f"{part['id']}.meta.parquet", f"{part['id']}.aggs.arrow"]
    if part.get("tokens", 0) > 0:
        names.append(f"{part['id']}.tokens.parquet")
    return [folder / "parts" / n for n in names]


def _remove_leftovers(folder: Path, keep: set[Path]) -> None:
    """Delete every file in `folder` that the manifest does not name: temporary files of a killed writer, parts
    renamed but never committed, parts a finished merge replaced."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.is_file() and path not in keep:
            path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- conversations


class _Conversations:
    """The dataset's conversations folder, for a writer: which ids it holds (and their digests), and appends."""

    def __init__(self, root: Path):
        self.folder = root / "conversations"
        self.folder.mkdir(exist_ok=True)
        self.digests: dict[str, str] = {}
        self.seen_parts: set[str] = set()
        with self._locked():
            manifest = self._manifest()
            _remove_leftovers(self.folder, {self.folder / f"{p['id']}.parquet" for p in manifest["parts"]}
                              | {self.folder / "manifest.json", self.folder / ".lock"})
            self._catch_up(manifest)

    def _locked(self):
        folder = self.folder

        class _Ctx:
            def __enter__(self_):
                self_.lock = _Lock(folder / ".lock", f"the conversations of {folder.parent}", wait_s=600)

            def __exit__(self_, *exc):
                self_.lock.release()
        return _Ctx()

    def _manifest(self) -> dict:
        path = self.folder / "manifest.json"
        if not path.exists():
            _write_json(path, {"format": CONVERSATIONS_FORMAT, "version": VERSION, "seq": 0, "parts": []})
        return _read_json(path, CONVERSATIONS_FORMAT)

    def _catch_up(self, manifest: dict) -> None:
        """Learn the ids of parts committed by other writers since we last looked."""
        for p in manifest["parts"]:
            if p["id"] not in self.seen_parts:
                t = pq.read_table(self.folder / f"{p['id']}.parquet", columns=["trajectory_id", "digest"])
                self.digests.update(zip(t.column(0).to_pylist(), t.column(1).to_pylist()))
                self.seen_parts.add(p["id"])

    def add(self, trajectories: Sequence[Trajectory]) -> dict[str, str]:
        """Write the conversations not yet in the store; {trajectory_id: problem} for those that clash with a
        stored conversation of the same id."""
        digests = {t.trajectory_id: _digest(t.messages) for t in trajectories}
        problems = {tid: "the store holds another conversation under this trajectory id"
                    for tid, d in digests.items() if self.digests.get(tid, d) != d}
        new = [t for t in trajectories if t.trajectory_id not in self.digests]
        if not new:
            return problems
        with self._locked():
            manifest = self._manifest()
            self._catch_up(manifest)
            problems.update({tid: "the store holds another conversation under this trajectory id"
                             for tid, d in digests.items() if self.digests.get(tid, d) != d})
            new, seen = [], set()
            for t in trajectories:
                if t.trajectory_id not in self.digests and t.trajectory_id not in seen:
                    new.append(t)
                    seen.add(t.trajectory_id)
            if new:
                self._commit_new(manifest, new, [digests[t.trajectory_id] for t in new])
        return problems

    def _commit_new(self, manifest: dict, new: list[Trajectory], digests: list[str]) -> None:
        table = pa.table({
            "trajectory_id": [t.trajectory_id for t in new], "prompt": [t.prompt for t in new],
            "messages": [json.dumps(t.messages, ensure_ascii=False) for t in new],
            "source": [t.source for t in new], "record": [int(t.record) for t in new], "digest": digests,
        }, schema=_CONVERSATION_SCHEMA)
        manifest["seq"] += 1
        part_id = f"c{manifest['seq']:06d}"
        final = self.folder / f"{part_id}.parquet"
        tmp = _tmp_path(final)
        packer = _ConversationPacker(tmp)
        packer.add(table)
        packer.close()
        _publish([(tmp, final)])
        manifest["parts"].append({"id": part_id, "conversations": len(new), "bytes": final.stat().st_size})
        _write_json(self.folder / "manifest.json", manifest)
        self.digests.update(zip([t.trajectory_id for t in new], digests))
        self.seen_parts.add(part_id)
        plan = _merge_plan(manifest["parts"])
        if plan:
            self._merge(manifest, *plan)

    def _merge(self, manifest: dict, a: int, b: int) -> None:
        """Replace parts[a:b] by one part, atomically (call with the lock held)."""
        old = manifest["parts"][a:b]
        manifest["seq"] += 1
        part_id = f"c{manifest['seq']:06d}"
        final = self.folder / f"{part_id}.parquet"
        tmp = _tmp_path(final)
        packer = _ConversationPacker(tmp)
        for p in old:
            f = pq.ParquetFile(self.folder / f"{p['id']}.parquet")
            for i in range(f.num_row_groups):
                packer.add(f.read_row_group(i))
            f.close()
        packer.close()
        _publish([(tmp, final)])
        manifest["parts"][a:b] = [{"id": part_id, "conversations": sum(p["conversations"] for p in old),
                                   "bytes": final.stat().st_size}]
        _write_json(self.folder / "manifest.json", manifest)
        self.seen_parts.add(part_id)
        for p in old:
            (self.folder / f"{p['id']}.parquet").unlink(missing_ok=True)

    def compact(self) -> None:
        with self._locked():
            manifest = self._manifest()
            self._catch_up(manifest)
            for a, b in _runs_to_compact(manifest["parts"]):
                self._merge(manifest, a, b)


# ---------------------------------------------------------------------------------------------------- writer


class StoreWriter:
    """Appends one student's results to a store (created if missing), batch by batch.

    StoreWriter(path, settings, vocabulary=None): `vocabulary` is the student's id -> decoded text table (from
    the tokenizer: `[tokenizer.decode([i]) for i in range(vocab_size)]`); without it the vocabulary is learnt
    from the top_ids / top_tokens pairs of what is appended (importing flat files). A student folder that
    exists must have the same settings (else SettingsMismatch); one writer per student at a time.
    """

    def __init__(self, path: str | Path, settings: StudentSettings, vocabulary: Sequence[str] | None = None):
        self.root = Path(path)
        self.settings = settings
        _ensure_store(self.root)
        self.folder = self.root / "students" / student_folder_name(settings.student)
        (self.folder / "parts").mkdir(parents=True, exist_ok=True)
        (self.folder / "vocab").mkdir(exist_ok=True)
        self._lock = _Lock(self.folder / ".lock", f"student {settings.student!r} in {self.root}")
        try:
            self._open(vocabulary)
        except BaseException:
            self._lock.release()
            raise

    def _open(self, vocabulary: Sequence[str] | None) -> None:
        path = self.folder / "manifest.json"
        if path.exists():
            self.manifest = _read_json(path, STUDENT_FORMAT)
            stored = StudentSettings.from_json(self.manifest["settings"])
            diff = stored.differences(self.settings)
            if diff:
                raise SettingsMismatch(
                    f"{self.folder}: the results of student {stored.student!r} here were written with other "
                    f"settings: {', '.join(diff)}. Write these results to another store (or remove that student's "
                    f"folder) rather than mix two sets of numbers under one student.")
        else:
            self.manifest = {"format": STUDENT_FORMAT, "version": VERSION, "settings": self.settings.to_json(),
                             "seq": 0, "parts": [], "vocab": []}
            _write_json(path, self.manifest)
        keep = {f for p in self.manifest["parts"] for f in _part_files(self.folder, p)}
        _remove_leftovers(self.folder / "parts", keep)
        _remove_leftovers(self.folder / "vocab", {self.folder / "vocab" / f"{v['id']}.parquet"
                                                  for v in self.manifest["vocab"]})
        for p in self.folder.iterdir():
            if p.name.startswith(".tmp-"):
                p.unlink(missing_ok=True)
        self._committed: set[str] = set()
        for p in self.manifest["parts"]:
            ids = pq.read_table(self.folder / "parts" / f"{p['id']}.meta.parquet", columns=["trajectory_id"])
            self._committed.update(ids.column(0).to_pylist())
        self._vocab = _Vocabulary(_read_vocabulary(self.folder, self.manifest))
        self._fixed_vocab = vocabulary is not None
        if vocabulary is not None:
            try:
                self._vocab.add(dict(enumerate(vocabulary)))
            except StoreError as e:
                raise StoreError(f"student {self.settings.student!r}: {e}") from None
        self.conversations = _Conversations(self.root)

    # -------------------------------------------------------------------------------------- public

    @property
    def committed_ids(self) -> frozenset[str]:
        """Trajectory ids whose results are committed (a copy)."""
        return frozenset(self._committed)

    def __contains__(self, trajectory_id: str) -> bool:
        return trajectory_id in self._committed

    def __len__(self) -> int:
        return len(self._committed)

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the student's lock (everything appended is already committed)."""
        self._lock.release()

    def add_conversations(self, trajectories: Sequence[Trajectory]) -> dict[str, str]:
        """Store conversations without scores (an import stores them first); {id: problem} for those refused
        (another conversation is stored under the same id)."""
        return self.conversations.add(list(trajectories))

    def append(self, trajectories: Sequence[Trajectory], scores: dict[str, TokenScores],
               table: pd.DataFrame) -> AppendResult:
        """Commit the results of one batch: per-token data, aggregates, trajectory-table rows, conversations.

        table: the trajectory-table rows of these trajectories (`tables.trajectory_table`); its prompt, messages,
        source and record columns go to the conversations, the rest to the student's table. Trajectories already
        committed are skipped; a bad record is left out with a message in the result, the rest is committed.
        """
        result, good, kept = AppendResult(), [], []
        k = self.settings.top_k
        for t in trajectories:
            s = scores.get(t.trajectory_id)
            problem = "no scores" if s is None else scores_problem(s, k)
            if t.trajectory_id in self._committed:
                result.skipped.append(t.trajectory_id)
            elif problem:
                result.errors.append(f"trajectory {t.trajectory_id}: {problem}")
            else:
                good.append(t)
                kept.append(s)
        columns = TokenColumns.from_scores([t.trajectory_id for t in good], kept, k)
        result.extend(self.append_columns(good, columns, table))
        return result

    def append_columns(self, trajectories: Sequence[Trajectory], columns: TokenColumns,
                       table: pd.DataFrame) -> AppendResult:
        """`append` from per-token columns (the import and the generator); trajectories[j] is columns' j-th."""
        if [t.trajectory_id for t in trajectories] != list(columns.trajectory_id):
            raise ValueError("trajectories and columns must list the same trajectory ids in the same order")
        result = AppendResult()
        keep = self._admissible(columns.trajectory_id, result)
        problems = self._column_problems(columns, [trajectories[j] for j in keep], keep)
        keep = [j for j in keep if j not in problems]
        result.errors += [f"trajectory {columns.trajectory_id[j]}: {p}" for j, p in problems.items()]
        columns = columns.take(keep)
        trajectories = [trajectories[j] for j in keep]
        rows, problems = self._table_rows(table, columns.trajectory_id, columns.truncated, columns.n_context,
                                          columns.lengths)
        result.errors += [f"trajectory {tid}: {p}" for tid, p in problems.items()]
        keep = [j for j, tid in enumerate(columns.trajectory_id) if tid not in problems]
        columns, trajectories = columns.take(keep), [trajectories[j] for j in keep]
        rows = rows.iloc[keep].reset_index(drop=True)
        clashes = self.conversations.add(trajectories)
        if clashes:
            result.errors += [f"trajectory {tid}: {p}" for tid, p in clashes.items()]
            keep = [j for j, tid in enumerate(columns.trajectory_id) if tid not in clashes]
            columns, rows = columns.take(keep), rows.iloc[keep].reset_index(drop=True)
        if not columns.trajectory_id:
            return result
        self._commit(columns.trajectory_id, rows, columns.aggregates(), columns)
        result.written += list(columns.trajectory_id)
        return result

    def append_aggregates(self, trajectories: Sequence[Trajectory], aggregates: agg.RankAggregates,
                          table: pd.DataFrame) -> AppendResult:
        """Commit results without per-token data: the table rows and the aggregates (`token_scores` then says
        the tokens are not stored). For runs that keep only what the tables need, and the benchmark generator."""
        ids = [t.trajectory_id for t in trajectories]
        if len(ids) != len(aggregates):
            raise ValueError("one aggregate row per trajectory")
        result = AppendResult()
        keep = self._admissible(ids, result)
        aggregates, trajectories = agg.take(aggregates, np.array(keep, dtype=np.int64)), [trajectories[j] for j in keep]
        ids = [ids[j] for j in keep]
        rows, problems = self._table_rows(table, ids, None, None, aggregates.n)
        if problems:
            result.errors += [f"trajectory {tid}: {p}" for tid, p in problems.items()]
            keep = [j for j, tid in enumerate(ids) if tid not in problems]
            aggregates, trajectories = agg.take(aggregates, np.array(keep, dtype=np.int64)), [trajectories[j] for j in keep]
            ids, rows = [ids[j] for j in keep], rows.iloc[keep].reset_index(drop=True)
        clashes = self.conversations.add(trajectories)
        if clashes:
            result.errors += [f"trajectory {tid}: {p}" for tid, p in clashes.items()]
            keep = [j for j, tid in enumerate(ids) if tid not in clashes]
            aggregates, ids = agg.take(aggregates, np.array(keep, dtype=np.int64)), [ids[j] for j in keep]
            rows = rows.iloc[keep].reset_index(drop=True)
        if ids:
            self._commit(ids, rows, aggregates, None)
            result.written += ids
        return result

    def compact(self) -> None:
        """Merge every run of parts that are not full (and the vocabulary parts, and the conversations)."""
        for a, b in _runs_to_compact(self.manifest["parts"]):
            self._merge(a, b)
        if len(self.manifest["vocab"]) > 1:
            self._merge_vocabulary()
        self.conversations.compact()

    # ------------------------------------------------------------------------------------ checks

    def _admissible(self, ids: Sequence[str], result: AppendResult) -> list[int]:
        """Positions of ids to write: not committed yet, first occurrence in the batch."""
        keep, seen = [], set()
        for j, tid in enumerate(ids):
            if tid in self._committed:
                result.skipped.append(tid)
            elif tid in seen:
                result.errors.append(f"trajectory {tid}: appears twice in one batch; the first is kept")
            else:
                seen.add(tid)
                keep.append(j)
        return keep

    def _column_problems(self, columns: TokenColumns, trajectories: list[Trajectory],
                         positions: list[int]) -> dict[int, str]:
        """{position: problem} for token data that cannot be stored exactly (the vocabulary learns the rest)."""
        cols = columns.take(positions)
        if cols.top_ids.shape[1] != self.settings.top_k:
            return {j: f"{cols.top_ids.shape[1]} alternatives per token, the store keeps top_k = "
                       f"{self.settings.top_k}" for j in positions}
        problems = _token_problems(cols, [_assistant_texts(t.messages) for t in trajectories])
        offsets = cols.offsets
        for name in ("token_id", "rank", "start", "end", "top_ids"):
            v = getattr(cols, name).reshape(len(cols.rank), -1 if len(cols.rank) else 1)
            bad = np.flatnonzero(((v < 0) | (v > _INT32_MAX)).any(axis=1))
            for j in np.unique(np.searchsorted(offsets, bad, side="right") - 1).tolist():
                problems.setdefault(j, f"{name} outside 0 .. 2**31 - 1")
        rest = [j for j in range(len(positions)) if j not in problems]
        for j, p in self._vocabulary_problems(cols.take(rest)).items():
            problems[rest[j]] = p
        return {positions[j]: p for j, p in problems.items()}

    def _vocabulary_problems(self, cols: TokenColumns) -> dict[int, str]:
        """{position: problem} where an alternative's text is not the vocabulary's text for its id; learns the
        texts of new ids first unless the vocabulary was given."""
        flat = cols.top_ids.ravel()
        if flat.size == 0:
            return {}
        k = self.settings.top_k
        owners = lambda bad: np.searchsorted(cols.offsets, bad // k, side="right") - 1  # noqa: E731
        known = self._vocab.contains(flat)
        if cols.top_tokens is None:
            return {int(j): "top_ids without their text, not in the vocabulary" for j in np.unique(owners(
                np.flatnonzero(~known)))}
        texts = (cols.top_tokens.cast(pa.string()) if isinstance(cols.top_tokens, pa.Array)
                 else pa.array(cols.top_tokens, pa.string()))
        if not self._fixed_vocab and not known.all():
            new_ids, first = np.unique(flat[~known], return_index=True)
            picked = texts.take(pa.array(np.flatnonzero(~known)[first])).to_pylist()
            self._vocab.add(dict(zip(new_ids.tolist(), picked)))
            known = self._vocab.contains(flat)
        expected = self._vocab.arrow().take(pa.array(np.where(known, flat, 0)))
        same = pc.equal(expected, texts).fill_null(False).to_numpy(zero_copy_only=False) & known
        problems = {}
        bad = np.flatnonzero(~same)
        for row, j in zip(bad.tolist(), owners(bad).tolist()):
            if j not in problems:
                problems[j] = (f"alternative id {int(flat[row])} outside the student's vocabulary of "
                               f"{len(self._vocab)} entries" if not known[row] else
                               f"alternative id {int(flat[row])} has the text {texts[row].as_py()!r}, the "
                               f"vocabulary's is {expected[row].as_py()!r}")
        return problems

    def _table_rows(self, table: pd.DataFrame, ids: Sequence[str], truncated, n_context,
                    lengths) -> tuple[pd.DataFrame, dict[str, str]]:
        """The table rows of `ids` in order, without conversation columns, and {id: problem}."""
        if "trajectory_id" not in table.columns:
            raise StoreError("the trajectory table has no trajectory_id column")
        frame = table.reset_index(drop=True).drop(columns=[c for c in CONVERSATION_COLUMNS if c in table.columns])
        frame = frame.assign(trajectory_id=frame["trajectory_id"].astype(str))
        clash = [c for c in frame.columns if c in INDEX_COLUMNS or c in agg.ARROW_COLUMNS]
        if clash:
            raise StoreError(f"the trajectory table has columns the store reserves: {clash}")
        frame = frame.drop_duplicates("trajectory_id").set_index("trajectory_id", drop=False)
        problems = {tid: "no row in the trajectory table" for tid in ids if tid not in frame.index}
        rows = frame.reindex(list(ids)).reset_index(drop=True)
        checks = {"n_tokens": np.asarray(lengths), "truncated": truncated, "n_context": n_context,
                  "student": self.settings.student, "r_max": self.settings.r_max}
        defaults = {"truncated": False, "n_context": 0}  # unknown, for results without per-token data
        for name, want in checks.items():
            if name not in rows.columns:
                if name != "n_tokens":
                    rows[name] = defaults[name] if want is None else want
                continue
            if want is None:
                continue
            have = rows[name]
            if name == "student":
                differ = (have.astype(str) != str(want)).to_numpy()
            else:
                values = pd.to_numeric(have.astype(object), errors="coerce").to_numpy(dtype=np.float64,
                                                                                       na_value=np.nan)
                differ = values != np.asarray(want, dtype=np.float64)
            for j in np.flatnonzero(differ & rows["trajectory_id"].notna().to_numpy()).tolist():
                tid = ids[j]
                value = want if np.isscalar(want) or isinstance(want, str) else np.asarray(want)[j]
                problems.setdefault(tid, f"{name} is {rows[name].iloc[j]!r} in the table but {value!r} in the "
                                         f"scores/settings")
        return rows, problems

    # ----------------------------------------------------------------------------------- vocabulary

    def _vocabulary_part(self) -> tuple[dict, Path, Path] | None:
        """A vocabulary part with the entries not committed yet: (manifest entry, temporary path, final path)."""
        if not self._vocab.pending:
            return None
        self.manifest["seq"] += 1
        vid = f"v{self.manifest['seq']:06d}"
        final = self.folder / "vocab" / f"{vid}.parquet"
        tmp = _tmp_path(final)
        _write_vocabulary(tmp, self._vocab.pending)
        return {"id": vid, "entries": len(self._vocab.pending)}, tmp, final

    def _merge_vocabulary(self) -> None:
        self.manifest["seq"] += 1
        vid = f"v{self.manifest['seq']:06d}"
        final = self.folder / "vocab" / f"{vid}.parquet"
        tmp = _tmp_path(final)
        entries = {i: t for i, t in enumerate(self._vocab.texts) if t is not None}
        _write_vocabulary(tmp, entries)
        _publish([(tmp, final)])
        old = self.manifest["vocab"]
        self.manifest["vocab"] = [{"id": vid, "entries": len(entries)}]
        _write_json(self.folder / "manifest.json", self.manifest)
        for v in old:
            (self.folder / "vocab" / f"{v['id']}.parquet").unlink(missing_ok=True)

    # --------------------------------------------------------------------------------------- commit

    def _commit(self, ids: list[str], rows: pd.DataFrame, aggregates: agg.RankAggregates,
                columns: TokenColumns | None) -> None:
        """Write one part (and the batch's new vocabulary), then the manifest that makes them part of the store."""
        self.manifest["seq"] += 1
        part_id = f"p{self.manifest['seq']:06d}"
        final = {kind: self.folder / "parts" / f"{part_id}.{kind}" for kind in
                 ("meta.parquet", "aggs.arrow", "tokens.parquet")}
        tmp = {kind: _tmp_path(path) for kind, path in final.items()}
        index = np.full((len(ids), 3), [-1, 0, NOT_STORED], dtype=np.int64)
        n_rows = 0
        if columns is not None:
            packer = _TokenPacker(tmp["tokens.parquet"], token_schema(self.settings.top_k))
            table, offsets = columns.arrow(), columns.offsets
            for j in range(len(ids)):
                a, b = int(offsets[j]), int(offsets[j + 1])
                index[j, :2] = packer.add(table.slice(a, b - a))
                index[j, 2] = b - a
            n_rows = table.num_rows
            if not packer.close():
                tmp.pop("tokens.parquet")
        else:
            tmp.pop("tokens.parquet")
        meta = _table_arrow(rows)
        for i, name in enumerate(INDEX_COLUMNS):
            meta = meta.append_column(name, pa.array(index[:, i].astype(np.int32 if i < 2 else np.int64)))
        pq.write_table(meta, tmp["meta.parquet"], compression="zstd")
        _write_ipc(tmp["aggs.arrow"], [_aggs_arrow(ids, aggregates)], _AGGS_SCHEMA)
        vocab = self._vocabulary_part()
        pairs = [(tmp[k], final[k]) for k in tmp] + ([(vocab[1], vocab[2])] if vocab else [])
        _publish(pairs)
        part = {"id": part_id, "trajectories": len(ids), "tokens": n_rows,
                "bytes": _files_bytes(final[k] for k in tmp)}
        self.manifest["parts"].append(part)
        if vocab:
            self.manifest["vocab"].append(vocab[0])
        _write_json(self.folder / "manifest.json", self.manifest)
        self._vocab.pending = {}
        self._committed.update(ids)
        self._after_commit()

    def _after_commit(self) -> None:
        plan = _merge_plan(self.manifest["parts"])
        while plan:
            self._merge(*plan)
            plan = _merge_plan(self.manifest["parts"])
        if len(self.manifest["vocab"]) >= 2 * MERGE_FANOUT:
            self._merge_vocabulary()

    def _merge(self, a: int, b: int) -> None:
        """Replace parts[a:b] by one part, streaming row group by row group, then commit and delete the old."""
        old = self.manifest["parts"][a:b]
        self.manifest["seq"] += 1
        part_id = f"p{self.manifest['seq']:06d}"
        parts = self.folder / "parts"
        final = {kind: parts / f"{part_id}.{kind}" for kind in ("meta.parquet", "aggs.arrow", "tokens.parquet")}
        tmp = {kind: _tmp_path(path) for kind, path in final.items()}
        packer = _TokenPacker(tmp["tokens.parquet"], token_schema(self.settings.top_k))
        metas = []
        for p in old:
            meta = pq.read_table(parts / f"{p['id']}.meta.parquet")
            metas.append(_repack_tokens(meta, parts / f"{p['id']}.tokens.parquet", packer))
        if not packer.close():
            tmp.pop("tokens.parquet")
        meta = pa.concat_tables(metas, promote_options="permissive")
        pq.write_table(meta, tmp["meta.parquet"], compression="zstd")
        _write_ipc(tmp["aggs.arrow"], (_read_ipc(parts / f"{p['id']}.aggs.arrow") for p in old), _AGGS_SCHEMA)
        _publish([(tmp[k], final[k]) for k in tmp])
        self.manifest["parts"][a:b] = [{"id": part_id, "trajectories": sum(p["trajectories"] for p in old),
                                        "tokens": sum(p["tokens"] for p in old),
                                        "bytes": _files_bytes(final[k] for k in tmp)}]
        _write_json(self.folder / "manifest.json", self.manifest)
        for p in old:
            for f in _part_files(self.folder, p):
                f.unlink(missing_ok=True)


def _repack_tokens(meta: pa.Table, tokens_path: Path, packer: _TokenPacker) -> pa.Table:
    """Copy the token rows of one part's trajectories into `packer`; the meta table with the new index."""
    row_group = meta.column("_row_group").to_numpy().copy()
    offset = meta.column("_offset").to_numpy().copy()
    length = meta.column("_length").to_numpy()
    if (length > 0).any():
        source = pq.ParquetFile(tokens_path)
        current, rows = -1, None
        for j in range(meta.num_rows):
            if length[j] <= 0:
                row_group[j], offset[j] = -1, 0
                continue
            if row_group[j] != current:
                current, rows = int(row_group[j]), source.read_row_group(int(row_group[j]))
            row_group[j], offset[j] = packer.add(rows.slice(int(offset[j]), int(length[j])))
        source.close()
    meta = meta.set_column(meta.schema.get_field_index("_row_group"), "_row_group", pa.array(row_group, pa.int32()))
    return meta.set_column(meta.schema.get_field_index("_offset"), "_offset", pa.array(offset, pa.int32()))


def _write_vocabulary(path: Path, entries: dict[int, str]) -> None:
    ids = sorted(entries)
    pq.write_table(pa.table({"token_id": pa.array(ids, pa.int32()), "text": pa.array([entries[i] for i in ids],
                                                                                      pa.string())},
                            schema=_VOCAB_SCHEMA), path, compression="zstd")


def _read_vocabulary(folder: Path, manifest: dict) -> list[str | None]:
    """The student's vocabulary as a list indexed by token id (None where unknown)."""
    vocab: list[str | None] = []
    for v in manifest["vocab"]:
        t = pq.read_table(folder / "vocab" / f"{v['id']}.parquet")
        ids, texts = t.column("token_id").to_pylist(), t.column("text").to_pylist()
        if ids:
            vocab += [None] * (max(max(ids) + 1 - len(vocab), 0))
            for i, text in zip(ids, texts):
                vocab[i] = text
    return vocab


def compact(path: str | Path, student: str | None = None) -> None:
    """Merge the small parts of one student (or of every student) and of the conversations, atomically.

    Appends already merge as they go (size-tiered); this is for a store left with many small parts anyway. It
    takes each student's writer lock, so it refuses to run while a writer is open.
    """
    store = ResultsStore(path)
    names = [student] if student else store.students()
    for name in names:
        with StoreWriter(path, store.settings(name)) as writer:
            writer.compact()
    if not names:
        _Conversations(Path(path)).compact()


# ---------------------------------------------------------------------------------------------------- reader


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


class ResultsStore:
    """Reads a store: students, their trajectory tables, aggregates and tokens, and the conversations.

    Cheap to open; everything is read on demand and cached (file footers and recent row groups in small LRU
    caches). A manifest that changes on disk (a writer committed) is reread on the next call. Thread-safe.
    """

    def __init__(self, path: str | Path):
        self.root = Path(path)
        if not (self.root / "store.json").is_file():
            raise StoreError(f"{self.root} is not an RSR Explorer results store (no store.json)")
        _read_json(self.root / "store.json", FORMAT)
        self._lock = threading.RLock()
        self._students: dict[str, _StudentState] = {}
        self._files = _LRU(32, _close_parquet)
        self._row_groups = _LRU(8)
        self._conv_stamp = None
        self._conv_index: _IdIndex | None = None

    def close(self) -> None:
        with self._lock:
            self._files.clear()
            self._row_groups.clear()

    # -------------------------------------------------------------------------------- students

    def students(self) -> list[str]:
        """Names of the students with results in this store, sorted."""
        folder = self.root / "students"
        names = []
        for sub in sorted(folder.iterdir()) if folder.is_dir() else []:
            if (sub / "manifest.json").is_file():
                names.append(_read_json(sub / "manifest.json", STUDENT_FORMAT)["settings"]["student"])
        return sorted(names)

    def settings(self, student: str) -> StudentSettings:
        return StudentSettings.from_json(self._state(student).manifest["settings"])

    def _folder(self, student: str) -> Path:
        return self.root / "students" / student_folder_name(student)

    def _state(self, student: str) -> _StudentState:
        path = self._folder(student) / "manifest.json"
        try:
            st = path.stat()
        except FileNotFoundError:
            raise KeyError(f"no results of student {student!r} in {self.root} "
                           f"(students: {', '.join(self.students()) or 'none'})") from None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            state = self._students.get(student)
            if state is None or state.stamp != stamp:
                state = _StudentState(stamp, _read_json(path, STUDENT_FORMAT))
                self._students[student] = state
            return state

    def _retry(self, student: str | None, read: Callable):
        """Run `read`; if a part vanished (a writer merged it away), reread the manifest and try once more."""
        try:
            return read()
        except FileNotFoundError:
            with self._lock:
                if student is not None:
                    self._students.pop(student, None)
                self._conv_stamp = None
                self._files.clear()
                self._row_groups.clear()
            return read()

    def _parts(self, student: str) -> tuple[Path, list[dict]]:
        return self._folder(student) / "parts", self._state(student).manifest["parts"]

    # ----------------------------------------------------------------------------------- tables

    def trajectory_table(self, student: str, columns: Sequence[str] | None = None,
                         r_max: int | None = None) -> pd.DataFrame:
        """The student's trajectory table (no conversation text), in commit order, with compact dtypes.

        columns: a subset to read. r_max: recompute the r_max-dependent metric columns (and `r_max`) from the
        aggregates for another r_max; None keeps the stored ones (the manifest's r_max).
        """
        def read():
            folder, parts = self._parts(student)
            tables = [pq.read_table(folder / f"{p['id']}.meta.parquet", columns=list(columns) if columns else None)
                      for p in parts]
            return tables
        tables = self._retry(student, read)
        if not tables:
            return pd.DataFrame(columns=list(columns) if columns else ["trajectory_id"])
        table = pa.concat_tables(tables, promote_options="permissive")
        table = table.drop_columns([c for c in INDEX_COLUMNS if c in table.column_names])
        frame = _compact_frame(table)
        if r_max is not None and r_max != self.settings(student).r_max:
            new = agg.rmax_columns(self.rank_aggregates(student), r_max)
            for name, values in new.items():
                if name in frame.columns:
                    frame[name] = values
            if "r_max" in frame.columns:
                frame["r_max"] = int(r_max)
        return frame

    def aggregates(self, student: str) -> pa.Table:
        """trajectory_id + the aggregate columns (`aggregates.ARROW_COLUMNS`), rows as `trajectory_table`."""
        def read():
            folder, parts = self._parts(student)
            return [_read_ipc(folder / f"{p['id']}.aggs.arrow") for p in parts]
        tables = self._retry(student, read)
        return pa.concat_tables(tables) if tables else _AGGS_SCHEMA.empty_table()

    def rank_aggregates(self, student: str) -> agg.RankAggregates:
        """The aggregates as numpy arrays (`aggregates.RankAggregates`), rows as `trajectory_table`.

        Filled part by part into arrays allocated once, so that loading needs little more memory than the result.
        """
        def read():
            folder, parts = self._parts(student)
            paths = [folder / f"{p['id']}.aggs.arrow" for p in parts]
            sizes = [agg.arrow_sizes(_read_ipc(path)) for path in paths]
            out = agg.allocate(*(sum(s[i] for s in sizes) for i in range(3)))
            at = (0, 0, 0)
            for path in paths:
                at = agg.place(out, agg.from_arrow(_read_ipc(path)), at)
            return out
        return self._retry(student, read)

    def scored_ids(self, student: str) -> set[str]:
        """Ids of the trajectories with results of this student."""
        return set(self._index(student).ids)

    def has_tokens(self, student: str, trajectory_id: str) -> bool:
        """Whether the store holds this trajectory's per-token data (KeyError: no results at all)."""
        return self._index(student).row(trajectory_id)["_length"] >= 0

    def _index(self, student: str) -> _IdIndex:
        state = self._state(student)
        with self._lock:
            if state.index is None:
                def read():
                    folder, parts = self._parts(student)
                    pieces = []
                    for p in parts:
                        t = pq.read_table(folder / f"{p['id']}.meta.parquet",
                                          columns=["trajectory_id", *INDEX_COLUMNS, "truncated", "n_context"])
                        pieces.append((t.column(0).combine_chunks(),
                                       {n: t.column(n).to_numpy() for n in t.column_names[1:]}))
                    return _IdIndex.concat(pieces, [p["id"] for p in parts])
                state.index = self._retry(student, read)
            return state.index

    # ----------------------------------------------------------------------------------- tokens

    def vocabulary(self, student: str) -> list[str | None]:
        """The student's vocabulary: token id -> decoded text (None for ids never seen when it was learnt)."""
        return list(self._vocab(student))

    def _vocab(self, student: str) -> np.ndarray:
        state = self._state(student)
        with self._lock:
            if state.vocab is None:
                state.vocab = np.array(_read_vocabulary(self._folder(student), state.manifest) + [None],
                                       dtype=object)[:-1]
            return state.vocab

    def _row_group(self, student: str, part: str, row_group: int) -> pa.Table:
        path = self._folder(student) / "parts" / f"{part}.tokens.parquet"
        with self._lock:
            f = self._files.get(path, lambda: pq.ParquetFile(path, memory_map=True))
            return self._row_groups.get((path, row_group), lambda: f.read_row_group(row_group))

    def token_scores(self, student: str, trajectory_id: str) -> TokenScores:
        """One trajectory's per-token results, exactly as scored: token texts from the conversation text and the
        offsets, the alternatives' texts from the vocabulary. KeyError when it has no per-token data here."""
        def read():
            index = self._index(student)
            if trajectory_id not in index:
                raise KeyError(f"trajectory {trajectory_id!r} has no results of student {student!r}")
            row = index.row(trajectory_id)
            if row["_length"] < 0:
                raise KeyError(f"trajectory {trajectory_id!r}: per-token data of student {student!r} not stored")
            if row["_length"] == 0:
                return None, row
            rows = self._row_group(student, row["part"], int(row["_row_group"]))
            return rows.slice(int(row["_offset"]), int(row["_length"])), row
        rows, row = self._retry(student, read)
        k = self.settings(student).top_k
        texts = _assistant_texts(self.conversation(trajectory_id)["messages"])
        return _token_scores(rows, k, texts, self._vocab(student), bool(row["truncated"]), int(row["n_context"]))

    # ---------------------------------------------------------------------------- conversations

    def _conversation_index(self) -> _IdIndex:
        path = self.root / "conversations" / "manifest.json"
        if not path.exists():
            return _IdIndex.concat([], [])
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            if self._conv_stamp != stamp:
                manifest = _read_json(path, CONVERSATIONS_FORMAT)
                pieces = []
                for p in manifest["parts"]:
                    f = pq.ParquetFile(self.root / "conversations" / f"{p['id']}.parquet")
                    sizes = [f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)]
                    ids = f.read(columns=["trajectory_id"]).column(0).combine_chunks()
                    f.close()
                    pieces.append((ids, {
                        "row_group": np.repeat(np.arange(len(sizes), dtype=np.int32), sizes),
                        "row": (np.concatenate([np.arange(n, dtype=np.int32) for n in sizes]) if sizes
                                else np.zeros(0, np.int32))}))
                self._conv_index = _IdIndex.concat(pieces, [p["id"] for p in manifest["parts"]])
                self._conv_stamp = stamp
            return self._conv_index

    def conversation_ids(self) -> set[str]:
        """Ids of every conversation in the store."""
        return set(self._conversation_index().ids)

    def conversation(self, trajectory_id: str) -> dict:
        """{trajectory_id, prompt, messages (list of {role, content}), source, record} of one trajectory."""
        def read():
            index = self._conversation_index()
            if trajectory_id not in index:
                raise KeyError(f"no conversation {trajectory_id!r} in {self.root}")
            row = index.row(trajectory_id)
            path = self.root / "conversations" / f"{row['part']}.parquet"
            with self._lock:
                f = self._files.get(path, lambda: pq.ParquetFile(path, memory_map=True))
                rows = self._row_groups.get((path, row["row_group"]), lambda: f.read_row_group(row["row_group"]))
            return rows.slice(row["row"], 1).to_pylist()[0]
        rec = self._retry(None, read)
        rec["messages"] = json.loads(rec["messages"])
        rec.pop("digest", None)
        return rec

    def conversations(self, ids: Iterable[str]) -> pd.DataFrame:
        """trajectory_id, prompt, messages (JSON text), source, record of several trajectories, in that order."""
        ids = list(ids)
        index = self._conversation_index()
        missing = [i for i in ids if i not in index]
        if missing:
            raise KeyError(f"no conversation for {len(missing)} trajectories, e.g. {missing[0]!r}")
        out = []
        for tid in ids:
            rec = self.conversation(tid)
            rec["messages"] = json.dumps(rec["messages"], ensure_ascii=False)
            out.append(rec)
        return pd.DataFrame(out, columns=["trajectory_id", *CONVERSATION_COLUMNS])

    def trajectory(self, trajectory_id: str, student: str | None = None) -> Trajectory:
        """The Trajectory (conversation and metadata) back; ids from the student's table row when given."""
        conv = self.conversation(trajectory_id)
        meta = {}
        if student is not None:
            table = self.trajectory_table(student)
            row = table[table["trajectory_id"] == trajectory_id]
            meta = row.iloc[0].to_dict() if len(row) else {}
        correct = meta.get("correct")
        return Trajectory(trajectory_id=trajectory_id, problem_id=str(meta.get("problem_id", "")),
                          teacher=str(meta.get("teacher", "")), messages=conv["messages"],
                          run=None if pd.isna(meta.get("run")) else str(meta.get("run")),
                          correct=None if correct is None or pd.isna(correct) else bool(correct),
                          source=conv["source"] or "", record=int(conv["record"] or 0))


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
    return TokenScores(
        token_ids=col("token_id", np.int64),
        tokens=[texts[j][a:b] for j, a, b in zip(turn.tolist(), start.tolist(), end.tolist())],
        offsets=np.stack([start, end], axis=1), turn=turn, surprisal=col("surprisal", np.float32),
        rank=col("rank", np.int64), entropy=col("entropy", np.float32), top_ids=top_ids,
        top_tokens=vocab[top_ids].tolist(), top_probs=fixed("top_probs", np.float32),
        truncated=truncated, n_context=n_context)
