"""Writing a student's results: `StoreWriter` (open a student's folder under its lock, append batches, compact,
fill the same-pass columns) and `compact` of a whole store.

An append checks its batch (`batch`), stores the conversations (`conversations`), then commits one part
(`parts`, through the one `Commit` transaction).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd
import pyarrow.parquet as pq

from rsr_core.analysis import aggregates as agg
from rsr_core.analysis import part_aggregates as pagg
from rsr_core.analysis.metrics import lacking_same_pass
from rsr_core.data import store_files as files
from rsr_core.data.store.batch import _Batch, _part_aggregates, _table_rows, _token_problems
from rsr_core.data.store.conversations import _Conversations
from rsr_core.data.store.integrity import missing_files
from rsr_core.data.store.layout import (STUDENT_FORMAT, AppendResult, SettingsMismatch, StudentSettings, _digest,
                                        _ensure_store, _part_files, student_folder_name)
from rsr_core.data.store.parts import _PartWriter
from rsr_core.data.store.reader import ResultsStore
from rsr_core.data.store_columns import TokenColumns, Vocabulary, scores_problem
from rsr_core.data.store_files import VERSION, StoreError
from rsr_core.data.token_scores import TokenScores
from rsr_core.data.trajectory import Trajectory


class StoreWriter(_PartWriter):
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
        batch = batch.without(_token_problems(batch, self._vocab), result)
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

    def _finish(self, batch: _Batch, table: pd.DataFrame, result: AppendResult) -> AppendResult:
        """Aggregate, find and check the table rows, store the conversations, commit the part."""
        if batch.aggregates is None:
            batch = _Batch(batch.trajectories, batch.columns, batch.columns.aggregates(),
                           parts=_part_aggregates(batch.trajectories, batch.columns))
        elif batch.parts is None:
            batch = _Batch(batch.trajectories, batch.columns, batch.aggregates, parts=pagg.unknown(len(batch.ids)))
        rows, problems = _table_rows(table, batch, self.settings)
        batch = _Batch(batch.trajectories, batch.columns, batch.aggregates, rows, batch.parts).without(problems,
                                                                                                       result)
        batch = batch.without(self.conversations.add(batch.trajectories), result)
        if batch.ids:
            self._commit(batch.ids, batch.rows, batch.aggregates, batch.columns, batch.parts)
            result.written += batch.ids
        return result


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
