"""Integrity of a store without reading its numbers: files its manifests name that are missing, and whether a
student's results can be written (a damaged folder, an unknown version, another writer), with what to do.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from rsr_core.data import store_files as files
from rsr_core.data.store.layout import STUDENT_FORMAT, _part_files, student_folder_name
from rsr_core.data.store_files import StoreError


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

