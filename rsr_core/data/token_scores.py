"""Per-token results of one trajectory under one student: the unit the cache stores and every metric reads."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


SAME_PASS_TERMS = ("brier", "lark_brier")  # per-token terms beside RSR's, from the same forward pass


@dataclass
class TokenScores:
    """What the student saw at each response token of one trajectory.

    T response tokens, K alternatives. Ranks are **unclipped** and 1-based, so any r_max can be applied later
    without another forward pass. Offsets index into the content of assistant turn `turn[t]`.
    """

    token_ids: np.ndarray  # [T] int64
    tokens: list[str]  # [T] the text each token covers, as a reader sees it
    offsets: np.ndarray  # [T, 2] int64, character span in its assistant turn's content
    turn: np.ndarray  # [T] int32, index of the assistant turn (0 = first assistant message)
    surprisal: np.ndarray  # [T] float32, -log p in nats, computed in fp32
    rank: np.ndarray  # [T] int64, 1 + number of vocabulary entries with a strictly higher logit
    entropy: np.ndarray  # [T] float32, entropy of the student's next-token distribution, nats
    top_ids: np.ndarray  # [T, K] int64, the student's K most likely tokens
    top_tokens: list[list[str]]  # [T][K] their text
    top_probs: np.ndarray  # [T, K] float32, their probabilities
    brier: np.ndarray | None = None  # [T] float32, 1 - 2 p(token) + sum_v p_v^2 over the vocabulary; None: unknown
    lark_brier: np.ndarray | None = None  # [T] float32, the same over the 50 largest logits renormalised (LARK)
    truncated: bool = False  # the rendered conversation was cut at max_len
    n_context: int = 0  # tokens in the rendered conversation (after truncation)
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.surprisal.shape[0])

    @property
    def probability(self) -> np.ndarray:
        """[T] float64, p(token) = exp(-surprisal)."""
        return np.exp(-self.surprisal.astype(np.float64))
