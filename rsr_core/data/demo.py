"""The bundled demo pool and its precomputed scores, so the app opens without a model or a forward pass.

Layout (written by `make demo-scores`, i.e. `python -m rsr_core score data/demo/candidates.jsonl --out
data/demo/scores/<student>/trajectories.parquet --tokens-out data/demo/scores/<student>/tokens.parquet`):

    data/demo/candidates.jsonl                         the pool: problems x teacher styles, `messages` records
    data/demo/scores/<student>/trajectories.parquet    the trajectory table at r_max = 100
    data/demo/scores/<student>/tokens.parquet          the per-token table (unclipped ranks: any r_max later)
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from rsr_core.data.paths import DATA_DIR
from rsr_core.data.students import EMBEDDED
from rsr_core.data.tables import read_table, scores_from_token_table
from rsr_core.data.token_scores import TokenScores

DEMO_DIR = DATA_DIR / "demo"
CANDIDATES = DEMO_DIR / "candidates.jsonl"
SCORES_DIR = DEMO_DIR / "scores"
DEFAULT_STUDENT = EMBEDDED
TRAJECTORIES_FILE = "trajectories.parquet"
TOKENS_FILE = "tokens.parquet"


def score_paths(student_name: str = DEFAULT_STUDENT) -> tuple[Path, Path]:
    """(trajectory table, token table) of the demo pool under one student."""
    folder = SCORES_DIR / student_name
    return folder / TRAJECTORIES_FILE, folder / TOKENS_FILE


def available_demo_students() -> list[str]:
    """Students with both precomputed demo files, the default student first."""
    if not SCORES_DIR.is_dir():
        return []
    names = sorted(p.name for p in SCORES_DIR.iterdir() if all(f.is_file() for f in score_paths(p.name)))
    return sorted(names, key=lambda n: n != DEFAULT_STUDENT)


def load_demo(student_name: str = DEFAULT_STUDENT) -> tuple[pd.DataFrame, dict[str, TokenScores]]:
    """(trajectory table, {trajectory_id: TokenScores}) of the demo pool under `student_name`.

    Raises FileNotFoundError naming the missing file and the command that writes it.
    """
    table_path, tokens_path = score_paths(student_name)
    for path in (table_path, tokens_path):
        if not path.is_file():
            raise FileNotFoundError(f"no precomputed demo scores at {path}: run `make demo-scores`")
    table = read_table(table_path)
    scores = scores_from_token_table(pd.read_parquet(tokens_path))
    table = table[table["trajectory_id"].isin(scores)].reset_index(drop=True)
    return table, scores


def load_demo_scores(student_name: str | None = None) -> tuple[pd.DataFrame, dict[str, TokenScores]]:
    """Same as `load_demo`; None means the default student."""
    return load_demo(student_name or DEFAULT_STUDENT)


def stale_demo_ids(table: pd.DataFrame, candidates: Path = CANDIDATES) -> list[str]:
    """Ids of demo candidates whose precomputed scores are missing or were computed from another conversation
    (the pool changed after `make demo-scores`)."""
    if not candidates.is_file():
        return []
    scored = dict(zip(table["trajectory_id"], table["messages"]))
    stale = []
    with open(candidates, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            tid = str(rec.get("id", ""))
            if tid not in scored or json.loads(scored[tid]) != rec.get("messages"):
                stale.append(tid)
    return stale
