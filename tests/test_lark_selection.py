"""LARK's per-problem score g_hat, its chi-square top-B weights, and top-B selection in `select` and the CLI."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rsr_core.analysis.lark import chi2_weights, pool_g_hat, top_b, with_lark_g
from rsr_core.analysis.metrics import dataset_rsr, trajectory_metrics
from rsr_core.analysis.selection import (
    EXPORT_FIELDS,
    prepare_pools,
    rule_label,
    select,
    selection_summary,
)
from rsr_core.data.exports import write_selection

ROOT = Path(__file__).resolve().parents[1]
TEACHERS = ("QwQ", "R1", "Phi")


def row(tid: str, problem: str, teacher: str, *, loss: float, rho: float | None, rank: float = 3.0, n: int = 20,
        correct: object = None, prompt: str | None = None) -> dict:
    """One trajectory-table row: metrics from constant per-token arrays (avg_surprisal = loss), and `lark_rho`."""
    m = trajectory_metrics(np.full(n, loss), np.full(n, rank), np.full(n, loss))
    prompt = prompt or f"Solve problem {problem}."
    out = {"trajectory_id": tid, "problem_id": problem, "teacher": teacher, "run": "r1", "student": "tiny", **m,
           "truncated": False, "correct": correct, "r_max": 100, "source": f"{teacher}.jsonl", "record": 1,
           "prompt": prompt, "messages": json.dumps([{"role": "user", "content": prompt},
                                                     {"role": "assistant", "content": f"solution {tid}"}])}
    if rho is not None:
        out["lark_rho"] = rho
    return out


def random_table(n_problems: int = 12, per_pool: int = 4, seed: int = 0) -> pd.DataFrame:
    """Every problem has `per_pool` candidates (teachers cycled) with random L, rho, rank and correctness."""
    rng = np.random.default_rng(seed)
    rows = [row(f"t{k}-{p}", f"p{p:02d}", TEACHERS[k % 3], loss=rng.uniform(0.2, 2.0), rho=rng.uniform(0.05, 0.6),
                rank=rng.uniform(1, 6), n=int(rng.integers(5, 60)), correct=bool(rng.random() < 0.6))
            for p in range(n_problems) for k in range(per_pool)]
    return pd.DataFrame(rows)


def lark_g_loop(loss: list[float], rho: list[float]) -> list[float]:
    """LARK's `compute_g_hat` for one problem, written as its script is (NaN candidates left out of the sums)."""
    ok = [not (math.isnan(a) or math.isnan(b)) for a, b in zip(loss, rho)]
    sum_l = sum(a for a, v in zip(loss, ok) if v)
    sum_rl = sum(a * b for a, b, v in zip(loss, rho, ok) if v)
    return [(a / sum_l) * (2 * b - sum_rl / sum_l) if v and sum_l > 1e-30 else math.nan
            for a, b, v in zip(loss, rho, ok)]


def expected_top(table: pd.DataFrame, column: str, b: int, largest: bool) -> dict[str, list[str]]:
    """problem -> ids of its `b` best `column` values (ties to the smaller id), by plain sorting."""
    out = {}
    for problem, group in table.groupby("problem_id"):
        pairs = [(-v if largest else v, t) for v, t in zip(group[column], group["trajectory_id"])]
        out[problem] = [t for _, t in sorted(pairs)[:b]]
    return out


def kept(selection) -> dict[str, list[str]]:
    """problem -> ids kept, in the selection's order (best first within a problem)."""
    out: dict[str, list[str]] = {}
    for pool, tid in zip(selection.selected["pool_id"], selection.selected["trajectory_id"]):
        out.setdefault(pool, []).append(tid)
    return out


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rsr_core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


# ------------------------------------------------------------------------------------------------------ g_hat


