"""The metrics beside RSR from the same forward pass (Brier, LARK's Brier, rho and g_hat): their definitions on hand
values, their way through the store and the flat tables, and the stores written before them: said to lack them,
and filled by `score` without touching the numbers they hold.

The per-token terms against a brute-force full-logits computation on the real student are in
`test_scoring_reference.py`; the reduction kernels against brute force (ties, the target outside the top 50,
NaN, -inf) in `test_batching.py`.
"""
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from rsr_core.analysis.lark import pool_g_hat
from rsr_core.analysis.metrics import SAME_PASS_METRICS, lacking_same_pass, same_pass_metrics
from rsr_core.data.store import ResultsStore
from tests.conftest import ROOT, write_jsonl

STUDENT = "smollm2-135m-instruct"


def cli(*args):
    return subprocess.run([sys.executable, "-m", "rsr_core", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)


def test_same_pass_metrics_on_hand_values():
    s = np.array([1.0, 3.0], np.float32)
    got = same_pass_metrics(s, np.array([0.5, 0.7], np.float32), np.array([0.2, 0.6], np.float32))
    assert got["brier"] == pytest.approx(0.6) and got["lark_brier"] == pytest.approx(0.4)
    assert got["lark_rho"] == pytest.approx(0.4 / 2.0)
    # a trajectory the student predicts with certainty: rho -> 0 as the loss does (LARK's script sets 0)
    zero = same_pass_metrics(np.zeros(3, np.float32), np.zeros(3, np.float32), np.full(3, 1e-9, np.float32))
    assert zero["lark_rho"] == 0.0 and zero["lark_brier"] == pytest.approx(1e-9)
    empty = same_pass_metrics(np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32))
    assert all(math.isnan(v) for v in empty.values())
    nan = same_pass_metrics(np.array([np.nan, 1.0], np.float32), np.array([np.nan, 0.5]), np.array([np.nan, 0.5]))
    assert math.isnan(nan["lark_rho"])
    assert same_pass_metrics(s, None, None) == {name: None for name in SAME_PASS_METRICS}


def test_lacking_rows_are_those_with_a_loss_but_no_rho():
    table = pd.DataFrame({"avg_surprisal": [1.0, np.nan, 2.0, 0.0], "lark_rho": [0.3, np.nan, np.nan, 0.0]})
    assert lacking_same_pass(table).tolist() == [False, False, True, False]
    assert lacking_same_pass(table.drop(columns="lark_rho")).tolist() == [True, False, True, True]


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """Two problems of the demo pool (one of them cut to a single candidate) scored into a store and a flat table
    through one cache."""
    d = tmp_path_factory.mktemp("same-pass")
    recs = [json.loads(line) for line in (ROOT / "data" / "demo" / "candidates.jsonl").read_text().splitlines()]
    recs = [r for r in recs if r["problem_id"] == "p01"][:3] + [r for r in recs if r["problem_id"] == "p02"][:1]
    pool = write_jsonl(d / "pool.jsonl", recs)
    common = ("--cache-dir", d / "cache", "--dtype", "float32")
    store = cli("score", pool, "--out", d / "store", *common)
    flat = cli("score", pool, "--out", d / "flat.parquet", "--tokens-out", d / "tokens.parquet", *common)
    assert store.returncode == 0 and flat.returncode == 0, store.stderr + flat.stderr
    return d, pool, recs, common


def test_store_keeps_the_columns_and_each_tokens_term(scored):
    d, _, recs, _ = scored
    store = ResultsStore(d / "store")
    table = store.trajectory_table(STUDENT)
    assert not lacking_same_pass(table).any()
    for tid in table["trajectory_id"]:
        ts = store.token_scores(STUDENT, tid)
        row = table.set_index("trajectory_id").loc[tid]
        assert ts.lark_brier is not None and ts.lark_brier.dtype == np.float32 and len(ts.lark_brier) == len(ts)
        assert row["lark_brier"] == pytest.approx(float(np.mean(ts.lark_brier, dtype=np.float64)), rel=1e-12)
        assert row["lark_rho"] == pytest.approx(row["lark_brier"] / row["avg_surprisal"], rel=1e-12)
        assert 0 < row["brier"] < 2 and row["brier"] != row["lark_brier"]


