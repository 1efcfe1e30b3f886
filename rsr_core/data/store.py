"""The results store: one folder per dataset that `score`, the app, the demo data and a distributed run share.

Why. The study behind this tool scores 165,000 trajectories (11 teachers x 5,000 problems x 3 runs) of ~10,000
tokens each: 1.65 billion tokens per student. As Python objects that is far beyond any machine, and flat Parquet
tables must be read whole. The store keeps every number on disk in a layout where each reader touches only what
it needs: the app loads the trajectory table (~22 MB for 165,000 rows) and the rank aggregates (~3.7 KB per
10k-token trajectory, ~610 MB for 165,000; `rsr_core.analysis.aggregates`), from which it recomputes every
metric at any r_max in well under a second; the inspector reads one trajectory's tokens (one Parquet row group,
~50 ms); a conversation is read on its own.

Layout (format `rsr-explorer-store`, version 1)::

    STORE/                               one dataset
      store.json                         {"format": "rsr-explorer-store", "version": 1}
      conversations/                     shared by every student of the dataset
        manifest.json                    the committed parts (written last, atomically)
        c000001.parquet ...              trajectory_id, prompt, messages (JSON text), source, record, digest;
                                         row groups of about 1 M characters
      students/<student, %-quoted>/
        manifest.json                    settings (student, fingerprint, dtype, max_len, top_k, r_max, extra),
                                         the committed parts and vocabulary parts
        vocab/v000001.parquet ...        token_id -> decoded text (deltas; their union is the vocabulary)
        parts/p000001.meta.parquet       one row per trajectory: the trajectory table (ids, metric columns at
                                         the manifest's r_max, truncated, n_context, correct, any extra column;
                                         no prompt/messages text) and where its tokens are: _row_group,
                                         _offset, _length (-1: per-token data not stored)
              p000001.aggs.arrow         its rank aggregates, rows as in the meta file (Arrow IPC, uncompressed,
                                         memory-mapped: read at disk speed)
              p000001.tokens.parquet     one row per response token: token_id, start, end (offsets into the text
                                         of assistant turn `turn`), turn, surprisal f32, rank (unclipped),
                                         entropy f32, top_ids [K], top_probs [K]; no strings

Why this way:

- **No per-token strings.** A token's text is `assistant_texts(messages)[turn][start:end]`, and the writer
  checks that this is the scored token text before it commits; an alternative's text comes from the student's
  vocabulary (id -> decoded text), checked the same way. That is most of the saving over the flat token table:
  ~32 bytes a token on disk (zstd, byte-stream-split floats, delta-coded offsets).
- **Row groups of whole trajectories**, up to `ROW_GROUP_TOKENS` (64k) tokens (a longer trajectory gets its own):
  reading one trajectory decodes one row group, and a part file has at most a few thousand row groups.
- **Atomic, incremental, resumable writes.** An append writes its part files under temporary names, fsyncs
  them, renames them, and only then replaces manifest.json (temporary file, fsync, rename, fsync of the
  folder). A file belongs to the store once the manifest names it, so a kill -9 at any point leaves the last
  committed manifest, whose files are complete; the next writer deletes the leftovers. The writer knows the
  committed ids: a killed run resumes without rescoring them, and an append skips them (no duplicates). Memory
  does not grow with what was written, but for the set of committed ids (~100 bytes each).
- **Few files, no compaction step needed.** Appends make small parts; after each commit the writer merges the
  newest `MERGE_FANOUT` (8) parts of one size tier into one (size-tiered, as in an LSM tree), streaming row
  group by row group, so a token is rewritten about log8(part size / append size) times and a student keeps a
  few dozen parts. Parts above `PART_FULL_BYTES` (256 MB) are left alone. `compact()` merges whatever is not
  full, atomically in the same way, for a store that should be as few files as possible.
- **Settings identify the numbers.** A student folder holds one student's results under one set of settings;
  a writer with other settings is refused (`SettingsMismatch`) rather than filed under a second folder, which
  would put two sets of numbers under one student name and have them compared as one.
- **Versioned.** store.json and every manifest carry the format and its version; a version this code does not
  know is refused with a message (`StoreVersionError`), never misread.
- **One writer per student** (a lock file; a second writer is refused, a killed one releases it). Writers of
  different students share the conversations folder under a short lock. A distributed run sends its scored
  batches to one writer per student. Readers take no lock: they read the manifest they find and reread it when
  it changes; a part merged away under them is found again through the new manifest.

API: `StoreWriter(path, StudentSettings(...), vocabulary=None)` with `.append(trajectories, scores, table)`,
`.append_columns(...)` (per-token columns, `store_columns.TokenColumns`), `.append_aggregates(...)` (no
per-token data), `.committed_ids`, `.compact()`; `ResultsStore(path)` with `.students()`, `.settings(s)`,
`.trajectory_table(s, columns=None, r_max=None)`, `.aggregates(s)` (Arrow), `.rank_aggregates(s)` (numpy),
`.rank_aggregate_parts(s)` (numpy views of the memory-mapped files), `.scored_ids(s)`, `.scored_index(s)`,
`.unscored_ids(scored)`, `.token_scores(s, id)`, `.conversation(id)`, `.conversations(ids)`, `.trajectory(id, s)`,
`.vocabulary(s)`; `compact(path)`. `rsr_core.data.store_import` imports flat score files. The file mechanics
live in `store_files.py`, the per-token columns and their checks in `store_columns.py`.
"""
from __future__ import annotations

import copy
import hashlib
import json
import threading
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Collection, Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rsr_core.analysis import aggregates as agg
from rsr_core.analysis import part_aggregates as pagg
from rsr_core.analysis.metrics import (R_MAX, SAME_PASS_METRICS, TRAJECTORY_METRICS, lacking_same_pass,
                                      same_pass_metrics)
from rsr_core.data import store_files as files
from rsr_core.data.store_columns import (TokenColumns, Vocabulary, range_problems, scores_problem,
                                         token_problems)
from rsr_core.data.store_files import FORMAT, VERSION, StoreError, StoreVersionError
from rsr_core.data.tables import META_COLUMNS
from rsr_core.data.token_scores import TokenScores
from rsr_core.analysis.segments import PART_COLUMNS, token_parts
from rsr_core.data.trajectory import Trajectory, assistant_texts, turn_part_starts

__all__ = ["FORMAT", "VERSION", "StoreError", "StoreVersionError", "SettingsMismatch", "StudentSettings",
           "AppendResult", "TokenColumns", "StoreWriter", "ResultsStore", "compact", "student_folder_name"]

STUDENT_FORMAT = FORMAT + "/student"
CONVERSATIONS_FORMAT = FORMAT + "/conversations"
LABELS = "labels.parquet"  # correctness labels found after scoring (math-verify), for every student
LABEL_SCHEMA = pa.schema([("trajectory_id", pa.string()), ("correct", pa.bool_()), ("correct_source", pa.string())])
CONVERSATION_COLUMNS = ("prompt", "messages", "source", "record", "tools")
INDEX_COLUMNS = ("_row_group", "_offset", "_length")
NOT_STORED = -1  # _length of a trajectory whose per-token data is not in the store
PART_FILES = ("meta.parquet", "aggs.arrow", "tokens.parquet")

_TABLE_TYPES = {
    "trajectory_id": pa.string(), "problem_id": pa.string(), "teacher": pa.string(), "run": pa.string(),
    "student": pa.string(), "n_tokens": pa.int64(), "truncated": pa.bool_(), "n_context": pa.int64(),
    "correct": pa.bool_(), "r_max": pa.int64(),
    **{m: pa.float64() for m in TRAJECTORY_METRICS if m != "n_tokens"},
    **{m: pa.float64() for m in SAME_PASS_METRICS},
}
_AGGS_SCHEMA = pa.schema([("trajectory_id", pa.string()), *agg.ARROW_SCHEMA, *pagg.ARROW_SCHEMA])


class SettingsMismatch(StoreError):
    """A writer's settings differ from those the student's results were written with."""


