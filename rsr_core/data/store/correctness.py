"""Correctness labels found after scoring (math-verify): the store's labels.parquet, shared by every student.

`add_labels` writes it atomically under a lock; a reader rereads it when it changes (`LabelsFile`) and lays it over
a student's trajectory table where its `correct` is unknown (`_overlay_labels`).
"""
from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rsr_core.data import store_files as files
from rsr_core.data.store.layout import LABEL_SCHEMA, LABELS, file_stamp


class LabelsFile:
    """The store's labels file as a reader sees it: (seq, labels indexed by trajectory id), reread when it
    changes; (0, None) without one."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._stamp = None
        self._cache: tuple[int, pd.DataFrame | None] = (0, None)

    def read(self) -> tuple[int, pd.DataFrame | None]:
        try:
            stamp = file_stamp(self.path)
        except FileNotFoundError:
            return 0, None
        with self._lock:
            if self._stamp != stamp:
                table = pq.read_table(self.path)
                seq = int((table.schema.metadata or {}).get(b"seq", b"1"))
                self._cache = (seq, table.to_pandas().set_index("trajectory_id"))
                self._stamp = stamp
            return self._cache


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

