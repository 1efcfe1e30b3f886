"""Correctness labels from reference answers, for trajectories already in a results store.

A dataset read with a reference-answer column keeps it as the `reference` column of the trajectory table. Where
the data gave no label, `label_from_references` checks each response's answer part against its reference with
math-verify (`rsr_core.analysis.answers`) and adds the labels to the store (`store.add_labels`), so that every
student's table, the Selection page's "correct only" and the exports see them. The reading path labels at read
time instead (`formats.InputSet` with a reference field); both check the same answer part
(`Trajectory.answer`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd

from rsr_core.analysis.answers import AnswerChecker
from rsr_core.data.store import ResultsStore, add_labels
from rsr_core.data.trajectory import Trajectory

CHUNK = 64  # answers checked between two progress reports


def unlabelled_with_reference(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a trajectory table that have a reference answer, no correctness label, and were not checked
    yet (a check that found no label leaves `correct_source` = "math-verify: unknown")."""
    if "reference" not in table or "correct" not in table:
        return table.iloc[:0]
    todo = table["reference"].notna() & (table["reference"].astype(str) != "") & table["correct"].isna()
    if "correct_source" in table:
        todo &= table["correct_source"].isna()
    return table[todo]


def label_from_references(store_path: str | Path, table: pd.DataFrame, timeout: float | None = None,
                          progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Check the unlabelled rows of `table` (a trajectory table of the store at `store_path`) against their
    references and add the labels to the store. Returns counts: checked, correct, wrong, unknown."""
    todo = unlabelled_with_reference(table)
    store = ResultsStore(store_path)
    counts = {"checked": 0, "correct": 0, "wrong": 0, "unknown": 0}
    labels = []
    with AnswerChecker(timeout) as checker:
        rows = list(zip(todo["trajectory_id"].astype(str), todo["reference"].astype(str)))
        for a in range(0, len(rows), CHUNK):
            part = rows[a:a + CHUNK]
            answers = [Trajectory(tid, "", "", store.conversation(tid)["messages"]).answer for tid, _ in part]
            for (tid, _), verdict in zip(part, checker.check([(ref, ans) for (_, ref), ans in zip(part, answers)])):
                counts["checked"] += 1
                counts["unknown" if verdict.correct is None else "correct" if verdict.correct else "wrong"] += 1
                labels.append({"trajectory_id": tid, "correct": verdict.correct,
                               "correct_source": "math-verify" if verdict.correct is not None
                               else f"math-verify: unknown ({verdict.reason})"})
            if progress:
                progress(min(a + CHUNK, len(rows)), len(rows))
    if labels:
        add_labels(store_path, pd.DataFrame(labels))
    return counts
