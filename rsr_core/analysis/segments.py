"""The thinking and the answer of a reasoning trace: which tokens belong to which part, and each part's numbers.

Users compare where a trace loses the student: in its reasoning or in its answer. Token t belongs to the thinking
when it starts before the answer of its assistant turn (`answer_starts[turn[t]]`, the character offset of the
answer in the turn's canonical text; 0 for a turn without reasoning).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from rsr_core.analysis.metrics import R_MAX, clipped_rank, ratio

PARTS = ("thinking", "answer")


def thinking_mask(offsets: np.ndarray, turn: np.ndarray, answer_starts: list[int]) -> np.ndarray:
    """offsets [T, 2], turn [T] -> [T] bool, True for the tokens of the thinking part."""
    if not len(turn):
        return np.zeros(0, dtype=bool)
    starts = np.asarray(answer_starts, dtype=np.int64)[np.asarray(turn, dtype=np.int64)]
    return np.asarray(offsets, dtype=np.int64)[:, 0] < starts


def answer_boundaries(mask: np.ndarray, turn: np.ndarray) -> list[int]:
    """Positions of the first answer token after each turn's thinking (where a turn has both parts)."""
    mask, turn = np.asarray(mask, dtype=bool), np.asarray(turn)
    out = []
    for k in np.unique(turn):
        rows = np.nonzero(turn == k)[0]
        thinking, answer = rows[mask[rows]], rows[~mask[rows]]
        if thinking.size and answer.size:
            out.append(int(answer[0]))
    return out


def part_metrics(surprisal: np.ndarray, rank: np.ndarray, mask: np.ndarray, r_max: int = R_MAX) -> pd.DataFrame:
    """One row per part (thinking, answer) with tokens, RSR, mean surprisal and mean clipped rank.

    surprisal, rank, mask: [T]. A part without tokens has NaN numbers.
    """
    s = np.asarray(surprisal, dtype=np.float64)
    rc = clipped_rank(rank, r_max)
    rows = []
    for part, keep in zip(PARTS, (mask, ~np.asarray(mask, dtype=bool))):
        n = int(keep.sum())
        rows.append({"part": part, "tokens": n, "rsr": ratio(rc[keep].sum(), s[keep].sum()) if n else float("nan"),
                     "avg_surprisal": float(s[keep].mean()) if n else float("nan"),
                     "avg_rank_clipped": float(rc[keep].mean()) if n else float("nan")})
    return pd.DataFrame(rows)
