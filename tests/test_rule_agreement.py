"""Where selection rules agree and disagree: picks, pairwise agreement, disputed pools and teacher rankings."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rsr_core.analysis import rule_agreement as ra
from rsr_core.analysis.selection import prepare_pools, select_pooled

METRIC_RULES = ("RSR", "LARK", "Avg-Surprisal", "Entropy")
NAN = np.nan


def frame(rows: list[tuple], columns=("pool_id", "trajectory_id", "teacher", "rsr", "lark_g", "avg_surprisal",
                                      "avg_entropy")) -> pd.DataFrame:
    """A pooled table from tuples; the columns a page reads but these tests do not vary get fixed values."""
    out = pd.DataFrame(rows, columns=list(columns))
    for col, value in (("n_tokens", 10.0), ("avg_rank_clipped", 2.0), ("lark_rho", 0.5)):
        if col not in out:
            out[col] = value
    return out


# pool p1: every rule a different view; p2: ties (smallest id wins) and a NaN; p3: one candidate;
# p4: LARK undefined everywhere; p5: RSR and LARK agree, the other two agree. Rows deliberately out of order.
HAND = frame([
    ("p5", "e3", "Z", 2.0, 0.3, 1.2, 1.1),
    ("p1", "a2", "Y", 2.0, 0.9, 0.4, 0.8),
    ("p5", "e1", "X", 4.0, 0.1, 1.0, 1.0),
    ("p4", "d2", "Y", 0.5, NAN, 0.9, 0.3),
    ("p1", "a1", "X", 1.0, 0.2, 0.5, 0.9),
    ("p2", "b2", "Y", 1.5, 0.1, NAN, 0.6),
    ("p3", "c1", "X", 2.0, 0.3, 0.2, 0.1),
    ("p4", "d1", "Z", 0.7, NAN, 0.8, 0.4),
    ("p5", "e4", "X", 1.0, 0.4, 1.3, 1.3),
    ("p1", "a3", "Z", 3.0, 0.5, 0.6, 0.7),
    ("p2", "b1", "X", 1.5, 0.1, 0.3, 0.5),
    ("p5", "e2", "Y", 3.0, 0.2, 1.1, 1.2),
])
HAND_PICKS = {  # pool -> picks under RSR, LARK, Avg-Surprisal, Entropy
    "p1": ("a1", "a2", "a2", "a3"),
    "p2": ("b1", "b1", "b1", "b1"),
    "p3": ("c1", "c1", "c1", "c1"),
    "p4": ("d2", None, "d1", "d2"),
    "p5": ("e4", "e4", "e1", "e1"),
}


def test_picks_by_hand():
    p = ra.picks(HAND, METRIC_RULES)
    assert list(p.columns) == ["pool_id", "pool_size", *METRIC_RULES]
    assert p["pool_id"].tolist() == ["p1", "p2", "p3", "p4", "p5"]
    assert p["pool_size"].tolist() == [3, 2, 1, 2, 4]
    ids = ra.picked_ids(HAND, p)
    assert {r.pool_id: tuple(r[1:]) for r in ids[["pool_id", *METRIC_RULES]].itertuples(index=False)} == HAND_PICKS
    assert p.loc[p["pool_id"] == "p4", "LARK"].item() == ra.NO_PICK
    # positions are iloc positions of the input, whatever its index
    relabelled = HAND.set_index(pd.Index(np.arange(100, 100 + len(HAND))[::-1]))
    assert ra.picks(relabelled, METRIC_RULES).equals(p)


def test_picks_ignore_row_order():
    p = ra.picks(HAND, seed=4)
    shuffled = HAND.sample(frac=1.0, random_state=3).reset_index(drop=True)
    assert ra.picked_ids(shuffled, ra.picks(shuffled, seed=4)).equals(ra.picked_ids(HAND, p))


def test_agreement_by_hand():
    agreement = ra.pairwise_agreement(ra.picks(HAND, METRIC_RULES))
    got = {(r.rule_a, r.rule_b): (r.n_problems, r.n_same, r.n_single, r.n_undefined)
           for r in agreement.itertuples()}
    assert got == {
        ("RSR", "LARK"): (3, 2, 1, 1),  # p1, p2, p5; p3 single, p4 LARK undefined
        ("RSR", "Avg-Surprisal"): (4, 1, 1, 0),
        ("RSR", "Entropy"): (4, 2, 1, 0),
        ("LARK", "Avg-Surprisal"): (3, 2, 1, 1),
        ("LARK", "Entropy"): (3, 1, 1, 1),
        ("Avg-Surprisal", "Entropy"): (4, 2, 1, 0),
    }
    row = agreement.set_index(["rule_a", "rule_b"])
    assert row.loc[("RSR", "LARK"), "share"] == pytest.approx(2 / 3)
    assert row.loc[("RSR", "LARK"), "chance"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 4) / 3)
    assert row.loc[("RSR", "Avg-Surprisal"), "share"] == pytest.approx(1 / 4)
    assert row.loc[("RSR", "Avg-Surprisal"), "chance"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 2 + 1 / 4) / 4)
    # Wilson 95% for 2 of 3, worked out by hand: centre 0.5731, half-width 0.3654
    assert row.loc[("RSR", "LARK"), "low"] == pytest.approx(0.2077, abs=1e-4)
    assert row.loc[("RSR", "LARK"), "high"] == pytest.approx(0.9385, abs=1e-4)
    assert (agreement["low"] <= agreement["share"]).all() and (agreement["share"] <= agreement["high"]).all()


@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
def test_wilson_matches_scipy(confidence):
    k, n = np.array([0, 1, 5, 10, 37, 400]), np.array([10, 1, 10, 10, 120, 1000])
    low, high = ra.wilson_interval(k, n, confidence)
    for i in range(k.size):
        ci = stats.binomtest(int(k[i]), int(n[i])).proportion_ci(confidence, method="wilson")
        assert low[i] == pytest.approx(ci.low, abs=1e-12)
        assert high[i] == pytest.approx(ci.high, abs=1e-12)
    assert low[0] == 0.0 and high[3] == 1.0
    empty_low, empty_high = ra.wilson_interval([0], [0])
    assert np.isnan(empty_low[0]) and np.isnan(empty_high[0])


def test_pair_matrix():
    agreement = ra.pairwise_agreement(ra.picks(HAND, METRIC_RULES))
    m = ra.pair_matrix(agreement)
    assert list(m.index) == list(m.columns) == list(METRIC_RULES)
    assert np.allclose(m.to_numpy(), m.to_numpy().T, equal_nan=True)
    assert (np.diag(m.to_numpy()) == 1.0).all()
    assert m.loc["LARK", "Entropy"] == pytest.approx(1 / 3)
    assert m.loc["Entropy", "LARK"] == pytest.approx(1 / 3)
    chance = ra.pair_matrix(agreement, "chance", diagonal=np.nan)
    assert np.isnan(np.diag(chance.to_numpy())).all()
    assert chance.loc["RSR", "LARK"] == pytest.approx(13 / 36)


# q2 disagrees most (each pick is the other's worst); q1, q3 and q5 tie at 1.5 (pool id order); q0's picks tie under
# LARK (rank 0); q4's rules agree (not listed).
DISPUTED = frame([
    ("q0", "u1", "A", 2.0, 0.8), ("q0", "u2", "B", 1.0, 0.8), ("q0", "u3", "C", 3.0, 0.1), ("q0", "u4", "A", 4.0, 0.2),
    ("q1", "x1", "A", 1.0, 0.1), ("q1", "x2", "B", 2.0, 0.9), ("q1", "x3", "C", 3.0, 0.5),
    ("q2", "y1", "A", 1.0, 0.1), ("q2", "y2", "B", 2.0, 0.2),
    ("q3", "z1", "A", 1.0, 0.5), ("q3", "z2", "B", 1.5, 0.6), ("q3", "z3", "C", 9.0, NAN),
    ("q4", "w1", "A", 1.0, 0.9), ("q4", "w2", "B", 2.0, 0.1),
    ("q5", "v1", "A", 1.0, NAN), ("q5", "v2", "B", 2.0, 0.5), ("q5", "v3", "C", 3.0, 0.4),
], columns=("pool_id", "trajectory_id", "teacher", "rsr", "lark_g"))


def test_disagreements_by_hand():
    d = ra.disagreements(DISPUTED, ra.picks(DISPUTED, ["RSR", "LARK"]), "RSR", "LARK", n=None)
    assert d["pool_id"].tolist() == ["q2", "q1", "q3", "q5", "q0"]
    assert d["score"].tolist() == pytest.approx([2.0, 1.5, 1.5, 1.5, 1 / 3])
    assert d["a_rank_b"].tolist() == pytest.approx([1.0, 1.0, 1.0, 1.0, 0.0])  # q5: v1 undefined under LARK
    assert d["b_rank_a"].tolist() == pytest.approx([1.0, 0.5, 0.5, 0.5, 1 / 3])
    q1 = d.iloc[1]
    assert (q1["a_trajectory_id"], q1["a_teacher"], q1["b_trajectory_id"], q1["b_teacher"]) == ("x1", "A", "x2", "B")
    assert (q1["a_value_a"], q1["a_value_b"], q1["b_value_a"], q1["b_value_b"]) == (1.0, 0.1, 2.0, 0.9)
    assert q1["pool_size"] == 3 and (q1["rule_a"], q1["rule_b"]) == ("RSR", "LARK")
    top = ra.disagreements(DISPUTED, ra.picks(DISPUTED, ["RSR", "LARK"]), n=2)
    assert top["pool_id"].tolist() == ["q2", "q1"]
    shuffled = DISPUTED.sample(frac=1.0, random_state=1).reset_index(drop=True)
    again = ra.disagreements(shuffled, ra.picks(shuffled, ["RSR", "LARK"]), n=None)
    assert again["pool_id"].tolist() == d["pool_id"].tolist()


def test_disagreements_need_metric_rules_in_the_picks():
    p = ra.picks(DISPUTED, ["RSR", "Random"])
    with pytest.raises(ValueError, match="random"):
        ra.disagreements(DISPUTED, p, "RSR", "Random")
    with pytest.raises(ValueError, match="LARK"):
        ra.disagreements(DISPUTED, p, "RSR", "LARK")


def random_pooled(n: int = 2000, seed: int = 7) -> pd.DataFrame:
    """Pools of 1 to ~15 candidates; values rounded (ties), about 15% NaN, one pool all NaN under every metric."""
    rng = np.random.default_rng(seed)
    pools = [f"P{i:04d}" for i in rng.integers(0, 260, n - 15)] + [f"S{i:02d}" for i in range(15)]  # 15 singles
    out = pd.DataFrame({
        "pool_id": rng.permutation(pools),
        "trajectory_id": [f"t{i:05d}" for i in rng.permutation(n)],
        "teacher": rng.choice(["A", "B", "C", "D"], n),
        "n_tokens": rng.integers(0, 50, n).astype(float),
    })
    for col in ("rsr", "lark_g", "avg_surprisal", "avg_entropy", "avg_rank_clipped"):
        values = np.round(rng.uniform(0, 2, n), 1)
        values[rng.random(n) < 0.15] = np.nan
        out[col] = values
    out.loc[out["pool_id"] == out["pool_id"].iloc[0], ["rsr", "lark_g", "avg_surprisal", "avg_entropy"]] = np.nan
    return out


def naive_picks(pooled: pd.DataFrame, seed: int) -> dict[str, dict[str, str | None]]:
    """rule -> pool -> picked trajectory id, by a plain loop over pools."""
    order = sorted(range(len(pooled)), key=lambda i: (pooled["pool_id"].iloc[i], pooled["trajectory_id"].iloc[i]))
    draws = np.empty(len(pooled))
    draws[order] = np.random.default_rng(seed).random(len(pooled))
    out: dict[str, dict[str, str | None]] = {name: {} for name in ra.DEFAULT_RULES}
    for pool, group in pooled.assign(_draw=draws).groupby("pool_id"):
        for rule in ra.RULES.values():
            column = "_draw" if rule.column is None else rule.column
            sign = -1 if rule.direction == "max" else 1
            candidates = [(sign * v, t) for v, t in zip(group[column], group["trajectory_id"]) if np.isfinite(v)]
            out[rule.name][pool] = min(candidates)[1] if candidates else None
    return out


def test_vectorised_picks_equal_a_loop():
    pooled = random_pooled()
    ids = ra.picked_ids(pooled, ra.picks(pooled, seed=11))
    naive = naive_picks(pooled, seed=11)
    first_pool = pooled["pool_id"].iloc[0]
    assert (ids["pool_size"] == 1).any() and ids.loc[ids["pool_id"] == first_pool, "RSR"].item() is None
    for name in ra.DEFAULT_RULES:
        assert dict(zip(ids["pool_id"], ids[name])) == naive[name], name


def test_agreement_equals_a_loop():
    pooled = random_pooled(seed=3)
    naive = naive_picks(pooled, seed=0)
    size = pooled.groupby("pool_id").size()
    agreement = ra.pairwise_agreement(ra.picks(pooled)).set_index(["rule_a", "rule_b"])
    for (a, b), row in agreement.iterrows():
        pools = [p for p in size.index if size[p] >= 2 and naive[a][p] is not None and naive[b][p] is not None]
        same = sum(naive[a][p] == naive[b][p] for p in pools)
        assert (row["n_problems"], row["n_same"]) == (len(pools), same)
        assert row["chance"] == pytest.approx(np.mean([1 / size[p] for p in pools]))
        assert row["n_single"] == (size < 2).sum()


def test_disagreement_scores_equal_a_loop():
    pooled = random_pooled(seed=5)
    p = ra.picks(pooled, ["RSR", "LARK"])
    d = ra.disagreements(pooled, p, "RSR", "LARK", n=None).set_index("pool_id")
    naive = naive_picks(pooled, seed=0)

    def rank_in(group: pd.DataFrame, tid: str, column: str, sign: float) -> float:
        values = sign * group[column].to_numpy()
        mine = values[group["trajectory_id"].to_numpy() == tid][0]
        defined = values[np.isfinite(values)]
        return 1.0 if not np.isfinite(mine) else (defined < mine).sum() / max(defined.size - 1, 1)

    expected = {}
    for pool, group in pooled.groupby("pool_id"):
        a, b = naive["RSR"][pool], naive["LARK"][pool]
        if len(group) >= 2 and a is not None and b is not None and a != b:
            expected[pool] = rank_in(group, a, "lark_g", -1.0) + rank_in(group, b, "rsr", 1.0)
    assert set(d.index) == set(expected)
    assert d["score"].to_dict() == pytest.approx(expected)
    assert (np.diff(d["score"].to_numpy()) <= 1e-12).all()


def test_picks_match_select():
    pooled = random_pooled(600, seed=2).rename(columns={"pool_id": "problem_id"})
    pooled = prepare_pools(pooled.assign(complete=True))  # leaves _pool / _id_rank sort codes, reused here
    ids = ra.picked_ids(pooled, ra.picks(pooled, ["RSR", "Random"], seed=9))
    rsr = select_pooled(pooled, by="rsr").selected
    rsr = rsr[rsr["metric_defined"]]
    assert dict(zip(rsr["pool_id"], rsr["trajectory_id"])) == {
        k: v for k, v in zip(ids["pool_id"], ids["RSR"]) if v is not None}
    drawn = select_pooled(pooled, mode="random", seed=9).selected
    assert dict(zip(drawn["pool_id"], drawn["trajectory_id"])) == dict(zip(ids["pool_id"], ids["Random"]))


def test_random_rule_follows_its_seed():
    pooled = random_pooled(seed=1)
    one, other = (ra.picks(pooled, ["Random"], seed=s)["Random"] for s in (0, 1))
    assert one.equals(ra.picks(pooled, ["Random"], seed=0)["Random"])
    assert not one.equals(other)


# Teacher A: Eq. 9 RSR (2 + 4) / (1 + 3) = 1.5 (the mean of per-trajectory RSR would be 1.67); B: 3 / 1 = 3;
# C: (1 + 1) / (1 + 0.5) = 1.33 with an unscored row left out.
TEACHERS = pd.DataFrame({
    "pool_id": ["p1", "p2", "p1", "p1", "p2", "p3"],
    "trajectory_id": ["a1", "a2", "b1", "c1", "c2", "c3"],
    "teacher": ["A", "A", "B", "C", "C", "C"],
    "avg_rank_clipped": [2.0, 4.0, 3.0, 1.0, 1.0, NAN],
    "avg_surprisal": [1.0, 3.0, 1.0, 1.0, 0.5, NAN],
    "rsr": [2.0, 4 / 3, 3.0, 1.0, 2.0, NAN],
    "avg_entropy": [0.5, 0.7, 0.6, 0.9, 0.7, 5.0],
    "lark_g": [0.2, NAN, 0.5, 0.1, 0.3, 9.0],
    "n_tokens": [10.0, 10.0, 10.0, 10.0, 10.0, 0.0],
})


def test_teacher_rankings_by_hand():
    r = ra.teacher_rankings(TEACHERS).set_index("teacher")
    assert r.index.tolist() == ["A", "B", "C"]
    assert r["n_trajectories"].tolist() == [2, 1, 3]
    assert r["rsr"].tolist() == pytest.approx([1.5, 3.0, 2 / 1.5])
    assert r["avg_surprisal"].tolist() == pytest.approx([2.0, 1.0, 0.75])
    assert r["avg_entropy"].tolist() == pytest.approx([0.6, 0.6, 0.8])
    assert r["lark_g"].tolist() == pytest.approx([0.2, 0.5, 0.2])
    assert r["rank_rsr"].tolist() == [2, 3, 1]
    assert r["rank_avg_surprisal"].tolist() == [3, 2, 1]
    assert r["rank_avg_entropy"].tolist() == [1, 1, 3]  # A and B tie for best
    assert r["rank_lark_g"].tolist() == [2, 1, 2]  # higher is better


def test_rank_correlations_equal_scipy():
    r = ra.teacher_rankings(TEACHERS)
    rho = ra.rank_correlations(r).set_index(["metric_a", "metric_b"])
    assert len(rho) == 6 and (rho["n_teachers"] == 3).all()
    # rsr ranks A2 B3 C1, avg_surprisal A3 B2 C1: d = (-1, 1, 0), rho = 1 - 6 * 2 / (3 * 8)
    assert rho.loc[("rsr", "avg_surprisal"), "rho"] == pytest.approx(0.5)
    oriented = {"rsr": r["rsr"], "avg_surprisal": r["avg_surprisal"], "avg_entropy": r["avg_entropy"],
                "lark_g": -r["lark_g"]}
    for (a, b), row in rho.iterrows():
        assert row["rho"] == pytest.approx(stats.spearmanr(oriented[a], oriented[b]).statistic), (a, b)


def test_rank_correlations_on_five_teachers():
    scores = pd.DataFrame({"teacher": list("ABCDE"), "x": [1.0, 2.0, 3.0, 4.0, 5.0], "y": [2.0, 1.0, 4.0, 3.0, 5.0]})
    rankings = scores.assign(rank_x=[1, 2, 3, 4, 5], rank_y=[2, 1, 4, 3, 5])
    rho = ra.rank_correlations(rankings)
    assert rho["rho"].item() == pytest.approx(1 - 6 * 4 / (5 * 24))
    assert rho["rho"].item() == pytest.approx(stats.spearmanr(scores["x"], scores["y"]).statistic)


def test_few_teachers_give_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        two = ra.rank_correlations(ra.teacher_rankings(TEACHERS[TEACHERS["teacher"] != "C"]))
        one = ra.teacher_rankings(TEACHERS[TEACHERS["teacher"] == "B"])
        level = ra.rank_correlations(ra.teacher_rankings(TEACHERS.assign(avg_entropy=1.0)))
    assert two["rho"].isna().all() and (two["n_teachers"] == 2).all()
    assert one[[c for c in one if c.startswith("rank_")]].iloc[0].tolist() == [1, 1, 1, 1]
    level = level.set_index(["metric_a", "metric_b"])["rho"]
    assert np.isnan(level[("rsr", "avg_entropy")])  # every teacher level on entropy
    assert level[("rsr", "avg_surprisal")] == pytest.approx(0.5)


@pytest.mark.parametrize("lark", ["absent", "all NaN"])
def test_without_lark(lark):
    pooled = HAND.drop(columns=["lark_g", "lark_rho"]) if lark == "absent" else HAND.assign(lark_g=NAN, lark_rho=NAN)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        availability = ra.rule_availability(pooled).set_index("rule")
        p = ra.picks(pooled)
        agreement = ra.pairwise_agreement(p)
        d = ra.disagreements(pooled, p, "RSR", "LARK")
        rankings = ra.teacher_rankings(pooled)
        rho = ra.rank_correlations(rankings)
    assert not availability.loc["LARK", "available"]
    assert availability.loc["LARK", "reason"] == ("no column 'lark_g' in the table" if lark == "absent"
                                                  else "no defined value in column 'lark_g'")
    assert availability.drop(index="LARK")["available"].all()
    assert (p["LARK"] == ra.NO_PICK).all()
    with_lark = agreement[(agreement["rule_a"] == "LARK") | (agreement["rule_b"] == "LARK")]
    assert len(with_lark) == 4 and (with_lark["n_problems"] == 0).all()
    assert with_lark[["share", "low", "high", "chance"]].isna().all().all()
    others = agreement.drop(with_lark.index).reset_index(drop=True)
    full = ra.pairwise_agreement(ra.picks(HAND))
    expected = full[(full["rule_a"] != "LARK") & (full["rule_b"] != "LARK")].reset_index(drop=True)
    pd.testing.assert_frame_equal(others, expected)
    assert d.empty and list(d.columns) == list(ra.disagreements(HAND, ra.picks(HAND)).columns)
    assert rankings["lark_g"].isna().all() and rankings["rank_lark_g"].isna().all()
    assert rankings["rank_rsr"].notna().all()
    lark_rho = rho[(rho["metric_a"] == "lark_g") | (rho["metric_b"] == "lark_g")]
    assert lark_rho["rho"].isna().all() and (lark_rho["n_teachers"] == 0).all()
    m = ra.pair_matrix(agreement)
    assert np.isnan(m.loc["LARK", "LARK"]) and m.loc["RSR", "RSR"] == 1.0


def test_empty_table():
    empty = HAND.iloc[:0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = ra.picks(empty)
        agreement = ra.pairwise_agreement(p)
        d = ra.disagreements(empty, p)
        rankings = ra.teacher_rankings(empty)
        rho = ra.rank_correlations(rankings)
        availability = ra.rule_availability(empty)
    assert p.empty and list(p.columns) == ["pool_id", "pool_size", *ra.DEFAULT_RULES]
    assert len(agreement) == 10 and (agreement["n_problems"] == 0).all() and agreement["share"].isna().all()
    assert d.empty and rankings.empty and rho["rho"].isna().all()
    assert not availability["available"].any()


def test_single_candidate_pools_only():
    singles = HAND[HAND["pool_id"] == "p3"]
    agreement = ra.pairwise_agreement(ra.picks(singles))
    assert (agreement["n_problems"] == 0).all() and (agreement["n_single"] == 1).all()
    assert ra.disagreements(singles, ra.picks(singles)).empty


def test_unknown_rule():
    with pytest.raises(ValueError, match="unknown rule"):
        ra.picks(HAND, ["RSR", "Perplexity"])
