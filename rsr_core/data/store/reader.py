"""Reading a store: `ResultsStore`, lazy and cached, for the app, the commands and a run that resumes.

It opens in no time and reads on demand: a student's manifest (reread when a writer commits), its trajectory table,
aggregates (memory-mapped), one trajectory's token rows, one conversation. Readers take no lock; a part merged away
under them is found again through the new manifest.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Callable, Collection, Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rsr_core.analysis import aggregates as agg
from rsr_core.analysis import part_aggregates as pagg
from rsr_core.data import store_files as files
from rsr_core.data.store.correctness import LabelsFile, _overlay_labels
from rsr_core.data.store.integrity import missing_files
from rsr_core.data.store.layout import (_AGGS_SCHEMA, CONVERSATION_COLUMNS, CONVERSATIONS_FORMAT, INDEX_COLUMNS,
                                        LABEL_SCHEMA, LABELS, STUDENT_FORMAT, StudentSettings, _conform_aggs,
                                        file_stamp, student_folder_name)
from rsr_core.data.store.rows import (_compact_frame, _conversation_index, _IdIndex, _student_index, _StudentState,
                                      _token_scores)
from rsr_core.data.store_files import FORMAT, StoreError
from rsr_core.data.tables import META_COLUMNS
from rsr_core.data.token_scores import TokenScores
from rsr_core.data.trajectory import Trajectory, assistant_texts


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
        self._labels_file = LabelsFile(self.root / LABELS)

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
        return self._labels_file.read()

    def labels(self) -> pd.DataFrame:
        """trajectory_id, correct, correct_source of the labels added after scoring (`add_labels`)."""
        frame = self._labels()[1]
        return frame.reset_index() if frame is not None else LABEL_SCHEMA.empty_table().to_pandas()

    def _folder(self, student: str) -> Path:
        return self.root / "students" / student_folder_name(student)

    def _state(self, student: str) -> _StudentState:
        path = self._folder(student) / "manifest.json"
        try:
            stamp = file_stamp(path)
        except FileNotFoundError:
            raise KeyError(f"no results of student {student!r} in {self.root} "
                           f"(students: {', '.join(self.students()) or 'none'})") from None
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
            frame = agg.table_at_r_max(frame, self.rank_aggregate_parts(student), r_max,
                                       self.part_aggregate_parts(student))
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
                state.index = self._retry(student, lambda: _student_index(*self._parts(student)))
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
        stamp = file_stamp(path)
        with self._lock:
            if self._conv_stamp != stamp:
                manifest = files.read_json(path, CONVERSATIONS_FORMAT)
                self._conv_index = _conversation_index(self.root / "conversations", manifest["parts"])
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
            return file_stamp(self.root / "conversations" / "manifest.json")
        except FileNotFoundError:
            return ()

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
        return self.trajectories([trajectory_id], student)[0]
