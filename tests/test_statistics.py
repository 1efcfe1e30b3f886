"""Bootstrap intervals of the dataset RSR and bootstrap intervals of metric/accuracy correlations."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from rsr_core.analysis.metrics import dataset_rsr
from rsr_core.analysis.statistics import (bootstrap_correlation, bootstrap_dataset_rsr, correlation, normal_dataset_rsr,
                                          percentile_interval)


def sample(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """[n] per-trajectory mean clipped ranks and mean surprisals, RSR around 3."""
    rng = np.random.default_rng(seed)
    s = rng.gamma(4.0, 0.2, n)
    return s * rng.uniform(2.0, 4.0, n), s


def test_dataset_rsr_interval_brackets_the_eq9_estimate_and_is_seeded():
    r, s = sample(300)
    ci = bootstrap_dataset_rsr(r, s, n_resamples=500, seed=3)
    assert ci.estimate == pytest.approx(dataset_rsr(r, s))
    assert ci.low < ci.estimate < ci.high and ci.n == 300 and ci.confidence == 0.95
    assert bootstrap_dataset_rsr(r, s, n_resamples=500, seed=3) == ci
    assert bootstrap_dataset_rsr(r, s, n_resamples=500, seed=4) != ci


def test_dataset_rsr_interval_matches_a_plain_loop_over_resamples():
    r, s = sample(50, seed=2)
    ci = bootstrap_dataset_rsr(r, s, n_resamples=200, confidence=0.9, seed=5)
    idx = np.random.default_rng(5).integers(0, 50, size=(200, 50))
    values = [r[i].sum() / s[i].sum() for i in idx]
    assert (ci.low, ci.high) == pytest.approx(tuple(np.percentile(values, [5, 95])))


def test_dataset_rsr_interval_narrows_with_more_trajectories_and_covers_the_truth():
    r_small, s_small = sample(30, seed=1)
    r_big, s_big = sample(3000, seed=1)
    small = bootstrap_dataset_rsr(r_small, s_small, n_resamples=400)
    big = bootstrap_dataset_rsr(r_big, s_big, n_resamples=400)
    assert (big.high - big.low) < 0.5 * (small.high - small.low)
    assert big.low < 3.0 < big.high  # E[r] / E[s] = 3 by construction


def test_normal_interval_of_many_trajectories_equals_the_bootstrap():
    r, s = sample(6000, seed=7)
    boot = bootstrap_dataset_rsr(r, s, n_resamples=2000, seed=1, normal_above=None)
    normal = bootstrap_dataset_rsr(r, s)  # 6,000 > NORMAL_ABOVE: the normal interval
    assert normal == normal_dataset_rsr(r, s) and normal.estimate == pytest.approx(dataset_rsr(r, s))
    width = boot.high - boot.low
    assert abs(normal.low - boot.low) < 0.05 * width and abs(normal.high - boot.high) < 0.05 * width
    assert normal.low < normal.estimate < normal.high
    few = bootstrap_dataset_rsr(r[:100], s[:100], n_resamples=300, seed=2)
    assert few != normal_dataset_rsr(r[:100], s[:100])  # few trajectories: still the percentile bootstrap


def test_dataset_rsr_interval_edge_cases():
    ci = bootstrap_dataset_rsr([3.0] * 10, [1.0] * 10, n_resamples=50)
    assert ci.estimate == ci.low == ci.high == pytest.approx(3.0)
    r, s = sample(40)
    with_nan = bootstrap_dataset_rsr(np.append(r, np.nan), np.append(s, 1.0), n_resamples=100)
    assert with_nan == bootstrap_dataset_rsr(r, s, n_resamples=100)
    empty = bootstrap_dataset_rsr([], [], n_resamples=10)
    assert np.isnan(empty.estimate) and np.isnan(empty.low) and empty.n == 0


def test_percentile_interval_ignores_nan():
    assert percentile_interval(np.array([np.nan, 1.0, 2.0, 3.0]), 1.0) == (1.0, 3.0)
    assert all(np.isnan(percentile_interval(np.array([np.nan]))))


@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_correlation_is_scipys(method):
    rng = np.random.default_rng(0)
    x = rng.normal(size=11)
    y = -2 * x + rng.normal(size=11)
    ref = stats.spearmanr(x, y) if method == "spearman" else stats.pearsonr(x, y)
    rho, p = correlation(x, y, method)
    assert rho == pytest.approx(ref[0]) and p == pytest.approx(ref[1]) and rho < 0


def test_correlation_of_constant_or_too_short_input_is_nan():
    assert np.isnan(correlation([1, 1, 1, 1], [1, 2, 3, 4])[0])
    assert np.isnan(correlation([1, 2], [2, 1])[0])
    with pytest.raises(ValueError):
        correlation([1, 2, 3], [1, 2, 3], "kendall")


@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_bootstrap_correlation_matches_scipy_on_every_resample(method):
    """The vectorised resamples give the same interval as calling scipy on each resample (ties included)."""
    x = np.array([3.0, 2.8, 3.7, 3.1, 2.7, 2.9, 3.1, 3.8, 3.5, 2.9, 2.9])
    y = np.array([47.8, 45.0, 40.7, 48.3, 52.0, 50.0, 47.6, 42.7, 35.2, 52.0, 51.8])
    c = bootstrap_correlation(x, y, method=method, n_resamples=300, confidence=0.9, seed=2)
    idx = np.random.default_rng(2).integers(0, 11, size=(300, 11))
    fn = stats.spearmanr if method == "spearman" else stats.pearsonr
    ref = np.array([fn(x[i], y[i])[0] if np.ptp(x[i]) and np.ptp(y[i]) else np.nan for i in idx])
    assert (c.low, c.high) == pytest.approx(percentile_interval(ref, 0.9))
    assert c.rho == pytest.approx(fn(x, y)[0]) and c.n == 11 and c.low <= c.rho <= c.high


def test_bootstrap_correlation_of_a_monotone_relation_is_certain():
    x = np.arange(11.0)
    c = bootstrap_correlation(x, x ** 3, method="spearman", n_resamples=200)
    assert c.rho == pytest.approx(1.0) and c.low == pytest.approx(1.0) and c.high == pytest.approx(1.0)
    noisy = bootstrap_correlation(x, np.random.default_rng(0).normal(size=11), n_resamples=200)
    assert noisy.high - noisy.low > 0.5
