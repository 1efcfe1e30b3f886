"""One commit of a manifest and its rollback: the single transaction every write of the store goes through.

A student's new part, a merge, a filled part, a merged vocabulary and a conversations part are all committed the
same way: files written under temporary names and renamed into place, then the manifest that names them (the
commit), then the files it no longer names deleted. A failure on the way leaves the store as it was.
"""
from __future__ import annotations

import copy
from pathlib import Path

from rsr_core.data import store_files as files


class Commit:
    """`with Commit(manifest_path, fmt, manifest) as commit:` one atomic change of `manifest`.

    The body changes `manifest` in place, lists every file it writes (temporary and final names) in
    `commit.written` and the files the change makes obsolete in `commit.replaced`. On a clean exit the manifest is
    written, then the replaced files are deleted. A failure (a full disk, a read-only folder, Ctrl-C) before the
    new manifest reached the disk deletes the written files and restores `manifest`: the store is as it was.
    `committed` is True once the new manifest may be on disk (written, or the one on disk is no longer the old one
    or cannot be read): then nothing is deleted and the next writer removes whatever no manifest names.
    """

    def __init__(self, manifest_path: Path, fmt: str, manifest: dict):
        self.path, self.fmt, self.manifest = manifest_path, fmt, manifest
        self.written: list[Path] = []
        self.replaced: list[Path] = []
        self.committed = False

    def __enter__(self) -> "Commit":
        self.before = copy.deepcopy(self.manifest)
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is not None:
            self._undo()
            return
        try:
            files.write_json(self.path, self.manifest)
        except BaseException:
            self._undo()
            raise
        self.committed = True
        for path in self.replaced:
            path.unlink(missing_ok=True)

    def _undo(self) -> None:
        if files.undo_commit(self.path, self.fmt, self.before, self.written):
            self.manifest.clear()
            self.manifest.update(self.before)
        else:
            self.committed = True