def test_g_hat_by_hand():
    """Rows of four pools interleaved: the sums must follow the pool codes, not the row order."""
    loss = np.array([1.0, 0.7, 2.0, 2.0, 3.0, np.nan, 0.0, 2.0, 0.0])
    rho = np.array([0.5, 0.37, 0.2, 0.3, 0.1, 0.9, 0.0, 0.1, 0.0])
    pool = np.array([7, 3, 7, 5, 7, 5, 9, 5, 9])
    g = pool_g_hat(loss, rho, pool)
    # pool 7: sum L = 6, sum rho L = 1.2, ratio 0.2
    assert g[[0, 2, 4]] == pytest.approx([(1 / 6) * (1.0 - 0.2), (2 / 6) * (0.4 - 0.2), 0.0], abs=1e-15)
    assert g[1] == 0.37  # a pool of one: rho itself
    # pool 5: the NaN candidate is out of the sums (sum L = 4, sum rho L = 0.8) and gets NaN
    assert g[[3, 7]] == pytest.approx([0.5 * (0.6 - 0.2), 0.5 * (0.2 - 0.2)], abs=1e-15) and np.isnan(g[5])
    assert np.isnan(g[[6, 8]]).all()  # pool 9: sum of L is 0
    assert np.isnan(pool_g_hat([1.0, 1.0], [np.nan, 0.2], [0, 0])[0])  # rho NaN too
    assert pool_g_hat([], [], []).shape == (0,)
    with pytest.raises(ValueError, match="shapes"):
        pool_g_hat([1.0, 2.0], [0.1], [0, 0])


def test_g_hat_matches_lark_script_on_random_pools():
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 9, 300)
    pool = np.repeat(np.arange(sizes.size), sizes)
    loss, rho = rng.uniform(0.1, 3, pool.size), rng.uniform(0, 0.8, pool.size)
    loss[rng.random(pool.size) < 0.05] = np.nan
    shuffle = rng.permutation(pool.size)
    g = np.empty(pool.size)
    g[shuffle] = pool_g_hat(loss[shuffle], rho[shuffle], pool[shuffle] * 13 + 4)
    for p in range(sizes.size):
        at = np.flatnonzero(pool == p)
        np.testing.assert_allclose(g[at], lark_g_loop(loss[at].tolist(), rho[at].tolist()), rtol=1e-12, atol=1e-15)


# -------------------------------------------------------------------------------------------- chi-square top-B


def test_chi2_weights_by_hand():
    # top 2 of 0.4, 0.3 | first left out 0.2: mean 0.35, so q = (0.2, 0.1) / (2 * 0.15)
    np.testing.assert_allclose(chi2_weights([0.4, 0.1, 0.3, 0.2], 2), [2 / 3, 0, 1 / 3, 0], atol=1e-15)
    np.testing.assert_allclose(chi2_weights([0.5] * 4, 3), [1 / 3, 1 / 3, 1 / 3, 0])  # all equal: 1/B
    np.testing.assert_allclose(chi2_weights([4.0, np.nan, 1.0, 2.0], 2), [0.75, 0, 0, 0.25])  # NaN never kept
    np.testing.assert_array_equal(chi2_weights([np.nan, np.nan], 2), [0, 0])


def test_chi2_weights_when_b_covers_the_pool_follow_lark_script():
    """B >= valid candidates: threshold = lowest kept - 1e-8, so the lowest gets a weight near 0, not 1/B."""
    w = chi2_weights([0.3, 0.1], 5)
    low = 1e-8 / (2 * (0.1 + 1e-8))
    np.testing.assert_allclose(w, [(0.2 + 1e-8) / (2 * (0.1 + 1e-8)), low], rtol=1e-9)
    assert 0 < w[1] < 1e-7 and w.sum() == pytest.approx(1.0)
    assert chi2_weights([0.42], 3) == pytest.approx([1.0])
    np.testing.assert_allclose(chi2_weights([0.2, 0.2, 0.2], 4), [1 / 3] * 3, rtol=1e-6)


