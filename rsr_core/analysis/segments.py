"""The parts of an assistant text: thinking, answer and tool calls, which tokens belong to which, and each part's
numbers.

Users compare where a trace loses the student: in its reasoning, in its answer, or in the actions an agent takes.
Token t belongs to the thinking when it starts before the answer of its assistant turn
(`answer_starts[turn[t]]`, the character offset of the answer in the turn's text; 0 for a turn without
reasoning), to the tool calls when it starts at or after the turn's tool-call start (`tool_starts[turn[t]]`; None
for a turn without tool calls), and to the answer otherwise.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from rsr_core.analysis.metrics import R_MAX, clipped_rank, ratio

PARTS = ("thinking", "answer", "tool_calls")
THINKING, ANSWER, TOOL_CALLS = 0, 1, 2
PART_COLUMNS = {"thinking": "rsr_thinking", "answer": "rsr_answer", "tool_calls": "rsr_tool_calls"}


def token_parts(offsets: np.ndarray, turn: np.ndarray, answer_starts: Sequence[int],
                tool_starts: Sequence[int | None] | None = None) -> np.ndarray:
    """offsets [T, 2], turn [T] -> [T] int8 part of each token (THINKING, ANSWER, TOOL_CALLS)."""
    turn = np.asarray(turn, dtype=np.int64)
    if not len(turn):
        return np.zeros(0, dtype=np.int8)
    start = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)[:, 0]
    answers = np.asarray(answer_starts, dtype=np.int64)[turn]
    tools = np.asarray([np.iinfo(np.int64).max if c is None else c for c in (tool_starts or [None] * len(
        answer_starts))], dtype=np.int64)[turn]
    return np.where(start < answers, THINKING, np.where(start >= tools, TOOL_CALLS, ANSWER)).astype(np.int8)


def thinking_mask(offsets: np.ndarray, turn: np.ndarray, answer_starts: list[int]) -> np.ndarray:
    """offsets [T, 2], turn [T] -> [T] bool, True for the tokens of the thinking part."""
    return token_parts(offsets, turn, answer_starts) == THINKING


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


def _as_parts(parts: np.ndarray) -> np.ndarray:
    """A [T] bool thinking mask (True: thinking, False: answer) or [T] part codes, as part codes."""
    parts = np.asarray(parts)
    return np.where(parts, THINKING, ANSWER).astype(np.int8) if parts.dtype == bool else parts


def part_metrics(surprisal: np.ndarray, rank: np.ndarray, parts: np.ndarray, r_max: int = R_MAX) -> pd.DataFrame:
    """One row per part (thinking, answer, and tool calls where there are any) with tokens, RSR, mean surprisal
    and mean clipped rank.

    surprisal, rank: [T]; parts: [T] part codes (`token_parts`) or a thinking mask. A part without tokens has NaN
    numbers.
    """
    codes = _as_parts(parts)
    s = np.asarray(surprisal, dtype=np.float64)
    rc = clipped_rank(rank, r_max)
    rows = []
    for code, part in enumerate(PARTS):
        keep = codes == code
        n = int(keep.sum())
        if code == TOOL_CALLS and not n:
            continue
        rows.append({"part": part, "tokens": n, "rsr": ratio(rc[keep].sum(), s[keep].sum()) if n else float("nan"),
                     "avg_surprisal": float(s[keep].mean()) if n else float("nan"),
                     "avg_rank_clipped": float(rc[keep].mean()) if n else float("nan")})
    return pd.DataFrame(rows)


def part_rsr(surprisal: np.ndarray, rank: np.ndarray, parts: np.ndarray, r_max: int = R_MAX,
             tool_calls: bool = False) -> dict[str, float]:
    """The trajectory-table columns `rsr_thinking`, `rsr_answer` (and `rsr_tool_calls` with `tool_calls`): each
    part's RSR, NaN for a part without tokens."""
    codes = _as_parts(parts)
    s = np.asarray(surprisal, dtype=np.float64)
    rc = clipped_rank(rank, r_max)
    out = {}
    for code, part in enumerate(PARTS):
        if code == TOOL_CALLS and not tool_calls:
            continue
        keep = codes == code
        out[PART_COLUMNS[part]] = ratio(rc[keep].sum(), s[keep].sum()) if keep.any() else float("nan")
    return out