def test_flat_table_has_g_hat_over_its_problems(scored):
    d, _, recs, _ = scored
    flat = pd.read_parquet(d / "flat.parquet")
    assert {"brier", "lark_brier", "lark_rho", "lark_g"} <= set(flat.columns)
    codes = pd.factorize(flat["problem_id"])[0]
    want = pool_g_hat(flat["avg_surprisal"].to_numpy(), flat["lark_rho"].to_numpy(), codes)
    np.testing.assert_allclose(flat["lark_g"], want, rtol=1e-12)
    alone = flat[flat["problem_id"] == "p02"].iloc[0]
    assert alone["lark_g"] == pytest.approx(alone["lark_rho"], rel=1e-12)  # a problem of one candidate
    tokens = pd.read_parquet(d / "tokens.parquet")
    assert "lark_brier" in tokens and tokens["lark_brier"].notna().all()
    store = ResultsStore(d / "store").trajectory_table(STUDENT).set_index("trajectory_id")
    for name in SAME_PASS_METRICS:  # the flat file and the store: one set of numbers
        np.testing.assert_array_equal(flat.set_index("trajectory_id")[name], store.loc[flat["trajectory_id"], name])


def strip_same_pass(store_path):
    """Make a store look written before the same-pass columns were kept: its part files without them."""
    for part in (store_path / "students").glob("*/parts/*.meta.parquet"):
        meta = pq.read_table(part)
        pq.write_table(meta.drop_columns([c for c in SAME_PASS_METRICS if c in meta.column_names]), part)
    for part in (store_path / "students").glob("*/parts/*.tokens.parquet"):
        source = pq.ParquetFile(part)
        groups = [source.read_row_group(g).drop_columns(["lark_brier"]) for g in range(source.num_row_groups)]
        with pq.ParquetWriter(part, groups[0].schema) as out:  # the same row groups: the index points into them
            for rows in groups:
                out.write_table(rows, row_group_size=rows.num_rows)


def test_an_older_store_says_what_it_lacks_and_score_fills_it(scored, tmp_path):
    d, pool, recs, common = scored
    old = tmp_path / "old"
    shutil.copytree(d / "store", old)
    before = ResultsStore(d / "store").trajectory_table(STUDENT)
    strip_same_pass(old)
    lacking = ResultsStore(old).trajectory_table(STUDENT)
    assert lacking_same_pass(lacking).all() and not set(SAME_PASS_METRICS) & set(lacking.columns)
    tid = lacking["trajectory_id"].iloc[0]
    assert ResultsStore(old).token_scores(STUDENT, tid).lark_brier is None

    done = cli("score", pool, "--out", old, *common)  # the cache holds the terms: no forward pass needed
    assert done.returncode == 0, done.stderr
    assert f"note: {len(recs)} trajectories in {old} were stored without the same-pass columns" in done.stderr
    assert f"{len(recs)} given the same-pass columns" in done.stderr
    after = ResultsStore(old).trajectory_table(STUDENT)
    assert not lacking_same_pass(after).any()
    pd.testing.assert_frame_equal(after.drop(columns="r_max", errors="ignore"),
                                  before.drop(columns="r_max", errors="ignore"), check_like=True,
                                  check_categorical=False)  # every number back as it was, the old ones untouched
    np.testing.assert_array_equal(ResultsStore(old).token_scores(STUDENT, tid).lark_brier,
                                  ResultsStore(d / "store").token_scores(STUDENT, tid).lark_brier)
    again = cli("score", pool, "--out", old, *common)
    assert again.returncode == 0 and "without the same-pass columns" not in again.stderr
    assert f"{len(recs)} already in the store" in again.stderr
