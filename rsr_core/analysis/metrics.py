"""The Rank-Surprisal Ratio and the paper's baseline metrics, as pure functions of per-token arrays.

Conventions (arXiv 2601.14249): surprisal in nats; rank is 1-based (the argmax token has rank 1, ties go in the
target's favour); clipped rank = min(rank, r_max). Trajectory RSR (Eq. 7) = sum of clipped ranks / sum of
surprisals. Dataset RSR (Eq. 9) = sum of per-trajectory mean clipped ranks / sum of per-trajectory mean
surprisals, so every trajectory counts equally whatever its length. Lower is better.
An RSR whose denominator is zero is undefined and returned as NaN, never 0 and never an exception.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

R_MAX = 100
FILTER_TOP_FRACTION = 0.3
LARK_MIN_LOSS = 1e-30  # LARK's script sets rho = 0 where the mean cross-entropy is at most this (the limit as L -> 0)

TRAJECTORY_METRICS = (
    "n_tokens", "rsr", "avg_surprisal", "avg_rank_clipped", "avg_rank", "avg_entropy",
    "avg_rsr_token", "filtered_rsr_token", "rank_entropy_ratio",
)


def clipped_rank(rank: np.ndarray, r_max: int = R_MAX) -> np.ndarray:
    """[T] -> [T] min(rank, r_max) as float64."""
    if r_max is None or r_max <= 0:
        return np.asarray(rank, dtype=np.float64)
    return np.minimum(np.asarray(rank, dtype=np.float64), float(r_max))


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN where the denominator is zero (an undefined RSR)."""
    return float(numerator) / float(denominator) if denominator > 0 else float("nan")


def trajectory_rsr(surprisal: np.ndarray, rank: np.ndarray, r_max: int = R_MAX) -> float:
    """Eq. 7: sum_k min(r_k, r_max) / sum_k s_k over one trajectory's response tokens. surprisal, rank: [T]."""
    s = np.asarray(surprisal, dtype=np.float64)
    return ratio(clipped_rank(rank, r_max).sum(), s.sum()) if s.size else float("nan")


