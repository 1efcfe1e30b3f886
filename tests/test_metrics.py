"""Every metric against hand-computed values, including the reference's sanity example."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from rsr_core.analysis import metrics
from rsr_core.engine.scoring import token_statistics


def test_sanity_example_of_the_reference():
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.1]])
    st = token_statistics(logits, torch.tensor([2]), k=2)
    expected = math.log(sum(math.exp(x) for x in (2.0, 1.0, 0.5, 0.1))) - 0.5
    assert st["surprisal"].item() == pytest.approx(expected, abs=1e-6)
    assert st["surprisal"].item() == pytest.approx(2.0542, abs=1e-4)
    assert st["rank"].item() == 3
    assert st["top_ids"].tolist() == [[0, 1]]
    p = torch.softmax(logits, -1)[0]
    assert st["entropy"].item() == pytest.approx(float(-(p * p.log()).sum()), abs=1e-6)


def test_ties_go_in_the_targets_favour():
    logits = torch.tensor([[1.0, 3.0, 3.0, 3.0, 0.0]])
    assert token_statistics(logits, torch.tensor([2]), k=1)["rank"].item() == 1
    assert token_statistics(logits, torch.tensor([0]), k=1)["rank"].item() == 4
    assert token_statistics(logits, torch.tensor([4]), k=1)["rank"].item() == 5


def test_trajectory_rsr_clips_ranks():
    s = np.array([0.5, 1.0, 2.5])
    r = np.array([1, 3, 250])
    assert metrics.trajectory_rsr(s, r, r_max=100) == pytest.approx((1 + 3 + 100) / 4.0)
    assert metrics.trajectory_rsr(s, r, r_max=2) == pytest.approx((1 + 2 + 2) / 4.0)
    m = metrics.trajectory_metrics(s, r, np.array([1.0, 1.0, 2.0]), r_max=100)
    assert m["n_tokens"] == 3
    assert m["avg_rank"] == pytest.approx(254 / 3)
    assert m["avg_rank_clipped"] == pytest.approx(104 / 3)
    assert m["avg_surprisal"] == pytest.approx(4 / 3)
    assert m["avg_entropy"] == pytest.approx(4 / 3)
    assert m["rank_entropy_ratio"] == pytest.approx(104 / 4)
    assert m["avg_rsr_token"] == pytest.approx((1 / 0.5 + 3 / 1.0 + 100 / 2.5) / 3)
    # top 30 % of 3 tokens by surprisal is one token: the 2.5-nat one
    assert m["filtered_rsr_token"] == pytest.approx(100 / 2.5)


def test_rsr_is_the_surprisal_weighted_mean_of_token_ratios():
    rng = np.random.default_rng(0)
    s = rng.uniform(0.01, 5, 50)
    r = rng.integers(1, 300, 50)
    ratios = metrics.token_rsr(s, r)
    assert metrics.trajectory_rsr(s, r) == pytest.approx(float((ratios * s).sum() / s.sum()))


def test_zero_surprisal_gives_an_undefined_rsr_not_a_crash():
    m = metrics.trajectory_metrics(np.zeros(4), np.ones(4, dtype=int), np.zeros(4))
    assert math.isnan(m["rsr"]) and math.isnan(m["rank_entropy_ratio"])
    assert math.isnan(m["avg_rsr_token"])
    assert math.isnan(metrics.trajectory_rsr(np.zeros(0), np.zeros(0)))
    assert math.isnan(metrics.dataset_rsr([1.0, 2.0], [0.0, 0.0]))


def test_dataset_rsr_is_a_ratio_of_means_not_the_simple_average():
    # trajectory A: 2 tokens, ranks 1,1 surprisals 1,1 -> mean rank 1, mean surprisal 1, RSR 1
    # trajectory B: 4 tokens, ranks 10 x4, surprisal 1 x4 -> mean rank 10, mean surprisal 1, RSR 10
    table = pd.DataFrame({"n_tokens": [2, 4], "avg_rank_clipped": [1.0, 10.0], "avg_surprisal": [1.0, 1.0],
                          "avg_rank": [1.0, 10.0], "rsr": [1.0, 10.0]})
    d = metrics.dataset_metrics(table)
    assert d["rsr"] == pytest.approx(11 / 2)  # Eq. 9: (1 + 10) / (1 + 1)
    assert d["rsr_simple_average"] == pytest.approx(5.5)
    # pooling over tokens would give (2 + 40) / 6 = 7: Eq. 9 weights every trajectory equally
    assert d["rsr"] != pytest.approx(42 / 6)
    table2 = table.assign(avg_surprisal=[2.0, 0.5], rsr=[0.5, 20.0])
    d2 = metrics.dataset_metrics(table2)
    assert d2["rsr"] == pytest.approx(11 / 2.5)
    assert d2["rsr_simple_average"] == pytest.approx(10.25)
    assert d2["rank_minus_surprisal"] == pytest.approx(5.5 - 1.25)
    assert d2["rank_times_surprisal"] == pytest.approx(5.5 * 1.25)


def test_empty_trajectories_are_left_out_of_dataset_rsr():
    assert metrics.dataset_rsr([2.0, float("nan")], [1.0, float("nan")]) == pytest.approx(2.0)


def test_teacher_score_is_the_mean_over_runs():
    assert metrics.teacher_score([3.0, 4.0, 5.0]) == pytest.approx(4.0)


def test_metrics_by_group_equal_the_metrics_of_each_group():
    """`dataset_metrics_by` reads the columns once; each group's metrics are exactly `dataset_metrics` of that
    group's rows (unscored rows, unknown correctness and NaN baselines included)."""
    rng = np.random.default_rng(2)
    n = 400
    table = pd.DataFrame({
        "teacher": rng.choice(["QwQ", "R1", "Phi"], n), "run": rng.choice(["r1", "r2"], n),
        "n_tokens": rng.integers(0, 50, n), "avg_rank_clipped": rng.uniform(1, 20, n),
        "avg_surprisal": rng.uniform(0.2, 3, n), "avg_rank": rng.uniform(1, 90, n), "rsr": rng.uniform(1, 9, n),
        "avg_entropy": np.where(rng.random(n) < 0.3, np.nan, rng.uniform(0, 2, n)),
        "correct": pd.array(np.where(rng.random(n) < 0.3, None, rng.random(n) < 0.5), dtype="boolean")})
    grouped = metrics.dataset_metrics_by(table, ["teacher", "run"])
    expected = [((t, r), frame) for (t, r), frame in table.groupby(["teacher", "run"], sort=True)]
    assert [key for key, _ in grouped] == [key for key, _ in expected]
    for (_, got), (_, frame) in zip(grouped, expected):
        want = metrics.dataset_metrics(frame)
        assert got.keys() == want.keys()
        for k in want:
            assert got[k] == want[k] or (math.isnan(got[k]) and math.isnan(want[k])), k
        assert want["n_trajectories"] == int((frame["n_tokens"] > 0).sum())
        scored = frame[frame["n_tokens"] > 0]
        assert want["rsr"] == pytest.approx(scored["avg_rank_clipped"].sum() / scored["avg_surprisal"].sum())
        assert want["correct_rate"] == pytest.approx(scored["correct"].dropna().astype(float).mean())
