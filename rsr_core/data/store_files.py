"""The files of the results store (`rsr_core.data.store`): atomic publication, versioned manifests, locks, row
groups of whole trajectories, and the size tiers that decide which parts to merge.

Nothing here knows about trajectories or metrics; see store/layout.py's docstring for the layout and why.
"""
from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import time
import uuid
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

FORMAT = "rsr-explorer-store"
VERSION = 1

ROW_GROUP_TOKENS = 1 << 16  # tokens of whole trajectories per row group (a longer trajectory alone)
CONVERSATION_ROW_GROUP_CHARS = 1 << 20  # characters of conversations per row group
PART_FULL_BYTES = 256 << 20  # a part this big is never merged again
MERGE_FANOUT = 8  # merge this many parts of one size tier
TIER_BASE_BYTES = 1 << 20  # the tier of a part is floor(log_8(bytes / 1 MiB))

CONVERSATION_SCHEMA = pa.schema([("trajectory_id", pa.string()), ("prompt", pa.string()), ("messages", pa.string()),
                                 ("source", pa.string()), ("record", pa.int64()), ("digest", pa.string()),
                                 ("tools", pa.string())])  # tools: JSON text of the tools offered, null without
VOCAB_SCHEMA = pa.schema([("token_id", pa.int32()), ("text", pa.string())])


class StoreError(Exception):
    """A store that cannot be used as asked: not a store, locked, missing data, inconsistent input."""


class StoreVersionError(StoreError):
    """The store (or one of its manifests) has a format version this code does not read."""


# ------------------------------------------------------------------------------------ atomic files, manifests


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tmp_path(final: Path) -> Path:
    """A temporary name beside `final`; a name starting with .tmp- is never part of the store."""
    return final.with_name(f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-{final.name}")


def publish(pairs: Iterable[tuple[Path, Path]]) -> None:
    """fsync each temporary file, rename it to its final name, then fsync the folders."""
    folders = set()
    for tmp, final in pairs:
        fsync(tmp)
        os.replace(tmp, final)
        folders.add(final.parent)
    for folder in folders:
        fsync(folder)


def write_json(path: Path, obj: dict) -> None:
    """Replace `path` atomically by `obj` as JSON (temporary file, fsync, rename, fsync of the folder)."""
    tmp = tmp_path(path)
    try:
        tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False), encoding="utf-8")
        publish([(tmp, path)])
    except BaseException:
        discard([tmp])
        raise


def read_json(path: Path, fmt: str) -> dict:
    """A manifest or store.json, checked for its format, its version (StoreVersionError for another version) and,
    for a manifest, its fields (`manifest_problem`): StoreError naming the file and what to do otherwise."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise StoreError(f"{path}: not valid JSON ({e}); {_damaged_advice(path)}") from e
    except FileNotFoundError:
        raise StoreError(f"{path} is missing; {_damaged_advice(path)}") from None
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise StoreError(f"{path}: not an RSR Explorer results store file (format {found!r}, expected {fmt!r})")
    if obj.get("version") != VERSION:
        raise StoreVersionError(f"{path}: store format version {obj.get('version')!r} is not supported: this "
                                f"version of RSR Explorer reads version {VERSION}. Use the RSR Explorer version "
                                f"that wrote it, or import the results again with this one.")
    problem = manifest_problem(obj, fmt)
    if problem:
        raise StoreError(f"{path}: the manifest is damaged ({problem}); {_damaged_advice(path)}")
    return obj


# the fields of each manifest: name -> (type, of each element for a list)
MANIFEST_FIELDS = {
    FORMAT + "/student": {"settings": (dict, None), "seq": (int, None), "parts": (list, dict), "vocab": (list, dict)},
    FORMAT + "/conversations": {"seq": (int, None), "parts": (list, dict)},
}


def manifest_problem(obj: dict, fmt: str) -> str | None:
    """What is wrong with the fields of a manifest (missing, of another type, parts without ids), or None."""
    for name, (kind, element) in MANIFEST_FIELDS.get(fmt, {}).items():
        value = obj.get(name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f"`{name}` is {'missing' if name not in obj else f'a {type(value).__name__}, not a {kind.__name__}'}"
        if element is not None and not all(isinstance(v, element) and isinstance(v.get("id"), str) for v in value):
            return f"`{name}` holds entries without an id"
    settings = obj.get("settings")
    if fmt == FORMAT + "/student" and not isinstance(settings.get("student"), str):
        return "`settings` names no student"
    return None


def _damaged_advice(path: Path) -> str:
    """What to do about a damaged file of a store."""
    folder = path.parent
    if folder.parent.name == "students":
        return (f"restore it from a copy, or remove the student's folder ({folder}) and score again: the "
                "conversations and the other students stay")
    if folder.name == "conversations":
        return "restore it from a copy; without it the store's conversations cannot be read"
    return "restore it from a copy, or write the results to a new store"


def discard(paths: Iterable[Path]) -> None:
    """Delete files, quietly (they may not exist; this runs while another error is on its way)."""
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass


def undo_commit(manifest_path: Path, fmt: str, before: dict, written: Iterable[Path]) -> bool:
    """After a commit failed part-way (a full disk, a read-only folder, Ctrl-C): when the manifest on disk is still
    `before`, delete the files the commit wrote (temporary or renamed into place, named by no manifest) and return
    True: the caller restores its manifest to `before`. False when the new manifest reached the disk (the commit
    happened, only what followed failed) or the manifest cannot be read: then nothing is deleted, and the next
    writer removes whatever no manifest names."""
    try:
        on_disk = read_json(manifest_path, fmt)
    except Exception:  # noqa: BLE001 - unsure: keep every file
        return False
    if on_disk != before:
        return False
    discard(written)
    return True


def files_bytes(paths: Iterable[Path]) -> int:
    return int(sum(p.stat().st_size for p in paths if p.exists()))


def remove_leftovers(folder: Path, keep: set[Path]) -> None:
    """Delete every file in `folder` but `keep`: temporary files of a killed writer, parts renamed but never
    committed, parts that a finished merge replaced. Only a writer holding the folder's lock may call it."""
    if folder.is_dir():
        for path in folder.iterdir():
            if path.is_file() and path not in keep:
                path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------- locks, caches


