"""Why a trajectory gets its RSR: the decomposition, each token's contribution, the spans that drive it, and the
RSR along the text. Pure: numpy in, numbers and frames out; no Streamlit.

LARK's rho (arXiv 2605.30651) is a ratio of the same kind, rho = B / S with B the sum of the tokens' top-50
Brier terms b_k: the same decomposition holds with b_k in place of the clipped rank (`lark_decompose`,
`brier_contributions`), a token with b_k - rho * s_k > 0 raising rho.

Trajectory RSR (Eq. 7) is R / S with R = sum_k min(r_k, r_max) and S = sum_k s_k. A token's *excess*

    e_k = min(r_k, r_max) - RSR * s_k

is how much more clipped rank it brings than a token of the trajectory's own ratio would bring for its surprisal.
The excesses sum to 0 over the trajectory (R - (R/S) * S). e_k > 0 pushes RSR up (ranked far down for how
surprising it is: misaligned), e_k < 0 pulls it down. Removing token k changes RSR by exactly
-e_k / (S - s_k), so the excess ranks tokens by their leave-one-out effect; for a span P the same holds with
sums: RSR without P = RSR - e_P / (S - s_P), where e_P = sum of excess over P = s_P * (RSR_P - RSR).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rsr_core.analysis.metrics import LARK_MIN_LOSS, R_MAX, clipped_rank, ratio

DEFAULT_WINDOW = 64


@dataclass(frozen=True)
class Decomposition:
    """RSR = sum_rank_clipped / sum_surprisal, with the parts that make it up."""

    n_tokens: int
    r_max: int
    sum_rank_clipped: float  # R = sum_k min(r_k, r_max)
    sum_surprisal: float  # S = sum_k s_k, nats
    rsr: float  # R / S; NaN when S = 0
    mean_rank_clipped: float  # R / T
    mean_surprisal: float  # S / T
    n_clipped: int  # tokens with r_k > r_max (their rank counts as r_max)

    def formula(self) -> str:
        """One line with the actual numbers, e.g. `RSR = Σ clipped rank / Σ surprisal = 1234 / 456.7 = 2.702`."""
        return (f"RSR = Σ clipped rank / Σ surprisal = {self.sum_rank_clipped:,.0f} / {self.sum_surprisal:,.1f} "
                f"= {self.rsr:.3f}")


@dataclass(frozen=True)
class Span:
    """Tokens [start, stop) of a trajectory and what they do to its RSR."""

    start: int
    stop: int
    excess: float  # sum of the span's token excesses (> 0: the span pushes RSR up)
    rsr: float  # the span's own RSR (its clipped ranks over its surprisals)
    rsr_without: float  # the trajectory's RSR with the span left out

    def __len__(self) -> int:
        return self.stop - self.start


def decompose(surprisal: np.ndarray, rank: np.ndarray, r_max: int = R_MAX) -> Decomposition:
    """The parts of Eq. 7 for one trajectory. surprisal: [T] nats, rank: [T] unclipped 1-based."""
    s = np.asarray(surprisal, dtype=np.float64)
    r = np.asarray(rank)
    rc = clipped_rank(r, r_max)
    n = int(s.size)
    total_r, total_s = float(rc.sum()), float(s.sum())
    return Decomposition(
        n_tokens=n, r_max=int(r_max), sum_rank_clipped=total_r, sum_surprisal=total_s,
        rsr=ratio(total_r, total_s) if n else float("nan"),
        mean_rank_clipped=total_r / n if n else float("nan"), mean_surprisal=total_s / n if n else float("nan"),
        n_clipped=int((r > r_max).sum()) if r_max and r_max > 0 else 0,
    )


def token_excess(surprisal: np.ndarray, rank: np.ndarray, r_max: int = R_MAX) -> np.ndarray:
    """[T] e_k = min(r_k, r_max) - RSR * s_k (see the module docstring); sums to 0. All NaN when RSR is undefined."""
    s = np.asarray(surprisal, dtype=np.float64)
    rc = clipped_rank(rank, r_max)
    rsr = ratio(rc.sum(), s.sum()) if s.size else float("nan")
    if not np.isfinite(rsr):
        return np.full(s.shape, np.nan)
    return rc - rsr * s


def leave_one_out_delta(surprisal: np.ndarray, rank: np.ndarray, r_max: int = R_MAX) -> np.ndarray:
    """[T] RSR minus the RSR without token k = e_k / (S - s_k): how much RSR falls when token k is removed.

    NaN where the rest has no surprisal (S - s_k = 0) or RSR is undefined.
    """
    s = np.asarray(surprisal, dtype=np.float64)
    rest = s.sum() - s
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(rest > 0, token_excess(s, rank, r_max) / rest, np.nan)


def top_tokens(surprisal: np.ndarray, rank: np.ndarray, r_max: int = R_MAX, k: int = 10) -> np.ndarray:
    """Indices [<= k] of the tokens with the largest positive excess, largest first (ties: earlier first)."""
    e = token_excess(surprisal, rank, r_max)
    order = np.argsort(-np.nan_to_num(e, nan=-np.inf), kind="stable")
    return order[e[order] > 0][:k].astype(np.int64)


def window_sums(values: np.ndarray, window: int) -> np.ndarray:
    """[T - w + 1] sums of every run of w consecutive values (one sum of all T values when T < w)."""
    v = np.asarray(values, dtype=np.float64)
    w = max(1, min(int(window), v.size))
    if v.size == 0:
        return np.zeros(0)
    c = np.concatenate([[0.0], np.cumsum(v)])
    return c[w:] - c[:-w]


def top_spans(surprisal: np.ndarray, rank: np.ndarray, r_max: int = R_MAX, window: int = DEFAULT_WINDOW,
              k: int = 5) -> list[Span]:
    """The <= k non-overlapping windows of w tokens with the largest summed excess (> 0), largest first.

    Greedy: windows sorted by summed excess (ties: earlier first), each kept unless it overlaps one already kept.
    A trajectory shorter than w gives at most one span, the whole text.
    """
    s = np.asarray(surprisal, dtype=np.float64)
    r = np.asarray(rank)
    e = token_excess(s, r, r_max)
    if s.size == 0 or not np.isfinite(e).all():
        return []
    w = max(1, min(int(window), s.size))
    sums = window_sums(e, w)
    taken = np.zeros(s.size, dtype=bool)
    spans: list[Span] = []
    for start in np.argsort(-sums, kind="stable").tolist():
        if sums[start] <= 0 or len(spans) >= k:
            break
        stop = start + w
        if taken[start:stop].any():
            continue
        taken[start:stop] = True
        spans.append(span_at(s, r, start, stop, r_max))
    return spans


def span_at(surprisal: np.ndarray, rank: np.ndarray, start: int, stop: int, r_max: int = R_MAX) -> Span:
    """What tokens [start, stop) do to the RSR of the trajectory (see `Span`)."""
    s = np.asarray(surprisal, dtype=np.float64)
    rc = clipped_rank(rank, r_max)
    e = token_excess(s, rank, r_max)
    in_r, in_s = float(rc[start:stop].sum()), float(s[start:stop].sum())
    return Span(start=int(start), stop=int(stop), excess=float(e[start:stop].sum()), rsr=ratio(in_r, in_s),
                rsr_without=ratio(float(rc.sum()) - in_r, float(s.sum()) - in_s))


def sliding_rsr(surprisal: np.ndarray, rank: np.ndarray, r_max: int = R_MAX, window: int = DEFAULT_WINDOW,
                stride: int | None = None) -> pd.DataFrame:
    """RSR of windows of w tokens every `stride` tokens (default w // 4) along the trajectory.

    One row per window [start, stop): start, stop, centre, rsr (NaN where the window has no surprisal),
    sum_rank_clipped, sum_surprisal, excess. The last window always ends at T, so the tail is covered; a trajectory
    shorter than w gives one window, the whole text.
    """
    s = np.asarray(surprisal, dtype=np.float64)
    columns = ["start", "stop", "centre", "rsr", "sum_rank_clipped", "sum_surprisal", "excess"]
    if s.size == 0:
        return pd.DataFrame(columns=columns)
    w = max(1, min(int(window), s.size))
    step = max(1, int(stride) if stride else w // 4 or 1)
    starts = np.arange(0, s.size - w + 1, step)
    if starts[-1] != s.size - w:
        starts = np.append(starts, s.size - w)
    rsum = window_sums(clipped_rank(rank, r_max), w)[starts]
    ssum = window_sums(s, w)[starts]
    e = token_excess(s, rank, r_max)
    esum = window_sums(e, w)[starts] if np.isfinite(e).all() else np.full(starts.size, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        rsr = np.where(ssum > 0, rsum / ssum, np.nan)
    return pd.DataFrame({"start": starts, "stop": starts + w, "centre": starts + w / 2.0, "rsr": rsr,
                         "sum_rank_clipped": rsum, "sum_surprisal": ssum, "excess": esum})


def token_contributions(surprisal: np.ndarray, rank: np.ndarray, tokens: list[str], r_max: int = R_MAX,
                        k: int = 10) -> pd.DataFrame:
    """Table of the k tokens that push RSR up most: position, token, rank, clipped_rank, surprisal, excess,
    rsr_without (the trajectory's RSR with that token left out)."""
    s = np.asarray(surprisal, dtype=np.float64)
    r = np.asarray(rank)
    idx = top_tokens(s, r, r_max, k)
    e = token_excess(s, r, r_max)
    rsr = decompose(s, r, r_max).rsr
    delta = leave_one_out_delta(s, r, r_max)
    return pd.DataFrame({
        "position": idx, "token": [tokens[i] for i in idx], "rank": r[idx].astype(np.int64),
        "clipped_rank": clipped_rank(r[idx], r_max), "surprisal": s[idx], "excess": e[idx],
        "rsr_without": rsr - delta[idx],
    })


def span_table(spans: list[Span], tokens: list[str], max_chars: int = 80) -> pd.DataFrame:
    """One row per span: start, stop, text (first max_chars characters), rsr, excess, rsr_without."""
    def excerpt(sp: Span) -> str:
        text = "".join(tokens[sp.start:sp.stop])
        return text if len(text) <= max_chars else text[: max_chars - 1] + "…"

    return pd.DataFrame({
        "start": [sp.start for sp in spans], "stop": [sp.stop for sp in spans],
        "text": [excerpt(sp) for sp in spans], "rsr": [sp.rsr for sp in spans],
        "excess": [sp.excess for sp in spans], "rsr_without": [sp.rsr_without for sp in spans],
    })


@dataclass(frozen=True)
class LarkDecomposition:
    """LARK's rho = sum of Brier terms / sum of surprisals (= mean Brier / mean surprisal), with its parts."""

    n_tokens: int
    sum_brier: float  # B = sum_k b_k, LARK's top-50 Brier term of each token
    sum_surprisal: float  # S
    rho: float  # B / S; 0 where the mean surprisal is at most LARK_MIN_LOSS (LARK's script), NaN without tokens

    def formula(self) -> str:
        """One line with the actual numbers, e.g. `ρ = Σ Brier / Σ surprisal = 51.2 / 163.0 = 0.314`."""
        return f"LARK ρ = Σ Brier / Σ surprisal = {self.sum_brier:,.1f} / {self.sum_surprisal:,.1f} = {self.rho:.3f}"


def lark_decompose(surprisal: np.ndarray, lark_brier: np.ndarray) -> LarkDecomposition:
    """The parts of LARK's rho for one trajectory. surprisal, lark_brier: [T]."""
    s, b = np.asarray(surprisal, dtype=np.float64), np.asarray(lark_brier, dtype=np.float64)
    n = int(s.size)
    total_b, total_s = float(b.sum()), float(s.sum())
    rho = float("nan") if not n else 0.0 if total_s / n <= LARK_MIN_LOSS else total_b / total_s
    return LarkDecomposition(n_tokens=n, sum_brier=total_b, sum_surprisal=total_s, rho=rho)


def brier_contributions(surprisal: np.ndarray, lark_brier: np.ndarray, tokens: list[str],
                        k: int = 10) -> pd.DataFrame:
    """Table of the k tokens that raise LARK's rho most: position, token, surprisal, lark_brier, excess
    (b_k - rho * s_k) and rho_without (the trajectory's rho with that token left out). surprisal, lark_brier: [T]."""
    s, b = np.asarray(surprisal, dtype=np.float64), np.asarray(lark_brier, dtype=np.float64)
    rho = lark_decompose(s, b).rho
    excess = b - rho * s if np.isfinite(rho) else np.full(s.shape, np.nan)
    order = np.argsort(-np.nan_to_num(excess, nan=-np.inf), kind="stable")
    idx = order[excess[order] > 0][:k].astype(np.int64)
    rest_b, rest_s = b.sum() - b[idx], s.sum() - s[idx]
    with np.errstate(divide="ignore", invalid="ignore"):
        without = np.where(rest_s > 0, rest_b / rest_s, np.nan)
    return pd.DataFrame({"position": idx, "token": [tokens[i] for i in idx], "surprisal": s[idx],
                         "lark_brier": b[idx], "excess": excess[idx], "rho_without": without})