def token_rsr(surprisal: np.ndarray, rank: np.ndarray, r_max: int = R_MAX) -> np.ndarray:
    """[T] per-token ratio min(r_k, r_max) / s_k (Eq. 6); inf where s_k = 0."""
    s = np.asarray(surprisal, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return clipped_rank(rank, r_max) / s


def avg_rsr_token(surprisal: np.ndarray, rank: np.ndarray, r_max: int = R_MAX) -> float:
    """Plain token average of r_k / s_k, the baseline that explodes as s_k -> 0 (tokens with s_k = 0 skipped)."""
    r = token_rsr(surprisal, rank, r_max)
    r = r[np.isfinite(r)]
    return float(r.mean()) if r.size else float("nan")


def filtered_rsr_token(surprisal: np.ndarray, rank: np.ndarray, r_max: int = R_MAX,
                       top_fraction: float = FILTER_TOP_FRACTION) -> float:
    """Mean of r_k / s_k over the tokens whose surprisal is in the trajectory's top `top_fraction`."""
    s = np.asarray(surprisal, dtype=np.float64)
    if s.size == 0:
        return float("nan")
    k = max(1, int(np.ceil(top_fraction * s.size)))
    keep = np.argsort(-s, kind="stable")[:k]
    r = token_rsr(s[keep], np.asarray(rank)[keep], r_max)
    r = r[np.isfinite(r)]
    return float(r.mean()) if r.size else float("nan")


def trajectory_metrics(surprisal: np.ndarray, rank: np.ndarray, entropy: np.ndarray | None = None,
                       r_max: int = R_MAX) -> dict[str, float]:
    """Every per-trajectory metric of the paper from [T] surprisal, [T] unclipped rank and [T] entropy."""
    s = np.asarray(surprisal, dtype=np.float64)
    r = np.asarray(rank, dtype=np.float64)
    n = int(s.size)
    nan = float("nan")
    rc = clipped_rank(r, r_max)
    out = {
        "n_tokens": n,
        "rsr": trajectory_rsr(s, r, r_max),
        "avg_surprisal": float(s.mean()) if n else nan,
        "avg_rank_clipped": float(rc.mean()) if n else nan,
        "avg_rank": float(r.mean()) if n else nan,
        "avg_entropy": nan,
        "avg_rsr_token": avg_rsr_token(s, r, r_max),
        "filtered_rsr_token": filtered_rsr_token(s, r, r_max),
        "rank_entropy_ratio": nan,
    }
    if entropy is not None and n:
        e = np.asarray(entropy, dtype=np.float64)
        out["avg_entropy"] = float(e.mean())
        out["rank_entropy_ratio"] = ratio(rc.sum(), e.sum())
    return out


SAME_PASS_METRICS = ("brier", "lark_brier", "lark_rho")


def same_pass_metrics(surprisal: np.ndarray, brier: np.ndarray | None,
                      lark_brier: np.ndarray | None) -> dict[str, float]:
    """The per-trajectory metrics beside RSR from the same forward pass, from [T] per-token terms.

    brier: mean full-vocabulary Brier score; lark_brier: mean Brier score of the top-50 renormalised softmax (LARK,
    arXiv 2605.30651); lark_rho = lark_brier / mean surprisal (LARK's rho; 0 where the mean surprisal is at most
    LARK_MIN_LOSS, as its script). NaN without tokens; None for all three where the terms are unknown (scores
    imported without them)."""
    if brier is None or lark_brier is None:
        return {name: None for name in SAME_PASS_METRICS}
    sums = [np.array([np.sum(v, dtype=np.float64)]) for v in (surprisal, brier, lark_brier)]
    columns = same_pass_columns(np.array([np.size(surprisal)]), *sums)
    return {name: float(v[0]) for name, v in zip(SAME_PASS_METRICS, columns)}


def same_pass_columns(n: np.ndarray, sum_s: np.ndarray, sum_brier: np.ndarray,
                      sum_lark: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """([N] brier, [N] lark_brier, [N] lark_rho) of N trajectories from their [N] token counts and sums of
    surprisal and of the two Brier terms (float64): `same_pass_metrics` for many at once."""
    with np.errstate(divide="ignore", invalid="ignore"):
        count = np.where(n > 0, n, np.nan).astype(np.float64)
        brier, lark, loss = sum_brier / count, sum_lark / count, sum_s / count
        rho = np.where(loss <= LARK_MIN_LOSS, 0.0, lark / loss)
    return brier, lark, np.where(np.isnan(loss) | np.isnan(lark), np.nan, rho)


def lacking_same_pass(table) -> np.ndarray:
    """[n] bool: the rows of a trajectory table (pandas DataFrame) scored without the same-pass columns (stores
    and tables written before they were kept, scores imported without them): lark_rho missing where the mean
    surprisal is defined (a trajectory without tokens, or with NaN logits, has neither)."""
    surprisal = table["avg_surprisal"].to_numpy(np.float64, na_value=np.nan) if "avg_surprisal" in table else None
    if surprisal is None:
        return np.zeros(len(table), bool)
    if "lark_rho" not in table:
        return np.isfinite(surprisal)
    return np.isnan(table["lark_rho"].to_numpy(np.float64, na_value=np.nan)) & np.isfinite(surprisal)


def dataset_rsr(mean_rank_clipped: Iterable[float], mean_surprisal: Iterable[float]) -> float:
    """Eq. 9: sum_j r_j / sum_j s_j over trajectories j (per-trajectory means, each trajectory weighted equally).

    Trajectories with no scored tokens (NaN means) are left out of both sums.
    """
    r, s = _floats(mean_rank_clipped), _floats(mean_surprisal)
    ok = np.isfinite(r) & np.isfinite(s)
    return ratio(r[ok].sum(), s[ok].sum()) if ok.any() else float("nan")


def _floats(values: Iterable[float]) -> np.ndarray:
    """[n] float64 of an array, a sequence or any other iterable."""
    return np.asarray(values if isinstance(values, (np.ndarray, Sequence)) else list(values), dtype=np.float64)


def simple_average_rsr(trajectory_rsrs: Sequence[float]) -> float:
    """The simple dataset-level average: mean of per-trajectory RSR (the paper's weaker variant)."""
    v = np.asarray(trajectory_rsrs, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def teacher_score(run_dataset_rsrs: Sequence[float]) -> float:
    """A teacher's score: the mean of its dataset RSR over generation runs."""
    return simple_average_rsr(run_dataset_rsrs)


def scored_rows(table):
    """The rows of a trajectory table (pandas DataFrame) that have scored tokens: all of them without `n_tokens`."""
    return table[table["n_tokens"] > 0] if "n_tokens" in table else table


METRIC_INPUTS = ("avg_rank_clipped", "avg_surprisal", "rsr", "avg_rank", "n_tokens", "avg_entropy",
                 "avg_rsr_token", "filtered_rsr_token", "correct")


def metric_columns(table) -> dict[str, np.ndarray]:
    """The columns of a trajectory table (pandas DataFrame) that `dataset_metrics` reads, as [n] float64 arrays;
    `correct` as 1.0 / 0.0, NaN where unknown. Read once, they give the metrics of any set of rows by position."""
    out = {}
    for name in METRIC_INPUTS:
        if name not in table:
            continue
        column = table[name]
        if name == "correct":
            known = column.notna().to_numpy(bool)
            values = np.full(len(column), np.nan)
            values[known] = column[known].astype(float).to_numpy()
            out[name] = values
        else:
            out[name] = column.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def dataset_metrics(table) -> dict[str, float]:
    """Dataset-level metrics of a trajectory table (one row per trajectory; pandas DataFrame).

    Means over trajectories for the baselines; Eq. 9 for `rsr`; the rank/surprisal combinations of the paper.
    """
    return metrics_of_columns(metric_columns(table))


def scored_columns(columns: dict[str, np.ndarray], rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The rows at positions `rows` ([m] int, in that order; None: all) of `metric_columns` that have scored
    tokens (`scored_rows` of the arrays)."""
    t = columns if rows is None else {k: v[rows] for k, v in columns.items()}
    if "n_tokens" in t:
        keep = t["n_tokens"] > 0
        t = {k: v[keep] for k, v in t.items()}
    return t


def metrics_of_columns(columns: dict[str, np.ndarray], rows: np.ndarray | None = None) -> dict[str, float]:
    """`dataset_metrics` of the rows at positions `rows` ([m] int, in that order; None: all) of `metric_columns`."""
    t = scored_columns(columns, rows)
    mr, ms = t["avg_rank_clipped"], t["avg_surprisal"]
    n = int(mr.size)
    out = {
        "n_trajectories": n,
        "rsr": dataset_rsr(mr, ms),
        "rsr_simple_average": simple_average_rsr(t["rsr"]),
        "avg_surprisal": float(np.nanmean(ms)) if n else float("nan"),
        "avg_rank_clipped": float(np.nanmean(mr)) if n else float("nan"),
        "avg_rank": float(np.nanmean(t["avg_rank"])) if n else float("nan"),
        "avg_length": _mean_known(t["n_tokens"]) if "n_tokens" in t and n else float("nan"),
    }
    for col in ("avg_entropy", "avg_rsr_token", "filtered_rsr_token"):
        if col in t:
            v = t[col]
            out[col] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
    if "avg_entropy" in t:
        out["rank_entropy_ratio"] = dataset_rsr(mr, t["avg_entropy"])
    out["rank_minus_surprisal"] = out["avg_rank_clipped"] - out["avg_surprisal"]
    out["rank_times_surprisal"] = out["avg_rank_clipped"] * out["avg_surprisal"]
    if "correct" in t:
        out["correct_rate"] = _mean_known(t["correct"])
    return out


def _mean_known(values: np.ndarray) -> float:
    """Mean of the non-NaN values, NaN when there is none (no warning)."""
    known = values[~np.isnan(values)]
    return float(known.mean()) if known.size else float("nan")


def dataset_metrics_by(table, keys: list[str]) -> list[tuple[tuple, dict[str, float]]]:
    """`dataset_metrics` of each group of `table.groupby(keys)`, in sorted key order: [(key tuple, metrics)].
    The table's columns are read once, not once per group."""
    columns = metric_columns(table)
    return [(key, metrics_of_columns(columns, rows)) for key, rows in group_rows(table, keys)]


def group_rows(table, keys: list[str]) -> list[tuple[tuple, np.ndarray]]:
    """[(key tuple, [m] row positions in table order)] of each group of `table.groupby(keys)`, sorted by key."""
    groups = table.groupby(list(keys), sort=True).indices
    return sorted((((k if isinstance(k, tuple) else (k,)), np.asarray(v)) for k, v in groups.items()),
                  key=lambda kv: kv[0])