class FileLock:
    """An exclusive lock on a file (flock): released on `release`, or when the process dies, even by kill -9."""

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


def held_by_a_writer(store: Path) -> bool:
    """Whether a live process holds the lock of any student of the store at `store` (a writer is at work)."""
    for lock in store.glob("students/*/.lock"):
        try:
            FileLock(lock, str(lock)).release()
        except (StoreError, OSError):
            return True
    return False


@contextmanager
def locked(path: Path, what: str, wait_s: float) -> Iterator[None]:
    lock = FileLock(path, what, wait_s)
    try:
        yield
    finally:
        lock.release()


class LRU:
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


# ------------------------------------------------------------------------------------------------ merge tiers


def tier(nbytes: int) -> int:
    """Size tier of a part: 0 below 8 MiB, 1 below 64 MiB, ..."""
    return int(math.log(nbytes / TIER_BASE_BYTES, MERGE_FANOUT)) if nbytes > TIER_BASE_BYTES else 0


def merge_plan(parts: list[dict]) -> tuple[int, int] | None:
    """(a, b) when parts[a:b] should be merged now, else None (parts: manifest entries with "bytes").

    Size-tiered: the newest MERGE_FANOUT parts when they are of one tier; every part that is not full when
    there are twice that many (so that their number stays bounded whatever the sizes of the appends).
    """
    tail = len(parts)
    while tail > 0 and parts[tail - 1]["bytes"] < PART_FULL_BYTES:
        tail -= 1
    small = len(parts) - tail
    if small >= MERGE_FANOUT and len({tier(p["bytes"]) for p in parts[-MERGE_FANOUT:]}) == 1:
        return len(parts) - MERGE_FANOUT, len(parts)
    if small >= 2 * MERGE_FANOUT:
        return tail, len(parts)
    return None


def runs_to_compact(parts: list[dict]) -> list[tuple[int, int]]:
    """Maximal runs [a, b) of two or more adjacent parts that are not full, the last run first."""
    runs, a = [], None
    for i, p in enumerate(parts + [{"bytes": PART_FULL_BYTES}]):
        if p["bytes"] < PART_FULL_BYTES:
            a = i if a is None else a
        else:
            if a is not None and i - a >= 2:
                runs.append((a, i))
            a = None
    return runs[::-1]  # merging a run shortens the list after it, not before


# ------------------------------------------------------------------------------------------ parquet and arrow


def token_schema(top_k: int) -> pa.Schema:
    """Schema of tokens.parquet, K = top_k alternatives per token. `lark_brier` (LARK's Brier term) is null where
    unknown: in files written before it was kept (a merge copies them in with nulls) and for imported scores."""
    return pa.schema([("token_id", pa.int32()), ("start", pa.int32()), ("end", pa.int32()), ("turn", pa.int32()),
                      ("surprisal", pa.float32()), ("rank", pa.int32()), ("entropy", pa.float32()),
                      ("top_ids", pa.list_(pa.int32(), top_k)), ("top_probs", pa.list_(pa.float32(), top_k)),
                      ("lark_brier", pa.float32())])


