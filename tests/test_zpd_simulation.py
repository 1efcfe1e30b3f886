"""The toy simulation reproduces the paper's table and responds to its parameters in the expected direction."""
import numpy as np
import pytest

from rsr_core.analysis.simulation import (PAPER_TABLE, SOURCES, STAT_NAMES, SimulationConfig, expected_stats,
                                     place_token, ranks, rsr_contribution, sample_trajectory, simulate,
                                     source_distributions, standard_errors, student_distribution, with_params, zipf)

DEFAULT = SimulationConfig()
ROUNDING = 0.005  # the paper prints two decimals


@pytest.mark.parametrize("source", SOURCES)
def test_default_run_reproduces_the_paper_table(source):
    """Tolerance: half a unit of the paper's last digit plus 3 standard errors of a 10,000-token mean."""
    got = simulate(DEFAULT)[source]
    se = standard_errors(DEFAULT)[source]
    for name, paper, err in zip(STAT_NAMES, PAPER_TABLE[source], se):
        assert abs(getattr(got, name) - paper) <= ROUNDING + 3 * err, (source, name, getattr(got, name), paper)


@pytest.mark.parametrize("source", SOURCES)
def test_expected_values_are_close_to_the_paper_table(source):
    """The exact expectations (no sampling) sit within 2.5 standard errors of the paper's rounded numbers."""
    exp = expected_stats(DEFAULT)[source]
    se = standard_errors(DEFAULT)[source]
    for name, paper, err in zip(STAT_NAMES, PAPER_TABLE[source], se):
        assert abs(getattr(exp, name) - paper) <= ROUNDING + 2.5 * err, (source, name, getattr(exp, name), paper)


def test_minor_mode_has_the_lowest_ratio_both_ways():
    sim = simulate(DEFAULT)
    assert min(SOURCES, key=lambda s: sim[s].rsr_token) == "B"
    assert min(SOURCES, key=lambda s: sim[s].rsr) == "B"
    assert max(SOURCES, key=lambda s: sim[s].mean_surprisal) == "C"
    assert max(SOURCES, key=lambda s: sim[s].mean_rank) == "C"


def test_rsr_token_is_the_mean_of_ratios_and_rsr_the_ratio_of_sums():
    """The paper's column is the mean of r/s: the ratio of sums is visibly larger for X_A (1.80 against 1.69)."""
    a = simulate(DEFAULT)["A"]
    assert a.rsr == pytest.approx(a.mean_rank / a.mean_surprisal)
    assert a.rsr - a.rsr_token > 0.05


def test_same_seed_same_numbers_other_seed_other_numbers():
    assert simulate(DEFAULT)["D"] == simulate(DEFAULT)["D"]
    assert simulate(with_params(DEFAULT, seed=1))["D"].mean_rank != simulate(DEFAULT)["D"].mean_rank


def test_sample_means_converge_to_expected_values():
    big = with_params(DEFAULT, n_samples=200_000)
    sim, exp = simulate(big), expected_stats(big)
    for s in SOURCES:
        assert sim[s].mean_surprisal == pytest.approx(exp[s].mean_surprisal, abs=0.02)
        assert sim[s].rsr_token == pytest.approx(exp[s].rsr_token, abs=0.02)


def test_distributions_are_normalised_and_shifted():
    d = source_distributions(DEFAULT)
    for p in d.values():
        assert p.shape == (50,) and p.sum() == pytest.approx(1.0)
    assert int(np.argmax(d["A"])) == 0
    assert int(np.argmax(d["B"])) == DEFAULT.shift
    assert np.allclose(np.sort(d["C"]), np.sort(d["A"]))  # C: the same shape under another ranking
    assert np.allclose(d["D"], 0.8 * d["A"] + 0.2 * d["B"])


def test_ranks_are_one_based_and_ties_go_in_the_tokens_favour():
    assert ranks(np.array([0.1, 0.5, 0.2, 0.2])).tolist() == [4, 1, 2, 2]
    assert ranks(zipf(2.3, 5)).tolist() == [1, 2, 3, 4, 5]


def test_heavier_major_mode_makes_minor_mode_tokens_rarer():
    light, heavy = expected_stats(with_params(DEFAULT, weight=0.6)), expected_stats(with_params(DEFAULT, weight=0.95))
    assert heavy["B"].mean_probability < light["B"].mean_probability
    assert heavy["B"].mean_surprisal > light["B"].mean_surprisal
    assert heavy["A"].mean_probability > light["A"].mean_probability


def test_larger_zipf_exponent_makes_the_major_mode_more_familiar():
    flat, steep = expected_stats(with_params(DEFAULT, alpha=1.5)), expected_stats(with_params(DEFAULT, alpha=3.0))
    assert steep["A"].mean_probability > flat["A"].mean_probability
    assert steep["A"].mean_surprisal < flat["A"].mean_surprisal
    assert steep["A"].mean_rank < flat["A"].mean_rank


def test_no_shift_makes_the_minor_mode_the_major_mode():
    same = simulate(with_params(DEFAULT, shift=0))
    for name in STAT_NAMES:
        assert getattr(same["B"], name) == pytest.approx(getattr(same["A"], name), rel=0.05)


def test_place_token_rank_falls_as_probability_rises():
    z = student_distribution(DEFAULT)
    placed = [place_token(p, z) for p in (1e-4, 0.01, 0.05, 0.2, 0.5, 0.9)]
    assert [t.rank for t in placed] == sorted([t.rank for t in placed], reverse=True)
    assert placed[0].rank == 51 and placed[-1].rank == 1
    assert placed[2].surprisal == pytest.approx(-np.log(0.05))
    assert place_token(1e-4, z, r_max=10).clipped_rank == 10


def test_rsr_contribution_pulls_towards_the_tokens_own_ratio():
    rest_r, rest_s = 30.0, 15.0  # rest of the trajectory at RSR 2
    low = rsr_contribution(2, 4.0, rest_r, rest_s)  # a token in the zone: r/s = 0.5
    high = rsr_contribution(60, 3.0, rest_r, rest_s)  # an alien token: r/s = 20
    assert low.rsr_without == pytest.approx(2.0)
    assert low.rsr_with == pytest.approx(32 / 19) and low.delta < 0
    assert high.delta > 0
    assert low.weight == pytest.approx(4 / 19)
    familiar = rsr_contribution(1, 0.01, rest_r, rest_s)  # almost no surprisal: barely counts, but raises RSR
    assert familiar.weight < 0.001 and familiar.delta > 0


def test_sample_trajectory_is_scored_under_the_student():
    rank, s = sample_trajectory(DEFAULT, 40)
    assert rank.shape == s.shape == (40,)
    assert rank.min() >= 1 and rank.max() <= 50 and (s > 0).all()
