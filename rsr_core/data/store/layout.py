"""The results store's layout on disk and why, its names and settings, and the small Arrow conversions of its rows.

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
"""
from __future__ import annotations

import hashlib
import json
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd
import pyarrow as pa

from rsr_core.analysis import aggregates as agg
from rsr_core.analysis import part_aggregates as pagg
from rsr_core.analysis.metrics import R_MAX, SAME_PASS_METRICS, TRAJECTORY_METRICS
from rsr_core.data import store_files as files
from rsr_core.data.store_files import FORMAT, VERSION, StoreError
from rsr_core.data.trajectory import Trajectory

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


def file_stamp(path: Path) -> tuple[int, int, int]:
    """(mtime_ns, size, inode) of a file: changes whenever a writer replaces it. FileNotFoundError without it."""
    st = path.stat()
    return st.st_mtime_ns, st.st_size, st.st_ino


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


def _aggs_arrow(ids: Sequence[str], aggregates: agg.RankAggregates, parts: pagg.PartAggregates) -> pa.Table:
    table = agg.to_arrow(aggregates).add_column(0, "trajectory_id", pa.array(list(ids), pa.string()))
    for name, column in zip(pagg.ARROW_COLUMNS, pagg.to_arrow(parts)):
        table = table.append_column(name, column)
    return table


def _conform_aggs(table: pa.Table) -> pa.Table:
    """An aggregates file of a part written before part aggregates were kept, with them null (unknown)."""
    return files.conform(table, _AGGS_SCHEMA)