@dataclass
class StudentSettings:
    """What identifies a student's numbers; stored in its manifest and compared when a writer opens it."""

    student: str
    fingerprint: str = ""  # the weights (Student.fingerprint); "" when unknown (imported files)
    dtype: str = ""  # e.g. "float32", "bfloat16"; "" when unknown
    max_len: int = 0  # truncation length in tokens; 0 when unknown
    top_k: int = 5  # alternatives stored per token
    r_max: int = R_MAX  # r_max of the stored metric columns (the aggregates give any other)
    extra: dict = field(default_factory=dict)  # anything else the numbers depend on (chat template hash, ...)
    source: str = ""  # where the student was loaded from (a model folder, a .gguf file, a hub id, an embedded
    #                   name), so that scoring more can load it again; not part of what identifies the numbers

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> "StudentSettings":
        return cls(**{k: obj[k] for k in ("student", "fingerprint", "dtype", "max_len", "top_k", "r_max", "extra",
                                          "source") if k in obj})

    @property
    def known(self) -> bool:
        """Whether the settings say how the numbers were computed (an import may not know the weights or dtype)."""
        return bool(self.fingerprint and self.dtype and self.max_len)

    def differences(self, other: "StudentSettings") -> list[str]:
        """'name=theirs (stored: ours)' for every setting that differs (the source does not count)."""
        a, b = self.to_json(), other.to_json()
        return [f"{k}={b[k]!r} (stored: {a[k]!r})" for k in a if k != "source" and a[k] != b[k]]


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


def student_folder_name(student: str) -> str:
    """The folder a student's results are filed under: its name %-quoted (a hub id has a slash)."""
    name = urllib.parse.quote(student, safe="")
    return "%2E" + name[1:] if name.startswith(".") else name


