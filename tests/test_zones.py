"""Zones, GLTR-style rank bins and colour scales."""
import numpy as np
import pytest

from rsr_core.analysis.zones import (RANK_BIN_COLOURS, ZONE_COLOURS, ZONES, ZoneThresholds, classify_zones, interpolate,
                            rank_bin, rank_bins, rank_colour, surprisal_colour, text_colour, zone_colour, zone_of,
                            zone_summary)


def test_zone_rules_at_default_thresholds():
    assert zone_of(1, 0.2) == "too_familiar"
    assert zone_of(1, 1.0) == "zone"  # an uncertain top choice
    assert zone_of(3, 2.5) == "zone"
    assert zone_of(10, 4.0) == "zone"
    assert zone_of(11, 4.0) == "alien"
    assert zone_of(2, 0.5) == "neutral"  # a near-tie


def test_thresholds_are_parameters():
    t = ZoneThresholds(surprisal=3.0, rank=2)
    assert zone_of(3, 2.5, t) == "neutral"
    assert zone_of(3, 3.5, t) == "alien"
    assert zone_of(2, 3.5, t) == "zone"


def test_every_point_of_a_grid_falls_in_exactly_one_zone_and_vectorised_matches_scalar():
    ranks = np.array([1, 1, 2, 5, 10, 11, 100, 5000] * 4)
    surprisal = np.repeat([0.0, 0.99, 1.0, 7.5], 8)
    zones = classify_zones(ranks, surprisal)
    assert set(zones) <= set(ZONES)
    assert list(zones) == [zone_of(int(r), float(s)) for r, s in zip(ranks, surprisal)]


def test_zone_summary_shares_add_up():
    rank = np.array([1, 1, 3, 40, 2, 500])
    s = np.array([0.1, 0.2, 2.0, 5.0, 0.5, 9.0])
    summary = zone_summary(rank, s, r_max=100)
    assert summary["too_familiar"]["n_tokens"] == 2
    assert summary["zone"]["n_tokens"] == 1
    assert summary["alien"]["n_tokens"] == 2
    assert summary["neutral"]["n_tokens"] == 1
    for key in ("token_share", "rank_share", "surprisal_share"):
        assert sum(v[key] for v in summary.values()) == pytest.approx(1.0)
    # the alien tokens supply (40 + 100 clipped) of the 147 clipped-rank total
    assert summary["alien"]["rank_share"] == pytest.approx(140 / 147)


def test_rank_bins_are_one_based_gltr_bins():
    assert [rank_bin(r) for r in (1, 10, 11, 100, 101, 1000, 1001, 10**6)] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert rank_bins(np.array([1, 10, 11, 100, 101, 1000, 1001])).tolist() == [0, 0, 1, 1, 2, 2, 3]


def test_colour_scales_are_hex_clipped_and_monotone_at_the_ends():
    assert rank_colour(1) == "#1a9850" and rank_colour(100) == "#d73027"
    assert rank_colour(5000) == rank_colour(100)  # clipped at r_max
    assert rank_colour(50, r_max=50) == "#d73027"
    assert surprisal_colour(0.0) == "#fff7ec" and surprisal_colour(25.0) == "#7f0000"
    assert surprisal_colour(2.0) != surprisal_colour(6.0)
    for z in ZONES:
        assert zone_colour(z) == ZONE_COLOURS[z]
    assert interpolate(("#000000", "#ffffff"), 0.5) == "#808080"
    assert len(set(RANK_BIN_COLOURS)) == 4


def test_text_colour_contrasts_with_background():
    assert text_colour("#ffffff") == "#000000"
    assert text_colour("#000000") == "#ffffff"
    assert text_colour("#7f0000") == "#ffffff"