def token_parquet_options() -> dict:
    """Parquet options of tokens.parquet (~34 bytes a token): zstd, dictionaries for ids, byte-stream-split
    floats, delta-coded offsets. A fresh dict each time: pyarrow edits the one it is given."""
    return dict(compression="zstd", write_statistics=False, use_dictionary=["token_id", "top_ids", "turn"],
                column_encoding={"start": "DELTA_BINARY_PACKED", "end": "DELTA_BINARY_PACKED",
                                 "surprisal": "BYTE_STREAM_SPLIT", "entropy": "BYTE_STREAM_SPLIT",
                                 "top_probs": "BYTE_STREAM_SPLIT", "lark_brier": "BYTE_STREAM_SPLIT"})


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with the columns of `schema` it lacks added as nulls (rows of a file written before them), in the
    schema's order."""
    for f in schema:
        if f.name not in table.column_names:
            table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    return table.select(schema.names)


class _Packer:
    """A Parquet file written row group by row group. In a `with` block, an error (a full disk, Ctrl-C) closes it
    quietly without flushing (`abort`); the caller deletes the file."""

    writer: pq.ParquetWriter | None
    pending: list[pa.Table]

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is not None:
            self.abort()

    def abort(self) -> None:
        self.pending = []
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001 - the file is being dropped
                pass


class TokenPacker(_Packer):
    """Writes whole trajectories into row groups of at most ROW_GROUP_TOKENS rows (a longer one on its own)."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.path, self.schema = path, schema
        self.writer: pq.ParquetWriter | None = None
        self.pending: list[pa.Table] = []
        self.rows = 0
        self.row_group = 0

    def add(self, rows: pa.Table) -> tuple[int, int]:
        """(row group, offset in it) of one trajectory's [T] rows; (-1, 0) when T = 0."""
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
            self.writer = pq.ParquetWriter(self.path, self.schema, **token_parquet_options())
        table = pa.concat_tables([conform(t, self.schema) for t in self.pending]).cast(self.schema)
        self.writer.write_table(table, row_group_size=table.num_rows)
        self.pending, self.rows = [], 0
        self.row_group += 1

    def close(self) -> bool:
        """Flush and close; True when a file was written (no rows, no file)."""
        self.flush()
        if self.writer is not None:
            self.writer.close()
        return self.writer is not None



class ConversationPacker(_Packer):
    """Writes conversation rows into row groups of about CONVERSATION_ROW_GROUP_CHARS characters."""

    def __init__(self, path: Path):
        self.writer = pq.ParquetWriter(path, CONVERSATION_SCHEMA, compression="zstd")
        self.pending: list[pa.Table] = []
        self.chars = 0

    def add(self, table: pa.Table) -> None:
        if "tools" not in table.column_names:  # a part written before tools were kept
            table = table.append_column("tools", pa.nulls(table.num_rows, pa.string()))
        sizes = (pc.utf8_length(table["messages"]).fill_null(0).to_numpy(zero_copy_only=False)
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
        rows = [t for t in self.pending if t.num_rows]
        if rows:
            table = pa.concat_tables(rows).cast(CONVERSATION_SCHEMA)
            self.writer.write_table(table, row_group_size=table.num_rows)
        self.pending, self.chars = [], 0

    def close(self) -> None:
        self.flush()
        self.writer.close()



def write_ipc(path: Path, tables: Iterable[pa.Table], schema: pa.Schema) -> None:
    """An uncompressed Arrow IPC file (memory-mapped when read), batch by batch."""
    with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, schema) as writer:
        for table in tables:
            for batch in table.cast(schema).to_batches():
                writer.write_batch(batch)


def read_ipc(path: Path) -> pa.Table:
    """An Arrow IPC file, memory-mapped (zero-copy)."""
    with pa.memory_map(str(path)) as source:
        return ipc.open_file(source).read_all()


def write_vocabulary(path: Path, entries: dict[int, str]) -> None:
    ids = sorted(entries)
    table = pa.table({"token_id": pa.array(ids, pa.int32()), "text": pa.array([entries[i] for i in ids], pa.string())},
                     schema=VOCAB_SCHEMA)
    pq.write_table(table, path, compression="zstd")


def read_vocabulary(paths: Iterable[Path]) -> list[str | None]:
    """The union of vocabulary parts as a list indexed by token id (None where unknown)."""
    vocab: list[str | None] = []
    for path in paths:
        t = pq.read_table(path)
        ids, texts = t.column("token_id").to_pylist(), t.column("text").to_pylist()
        if ids:
            vocab += [None] * max(max(ids) + 1 - len(vocab), 0)
            for i, text in zip(ids, texts):
                vocab[i] = text
    return vocab
