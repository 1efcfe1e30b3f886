"""A student's part files, for `StoreWriter`: commit a new part (and its new vocabulary), merge parts size-tiered,
merge the vocabulary parts, rewrite a part with the same-pass columns filled in.

Every one of these is one `Commit`: the new files, then the manifest naming them, then the replaced files deleted;
a failure before the manifest leaves the store as it was.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rsr_core.analysis import aggregates as agg
from rsr_core.analysis import part_aggregates as pagg
from rsr_core.analysis.metrics import SAME_PASS_METRICS, same_pass_metrics
from rsr_core.data import store_files as files
from rsr_core.data.store.commit import Commit
from rsr_core.data.store.layout import (_AGGS_SCHEMA, INDEX_COLUMNS, NOT_STORED, PART_FILES, STUDENT_FORMAT,
                                        AppendResult, StudentSettings, _aggs_arrow, _conform_aggs, _part_files,
                                        _table_arrow)
from rsr_core.data.store_columns import TokenColumns, Vocabulary
from rsr_core.data.token_scores import TokenScores


class _PartWriter:
    """The part files of the student folder a `StoreWriter` holds the lock of."""

    folder: Path
    settings: StudentSettings
    manifest: dict
    _vocab: Vocabulary
    _committed: set[str]

    def _transaction(self) -> Commit:
        return Commit(self.folder / "manifest.json", STUDENT_FORMAT, self.manifest)

    def _vocab_paths(self) -> list[Path]:
        return [self.folder / "vocab" / f"{v['id']}.parquet" for v in self.manifest["vocab"]]

    def _new_part_paths(self, commit: Commit) -> tuple[dict[str, Path], dict[str, Path]]:
        """(final, temporary) paths of the files of a new part, by kind, listed as written by `commit`."""
        self.manifest["seq"] += 1
        part_id = f"p{self.manifest['seq']:06d}"
        final = {kind: self.folder / "parts" / f"{part_id}.{kind}" for kind in PART_FILES}
        tmp = {kind: files.tmp_path(path) for kind, path in final.items()}
        commit.written += [*final.values(), *tmp.values()]
        return final, tmp

    def _publish_part(self, final: dict[str, Path], tmp: dict[str, Path], wrote_tokens: bool,
                      more: Sequence[tuple[Path, Path]] = ()) -> dict:
        """Rename the written files of a new part (and `more`) into place; its manifest entry's id and bytes."""
        if not wrote_tokens:
            tmp.pop("tokens.parquet")
        files.publish([*((tmp[k], final[k]) for k in tmp), *more])
        return {"id": final["meta.parquet"].name.split(".")[0], "bytes": files.files_bytes(final[k] for k in tmp)}

    def _commit(self, ids: list[str], rows: pd.DataFrame, aggregates: agg.RankAggregates,
                columns: TokenColumns | None, parts: pagg.PartAggregates) -> None:
        """Write one part (and the batch's new vocabulary), then the manifest that makes them part of the store.
        A failure (a full disk, a read-only folder, Ctrl-C) before the manifest is written leaves the store as it
        was: no file of the part behind, the manifest unchanged."""
        commit = self._transaction()
        try:
            with commit:
                final, tmp = self._new_part_paths(commit)
                index = np.tile(np.array([-1, 0, NOT_STORED], dtype=np.int64), (len(ids), 1))
                with files.TokenPacker(tmp["tokens.parquet"], files.token_schema(self.settings.top_k)) as packer:
                    if columns is not None:
                        table, offsets = columns.arrow(), columns.offsets
                        for j in range(len(ids)):
                            a, b = int(offsets[j]), int(offsets[j + 1])
                            index[j] = (*packer.add(table.slice(a, b - a)), b - a)
                    wrote_tokens = packer.close()
                meta = _table_arrow(rows)
                for i, name in enumerate(INDEX_COLUMNS):
                    meta = meta.append_column(name, pa.array(index[:, i].astype(np.int32 if i < 2 else np.int64)))
                pq.write_table(meta, tmp["meta.parquet"], compression="zstd")
                files.write_ipc(tmp["aggs.arrow"], [_aggs_arrow(ids, aggregates, parts)], _AGGS_SCHEMA)
                vocab = self._vocabulary_part(commit)
                entry = self._publish_part(final, tmp, wrote_tokens, [vocab[1:]] if vocab else [])
                self.manifest["parts"].append({"id": entry["id"], "trajectories": len(ids),
                                               "tokens": int(columns.lengths.sum()) if columns is not None else 0,
                                               "bytes": entry["bytes"]})
                if vocab:
                    self.manifest["vocab"].append(vocab[0])
        finally:
            if commit.committed:  # also when only what followed the manifest failed: the batch is in the store
                self._vocab.pending = {}
                self._committed.update(ids)
        self._merge_as_needed()

    def _vocabulary_part(self, commit: Commit) -> tuple[dict, Path, Path] | None:
        """A vocabulary part with the entries not committed yet: (manifest entry, temporary path, final path)."""
        if not self._vocab.pending:
            return None
        self.manifest["seq"] += 1
        vid = f"v{self.manifest['seq']:06d}"
        final = self.folder / "vocab" / f"{vid}.parquet"
        tmp = files.tmp_path(final)
        commit.written += [tmp, final]
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
        parts = self.folder / "parts"
        with self._transaction() as commit:
            final, tmp = self._new_part_paths(commit)
            with files.TokenPacker(tmp["tokens.parquet"], files.token_schema(self.settings.top_k)) as packer:
                metas = [_repack_tokens(pq.read_table(parts / f"{p['id']}.meta.parquet"),
                                        parts / f"{p['id']}.tokens.parquet", packer) for p in old]
                wrote_tokens = packer.close()
            pq.write_table(pa.concat_tables(metas, promote_options="permissive"), tmp["meta.parquet"],
                           compression="zstd")
            files.write_ipc(tmp["aggs.arrow"], (_conform_aggs(files.read_ipc(parts / f"{p['id']}.aggs.arrow"))
                                                for p in old), _AGGS_SCHEMA)
            entry = self._publish_part(final, tmp, wrote_tokens)
            self.manifest["parts"][a:b] = [{"id": entry["id"], "trajectories": sum(p["trajectories"] for p in old),
                                            "tokens": sum(p["tokens"] for p in old), "bytes": entry["bytes"]}]
            commit.replaced += [f for p in old for f in _part_files(self.folder, p)]

    def _merge_vocabulary(self) -> None:
        with self._transaction() as commit:
            self.manifest["seq"] += 1
            final = self.folder / "vocab" / f"v{self.manifest['seq']:06d}.parquet"
            tmp = files.tmp_path(final)
            commit.written += [tmp, final]
            commit.replaced += self._vocab_paths()
            entries = {i: t for i, t in enumerate(self._vocab.texts)
                       if t is not None and i not in self._vocab.pending}
            files.write_vocabulary(tmp, entries)
            files.publish([(tmp, final)])
            self.manifest["vocab"] = [{"id": final.stem, "entries": len(entries)}]

    def _fill_part(self, at: int, scores: dict[str, TokenScores], result: AppendResult) -> None:
        """Rewrite parts[at] with the same-pass columns of `scores` (trajectory id -> its new TokenScores)."""
        old = self.manifest["parts"][at]
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
        with self._transaction() as commit:
            final, tmp = self._new_part_paths(commit)
            with files.TokenPacker(tmp["tokens.parquet"], files.token_schema(self.settings.top_k)) as packer:
                meta = _repack_tokens(meta, parts / f"{old['id']}.tokens.parquet", packer, edit)
                wrote_tokens = packer.close()
            for j, tid in enumerate(ids):  # trajectories without tokens have nothing to compute from
                if tid in scores and not filled[j] and len(scores[tid]) == 0:
                    filled[j] = True
            meta = _with_same_pass(meta, [scores[t] if f else None for t, f in zip(ids, filled)])
            pq.write_table(meta, tmp["meta.parquet"], compression="zstd")
            files.write_ipc(tmp["aggs.arrow"], [_conform_aggs(files.read_ipc(parts / f"{old['id']}.aggs.arrow"))],
                            _AGGS_SCHEMA)
            self.manifest["parts"][at] = {**old, **self._publish_part(final, tmp, wrote_tokens)}
            commit.replaced += _part_files(self.folder, old)
        result.written += [t for t, f in zip(ids, filled) if f]


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

