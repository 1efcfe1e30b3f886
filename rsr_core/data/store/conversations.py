"""The dataset's conversations folder as a writer sees it: the ids it holds with their digests, and appends.

Every student of a store shares one conversations folder (`conversations/`, its manifest and `c*.parquet` parts,
see `layout`); a conversation is written once, by whichever writer stores it first, and its digest guards an id
against being reused for another text. Parts are merged size-tiered, as a student's are.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from rsr_core.data import store_files as files
from rsr_core.data.store.commit import Commit
from rsr_core.data.store.integrity import missing_files
from rsr_core.data.store.layout import CONVERSATIONS_FORMAT, _digest
from rsr_core.data.store_files import VERSION, StoreError
from rsr_core.data.trajectory import Trajectory


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
        with Commit(self.folder / "manifest.json", CONVERSATIONS_FORMAT, manifest) as commit:
            manifest["seq"] += 1
            part_id = f"c{manifest['seq']:06d}"
            final = self.folder / f"{part_id}.parquet"
            tmp = files.tmp_path(final)
            commit.written += [tmp, final]
            with files.ConversationPacker(tmp) as packer:
                for table in tables:
                    packer.add(table)
                packer.close()
            files.publish([(tmp, final)])
            commit.replaced += [self.folder / f"{p['id']}.parquet" for p in manifest["parts"][a:b]]
            manifest["parts"][a:b] = [{"id": part_id, "conversations": count, "bytes": final.stat().st_size}]
        self.seen_parts.add(part_id)

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
