"""Uncertainty and correlation: bootstrap intervals of the dataset RSR, metric/accuracy correlations.

Percentile bootstrap throughout, seedable (numpy `default_rng(seed)`), so every interval is reproducible; the
dataset RSR of more than `NORMAL_ABOVE` trajectories takes the large-sample normal interval instead, which the
bootstrap converges to and which costs one pass over the trajectories instead of a thousand.
The dataset RSR is resampled over trajectories (each trajectory counts equally, as in Eq. 9); correlations are
resampled over teachers (one point per teacher, as in the paper's Table 4). scipy is imported by the correlation
functions only: it takes seconds to import, and the dataset RSR and its intervals do not need it.
"""
from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

METHODS = ("spearman", "pearson")
_CHUNK_CELLS = 20_000_000  # resample indices drawn at a time (B x n), about 160 MB of int64
NORMAL_ABOVE = 5_000  # trajectories from which the dataset RSR interval is the large-sample normal one


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile bootstrap interval."""

    estimate: float
    low: float
    high: float
    confidence: float = 0.95
    n: int = 0


@dataclass(frozen=True)
class Correlation:
    """A correlation coefficient, its scipy p-value, and its bootstrap interval over the paired points."""

    method: str
    rho: float
    p_value: float
    low: float
    high: float
    n: int
    confidence: float = 0.95


def percentile_interval(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """(low, high) percentiles of the finite `samples` [B] holding `confidence` of the mass; NaN if none."""
    v = np.asarray(samples, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(v, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_dataset_rsr(mean_rank_clipped: np.ndarray, mean_surprisal: np.ndarray, *,
                          n_resamples: int = 1000, confidence: float = 0.95, seed: int | None = 0,
                          normal_above: int | None = NORMAL_ABOVE) -> Interval:
    """Eq. 9 dataset RSR of [n] per-trajectory means with a percentile CI from resampling trajectories.

    Trajectories with a NaN mean (no scored tokens) are left out, as `metrics.dataset_rsr` does. From
    `normal_above` trajectories on (None: never) the interval is `normal_dataset_rsr`'s, to which the bootstrap's
    converges: resampling costs n x n_resamples draws (165 million for the paper's 165,000 trajectories).
    """
    r = np.asarray(mean_rank_clipped, dtype=np.float64)
    s = np.asarray(mean_surprisal, dtype=np.float64)
    ok = np.isfinite(r) & np.isfinite(s)
    r, s = r[ok], s[ok]
    n = int(r.size)
    if n == 0 or s.sum() <= 0:
        nan = float("nan")
        return Interval(nan, nan, nan, confidence, n)
    if normal_above is not None and n > normal_above:
        return normal_dataset_rsr(r, s, confidence=confidence)
    estimate = float(r.sum() / s.sum())
    rng = np.random.default_rng(seed)
    values = np.empty(n_resamples, dtype=np.float64)
    step = max(1, _CHUNK_CELLS // n)
    for start in range(0, n_resamples, step):
        stop = min(n_resamples, start + step)
        idx = rng.integers(0, n, size=(stop - start, n), )
        num, den = np.take(r, idx).sum(axis=1), np.take(s, idx).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            values[start:stop] = np.where(den > 0, num / den, np.nan)
    low, high = percentile_interval(values, confidence)
    return Interval(estimate, low, high, confidence, n)


def normal_dataset_rsr(mean_rank_clipped: np.ndarray, mean_surprisal: np.ndarray, *,
                       confidence: float = 0.95) -> Interval:
    """Eq. 9 dataset RSR of [n] per-trajectory means with the large-sample normal CI of a ratio of means.

    The standard error of R = mean(r) / mean(s) is sd(r - R s) / (mean(s) sqrt(n)) (the delta method); for
    thousands of trajectories the percentile bootstrap gives the same interval (tests/test_statistics.py).
    """
    r = np.asarray(mean_rank_clipped, dtype=np.float64)
    s = np.asarray(mean_surprisal, dtype=np.float64)
    ok = np.isfinite(r) & np.isfinite(s)
    r, s = r[ok], s[ok]
    n = int(r.size)
    if n < 2 or s.sum() <= 0:
        nan = float("nan")
        estimate = float(r.sum() / s.sum()) if n and s.sum() > 0 else nan
        return Interval(estimate, estimate if n == 1 else nan, estimate if n == 1 else nan, confidence, n)
    estimate = float(r.sum() / s.sum())
    se = float(np.std(r - estimate * s, ddof=1) / (s.mean() * np.sqrt(n)))
    half = float(NormalDist().inv_cdf(0.5 + confidence / 2.0)) * se
    return Interval(estimate, estimate - half, estimate + half, confidence, n)


def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of x, y [B, n]; NaN where a row is constant."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (xc * yc).sum(axis=1) / den
    out[~(den > 1e-12)] = np.nan
    return out


def correlation(x: np.ndarray, y: np.ndarray, method: str = "spearman") -> tuple[float, float]:
    """(coefficient, p-value) of scipy's Spearman or Pearson over the pairs where both are finite."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    from scipy import stats

    res = stats.spearmanr(x, y) if method == "spearman" else stats.pearsonr(x, y)
    return float(res[0]), float(res[1])


def bootstrap_correlation(x: np.ndarray, y: np.ndarray, *, method: str = "spearman", n_resamples: int = 1000,
                          confidence: float = 0.95, seed: int | None = 0) -> Correlation:
    """Correlation of paired points x, y [n] (one per teacher) with a percentile CI from resampling the pairs.

    Spearman is Pearson of average ranks (ties share their mean rank), exactly as scipy computes it; resamples
    in which either side is constant have no correlation and are left out of the interval.
    """
    rho, p = correlation(x, y, method)
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = int(x.size)
    if not np.isfinite(rho) or n_resamples <= 0:
        return Correlation(method, rho, p, float("nan"), float("nan"), n, confidence)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    xs, ys = x[idx], y[idx]
    if method == "spearman":
        from scipy import stats

        xs, ys = stats.rankdata(xs, axis=1), stats.rankdata(ys, axis=1)
    low, high = percentile_interval(_rowwise_pearson(xs, ys), confidence)
    return Correlation(method, rho, p, low, high, n, confidence)
