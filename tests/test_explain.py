"""`rsr_core.analysis.explain`: the decomposition of RSR, token excess, top spans and the sliding-window curve, checked
against values computed by hand and against direct recomputation with `rsr_core.analysis.metrics`."""
from __future__ import annotations

import math

import numpy as np
import pytest

from rsr_core.analysis import explain
from rsr_core.analysis.metrics import trajectory_rsr

# clipped ranks [1, 3, 4, 100] (200 clipped at 100): R = 108, S = 8, RSR = 13.5
S = np.array([1.0, 1.0, 2.0, 4.0], dtype=np.float32)
R = np.array([1, 3, 4, 200], dtype=np.int64)


def test_decomposition_by_hand():
    d = explain.decompose(S, R, r_max=100)
    assert (d.n_tokens, d.sum_rank_clipped, d.sum_surprisal, d.n_clipped) == (4, 108.0, 8.0, 1)
    assert d.rsr == pytest.approx(13.5)
    assert (d.mean_rank_clipped, d.mean_surprisal) == (27.0, 2.0)
    assert d.formula() == "RSR = Σ clipped rank / Σ surprisal = 108 / 8.0 = 13.500"
    # without clipping the 200 counts in full
    assert explain.decompose(S, R, r_max=0).sum_rank_clipped == 208.0


def test_excess_by_hand_sums_to_zero():
    e = explain.token_excess(S, R, r_max=100)
    np.testing.assert_allclose(e, [1 - 13.5, 3 - 13.5, 4 - 27.0, 100 - 54.0])
    assert e.sum() == pytest.approx(0.0, abs=1e-12)
    assert explain.top_tokens(S, R, r_max=100).tolist() == [3]  # the only token with positive excess


def test_leave_one_out_matches_recomputation():
    delta = explain.leave_one_out_delta(S, R, r_max=100)
    assert delta[3] == pytest.approx(46.0 / 4.0)  # 13.5 - (108 - 100) / (8 - 4) = 13.5 - 2
    for k in range(4):
        keep = np.arange(4) != k
        assert 13.5 - delta[k] == pytest.approx(trajectory_rsr(S[keep], R[keep], 100))


def test_top_spans_by_hand():
    spans = explain.top_spans(S, R, r_max=100, window=2, k=5)
    assert len(spans) == 1  # window excess sums are -23, -33.5, 23: one positive window
    sp = spans[0]
    assert (sp.start, sp.stop, len(sp)) == (2, 4, 2)
    assert sp.excess == pytest.approx(23.0)
    assert sp.rsr == pytest.approx(104.0 / 6.0)
    assert sp.rsr_without == pytest.approx(2.0)  # (1 + 3) / (1 + 1)


def test_top_spans_do_not_overlap():
    s = np.ones(6)
    # excess with RSR 34: [66, -33, -33, -33, 66, -33]; window sums 33, -66, -66, 33, 33: start 4 overlaps 3
    spans = explain.top_spans(s, np.array([100, 1, 1, 1, 100, 1]), r_max=100, window=2, k=5)
    assert [(sp.start, sp.stop) for sp in spans] == [(0, 2), (3, 5)]
    assert [sp.excess for sp in spans] == pytest.approx([33.0, 33.0])
    # one peak of two adjacent tokens: the overlapping runners-up are dropped
    spans = explain.top_spans(s, np.array([1, 1, 100, 100, 1, 1]), r_max=100, window=2, k=5)
    assert [(sp.start, sp.stop) for sp in spans] == [(2, 4)]
    assert [(sp.start, sp.stop) for sp in explain.top_spans(s, np.array([1, 1, 100, 100, 1, 1]), window=1)] == \
        [(2, 3), (3, 4)]


def test_short_trajectory_gives_one_whole_span():
    spans = explain.top_spans(np.array([1.0, 1.0]), np.array([1, 9]), window=64)
    assert spans == []  # the whole text has excess 0 by definition: nothing pushes up against itself
    curve = explain.sliding_rsr(np.array([1.0, 1.0]), np.array([1, 9]), window=64)
    assert curve[["start", "stop"]].values.tolist() == [[0, 2]]
    assert curve["rsr"].iloc[0] == pytest.approx(5.0)