def test_chi2_weights_ties():
    # a tie straddling the cut: the earlier one is kept, with weight 0 (e_k = e_{B+1})
    np.testing.assert_array_equal(chi2_weights([3.0, 2.0, 2.0], 2), [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(chi2_weights([2.0, 3.0, 2.0], 2), [0.0, 1.0, 0.0])
    np.testing.assert_allclose(chi2_weights([1.0, 3.0, 3.0, 0.0], 2), [0, 0.5, 0.5, 0])
    with pytest.raises(ValueError, match="B >= 1"):
        chi2_weights([1.0], 0)


@pytest.mark.parametrize("chi2", [True, False])
def test_vectorised_top_b_equals_the_per_pool_rule(chi2):
    rng = np.random.default_rng(11)
    sizes = rng.integers(1, 10, 400)
    pool = np.repeat(np.arange(sizes.size), sizes)
    scores = np.round(rng.normal(0, 1, pool.size), 1)  # rounding makes ties
    scores[rng.random(pool.size) < 0.1] = np.nan
    ties = rng.permutation(pool.size)
    shuffle = rng.permutation(pool.size)
    for b in (1, 2, 3, 7):
        got_kept, got_w = np.zeros(pool.size, bool), np.zeros(pool.size)
        got_kept[shuffle], got_w[shuffle] = top_b(scores[shuffle], pool[shuffle], ties[shuffle], b, chi2=chi2)
        for p in range(sizes.size):
            at = np.flatnonzero(pool == p)
            at = at[np.argsort(ties[at])]  # positions in tie order: chi2_weights breaks ties by position
            valid = [i for i in at if np.isfinite(scores[i])]
            best = sorted(valid, key=lambda i: (-scores[i], ties[i]))[:b]
            assert set(np.flatnonzero(got_kept[at]).tolist()) == {list(at).index(i) for i in best}
            if chi2:
                np.testing.assert_allclose(got_w[at], chi2_weights(scores[at], b), rtol=1e-9, atol=1e-15)
            elif best:
                np.testing.assert_allclose(got_w[best], 1 / len(best))
            if best:
                assert got_w[at].sum() == pytest.approx(1.0)
            else:
                assert not got_w[at].any()


def test_top_b_eligible_mask():
    k, w = top_b([5.0, 4.0, 3.0, 2.0], [0, 0, 0, 0], [0, 1, 2, 3], 2, chi2=False, eligible=[False, True, True, True])
    np.testing.assert_array_equal(k, [False, True, True, False])
    np.testing.assert_array_equal(w, [0, 0.5, 0.5, 0])


# ---------------------------------------------------------------------------------------------- in the pools


def test_prepare_pools_computes_lark_g_from_its_own_pools():
    """Two problem ids with one prompt: pooled by prompt they are one pool, so g_hat changes."""
    rows = [row("a", "p1", "A", loss=1.0, rho=0.5, prompt="Q"), row("b", "p1", "B", loss=2.0, rho=0.2, prompt="Q"),
            row("c", "p2", "A", loss=3.0, rho=0.1, prompt="Q")]
    table = pd.DataFrame(rows).assign(lark_g=99.0)  # a stale column is replaced
    by_id = prepare_pools(table, "problem_id").set_index("trajectory_id")["lark_g"]
    by_prompt = prepare_pools(table, "prompt").set_index("trajectory_id")["lark_g"]
    np.testing.assert_allclose(by_id[["a", "b"]], lark_g_loop([1.0, 2.0], [0.5, 0.2]))
    assert by_id["c"] == 0.1
    np.testing.assert_allclose(by_prompt[["a", "b", "c"]], lark_g_loop([1.0, 2.0, 3.0], [0.5, 0.2, 0.1]))
    assert "lark_g" not in prepare_pools(table.drop(columns=["lark_rho", "lark_g"]))
    assert with_lark_g(table.drop(columns="lark_rho"))["lark_g"].isna().all()


def test_select_lark_top_2_keeps_the_two_highest_g_hat_with_chi2_weights():
    table = random_table(seed=1)
    sel = select(table, by="lark", top_b=2)
    assert sel.mode == "max" and sel.top_b == 2
    assert set(sel.selected["rule"]) == {"max lark_g (LARK), top 2, chi-square weights"}
    g = {}
    for _, group in table.groupby("problem_id"):
        g.update(zip(group["trajectory_id"], lark_g_loop(group["avg_surprisal"].tolist(), group["lark_rho"].tolist())))
    table["g"] = table["trajectory_id"].map(g)
    assert kept(sel) == expected_top(table, "g", 2, largest=True)
    weights = sel.selected.groupby("pool_id")["train_weight"].sum()
    np.testing.assert_allclose(weights, 1.0)
    for problem, group in table.groupby("problem_id"):
        mine = sel.selected[sel.selected["pool_id"] == problem].set_index("trajectory_id")
        e = np.sort(group["g"].to_numpy())[::-1]
        q = (e[:2] - e[2]) / (2 * (e[:2].mean() - e[2]))
        np.testing.assert_allclose(mine["train_weight"], q, rtol=1e-9)
        np.testing.assert_allclose(mine["lark_g"], [g[t] for t in mine.index], rtol=1e-12)
    # one per pool: the argmax of g_hat, weight 1
    one = select(table, by="lark")
    assert kept(one) == expected_top(table, "g", 1, largest=True) and (one.selected["train_weight"] == 1.0).all()
    assert one.rule == "max lark_g (LARK)"


def test_top_b_with_any_rule_has_equal_weights():
    table = random_table(seed=2)
    table = table[~((table["problem_id"] == "p03") & (table["trajectory_id"] != "t0-3"))]  # a pool of one
    sel = select(table, by="rsr", top_b=2)
    assert kept(sel) == expected_top(table, "rsr", 2, largest=False)
    w = sel.selected.set_index("trajectory_id")["train_weight"]
    assert w["t0-3"] == 1.0 and (w.drop("t0-3") == 0.5).all()
    assert sel.rule == "min rsr, top 2, equal weights"
    big = select(table, by="n_tokens", mode="max", top_b=3)
    assert kept(big) == expected_top(table, "n_tokens", 3, largest=True)
    np.testing.assert_allclose(big.selected.groupby("pool_id")["train_weight"].sum(), 1.0)


def test_top_b_never_puts_nan_before_a_defined_value_and_ties_go_to_the_smaller_id():
    rows = [row("a", "p1", "A", loss=0.0, rho=0.0), row("b", "p1", "B", loss=1.0, rho=0.2, rank=2.0),
            row("c", "p1", "C", loss=1.0, rho=0.2, rank=2.0), row("d", "p1", "A", loss=1.0, rho=0.2, rank=5.0),
            row("e", "p2", "A", loss=0.0, rho=0.0), row("f", "p2", "B", loss=0.0, rho=0.0)]
    table = pd.DataFrame(rows)  # a, e, f: no surprisal, so rsr is NaN
    sel = select(table, top_b=3)
    assert kept(sel) == {"p1": ["b", "c", "d"], "p2": ["e"]}  # p2 has nothing defined: one, as without top-B
    assert sel.selected.set_index("trajectory_id").loc["e", ["train_weight", "metric_defined"]].tolist() == [1.0, False]
    assert kept(select(table, top_b=1)) == {"p1": ["b"], "p2": ["e"]}


def test_correct_only_with_top_b():
    table = random_table(n_problems=20, seed=4)
    table.loc[table["problem_id"] == "p05", "correct"] = False
    table.loc[table["trajectory_id"].isin(["t0-6", "t1-6", "t2-6"]), "correct"] = False  # p06: one correct
    sel = select(table, by="lark", top_b=2, correct_only=True)
    assert sel.selected["correct"].astype(bool).all() and "p05" not in set(sel.selected["pool_id"])
    assert set(sel.dropped["pool_id"]) == {p for p, g in table.groupby("problem_id") if not g["correct"].any()}
    only = sel.selected[sel.selected["pool_id"] == "p06"]
    assert only["trajectory_id"].tolist() == ["t3-6"] and only["train_weight"].iloc[0] == pytest.approx(1.0)
    correct = table[table["correct"].astype(bool)]
    sel_rsr = select(table, by="rsr", top_b=2, correct_only=True)
    assert kept(sel_rsr) == expected_top(correct, "rsr", 2, largest=False)
    fallback = select(table, by="rsr", top_b=2, correct_only=True, keep_pools_without_correct=True)
    rows = fallback.selected[fallback.selected["pool_id"] == "p05"]
    assert rows["trajectory_id"].tolist() == expected_top(table, "rsr", 2, largest=False)["p05"]
    assert rows["correct_filter_fallback"].all() and (rows["train_weight"] == 0.5).all()


def test_override_with_top_b_keeps_only_the_named_trajectory():
    table = random_table(seed=5)
    sel = select(table, by="lark", top_b=3, overrides={"p02": "t1-2"})
    rows = sel.selected[sel.selected["pool_id"] == "p02"]
    assert rows["trajectory_id"].tolist() == ["t1-2"] and rows["manual"].all() and rows["train_weight"].eq(1.0).all()
    assert (sel.selected.groupby("pool_id").size().drop("p02") == 3).all()


def test_summary_counts_trajectories_and_compares_with_random_top_b():
    table = random_table(n_problems=15, seed=6)
    sel = select(table, by="lark", top_b=2)
    summary = selection_summary(table, sel, random_seeds=[0, 1, 2])
    assert summary.counts["selected"] == 30 and summary.counts["selected_pools"] == 15
    assert "30 trajectories in 15 pools (up to 2 per pool)" in summary.to_text()
    assert summary.picks["picks"].sum() == 30
    randoms = [select(table, by="random", seed=s, top_b=2).selected for s in (0, 1, 2)]
    assert all(len(r) == 30 for r in randoms)
    comp = summary.comparison.set_index("set")
    assert comp.loc["random (mean of 3 seeds)", "rsr"] == pytest.approx(
        np.mean([dataset_rsr(r["avg_rank_clipped"], r["avg_surprisal"]) for r in randoms]))
    assert "up to" not in selection_summary(table, select(table, by="lark"), random_seeds=[0]).to_text()


def test_rule_labels():
    assert rule_label("lark", "max") == "max lark_g (LARK)"
    assert rule_label("lark", "max", top_b=4, correct_only=True) == "max lark_g (LARK), top 4, chi-square weights, " \
        "correct only"
    assert rule_label("rsr", "min", top_b=2) == "min rsr, top 2, equal weights"
    assert rule_label(mode="random", seed=1, top_b=2) == "random seed=1, top 2, equal weights"


def test_lark_without_its_columns_is_a_clear_error():
    table = random_table(seed=7)
    for broken in (table.drop(columns="lark_rho"), table.assign(lark_rho=np.nan)):
        with pytest.raises(ValueError, match=r"lark_rho.*python -m rsr_core score \.\.\. --out STORE"):
            select(broken, by="lark")
    with pytest.raises(ValueError, match="B >= 1"):
        select(table, top_b=0)


def test_exports_carry_train_weight_and_lark_g(tmp_path):
    sel = select(random_table(n_problems=5, seed=8), by="lark", top_b=2)
    lines = [json.loads(x) for x in write_selection(sel.selected, tmp_path / "s.jsonl").read_text().splitlines()]
    frame = pd.read_parquet(write_selection(sel.selected, tmp_path / "s.parquet"))
    assert list(lines[0]) == ["messages", *EXPORT_FIELDS] and list(frame.columns) == ["messages", *EXPORT_FIELDS]
    np.testing.assert_allclose([r["train_weight"] for r in lines], sel.selected["train_weight"])
    np.testing.assert_allclose(frame["train_weight"], sel.selected["train_weight"])
    np.testing.assert_allclose(frame["lark_g"], sel.selected["lark_g"])


# ------------------------------------------------------------------------------------------------------- CLI


def test_cli_select_lark_top_b_writes_weights(tmp_path):
    table = random_table(seed=9)
    scores = tmp_path / "scores.parquet"
    table.to_parquet(scores)
    expected = select(table, by="lark", top_b=2).selected.set_index("trajectory_id")
    for suffix in (".jsonl", ".parquet"):
        out = tmp_path / f"selected{suffix}"
        done = cli("select", str(scores), "--by", "lark", "--top-b", "2", "--out", str(out))
        assert done.returncode == 0, done.stderr
        assert "wrote 24 records (up to 2 per problem, 12 problems)" in done.stdout
        assert "(up to 2 per pool)" in done.stdout
        back = (pd.read_parquet(out) if suffix == ".parquet"
                else pd.DataFrame([json.loads(x) for x in out.read_text().splitlines()]))
        assert sorted(back["id"]) == sorted(expected.index)
        np.testing.assert_allclose(back["train_weight"], expected.loc[back["id"], "train_weight"], rtol=1e-12)
        np.testing.assert_allclose(back.groupby("problem_id")["train_weight"].sum(), 1.0)
        assert set(back["rule"]) == {"max lark_g (LARK), top 2, chi-square weights"}
    out = tmp_path / "rsr.jsonl"
    done = cli("select", str(scores), "--by", "rsr", "--top-b", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(records) == 24 and {r["train_weight"] for r in records} == {0.5}
    one = tmp_path / "one.jsonl"
    done = cli("select", str(scores), "--by", "lark", "--out", str(one))
    assert done.returncode == 0 and "wrote 12 records (one per problem)" in done.stdout
    assert {json.loads(x)["train_weight"] for x in one.read_text().splitlines()} == {1.0}


def test_cli_refuses_lark_without_its_columns_and_bad_options(tmp_path):
    scores = tmp_path / "scores.parquet"
    random_table(seed=10).drop(columns="lark_rho").to_parquet(scores)
    out = tmp_path / "x.jsonl"
    done = cli("select", str(scores), "--by", "lark", "--out", str(out))
    assert done.returncode == 2 and "lark_rho" in done.stderr and "--out STORE" in done.stderr and not out.exists()
    done = cli("select", str(scores), "--top-b", "0", "--out", str(out))
    assert done.returncode == 2 and "--top-b" in done.stderr
    done = cli("select", str(scores), "--by", "lark", "--min", "--out", str(out))
    assert done.returncode == 2 and "--min does not apply" in done.stderr
