"""The bundled demo pool and its precomputed scores, so the app opens without a model or a forward pass.

Layout (written by `make demo-scores`, i.e. `python -m rsr_core score data/demo/candidates.jsonl --out
data/demo/store` under each embedded student):

    data/demo/candidates.jsonl    the pool: problems x teacher styles, `messages` records
    data/demo/store/              a results store (`rsr_core.data.store`) with every embedded student's scores
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from rsr_core.data.exports import scored_table
from rsr_core.data.formats import read_trajectories
from rsr_core.data.paths import DATA_DIR
from rsr_core.data.store import ResultsStore, StoreError
from rsr_core.data.students import EMBEDDED
from rsr_core.data.token_scores import TokenScores

DEMO_DIR = DATA_DIR / "demo"
CANDIDATES = DEMO_DIR / "candidates.jsonl"
DEMO_STORE = DEMO_DIR / "store"
DEFAULT_STUDENT = EMBEDDED


def available_demo_students(store: Path = DEMO_STORE) -> list[str]:
    """Students with precomputed demo scores, the default student first."""
    try:
        names = ResultsStore(store).students()
    except (StoreError, OSError):
        return []
    return sorted(names, key=lambda n: (n != DEFAULT_STUDENT, n))


def load_demo(student_name: str = DEFAULT_STUDENT, store: Path = DEMO_STORE
              ) -> tuple[pd.DataFrame, dict[str, TokenScores]]:
    """(trajectory table with its conversations, {trajectory_id: TokenScores}) of the demo pool under one student.

    The pool is small, so everything is read at once (tests, the teaching page). Raises FileNotFoundError naming
    the command that writes the scores when there are none.
    """
    if student_name not in available_demo_students(store):
        raise FileNotFoundError(f"no precomputed demo scores for {student_name!r} in {store}: run `make demo-scores`")
    results = ResultsStore(store)
    table = scored_table(results, student_name)
    conv = results.conversations(table["trajectory_id"]).drop(columns="trajectory_id")
    if conv["tools"].isna().all():
        conv = conv.drop(columns="tools")
    table = pd.concat([table, conv], axis=1)
    for name in table.columns:
        if isinstance(table[name].dtype, pd.CategoricalDtype):
            table[name] = table[name].astype(object)
    scores = {tid: results.token_scores(student_name, tid) for tid in table["trajectory_id"]}
    return table, scores


def stale_demo_ids(student_name: str = DEFAULT_STUDENT, store: Path = DEMO_STORE,
                   candidates: Path = CANDIDATES) -> list[str]:
    """Ids of demo candidates whose precomputed scores are missing or were computed from another conversation
    (the pool changed after `make demo-scores`)."""
    results = ResultsStore(store)
    scored = results.scored_ids(student_name) if student_name in results.students() else set()
    trajectories, _ = read_trajectories(candidates)
    return [t.trajectory_id for t in trajectories
            if t.trajectory_id not in scored or results.conversation(t.trajectory_id)["messages"] != t.messages]