def test_sliding_rsr_by_hand():
    curve = explain.sliding_rsr(S, R, r_max=100, window=2, stride=1)
    assert curve["start"].tolist() == [0, 1, 2]
    assert curve["stop"].tolist() == [2, 3, 4]
    np.testing.assert_allclose(curve["rsr"], [4 / 2, 7 / 3, 104 / 6])
    np.testing.assert_allclose(curve["excess"], [-23.0, -33.5, 23.0])
    # stride 3 would miss the tail: the last window is added so it ends at T
    assert explain.sliding_rsr(S, R, window=2, stride=3)["start"].tolist() == [0, 2]
    # default stride w // 4
    assert explain.sliding_rsr(np.ones(16), np.ones(16, int), window=8)["start"].tolist() == [0, 2, 4, 6, 8]


def test_undefined_rsr_gives_nan_not_errors():
    zero = np.zeros(3)
    assert math.isnan(explain.decompose(zero, np.array([1, 2, 3])).rsr)
    assert np.isnan(explain.token_excess(zero, np.array([1, 2, 3]))).all()
    assert explain.top_tokens(zero, np.array([1, 2, 3])).size == 0
    assert explain.top_spans(zero, np.array([1, 2, 3]), window=2) == []
    assert explain.sliding_rsr(zero, np.array([1, 2, 3]), window=2)["rsr"].isna().all()
    assert explain.sliding_rsr(np.zeros(0), np.zeros(0, int)).empty


def test_tables():
    toks = ["a", "b", "c", "d"]
    t = explain.token_contributions(S, R, toks, r_max=100, k=3)
    assert t["position"].tolist() == [3] and t["token"].tolist() == ["d"]
    assert t["rsr_without"].iloc[0] == pytest.approx(2.0)
    sp = explain.span_table(explain.top_spans(S, R, window=2), toks)
    assert sp[["start", "stop", "text"]].values.tolist() == [[2, 4, "cd"]]
    assert explain.span_table([explain.span_at(S, R, 0, 4)], ["x" * 50] * 4, max_chars=10)["text"][0] == \
        "x" * 9 + "…"


def test_identities_on_demo_scores():
    """On real per-token scores: excess sums to 0 and every span's rsr_without equals direct recomputation."""
    from rsr_core.data.demo import available_demo_students, load_demo

    if not available_demo_students():
        pytest.skip("no precomputed demo scores")
    table, scores = load_demo()
    tid = table.sort_values("n_tokens").iloc[-1]["trajectory_id"]
    ts = scores[tid]
    e = explain.token_excess(ts.surprisal, ts.rank, 100)
    assert abs(e.sum()) < 1e-6 * np.abs(e).sum()
    spans = explain.top_spans(ts.surprisal, ts.rank, 100, window=16, k=3)
    assert spans and all(a.excess >= b.excess for a, b in zip(spans, spans[1:]))
    for sp in spans:
        keep = np.ones(len(ts), bool)
        keep[sp.start:sp.stop] = False
        assert sp.rsr_without == pytest.approx(trajectory_rsr(ts.surprisal[keep], ts.rank[keep], 100), rel=1e-9)
        assert sp.rsr_without < table.set_index("trajectory_id").loc[tid, "rsr"]


def test_lark_decomposition_by_hand():
    s = np.array([1.0, 2.0, 1.0])
    b = np.array([0.5, 0.2, 0.9])  # B = 1.6, S = 4, rho = 0.4
    d = explain.lark_decompose(s, b)
    assert (d.n_tokens, d.sum_brier, d.sum_surprisal) == (3, pytest.approx(1.6), 4.0)
    assert d.rho == pytest.approx(0.4) and "= 0.400" in d.formula()
    table = explain.brier_contributions(s, b, ["a", "b", "c"])
    # excess b - rho s: 0.1, -0.6, 0.5; the two raising rho, most first, with rho recomputed without each
    assert table["position"].tolist() == [2, 0]
    assert table["excess"].tolist() == pytest.approx([0.5, 0.1])
    assert table["rho_without"].tolist() == pytest.approx([0.7 / 3.0, 1.1 / 3.0])
    assert table["lark_brier"].tolist() == pytest.approx([0.9, 0.5]) and table["token"].tolist() == ["c", "a"]
    assert explain.lark_decompose(np.zeros(2), np.zeros(2)).rho == 0.0  # LARK's convention at zero loss
    assert math.isnan(explain.lark_decompose(np.zeros(0), np.zeros(0)).rho)
    assert explain.brier_contributions(np.zeros(0), np.zeros(0), []).empty