def _digest(t: Trajectory) -> str:
    """Stable digest of a trajectory's conversation and tools (`Trajectory.identity`; key order and JSON spacing do
    not matter)."""
    blob = json.dumps(t.identity, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


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


def _ensure_store(root: Path) -> None:
    """Create the store's folder and store.json, or check the one there."""
    marker = root / "store.json"
    if marker.exists():
        files.read_json(marker, FORMAT)
        return
    if root.exists() and any(not p.name.startswith(".") for p in root.iterdir()):
        raise StoreError(f"{root} exists and is not an RSR Explorer results store (no store.json)")
    root.mkdir(parents=True, exist_ok=True)
    files.write_json(marker, {"format": FORMAT, "version": VERSION})


def _part_files(folder: Path, part: dict) -> list[Path]:
    """The files of one committed part (a part without token rows has no tokens file)."""
    kinds = PART_FILES if part.get("tokens", 0) > 0 else PART_FILES[:2]
    return [folder / "parts" / f"{part['id']}.{kind}" for kind in kinds]


# ---------------------------------------------------------------------------------------------- conversations


class _Conversations:
    """The dataset's conversations folder, for a writer: the ids it holds (with their digests), and appends.

    Writers of several students share it: every change happens under its lock, after rereading its manifest.
    """

    def __init__(self, root: Path):
        self.folder = root / "conversations"
        self.folder.mkdir(exist_ok=True)
        self.digests: dict[str, str] = {}
        self.seen_parts: set[str] = set()
        with self._locked():
            manifest = self._manifest()
            damaged = missing_files(self.folder, manifest)
            if damaged:
                raise StoreError(damaged)
            keep = {self.folder / f"{p['id']}.parquet" for p in manifest["parts"]}
            files.remove_leftovers(self.folder, keep | {self.folder / "manifest.json", self.folder / ".lock"})
            self._catch_up(manifest)

    def _locked(self):
        return files.locked(self.folder / ".lock", f"the conversations of {self.folder.parent}", wait_s=600)

    def _manifest(self) -> dict:
        path = self.folder / "manifest.json"
        if not path.exists():
            files.write_json(path, {"format": CONVERSATIONS_FORMAT, "version": VERSION, "seq": 0, "parts": []})
        return files.read_json(path, CONVERSATIONS_FORMAT)

    def _catch_up(self, manifest: dict) -> None:
        """Learn the ids of parts committed by other writers since we last looked."""
        for p in manifest["parts"]:
            if p["id"] not in self.seen_parts:
                t = pq.read_table(self.folder / f"{p['id']}.parquet", columns=["trajectory_id", "digest"])
                self.digests.update(zip(t.column(0).to_pylist(), t.column(1).to_pylist()))
                self.seen_parts.add(p["id"])

    def clashes(self, digests: dict[str, str]) -> dict[str, str]:
        return {tid: "the store holds another conversation under this trajectory id"
                for tid, d in digests.items() if self.digests.get(tid, d) != d}

    def add(self, trajectories: Sequence[Trajectory]) -> dict[str, str]:
        """Write the conversations not in the store yet; {trajectory_id: problem} for those that clash with a
        stored conversation of the same id (not written)."""
        digests = {t.trajectory_id: _digest(t) for t in trajectories}
        if all(tid in self.digests for tid in digests):
            return self.clashes(digests)
        with self._locked():
            manifest = self._manifest()
            self._catch_up(manifest)
            new = list({t.trajectory_id: t for t in reversed(trajectories)
                        if t.trajectory_id not in self.digests}.values())[::-1]
            if new:
                self._commit(manifest, new, [digests[t.trajectory_id] for t in new])
            return self.clashes(digests)

    def _commit(self, manifest: dict, new: list[Trajectory], digests: list[str]) -> None:
        table = pa.table({
            "trajectory_id": [t.trajectory_id for t in new], "prompt": [t.prompt for t in new],
            "messages": [json.dumps(t.messages, ensure_ascii=False) for t in new],
            "source": [t.source for t in new], "record": [int(t.record) for t in new], "digest": digests,
            "tools": [json.dumps(t.tools, ensure_ascii=False) if t.tools else None for t in new],
        }, schema=files.CONVERSATION_SCHEMA)
        self._write_part(manifest, [table], len(new), len(manifest["parts"]), len(manifest["parts"]))
        self.digests.update(zip([t.trajectory_id for t in new], digests))
        plan = files.merge_plan(manifest["parts"])
        while plan:
            self._merge(manifest, *plan)
            plan = files.merge_plan(manifest["parts"])

    def _write_part(self, manifest: dict, tables: Iterable[pa.Table], count: int, a: int, b: int) -> None:
        """Write `tables` as one part replacing parts[a:b] (a == b: a new part), commit the manifest, then delete
        the replaced files. Call with the lock held. A failure leaves the manifest (on disk and `manifest`) as it
        was and no file of the part behind."""
        before = copy.deepcopy(manifest)
        manifest["seq"] += 1
        part_id = f"c{manifest['seq']:06d}"
        final = self.folder / f"{part_id}.parquet"
        tmp = files.tmp_path(final)
        try:
            with files.ConversationPacker(tmp) as packer:
                for table in tables:
                    packer.add(table)
                packer.close()
            files.publish([(tmp, final)])
            old = manifest["parts"][a:b]
            manifest["parts"][a:b] = [{"id": part_id, "conversations": count, "bytes": final.stat().st_size}]
            files.write_json(self.folder / "manifest.json", manifest)
        except BaseException:
            if files.undo_commit(self.folder / "manifest.json", CONVERSATIONS_FORMAT, before, [tmp, final]):
                manifest.clear()
                manifest.update(before)
            raise
        self.seen_parts.add(part_id)
        for p in old:
            (self.folder / f"{p['id']}.parquet").unlink(missing_ok=True)

    def _merge(self, manifest: dict, a: int, b: int) -> None:
        old = manifest["parts"][a:b]

        def tables():
            for p in old:
                f = pq.ParquetFile(self.folder / f"{p['id']}.parquet")
                for i in range(f.num_row_groups):
                    yield f.read_row_group(i)
                f.close()
        self._write_part(manifest, tables(), sum(p["conversations"] for p in old), a, b)

    def compact(self) -> None:
        with self._locked():
            manifest = self._manifest()
            self._catch_up(manifest)
            for a, b in files.runs_to_compact(manifest["parts"]):
                self._merge(manifest, a, b)


# ---------------------------------------------------------------------------------------------------- writer


@dataclass
class _Batch:
    """What one append is about to commit: trajectories with their per-token columns or their aggregates."""

    trajectories: list[Trajectory]
    columns: TokenColumns | None = None
    aggregates: agg.RankAggregates | None = None
    rows: pd.DataFrame | None = None  # the trajectory-table rows, once found
    parts: pagg.PartAggregates | None = None  # the aggregates of the answer and tool-call parts

    @property
    def ids(self) -> list[str]:
        return [t.trajectory_id for t in self.trajectories]

    def keep(self, positions: Sequence[int]) -> "_Batch":
        index = np.asarray(positions, dtype=np.int64)
        return _Batch([self.trajectories[j] for j in index.tolist()],
                      None if self.columns is None else self.columns.take(index),
                      None if self.aggregates is None else agg.take(self.aggregates, index),
                      None if self.rows is None else self.rows.iloc[index].reset_index(drop=True),
                      None if self.parts is None else pagg.take(self.parts, index))

    def without(self, problems: dict[str, str], result: AppendResult) -> "_Batch":
        """The batch less the trajectories with a problem ({id: problem}), each reported in `result`."""
        if not problems:
            return self
        result.errors += [f"trajectory {tid}: {p}" for tid, p in problems.items()]
        return self.keep([j for j, tid in enumerate(self.ids) if tid not in problems])

    def lengths(self) -> np.ndarray:
        return self.columns.lengths if self.columns is not None else self.aggregates.n


class StoreWriter:
    """Appends one student's results to a store (created if missing), batch by batch.

    StoreWriter(path, settings, vocabulary=None): `vocabulary` is the student's id -> decoded text table (from
    the tokenizer: `[tokenizer.decode([i]) for i in range(vocab_size)]`); without it the vocabulary is learnt
    from the top_ids / top_tokens pairs of what is appended (importing flat files). A student folder that
    exists must have the same settings (else SettingsMismatch); one writer per student at a time (StoreError).
    """

    def __init__(self, path: str | Path, settings: StudentSettings, vocabulary: Sequence[str] | None = None,
                 adopt_settings: bool = False):
        self.root = Path(path)
        self.settings = settings
        self.adopt_settings = adopt_settings  # an import may record settings over the unknown ones of an earlier
        _ensure_store(self.root)
        self.folder = self.root / "students" / student_folder_name(settings.student)
        (self.folder / "parts").mkdir(parents=True, exist_ok=True)
        (self.folder / "vocab").mkdir(exist_ok=True)
        self._lock = files.FileLock(self.folder / ".lock", f"student {settings.student!r} in {self.root}")
        try:
            self.manifest = self._open_manifest()
            damaged = missing_files(self.folder, self.manifest)
            if damaged:
                raise StoreError(damaged)
            self._remove_leftovers()
            self._committed = self._read_committed()
            self._vocab = self._open_vocabulary(vocabulary)
            self.conversations = _Conversations(self.root)
        except BaseException:
            self._lock.release()
            raise

    def _open_manifest(self) -> dict:
        path = self.folder / "manifest.json"
        if not path.exists():
            manifest = {"format": STUDENT_FORMAT, "version": VERSION, "settings": self.settings.to_json(),
                        "seq": 0, "parts": [], "vocab": []}
            files.write_json(path, manifest)
            return manifest
        manifest = files.read_json(path, STUDENT_FORMAT)
        stored = StudentSettings.from_json(manifest["settings"])
        diff = stored.differences(self.settings)
        same_numbers = (stored.student, stored.top_k, stored.r_max) == (self.settings.student, self.settings.top_k,
                                                                        self.settings.r_max)
        if diff and not stored.known and self.settings.known and self.adopt_settings and same_numbers:
            manifest["settings"] = self.settings.to_json()  # an import names what an earlier one did not know
            files.write_json(path, manifest)
            return manifest
        if diff and not stored.known and self.settings.known:
            raise SettingsMismatch(
                f"{self.folder}: the results of student {stored.student!r} here were imported without the settings "
                f"they were computed with ({', '.join(diff)}), so nothing tells whether new numbers would match "
                f"them. Import them again naming the student (`import-scores ... --student NAME_OR_PATH "
                f"--dtype DTYPE`), or write these results to another store.")
        if diff:
            raise SettingsMismatch(
                f"{self.folder}: the results of student {stored.student!r} here were written with other settings: "
                f"{', '.join(diff)}. Write these results to another store (or remove that student's folder) "
                f"rather than mix two sets of numbers under one student.")
        if self.settings.source and manifest["settings"].get("source") != self.settings.source:
            manifest["settings"]["source"] = self.settings.source  # where to load the student from next time
        return manifest

    def _remove_leftovers(self) -> None:
        """What a killed writer left: files no manifest names (we hold the student's lock)."""
        files.remove_leftovers(self.folder / "parts",
                               {f for p in self.manifest["parts"] for f in _part_files(self.folder, p)})
        files.remove_leftovers(self.folder / "vocab", set(self._vocab_paths()))
        for p in self.folder.iterdir():
            if p.name.startswith(".tmp-"):
                p.unlink(missing_ok=True)

    def _vocab_paths(self) -> list[Path]:
        return [self.folder / "vocab" / f"{v['id']}.parquet" for v in self.manifest["vocab"]]

    def _read_committed(self) -> set[str]:
        committed: set[str] = set()
        for p in self.manifest["parts"]:
            ids = pq.read_table(self.folder / "parts" / f"{p['id']}.meta.parquet", columns=["trajectory_id"])
            committed.update(ids.column(0).to_pylist())
        return committed

    def _open_vocabulary(self, vocabulary: Sequence[str] | None) -> Vocabulary:
        vocab = Vocabulary(files.read_vocabulary(self._vocab_paths()), fixed=vocabulary is not None)
        if vocabulary is not None:
            try:
                vocab.add(dict(enumerate(vocabulary)))
            except StoreError as e:
                raise StoreError(f"student {self.settings.student!r}: {e}") from None
        return vocab

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

    def changed(self, trajectories: Sequence[Trajectory]) -> dict[str, str]:
        """{id: problem} for trajectories whose id the store holds with another conversation: resuming would
        keep the numbers of the old text."""
        return self.conversations.clashes({t.trajectory_id: _digest(t) for t in trajectories})

    def add_conversations(self, trajectories: Sequence[Trajectory]) -> dict[str, str]:
        """Store conversations without scores (an import stores them first); {id: problem} for those refused
        (another conversation is stored under the same id)."""
        return self.conversations.add(list(trajectories))

    def append(self, trajectories: Sequence[Trajectory], scores: dict[str, TokenScores],
               table: pd.DataFrame) -> AppendResult:
        """`append_pairs` of the trajectories and their scores by id (`scores` may hold more)."""
        return self.append_pairs([(t, scores.get(t.trajectory_id)) for t in trajectories], table)

    def append_pairs(self, pairs: Sequence[tuple[Trajectory, TokenScores | None]],
                     table: pd.DataFrame) -> AppendResult:
        """Commit the results of one batch, each trajectory with its own scores: per-token data, aggregates,
        trajectory-table rows, conversations.

        table: the trajectory-table rows of these trajectories (`tables.trajectory_table`); its prompt, messages,
        source and record columns go to the conversations, the rest to the student's table. Trajectories already
        committed are skipped; a bad record (scores that do not fit its conversation, another conversation stored
        under its id) is left out with a message in the result, the rest is committed.
        """
        result, good = AppendResult(), []
        for t, s in pairs:
            problem = "no scores" if s is None else scores_problem(s, self.settings.top_k)
            if t.trajectory_id in self._committed:
                result.skipped.append(t.trajectory_id)
            elif problem:
                result.errors.append(f"trajectory {t.trajectory_id}: {problem}")
            else:
                good.append((t, s))
        columns = TokenColumns.from_scores([t.trajectory_id for t, _ in good], [s for _, s in good],
                                           self.settings.top_k)
        result.extend(self.append_columns([t for t, _ in good], columns, table))
        return result

    def append_columns(self, trajectories: Sequence[Trajectory], columns: TokenColumns,
                       table: pd.DataFrame) -> AppendResult:
        """`append` from per-token columns (the import and the generator): trajectories[j] is columns' j-th."""
        if [t.trajectory_id for t in trajectories] != list(columns.trajectory_id):
            raise ValueError("trajectories and columns must list the same trajectory ids in the same order")
        if columns.top_ids.shape[1] != self.settings.top_k:
            raise StoreError(f"{columns.top_ids.shape[1]} alternatives per token; the store of student "
                             f"{self.settings.student!r} keeps top_k = {self.settings.top_k}")
        result = AppendResult()
        batch = self._admissible(_Batch(list(trajectories), columns=columns), result)
        batch = batch.without(self._token_problems(batch), result)
        return self._finish(batch, table, result)

    def append_aggregates(self, trajectories: Sequence[Trajectory], aggregates: agg.RankAggregates,
                          table: pd.DataFrame) -> AppendResult:
        """Commit results without per-token data: the table rows and the aggregates (`token_scores` then says
        the tokens are not stored). For runs that keep only what the tables need, and the benchmark generator."""
        if len(trajectories) != len(aggregates):
            raise ValueError("one aggregate row per trajectory")
        result = AppendResult()
        batch = self._admissible(_Batch(list(trajectories), aggregates=aggregates), result)
        return self._finish(batch, table, result)

    def compact(self) -> None:
        """Merge every run of parts that are not full (and the vocabulary parts, and the conversations)."""
        for a, b in files.runs_to_compact(self.manifest["parts"]):
            self._merge(a, b)
        if len(self.manifest["vocab"]) > 1:
            self._merge_vocabulary()
        self.conversations.compact()

    def lacking_ids(self) -> set[str]:
        """Committed trajectories stored without the same-pass columns (`metrics.lacking_same_pass`): written
        before they were kept, or imported without them. `fill_same_pass` adds them."""
        lacking: set[str] = set()
        for p in self.manifest["parts"]:
            path = self.folder / "parts" / f"{p['id']}.meta.parquet"
            names = [c for c in ("trajectory_id", "avg_surprisal", "lark_rho") if c in pq.read_schema(path).names]
            frame = pq.read_table(path, columns=names).to_pandas()
            lacking.update(frame["trajectory_id"][lacking_same_pass(frame)].astype(str))
        return lacking

    def fill_same_pass(self, scores: dict[str, TokenScores]) -> AppendResult:
        """Add the same-pass columns (the trajectory's brier, lark_brier, lark_rho and each token's lark_brier)
        to committed trajectories that lack them, from new scores of the same conversations under the same
        settings; the numbers stored before are kept as they are. Each part holding one is rewritten once and
        committed atomically, as a merge is. A trajectory whose new scores do not cover the same tokens is left
        as it was, with a message in the result."""
        result = AppendResult()
        wanted = {tid: s for tid, s in scores.items() if tid in self._committed and s.lark_brier is not None
                  and s.brier is not None}
        for tid in set(scores) - set(wanted):
            result.skipped.append(tid)
        for p in list(self.manifest["parts"]):
            ids = pq.read_table(self.folder / "parts" / f"{p['id']}.meta.parquet", columns=["trajectory_id"])
            mine = {tid: wanted[tid] for tid in ids.column(0).to_pylist() if tid in wanted}
            if mine:
                at = next(i for i, q in enumerate(self.manifest["parts"]) if q["id"] == p["id"])
                self._fill_part(at, mine, result)
        return result

    def _fill_part(self, at: int, scores: dict[str, TokenScores], result: AppendResult) -> None:
        """Rewrite parts[at] with the same-pass columns of `scores` (trajectory id -> its new TokenScores)."""
        old = self.manifest["parts"][at]
        before = copy.deepcopy(self.manifest)
        final, tmp = self._new_part_paths()
        parts = self.folder / "parts"
        meta = pq.read_table(parts / f"{old['id']}.meta.parquet")
        ids = meta.column("trajectory_id").to_pylist()
        filled = np.zeros(len(ids), bool)

        def edit(j: int, rows: pa.Table) -> pa.Table:
            s = scores.get(ids[j])
            if s is None:
                return rows
            same = len(s) == rows.num_rows and np.array_equal(rows.column("token_id").to_numpy(), s.token_ids)
            if not same:
                result.errors.append(f"trajectory {ids[j]}: its new scores cover other tokens than the stored "
                                     f"ones; its same-pass columns are left unknown")
                return rows
            filled[j] = True
            rows = files.conform(rows, files.token_schema(self.settings.top_k))
            return rows.set_column(rows.schema.get_field_index("lark_brier"), "lark_brier",
                                   pa.array(s.lark_brier.astype(np.float32)))
        try:
            with files.TokenPacker(tmp["tokens.parquet"], files.token_schema(self.settings.top_k)) as packer:
                meta = _repack_tokens(meta, parts / f"{old['id']}.tokens.parquet", packer, edit)
                wrote_tokens = packer.close()
            for j, tid in enumerate(ids):  # trajectories without tokens have nothing to compute from
                if tid in scores and not filled[j] and len(scores[tid]) == 0:
                    filled[j] = True
            meta = _with_same_pass(meta, [scores[t] if f else None for t, f in zip(ids, filled)])
            if not wrote_tokens:
                tmp.pop("tokens.parquet")
            pq.write_table(meta, tmp["meta.parquet"], compression="zstd")
            files.write_ipc(tmp["aggs.arrow"], [_conform_aggs(files.read_ipc(parts / f"{old['id']}.aggs.arrow"))],
                            _AGGS_SCHEMA)
            files.publish([(tmp[k], final[k]) for k in tmp])
            self.manifest["parts"][at] = {**old, "id": final["meta.parquet"].name.split(".")[0],
                                          "bytes": files.files_bytes(final[k] for k in tmp)}
            files.write_json(self.folder / "manifest.json", self.manifest)
        except BaseException:
            if files.undo_commit(self.folder / "manifest.json", STUDENT_FORMAT, before,
                                 [*final.values(), *tmp.values()]):
                self.manifest = before
            raise
        for f in _part_files(self.folder, old):
            f.unlink(missing_ok=True)
        result.written += [t for t, f in zip(ids, filled) if f]

    # ---------------------------------------------------------------------------------- the steps

    def _admissible(self, batch: _Batch, result: AppendResult) -> _Batch:
        """The batch less what is committed (skipped) and repeated ids (errors; the first is kept)."""
        keep, seen = [], set()
        for j, tid in enumerate(batch.ids):
            if tid in self._committed:
                result.skipped.append(tid)
            elif tid in seen:
                result.errors.append(f"trajectory {tid}: appears twice in one batch; the first is kept")
            else:
                seen.add(tid)
                keep.append(j)
        return batch.keep(keep)

    def _token_problems(self, batch: _Batch) -> dict[str, str]:
        """{id: problem} for per-token data that the store could not give back exactly; the vocabulary learns
        the alternatives' texts of the rest."""
        columns = batch.columns
        problems = token_problems(columns, [assistant_texts(t.messages) for t in batch.trajectories])
        for j, p in range_problems(columns).items():
            problems.setdefault(j, p)
        rest = [j for j in range(len(batch.ids)) if j not in problems]
        for j, p in self._vocab.problems(columns.take(rest)).items():
            problems[rest[j]] = p
        return {batch.ids[j]: p for j, p in problems.items()}

    def _finish(self, batch: _Batch, table: pd.DataFrame, result: AppendResult) -> AppendResult:
        """Aggregate, find and check the table rows, store the conversations, commit the part."""
        if batch.aggregates is None:
            batch = _Batch(batch.trajectories, batch.columns, batch.columns.aggregates(),
                           parts=_part_aggregates(batch.trajectories, batch.columns))
        elif batch.parts is None:
            batch = _Batch(batch.trajectories, batch.columns, batch.aggregates, parts=pagg.unknown(len(batch.ids)))
        rows, problems = self._table_rows(table, batch)
        batch = _Batch(batch.trajectories, batch.columns, batch.aggregates, rows, batch.parts).without(problems,
                                                                                                       result)
        batch = batch.without(self.conversations.add(batch.trajectories), result)
        if batch.ids:
            self._commit(batch.ids, batch.rows, batch.aggregates, batch.columns, batch.parts)
            result.written += batch.ids
        return result

    def _table_rows(self, table: pd.DataFrame, batch: _Batch) -> tuple[pd.DataFrame, dict[str, str]]:
        """The table rows of the batch in its order, without conversation columns, and {id: problem} where a row
        is missing or disagrees with the scores or the settings."""
        if "trajectory_id" not in table.columns:
            raise StoreError("the trajectory table has no trajectory_id column")
        reserved = [c for c in table.columns if c in INDEX_COLUMNS or c in agg.ARROW_COLUMNS]
        if reserved:
            raise StoreError(f"the trajectory table has columns the store reserves: {reserved}")
        frame = table.reset_index(drop=True).drop(columns=[c for c in CONVERSATION_COLUMNS if c in table.columns])
        frame = frame.assign(trajectory_id=frame["trajectory_id"].astype(str)).drop_duplicates("trajectory_id")
        ids = batch.ids
        rows = frame.set_index("trajectory_id", drop=False).reindex(ids).reset_index(drop=True)
        problems = {tid: "no row in the trajectory table" for tid, missing in
                    zip(ids, rows["trajectory_id"].isna().to_numpy()) if missing}
        columns = batch.columns
        expected = {"n_tokens": batch.lengths(), "student": self.settings.student, "r_max": self.settings.r_max,
                    "truncated": None if columns is None else columns.truncated,
                    "n_context": None if columns is None else columns.n_context}
        for name, want in expected.items():
            if name not in rows.columns:
                if name != "n_tokens":  # results without tokens: unknown truncation and context
                    rows[name] = want if want is not None else {"truncated": False, "n_context": 0}[name]
            elif want is not None:
                for j in np.flatnonzero(_differ(rows[name], want) & rows["trajectory_id"].notna().to_numpy()):
                    value = want if np.ndim(want) == 0 else np.asarray(want)[j]
                    problems.setdefault(ids[j], f"{name} is {_shown(rows[name].iloc[j])} in the table but "
                                                f"{_shown(value)} in the scores or the store's settings")
        self._check_metrics(rows, batch.aggregates, batch.parts, problems)
        _check_same_pass(rows, batch.columns, problems)
        return rows, problems

    def _check_metrics(self, rows: pd.DataFrame, aggregates: agg.RankAggregates, parts: pagg.PartAggregates,
                       problems: dict[str, str]) -> None:
        """Fill the metric columns the table lacks from the aggregates; report rows whose metrics are not those of
        their tokens at the store's r_max (within 1e-6: a table written as text rounds them). A part column is
        checked where the parts are known, and `rsr_tool_calls` added only where there are tool calls."""
        ids = rows["trajectory_id"].to_numpy()
        known = parts.n[:, 0] >= 0
        for name, want in agg.metric_columns(aggregates, self.settings.r_max, parts).items():
            is_part = name in PART_COLUMNS.values()
            if name not in rows.columns:
                if not is_part or (known.any() and not (name == "rsr_tool_calls" and np.isnan(want).all())):
                    rows[name] = want
                continue
            have = pd.to_numeric(rows[name].astype(object), errors="coerce").to_numpy(np.float64, na_value=np.nan)
            bad = ~np.isclose(have, want, rtol=1e-6, atol=0, equal_nan=True) & pd.notna(ids)
            if is_part:
                bad &= known
            for j in np.flatnonzero(bad).tolist():
                problems.setdefault(ids[j], f"{name} is {_shown(have[j])} in the table but {_shown(want[j])} from its "
                                            f"tokens at r_max = {self.settings.r_max}")

    # --------------------------------------------------------------------------------------- commit

    def _commit(self, ids: list[str], rows: pd.DataFrame, aggregates: agg.RankAggregates,
                columns: TokenColumns | None, parts: pagg.PartAggregates) -> None:
        """Write one part (and the batch's new vocabulary), then the manifest that makes them part of the store.
        A failure (a full disk, a read-only folder, Ctrl-C) before the manifest is written leaves the store as it
        was: no file of the part behind, the manifest unchanged."""
        before = copy.deepcopy(self.manifest)
        final, tmp = self._new_part_paths()
        written = [*final.values(), *tmp.values()]
        try:
            index = np.tile(np.array([-1, 0, NOT_STORED], dtype=np.int64), (len(ids), 1))
            with files.TokenPacker(tmp["tokens.parquet"], files.token_schema(self.settings.top_k)) as packer:
                if columns is not None:
                    table, offsets = columns.arrow(), columns.offsets
                    for j in range(len(ids)):
                        a, b = int(offsets[j]), int(offsets[j + 1])
                        index[j] = (*packer.add(table.slice(a, b - a)), b - a)
                wrote_tokens = packer.close()
            if not wrote_tokens:
                tmp.pop("tokens.parquet")
            meta = _table_arrow(rows)
            for i, name in enumerate(INDEX_COLUMNS):
                meta = meta.append_column(name, pa.array(index[:, i].astype(np.int32 if i < 2 else np.int64)))
            pq.write_table(meta, tmp["meta.parquet"], compression="zstd")
            files.write_ipc(tmp["aggs.arrow"], [_aggs_arrow(ids, aggregates, parts)], _AGGS_SCHEMA)
            pairs = [(tmp[k], final[k]) for k in tmp]
            vocab = self._vocabulary_part()
            if vocab:
                pairs.append(vocab[1:])
                written += vocab[1:]
            files.publish(pairs)
            self.manifest["parts"].append({"id": final["meta.parquet"].name.split(".")[0], "trajectories": len(ids),
                                           "tokens": int(columns.lengths.sum()) if columns is not None else 0,
                                           "bytes": files.files_bytes(final[k] for k in tmp)})
            if vocab:
                self.manifest["vocab"].append(vocab[0])
            files.write_json(self.folder / "manifest.json", self.manifest)
        except BaseException:
            if files.undo_commit(self.folder / "manifest.json", STUDENT_FORMAT, before, written):
                self.manifest = before
                raise
            # the manifest naming the part is on disk: the batch is committed, only what followed it failed
            self._vocab.pending = {}
            self._committed.update(ids)
            raise
        self._vocab.pending = {}
        self._committed.update(ids)
        self._merge_as_needed()

    def _new_part_paths(self) -> tuple[dict[str, Path], dict[str, Path]]:
        """(final, temporary) paths of the files of a new part, by kind."""
        self.manifest["seq"] += 1
        part_id = f"p{self.manifest['seq']:06d}"
        final = {kind: self.folder / "parts" / f"{part_id}.{kind}" for kind in PART_FILES}
        return final, {kind: files.tmp_path(path) for kind, path in final.items()}

    def _vocabulary_part(self) -> tuple[dict, Path, Path] | None:
        """A vocabulary part with the entries not committed yet: (manifest entry, temporary path, final path)."""
        if not self._vocab.pending:
            return None
        self.manifest["seq"] += 1
        vid = f"v{self.manifest['seq']:06d}"
        final = self.folder / "vocab" / f"{vid}.parquet"
        tmp = files.tmp_path(final)
        files.write_vocabulary(tmp, self._vocab.pending)
        return {"id": vid, "entries": len(self._vocab.pending)}, tmp, final

    def _merge_as_needed(self) -> None:
        plan = files.merge_plan(self.manifest["parts"])
        while plan:
            self._merge(*plan)
            plan = files.merge_plan(self.manifest["parts"])
        if len(self.manifest["vocab"]) >= 2 * files.MERGE_FANOUT:
            self._merge_vocabulary()

    def _merge(self, a: int, b: int) -> None:
        """Replace parts[a:b] by one part, streaming row group by row group; commit; delete the old files. A
        failure before the manifest is written leaves the store as it was (the merged file deleted)."""
        old = self.manifest["parts"][a:b]
        before = copy.deepcopy(self.manifest)
        final, tmp = self._new_part_paths()
        parts = self.folder / "parts"
        try:
            with files.TokenPacker(tmp["tokens.parquet"], files.token_schema(self.settings.top_k)) as packer:
                metas = [_repack_tokens(pq.read_table(parts / f"{p['id']}.meta.parquet"),
                                        parts / f"{p['id']}.tokens.parquet", packer) for p in old]
                wrote_tokens = packer.close()
            if not wrote_tokens:
                tmp.pop("tokens.parquet")
            pq.write_table(pa.concat_tables(metas, promote_options="permissive"), tmp["meta.parquet"],
                           compression="zstd")
            files.write_ipc(tmp["aggs.arrow"], (_conform_aggs(files.read_ipc(parts / f"{p['id']}.aggs.arrow"))
                                                for p in old), _AGGS_SCHEMA)
            files.publish([(tmp[k], final[k]) for k in tmp])
            self.manifest["parts"][a:b] = [{"id": final["meta.parquet"].name.split(".")[0],
                                            "trajectories": sum(p["trajectories"] for p in old),
                                            "tokens": sum(p["tokens"] for p in old),
                                            "bytes": files.files_bytes(final[k] for k in tmp)}]
            files.write_json(self.folder / "manifest.json", self.manifest)
        except BaseException:
            if files.undo_commit(self.folder / "manifest.json", STUDENT_FORMAT, before,
                                 [*final.values(), *tmp.values()]):
                self.manifest = before
            raise
        for p in old:
            for f in _part_files(self.folder, p):
                f.unlink(missing_ok=True)

    def _merge_vocabulary(self) -> None:
        before = copy.deepcopy(self.manifest)
        self.manifest["seq"] += 1
        final = self.folder / "vocab" / f"v{self.manifest['seq']:06d}.parquet"
        tmp = files.tmp_path(final)
        old = self._vocab_paths()
        try:
            entries = {i: t for i, t in enumerate(self._vocab.texts)
                       if t is not None and i not in self._vocab.pending}
            files.write_vocabulary(tmp, entries)
            files.publish([(tmp, final)])
            self.manifest["vocab"] = [{"id": final.stem, "entries": len(entries)}]
            files.write_json(self.folder / "manifest.json", self.manifest)
        except BaseException:
            if files.undo_commit(self.folder / "manifest.json", STUDENT_FORMAT, before, [tmp, final]):
                self.manifest = before
            raise
        for path in old:
            path.unlink(missing_ok=True)


def _check_same_pass(rows: pd.DataFrame, columns: TokenColumns | None, problems: dict[str, str]) -> None:
    """Set the same-pass columns (`metrics.SAME_PASS_METRICS`) of the trajectories whose Brier terms are known from
    them, reporting a table value that disagrees; keep the table's own values for the others (results without
    per-token data), NaN where it has none."""
    ids = rows["trajectory_id"].to_numpy()
    known = columns.known_terms() if columns is not None else np.zeros(len(rows), bool)
    computed = columns.same_pass() if columns is not None else {}
    for name in SAME_PASS_METRICS:
        have = (pd.to_numeric(rows[name].astype(object), errors="coerce").to_numpy(np.float64, na_value=np.nan)
                if name in rows.columns else np.full(len(rows), np.nan))
        if not known.any():
            rows[name] = have
            continue
        want = computed[name]
        bad = known & ~np.isnan(have) & ~np.isclose(have, want, rtol=1e-6, atol=0, equal_nan=True) & pd.notna(ids)
        for j in np.flatnonzero(bad).tolist():
            problems.setdefault(ids[j], f"{name} is {_shown(have[j])} in the table but {_shown(want[j])} from its "
                                        f"tokens")
        rows[name] = np.where(known, want, have)


def _with_same_pass(meta: pa.Table, scores: Sequence[TokenScores | None]) -> pa.Table:
    """A part's meta table with the same-pass columns of the rows whose scores are given ([n], None: keep the
    row's values, null where it has none)."""
    n = meta.num_rows
    for name in SAME_PASS_METRICS:
        have = (meta.column(name).to_numpy(zero_copy_only=False).astype(np.float64) if name in meta.column_names
                else np.full(n, np.nan))
        for j, s in enumerate(scores):
            if s is not None:
                have[j] = same_pass_metrics(s.surprisal, s.brier, s.lark_brier)[name]
        column = pa.array(have, pa.float64(), from_pandas=True)
        if name in meta.column_names:
            meta = meta.set_column(meta.schema.get_field_index(name), name, column)
        else:
            meta = meta.append_column(name, column)
    return meta


def _shown(value) -> str:
    """A table value in a message as a user writes it: 70, 3.25, True, 'text' (never np.int64(70))."""
    value = value.item() if isinstance(value, np.generic) else value
    return repr(value) if isinstance(value, str) else str(value)


def _differ(have: pd.Series, want) -> np.ndarray:
    """[n] whether table values differ from the expected ones (a scalar or [n] values)."""
    if isinstance(want, str):
        return (have.astype(str) != want).to_numpy()
    values = pd.to_numeric(have.astype(object), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return values != np.asarray(want, dtype=np.float64)


def _aggs_arrow(ids: Sequence[str], aggregates: agg.RankAggregates, parts: pagg.PartAggregates) -> pa.Table:
    table = agg.to_arrow(aggregates).add_column(0, "trajectory_id", pa.array(list(ids), pa.string()))
    for name, column in zip(pagg.ARROW_COLUMNS, pagg.to_arrow(parts)):
        table = table.append_column(name, column)
    return table


def _conform_aggs(table: pa.Table) -> pa.Table:
    """An aggregates file of a part written before part aggregates were kept, with them null (unknown)."""
    return files.conform(table, _AGGS_SCHEMA)


def _part_aggregates(trajectories: Sequence[Trajectory], columns: TokenColumns) -> pagg.PartAggregates:
    """The part aggregates of a batch from its tokens' offsets and turns and each conversation's parts."""
    offsets = columns.offsets
    codes = [token_parts(np.stack([columns.start[a:b], columns.end[a:b]], axis=1), columns.turn[a:b],
                         *turn_part_starts(t.messages))
             if b > a else np.zeros(0, np.int8)
             for t, a, b in zip(trajectories, offsets[:-1].tolist(), offsets[1:].tolist())]
    codes = np.concatenate(codes) if codes else np.zeros(0, np.int8)
    return pagg.batch_part_aggregates(columns.surprisal, columns.rank, codes, columns.lengths)


def _repack_tokens(meta: pa.Table, tokens_path: Path, packer: files.TokenPacker,
                   edit: Callable[[int, pa.Table], pa.Table] | None = None) -> pa.Table:
    """Copy the token rows of one part's trajectories into `packer`, reading each row group once; the part's
    meta table with the new row groups and offsets. edit(j, rows): the rows to write for the meta's j-th
    trajectory instead of its own."""
    row_group = meta.column("_row_group").to_numpy().copy()
    offset = meta.column("_offset").to_numpy().copy()
    length = meta.column("_length").to_numpy()
    if (length > 0).any():
        source = pq.ParquetFile(tokens_path)
        current, rows = -1, None
        for j in np.flatnonzero(length > 0).tolist():
            if row_group[j] != current:
                current, rows = int(row_group[j]), source.read_row_group(int(row_group[j]))
            mine = rows.slice(int(offset[j]), int(length[j]))
            row_group[j], offset[j] = packer.add(mine if edit is None else edit(j, mine))
        source.close()
    meta = meta.set_column(meta.schema.get_field_index("_row_group"), "_row_group", pa.array(row_group, pa.int32()))
    return meta.set_column(meta.schema.get_field_index("_offset"), "_offset", pa.array(offset, pa.int32()))


def compact(path: str | Path, student: str | None = None) -> None:
    """Merge the small parts of one student (or of every student) and of the conversations, atomically.

    Appends already merge as they go (size-tiered); this is for a store left with many small parts anyway. It
    takes each student's writer lock, so it refuses to run while a writer is open.
    """
    store = ResultsStore(path)
    if student is not None and student not in store.students():
        raise StoreError(f"{path} holds no readable results of student {student!r} (students: "
                         f"{', '.join(store.students()) or 'none'}). " + " ".join(store.problems()))
    names = [student] if student else store.students()
    for name in names:
        with StoreWriter(path, store.settings(name)) as writer:
            writer.compact()
    if not names:
        _Conversations(Path(path)).compact()
    if student is None and store.problems():  # the sound students are compacted; say what keeps the others
        raise StoreError(" ".join(store.problems()))


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
        files.read_json(self.root / "store.json", FORMAT)
        self._lock = threading.RLock()
        self._students: dict[str, _StudentState] = {}
        self._files = files.LRU(32, lambda f: f.close())
        self._row_groups = files.LRU(8)
        self._conv_stamp = None
        self._conv_index: _IdIndex | None = None
        self._labels_stamp = None
        self._labels_cache: tuple[int, pd.DataFrame | None] = (0, None)

    def close(self) -> None:
        with self._lock:
            self._files.clear()
            self._row_groups.clear()

    # -------------------------------------------------------------------------------- students

    def students(self) -> list[str]:
        """Names of the students with results in this store that can be read, sorted (`problems` says why the
        others cannot)."""
        return sorted(name for name, problem in self._student_folders().values() if name and not problem)

    def problems(self) -> list[str]:
        """What keeps results of this store from being read, one message per damaged student folder (a manifest
        that is not JSON, lacks its fields or has an unknown version; a part or vocabulary file that is missing),
        each naming the file and what to do. [] for a sound store."""
        return [problem for _, problem in self._student_folders().values() if problem]

    def _student_folders(self) -> dict[str, tuple[str | None, str | None]]:
        """{folder: (student name or None, problem or None)} of every student folder with a manifest."""
        folder = self.root / "students"
        out = {}
        for sub in sorted(folder.iterdir()) if folder.is_dir() else []:
            if not (sub / "manifest.json").is_file():
                continue
            try:
                manifest = files.read_json(sub / "manifest.json", STUDENT_FORMAT)
            except StoreError as e:
                out[sub.name] = (None, str(e))
                continue
            out[sub.name] = (manifest["settings"]["student"], missing_files(sub, manifest))
        return out

    def settings(self, student: str) -> StudentSettings:
        """The settings the student's results were written with."""
        return StudentSettings.from_json(self._state(student).manifest["settings"])

    def generation(self, student: str) -> int:
        """A number that grows whenever a writer commits to this student or labels are added to the store: reload
        tables and aggregates when it changed (the app while a run goes on)."""
        return int(self._state(student).manifest["seq"]) + self._labels()[0]

    def _labels(self) -> tuple[int, pd.DataFrame | None]:
        """(labels seq, labels indexed by trajectory id) of `labels.parquet`; (0, None) without one."""
        path = self.root / LABELS
        try:
            st = path.stat()
        except FileNotFoundError:
            return 0, None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            if self._labels_stamp != stamp:
                table = pq.read_table(path)
                seq = int((table.schema.metadata or {}).get(b"seq", b"1"))
                self._labels_cache = (seq, table.to_pandas().set_index("trajectory_id"))
                self._labels_stamp = stamp
            return self._labels_cache

    def labels(self) -> pd.DataFrame:
        """trajectory_id, correct, correct_source of the labels added after scoring (`add_labels`)."""
        frame = self._labels()[1]
        return frame.reset_index() if frame is not None else LABEL_SCHEMA.empty_table().to_pandas()

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
                state = _StudentState(stamp, files.read_json(path, STUDENT_FORMAT))
                self._students[student] = state
            return state

    def _retry(self, student: str | None, read: Callable):
        """Run `read`; if a part vanished (a writer merged it away), reread the manifest and try once more. A file
        still missing then is a damaged store: StoreError naming it and the trajectories it held."""
        try:
            return read()
        except FileNotFoundError:
            with self._lock:
                if student is not None:
                    self._students.pop(student, None)
                self._conv_stamp = None
                self._files.clear()
                self._row_groups.clear()
            try:
                return read()
            except FileNotFoundError as e:
                folder = self._folder(student) if student is not None else self.root / "conversations"
                try:
                    manifest = self._state(student).manifest if student is not None else files.read_json(
                        folder / "manifest.json", CONVERSATIONS_FORMAT)
                except (StoreError, KeyError):
                    raise StoreError(f"{e.filename} is missing; the store {self.root} is damaged") from None
                raise StoreError(missing_files(folder, manifest) or f"{e.filename} is missing") from None

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
            paths = [folder / f"{p['id']}.meta.parquet" for p in parts]
            return [pq.read_table(path, columns=None if not columns else  # a part may lack a newer column
                                  [c for c in columns if c in pq.read_schema(path).names]) for path in paths]
        tables = self._retry(student, read)
        if not tables:
            return pd.DataFrame(columns=list(columns) if columns else ["trajectory_id"])
        table = pa.concat_tables(tables, promote_options="permissive")
        table = table.drop_columns([c for c in INDEX_COLUMNS if c in table.column_names])
        frame = _compact_frame(table)
        del table, tables
        pa.default_memory_pool().release_unused()
        _overlay_labels(frame, self._labels()[1])
        if r_max is not None and r_max != self.settings(student).r_max:
            new = agg.rmax_columns_of_parts(self.rank_aggregate_parts(student), r_max,
                                            self.part_aggregate_parts(student))
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
            return [files.read_ipc(folder / f"{p['id']}.aggs.arrow") for p in parts]
        tables = self._retry(student, read)
        return pa.concat_tables([_conform_aggs(t) for t in tables]) if tables else _AGGS_SCHEMA.empty_table()

    def rank_aggregates(self, student: str) -> agg.RankAggregates:
        """The aggregates as one set of numpy arrays (`aggregates.RankAggregates`), rows as `trajectory_table`:
        `rank_aggregate_parts` copied out of the memory-mapped files into memory of their own."""
        return agg.concat_aggregates(self.rank_aggregate_parts(student))

    def rank_aggregate_parts(self, student: str) -> list[agg.RankAggregates]:
        """The aggregates as numpy views of the store's memory-mapped files, one per record batch, rows as
        `trajectory_table`: nothing is copied, so opening them is immediate and their pages are the operating
        system's file cache, shared by every process that reads the store (`aggregates.rmax_columns_of_parts`)."""
        return self._aggregate_batches(student, agg.from_arrow)

    def part_aggregate_parts(self, student: str) -> list[pagg.PartAggregates]:
        """The part aggregates (`part_aggregates.PartAggregates`), one per record batch as `rank_aggregate_parts`
        (every row unknown in files written before they were kept)."""
        return self._aggregate_batches(student, pagg.from_arrow)

    def _aggregate_batches(self, student: str, convert: Callable[[pa.Table], object]) -> list:
        """`convert` of every record batch of the student's memory-mapped aggregates files, in table order."""
        def read():
            folder, parts = self._parts(student)
            return [convert(pa.Table.from_batches([batch]))
                    for p in parts for batch in files.read_ipc(folder / f"{p['id']}.aggs.arrow").to_batches()
                    if batch.num_rows]
        return self._retry(student, read)

    def scored_ids(self, student: str) -> set[str]:
        """Ids of the trajectories with results of this student."""
        return set(self._index(student).ids)

    def scored_index(self, student: str) -> pd.Index:
        """The same ids as a pandas Index (hash look-ups without building a set)."""
        return self._index(student).ids

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
                paths = [self._folder(student) / "vocab" / f"{v['id']}.parquet" for v in state.manifest["vocab"]]
                state.vocab = np.array(files.read_vocabulary(paths), dtype=object)
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
        texts = assistant_texts(self.conversation(trajectory_id)["messages"])
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
                manifest = files.read_json(path, CONVERSATIONS_FORMAT)
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

    def conversation_column(self, name: str) -> pd.Series:
        """One column of every conversation (e.g. `prompt`), indexed by trajectory id, read column-wise."""
        folder = self.root / "conversations"
        path = folder / "manifest.json"
        if not path.exists():
            return pd.Series(dtype=object)
        tables = [pq.read_table(folder / f"{p['id']}.parquet", columns=["trajectory_id", name])
                  for p in files.read_json(path, CONVERSATIONS_FORMAT)["parts"]]
        if not tables:
            return pd.Series(dtype=object)
        table = pa.concat_tables(tables)
        return pd.Series(table.column(1).to_pandas().to_numpy(), index=table.column(0).to_pandas(), name=name)

    def has_tools(self) -> bool:
        """Whether any conversation of the store offers tools (then exports carry a `tools` column)."""
        folder = self.root / "conversations"
        path = folder / "manifest.json"
        if not path.exists():
            return False
        for p in files.read_json(path, CONVERSATIONS_FORMAT)["parts"]:
            f = pq.ParquetFile(folder / f"{p['id']}.parquet")
            if "tools" in f.schema_arrow.names and f.read(columns=["tools"]).column(0).null_count < f.metadata.num_rows:
                return True
        return False

    def conversation_ids(self) -> set[str]:
        """Ids of every conversation in the store."""
        return set(self._conversation_index().ids)

    def conversations_stamp(self) -> tuple:
        """Changes whenever conversations are added to the store (() while there are none)."""
        try:
            st = (self.root / "conversations" / "manifest.json").stat()
        except FileNotFoundError:
            return ()
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def unscored_ids(self, scored: Collection[str] | pd.Index) -> tuple[list[str], int]:
        """(ids of the store's conversations not in `scored`, sorted; how many conversations there are)."""
        ids = self._conversation_index().ids
        values = pa.array(ids, pa.string())
        known = pc.is_in(values, value_set=pa.array(list(scored) if isinstance(scored, (set, frozenset)) else scored,
                                                    pa.string()))
        return sorted(pc.filter(values, pc.invert(known)).to_pylist()), len(ids)

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
        rec["tools"] = json.loads(rec["tools"]) if rec.get("tools") else None
        rec.pop("digest", None)
        return rec

    def conversations(self, ids: Iterable[str]) -> pd.DataFrame:
        """trajectory_id, prompt, messages (JSON text), source, record, tools (JSON text, None without) of several
        trajectories, in that order."""
        ids = list(ids)
        index = self._conversation_index()
        missing = [i for i in ids if i not in index]
        if missing:
            raise KeyError(f"no conversation for {len(missing)} trajectories, e.g. {missing[0]!r}")
        out = []
        for tid in ids:
            rec = self.conversation(tid)
            rec["messages"] = json.dumps(rec["messages"], ensure_ascii=False)
            rec["tools"] = json.dumps(rec["tools"], ensure_ascii=False) if rec["tools"] else None
            out.append(rec)
        return pd.DataFrame(out, columns=["trajectory_id", *CONVERSATION_COLUMNS])

    def trajectories(self, ids: Sequence[str], student: str | None = None) -> list[Trajectory]:
        """The Trajectories of these ids (conversations, and ids, teacher, run, correctness from the student's
        table when given), read one conversation at a time (what a new student's run scores)."""
        rows = {}
        if student is not None:
            names = self._columns(student)
            table = self.trajectory_table(student, columns=[c for c in ("trajectory_id", "problem_id", "teacher",
                                                                        "run", "correct", *META_COLUMNS)
                                                            if c in names])
            wanted = set(ids)
            rows = {r["trajectory_id"]: r for r in table[table["trajectory_id"].isin(wanted)].to_dict("records")}
        out = []
        for tid in ids:
            conv, meta = self.conversation(tid), rows.get(tid, {})
            correct = meta.get("correct")
            extra = {k: meta[k] for k in META_COLUMNS if k in meta and not pd.isna(meta[k])}
            out.append(Trajectory(trajectory_id=tid, problem_id=str(meta.get("problem_id") or ""),
                                  teacher=str(meta.get("teacher") or ""),
                                  run=None if meta.get("run") in (None, "") or pd.isna(meta.get("run"))
                                  else str(meta["run"]), messages=conv["messages"],
                                  correct=None if correct is None or pd.isna(correct) else bool(correct),
                                  source=str(conv.get("source") or ""), record=int(conv.get("record") or 0),
                                  meta=extra, tools=conv["tools"]))
        return out

    def _columns(self, student: str) -> set[str]:
        """The column names of the student's trajectory table (every part's, whichever holds them)."""
        folder, parts = self._parts(student)
        return {name for p in parts for name in pq.read_schema(folder / f"{p['id']}.meta.parquet").names}

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
                          source=conv["source"] or "", record=int(conv["record"] or 0), tools=conv["tools"])


def writer_problem(store: str | Path, student: str) -> str | None:
    """Why `student`'s results cannot be written into the store at `store`, known without a model: its folder's
    manifest or files are damaged, its version is unknown, or another process is writing it. None when the store
    or the student's folder does not exist yet (a run checks it before it loads the weights)."""
    folder = Path(store).expanduser() / "students" / student_folder_name(student)
    if not (folder / "manifest.json").is_file():
        return None
    try:
        problem = missing_files(folder, files.read_json(folder / "manifest.json", STUDENT_FORMAT))
        if problem:
            return problem
        files.FileLock(folder / ".lock", f"student {student!r} in {store}").release()
    except StoreError as e:
        return str(e)
    except OSError as e:
        return f"{folder} cannot be read: {e.strerror or e}"
    return None


def missing_files(folder: Path, manifest: dict) -> str | None:
    """The message for the first file a student's (or the conversations') manifest names that is not on disk: the
    file, the trajectories its part held, and what to do; None when every file is there."""
    student = "settings" in manifest
    for part in manifest["parts"]:
        paths = _part_files(folder, part) if student else [folder / f"{part['id']}.parquet"]
        gone = next((f for f in paths if not f.exists()), None)
        if gone is None:
            continue
        held = int(part.get("trajectories", part.get("conversations", 0)) or 0)
        meta = folder / "parts" / f"{part['id']}.meta.parquet"
        ids = []
        if student and meta.exists() and gone != meta:
            ids = pq.read_table(meta, columns=["trajectory_id"]).column(0).to_pylist()
        named = f" ({', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''})" if ids else ""
        what = (f"{held:,} trajectories of student {manifest['settings']['student']!r}" if student
                else f"the conversations of {held:,} trajectories")
        return (f"{gone} is missing: the store is damaged; that part held {what}{named}. Restore the file from a "
                "copy, or " + (f"remove the student's folder ({folder}) and score again (the conversations and "
                               "the other students stay)" if student else "write the results to a new store"))
    if student:
        for v in manifest["vocab"]:
            path = folder / "vocab" / f"{v['id']}.parquet"
            if not path.exists():
                return (f"{path} is missing: the store is damaged; the student's vocabulary (the texts of the "
                        f"alternatives) cannot be read. Restore the file from a copy, or remove the student's folder "
                        f"({folder}) and score again")
    return None


def _overlay_labels(frame: pd.DataFrame, labels: pd.DataFrame | None) -> None:
    """Fill the unknown `correct` of a trajectory table (in place) from labels added after scoring, with their
    `correct_source`."""
    if labels is None or "correct" not in frame or "trajectory_id" not in frame or not len(labels):
        return
    found = labels.reindex(frame["trajectory_id"].astype(str))
    tried = frame["correct"].isna().to_numpy() & found["correct_source"].notna().to_numpy()
    if not tried.any():
        return
    fill = tried & found["correct"].notna().to_numpy()
    frame["correct"] = frame["correct"].astype("boolean")
    frame.loc[fill, "correct"] = found["correct"].to_numpy()[fill].astype(bool)
    source = (frame["correct_source"].astype(object) if "correct_source" in frame
              else pd.Series([None] * len(frame), index=frame.index, dtype=object))
    source[tried] = found["correct_source"].to_numpy()[tried]
    frame["correct_source"] = source.astype("string")


def add_labels(path: str | Path, labels: pd.DataFrame) -> int:
    """Add correctness labels (trajectory_id, correct, correct_source) to a store, for every student's table
    (where their `correct` is unknown; a label whose `correct` is None records that a check found none); an id
    labelled again keeps the newer label. Atomic; returns how many labels the store holds."""
    root = Path(path)
    target = root / LABELS
    new = labels[["trajectory_id", "correct", "correct_source"]]
    with files.locked(root / ".labels.lock", f"the labels of {root}", wait_s=600):
        seq = 0
        if target.exists():
            old = pq.read_table(target)
            seq = int((old.schema.metadata or {}).get(b"seq", b"1"))
            new = pd.concat([old.to_pandas(), new]).drop_duplicates("trajectory_id", keep="last")
        table = pa.Table.from_pandas(new.reset_index(drop=True), schema=LABEL_SCHEMA, preserve_index=False)
        table = table.replace_schema_metadata({"seq": str(seq + 1)})
        tmp = files.tmp_path(target)
        try:
            pq.write_table(table, tmp)
            files.publish([(tmp, target)])
        finally:
            tmp.unlink(missing_ok=True)
    return table.num_rows


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
