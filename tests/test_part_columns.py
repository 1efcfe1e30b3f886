"""Per-part numbers: rsr_thinking, rsr_answer and rsr_tool_calls against hand-computed sums, exact at any r_max
from the stored part aggregates (no tokens read), NaN for a part a trajectory lacks, and stores written before
part aggregates existed still read and merge."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rsr_core.analysis import aggregates as agg
from rsr_core.analysis import part_aggregates as pagg
from rsr_core.analysis.segments import ANSWER, THINKING, TOOL_CALLS, part_rsr, token_parts
from rsr_core.data import store_files
from rsr_core.data.demo import DEMO_STORE, load_demo
from rsr_core.data.store import ResultsStore, StoreWriter, StudentSettings
from rsr_core.data.tables import scores_parts
from rsr_core.data.trajectory import Trajectory

STUDENT = "smollm2-135m-instruct"


def test_parts_of_tokens_from_offsets():
    offsets = np.array([[0, 5], [5, 20], [20, 24], [24, 30], [30, 41], [0, 3], [3, 9]])
    turn = np.array([0, 0, 0, 0, 0, 1, 1])
    parts = token_parts(offsets, turn, answer_starts=[20, 0], tool_starts=[30, None])
    assert parts.tolist() == [THINKING, THINKING, ANSWER, ANSWER, TOOL_CALLS, ANSWER, ANSWER]


def test_part_rsr_is_the_ratio_of_each_parts_sums_by_hand():
    s = np.array([0.5, 2.0, 1.0, 4.0, 0.25, 3.0], dtype=np.float32)
    r = np.array([1, 40, 3, 150, 2, 7])
    parts = np.array([THINKING, THINKING, ANSWER, ANSWER, TOOL_CALLS, TOOL_CALLS])
    got = part_rsr(s, r, parts, r_max=100, tool_calls=True)
    assert got["rsr_thinking"] == pytest.approx((1 + 40) / 2.5)
    assert got["rsr_answer"] == pytest.approx((3 + 100) / 5.0)  # 150 clipped at 100
    assert got["rsr_tool_calls"] == pytest.approx((2 + 7) / 3.25)
    no_thinking = part_rsr(s, r, np.full(6, ANSWER), r_max=10)
    assert np.isnan(no_thinking["rsr_thinking"]) and "rsr_tool_calls" not in no_thinking
    assert no_thinking["rsr_answer"] == pytest.approx((1 + 10 + 3 + 10 + 2 + 7) / float(s.sum()))


def test_part_aggregates_give_the_part_rsr_at_any_r_max():
    rng = np.random.default_rng(3)
    lengths = np.array([40, 0, 25, 60, 7])
    t = int(lengths.sum())
    s = rng.gamma(1.2, 1.5, t).astype(np.float32)
    r = np.minimum(rng.zipf(1.6, t), 49_152)
    parts = rng.choice([THINKING, ANSWER, TOOL_CALLS], t, p=[0.6, 0.3, 0.1])
    parts[65:125] = THINKING  # the fourth trajectory: thinking only
    ragg = agg.batch_aggregates(s, r, None, lengths)
    paggs = pagg.batch_part_aggregates(s, r, parts, lengths)
    again = pagg.from_arrow(pa.table(dict(zip(pagg.ARROW_COLUMNS, pagg.to_arrow(paggs)))))
    ends = np.cumsum(lengths)
    for r_max in (1, 5, 100, 10**6):
        cols = agg.rmax_columns(ragg, r_max, again)
        for j, (a, b) in enumerate(zip(ends - lengths, ends)):
            want = part_rsr(s[a:b], r[a:b], parts[a:b], r_max, tool_calls=True)
            for name, value in want.items():
                if np.isnan(value):
                    assert np.isnan(cols[name][j]), (name, j, r_max)
                else:
                    assert cols[name][j] == pytest.approx(value, rel=1e-12), (name, j, r_max)
    picked = pagg.take(paggs, [3, 0])
    assert picked.n.tolist() == [paggs.n[3].tolist(), paggs.n[0].tolist()]
    assert np.isnan(agg.rmax_columns(agg.take(ragg, [3]), 100, pagg.take(paggs, [3]))["rsr_answer"][0])
    unknown = pagg.unknown(5)
    assert np.isnan(agg.rmax_columns(ragg, 100, unknown)["rsr_thinking"]).all()


@pytest.fixture(scope="module")
def demo():
    table, scores = load_demo(STUDENT)
    return table, scores


def test_the_demo_store_holds_exact_part_numbers_at_any_r_max(demo):
    table, scores = demo
    store = ResultsStore(DEMO_STORE)
    for r_max in (10, 100, 1000):
        got = store.trajectory_table(STUDENT, r_max=r_max).set_index("trajectory_id")
        for tid, s in scores.items():
            messages = json.loads(table.set_index("trajectory_id").at[tid, "messages"])
            want = part_rsr(s.surprisal, s.rank, scores_parts(messages, s), r_max)
            for name, value in want.items():
                if np.isnan(value):
                    assert np.isnan(got.at[tid, name]), (tid, name)
                else:
                    assert got.at[tid, name] == pytest.approx(value, rel=1e-9), (tid, name, r_max)
    reasoning = [tid for tid in scores if "r1-style" in tid]
    assert reasoning and got.loc[reasoning, "rsr_thinking"].notna().all()
    assert got.drop(index=reasoning)["rsr_thinking"].isna().all()


def test_a_store_written_before_part_aggregates_still_reads_and_merges(demo, tmp_path):
    table, scores = demo
    trajectories = [Trajectory(r.trajectory_id, r.problem_id, r.teacher, json.loads(r.messages))
                    for r in table.itertuples()]
    path = tmp_path / "s"
    with StoreWriter(path, StudentSettings(student=STUDENT)) as writer:
        writer.append(trajectories[:10], scores, table)
    # make it as old stores are: no part columns in the aggregates or the table
    folder = path / "students" / STUDENT / "parts"
    for f in folder.glob("*.aggs.arrow"):
        t = store_files.read_ipc(f).drop_columns(list(pagg.ARROW_COLUMNS))  # memory-mapped: write beside it
        store_files.write_ipc(f.with_suffix(".old"), [t], t.schema)
        f.with_suffix(".old").replace(f)
    for f in folder.glob("*.meta.parquet"):
        pq.write_table(pq.read_table(f).drop_columns(["rsr_thinking", "rsr_answer"]), f)
    store = ResultsStore(path)
    assert all((p.n == -1).all() for p in store.part_aggregate_parts(STUDENT))
    old = store.trajectory_table(STUDENT, r_max=10)
    assert "rsr_thinking" not in old  # the store says it lacks the column, never zeros
    with StoreWriter(path, StudentSettings(student=STUDENT)) as writer:
        writer.append(trajectories[10:20], scores, table)
        writer.compact()  # merges the old part and the new one
    merged = ResultsStore(path).trajectory_table(STUDENT, r_max=10).set_index("trajectory_id")
    new_ids = [t.trajectory_id for t in trajectories[10:20]]
    old_ids = [t.trajectory_id for t in trajectories[:10]]
    assert merged.loc[new_ids, "rsr_answer"].notna().all() and merged.loc[old_ids, "rsr_answer"].isna().all()
    assert len(ResultsStore(path).trajectory_table(STUDENT)) == 20
