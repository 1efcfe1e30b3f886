"""The results store and the rank aggregates, on the real demo scores and real files.

Expectations are computed from the files (the demo scores may be regenerated with another token layout), never
hard-coded.
"""
from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from rsr_core import cli
from rsr_core.analysis import aggregates as agg
from rsr_core.analysis.metrics import TRAJECTORY_METRICS, trajectory_metrics
from rsr_core.data import store as store_mod
from rsr_core.data import store_files
from rsr_core.data.demo import available_demo_students, load_demo
from rsr_core.data.store import (ResultsStore, SettingsMismatch, StoreError, StoreVersionError, StoreWriter,
                                 StudentSettings)
from rsr_core.data.tables import rescore_table
from rsr_core.data.token_scores import TokenScores
from rsr_core.data.trajectory import Trajectory

ROOT = Path(__file__).resolve().parents[1]
STUDENT = "smollm2-135m-instruct"
R_MAXES = (1, 7, 50, 100, 500, 10 ** 6)
CONVERSATION_COLUMNS = ["prompt", "messages", "source", "record"]


@pytest.fixture(scope="module")
def demo():
    table, scores = load_demo(STUDENT)
    return table, scores, trajectories_of(table)


def trajectories_of(table: pd.DataFrame) -> list[Trajectory]:
    return [Trajectory(trajectory_id=r.trajectory_id, problem_id=r.problem_id, teacher=r.teacher,
                       messages=json.loads(r.messages), run=r.run, correct=None if pd.isna(r.correct) else r.correct,
                       source=r.source, record=int(r.record)) for r in table.itertuples()]


def settings(**kw) -> StudentSettings:
    return StudentSettings(**{"student": STUDENT, "top_k": 5, **kw})


def assert_close(got: dict, want: dict, rel: float = 1e-12) -> None:
    for name in TRAJECTORY_METRICS:
        a, b = float(got[name]), float(want[name])
        if math.isnan(b):
            assert math.isnan(a), (name, a, b)
        elif a != b:
            assert abs(a - b) <= rel * abs(b), (name, a, b)


def assert_same_scores(got: TokenScores, want: TokenScores) -> None:
    for name in ("token_ids", "offsets", "turn", "surprisal", "rank", "entropy", "top_ids", "top_probs"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), name
    assert got.tokens == want.tokens
    assert got.top_tokens == want.top_tokens
    assert (got.truncated, got.n_context) == (want.truncated, want.n_context)


def plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Values only (categorical and Arrow strings as objects, missing as None), for comparing tables."""
    return frame.reset_index(drop=True).astype(object).where(frame.reset_index(drop=True).notna(), None)


# ------------------------------------------------------------------------------------------------ aggregates


def test_aggregates_give_every_metric_at_every_r_max_on_real_scores(demo):
    _, scores, _ = demo
    ss = list(scores.values())
    aggs = agg.batch_aggregates(np.concatenate([s.surprisal for s in ss]), np.concatenate([s.rank for s in ss]),
                                np.concatenate([s.entropy for s in ss]), np.array([len(s) for s in ss]))
    aggs = agg.from_arrow(agg.to_arrow(aggs))
    for r_max in R_MAXES:
        columns = agg.metric_columns(aggs, r_max)
        for j, s in enumerate(ss):
            assert_close({k: v[j] for k, v in columns.items()},
                         trajectory_metrics(s.surprisal, s.rank, s.entropy, r_max))


def edge_cases() -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    rng = np.random.default_rng(0)
    f32 = lambda *v: np.array(v, dtype=np.float32)  # noqa: E731
    cases = [
        (f32(), np.zeros(0, np.int64), f32()),  # empty trajectory
        (f32(0, 0, 0), np.array([1, 2, 300]), f32(0, 0, 0)),  # zero surprisal: undefined RSR
        (f32(0, 1.5, 0, 2.0), np.array([1, 7, 1, 400]), f32(1, 1, 1, 1)),  # some zero surprisal
        (f32(1, 1, 1, 1, 1, 1, 1), np.array([5, 1, 200, 3, 9, 1, 50]), f32(*[1] * 7)),  # all tied at the cut
        (f32(2, 1, 2, 1, 2, 0.5, 2, 1, 0.5, 2), np.arange(1, 11) * 37, None),  # ties at the cut, no entropy
        (f32(np.nan, 1, 2, np.inf, 0.5, -0.0), np.array([3, 1, 150, 2, 1, 9]), f32(1, 2, 3, 4, 5, 6)),
        (f32(3.0), np.array([10 ** 6]), f32(0.5)),  # one token, a rank above any r_max in use
    ]
    for n in (9, 700, 3001):  # repeated ranks (bins) and rare ones (singles); long ones take the partition path
        s = rng.choice([0.25, 0.5, 1.0, 2.0, 4.0], n).astype(np.float32)  # many ties at the cut
        cases.append((s, rng.zipf(1.7, n).clip(1, 152064), rng.exponential(1, n).astype(np.float32)))
    return cases


@pytest.mark.parametrize("batched", [False, True])
def test_aggregates_on_edge_cases(batched):
    cases = edge_cases()
    groups = [cases] if batched else [[c] for c in cases]
    for group in groups:
        entropy = None if any(e is None for _, _, e in group) else np.concatenate([e for _, _, e in group])
        aggs = agg.batch_aggregates(np.concatenate([s for s, _, _ in group]),
                                    np.concatenate([r for _, r, _ in group]), entropy,
                                    np.array([len(s) for s, _, _ in group]))
        for r_max in R_MAXES:
            columns = agg.metric_columns(aggs, r_max)
            for j, (s, r, e) in enumerate(group):
                want = trajectory_metrics(s, r, None if entropy is None else e, r_max)
                assert_close({k: v[j] for k, v in columns.items()}, want)


def test_aggregates_select_the_top_tokens_as_the_metric_does():
    s = np.array([1, 3, 3, 3, 0.5, 3, 2, 3, 0.1, 3], dtype=np.float32)  # k = 3 of six tied at 3.0
    offsets, seg = np.array([0, 10]), np.zeros(10, np.int64)
    expected = np.zeros(10, bool)
    expected[np.argsort(-s.astype(np.float64), kind="stable")[:3]] = True
    assert agg.top_mask(s.astype(np.float64), offsets, seg).tolist() == expected.tolist()
    assert agg._top_one(s.astype(np.float64)).tolist() == expected.tolist()


def test_aggregates_take_and_concat_keep_every_trajectory(demo):
    _, scores, _ = demo
    per = [agg.trajectory_aggregates(s.surprisal, s.rank, s.entropy) for s in scores.values()]
    whole = agg.concat_aggregates(per)
    pick = np.array([5, 0, 17, 5])
    picked = agg.take(whole, pick)
    for j, i in enumerate(pick):
        a = agg.metric_columns(agg.take(picked, [j]), 100)
        b = agg.metric_columns(per[i], 100)
        assert {k: float(v[0]) for k, v in a.items()} == {k: float(v[0]) for k, v in b.items()}


# ----------------------------------------------------------------------------------------------------- store


def write_demo(path: Path, demo, batch: int = 7, **kw) -> list:
    table, scores, trajectories = demo
    results = []
    with StoreWriter(path, settings(**kw)) as writer:
        for i in range(0, len(trajectories), batch):
            results.append(writer.append(trajectories[i:i + batch], scores, table))
    return results


def test_round_trip_in_batches(tmp_path, demo, monkeypatch):
    monkeypatch.setattr(store_files, "ROW_GROUP_TOKENS", 600)  # several row groups; some trajectories alone
    table, scores, trajectories = demo
    results = write_demo(tmp_path / "s", demo)
    assert all(not r.errors and not r.skipped for r in results)
    assert sum(len(r.written) for r in results) == len(trajectories)

    store = ResultsStore(tmp_path / "s")
    assert store.students() == [STUDENT]
    assert store.scored_ids(STUDENT) == set(scores)
    for tid, want in scores.items():
        assert_same_scores(store.token_scores(STUDENT, tid), want)
    got = store.trajectory_table(STUDENT)
    cols = [c for c in table.columns if c not in CONVERSATION_COLUMNS]
    assert got.columns.tolist() == cols
    assert plain(got).equals(plain(table[cols]))
    assert got["teacher"].dtype == "category"
    conv = store.conversations(table["trajectory_id"])
    assert plain(conv[CONVERSATION_COLUMNS]).equals(plain(table[CONVERSATION_COLUMNS]))
    t = store.trajectory(trajectories[3].trajectory_id, STUDENT)
    assert (t.messages, t.teacher, t.problem_id) == (trajectories[3].messages, trajectories[3].teacher,
                                                     trajectories[3].problem_id)

    # the stored aggregates give the table at any r_max, as a rescore from the tokens does
    aggs = store.rank_aggregates(STUDENT)
    assert len(aggs) == len(table)
    for r_max in (3, 100, 1000):
        again = rescore_table(table, scores, r_max)
        got = store.trajectory_table(STUDENT, r_max=r_max)
        for j in range(len(table)):
            assert_close(got.iloc[j], again.iloc[j])
        assert (got["r_max"] == r_max).all()

    # appending again skips what is committed; parts were merged along the way
    with StoreWriter(tmp_path / "s", settings()) as writer:
        again = writer.append(trajectories, scores, table)
    assert again.skipped == [t.trajectory_id for t in trajectories] and not again.written
    manifest = json.loads((tmp_path / "s/students" / STUDENT / "manifest.json").read_text())
    assert len(manifest["parts"]) < len(results)
    files = pq.ParquetFile(tmp_path / "s/students" / STUDENT / "parts" / f"{manifest['parts'][0]['id']}.tokens.parquet")
    sizes = [files.metadata.row_group(i).num_rows for i in range(files.num_row_groups)]
    lengths = sorted(len(s) for s in scores.values())
    assert max(sizes) <= max(600, lengths[-1]) and len(sizes) > 1


def test_compaction_and_a_second_student_share_the_conversations(tmp_path, demo):
    table, scores, trajectories = demo
    write_demo(tmp_path / "s", demo, batch=3)
    other_table, other_scores = load_demo("gemma-3-270m")
    other = trajectories_of(other_table)
    with StoreWriter(tmp_path / "s", StudentSettings(student="gemma-3-270m")) as writer:
        assert not writer.append(other, other_scores, other_table).errors
    conv_before = json.loads((tmp_path / "s/conversations/manifest.json").read_text())
    assert sum(p["conversations"] for p in conv_before["parts"]) == len(table)  # stored once for both
    store_mod.compact(tmp_path / "s")
    manifest = json.loads((tmp_path / "s/students" / STUDENT / "manifest.json").read_text())
    assert len(manifest["parts"]) == 1 and len(manifest["vocab"]) == 1
    store = ResultsStore(tmp_path / "s")
    assert store.students() == ["gemma-3-270m", STUDENT]
    for tid in list(scores)[::9]:
        assert_same_scores(store.token_scores(STUDENT, tid), scores[tid])
        assert_same_scores(store.token_scores("gemma-3-270m", tid), other_scores[tid])
    left = {p.name for p in (tmp_path / "s/students" / STUDENT / "parts").iterdir()}
    assert left == {f"{manifest['parts'][0]['id']}.{k}" for k in ("meta.parquet", "aggs.arrow", "tokens.parquet")}


def test_bad_records_are_named_and_the_rest_is_written(tmp_path, demo):
    table, scores, trajectories = demo
    first, second, third, fourth = trajectories[:4]
    wrong = scores[second.trajectory_id]
    wrong = TokenScores(**{**wrong.__dict__, "tokens": ["X" + wrong.tokens[0]] + wrong.tokens[1:]})
    bad_top = scores[third.trajectory_id]
    bad_top = TokenScores(**{**bad_top.__dict__, "top_tokens": [["??"] * 5] + bad_top.top_tokens[1:]})
    edited = table.copy()
    edited.loc[edited["trajectory_id"] == fourth.trajectory_id, "rsr"] *= 1.01  # not the rsr of its tokens
    with StoreWriter(tmp_path / "s", settings()) as writer:
        writer.append([first], scores, table)  # learns the vocabulary entries of the first
        result = writer.append(trajectories[:6], {**scores, second.trajectory_id: wrong,
                                                  third.trajectory_id: bad_top}, edited)
    assert result.skipped == [first.trajectory_id]
    assert result.written == [t.trajectory_id for t in trajectories[4:6]]
    assert any(second.trajectory_id in e and "token 0" in e for e in result.errors)
    assert any(third.trajectory_id in e and "alternative" in e for e in result.errors)
    assert any(fourth.trajectory_id in e and "rsr is" in e and "from its tokens" in e
               for e in result.errors), result.errors


def test_metric_columns_missing_from_the_table_come_from_the_tokens(tmp_path, demo):
    table, scores, trajectories = demo
    bare = table[["trajectory_id", "problem_id", "teacher", "run", "correct"]]
    with StoreWriter(tmp_path / "s", settings()) as writer:
        assert len(writer.append(trajectories, scores, bare).written) == len(trajectories)
    got = ResultsStore(tmp_path / "s").trajectory_table(STUDENT)
    for j in range(len(table)):
        assert_close(got.iloc[j], table.iloc[j])
    assert got["student"].eq(STUDENT).all() and got["truncated"].eq(table["truncated"]).all()


def test_results_without_per_token_data(tmp_path, demo):
    table, scores, trajectories = demo
    some = trajectories[:4]
    aggs = agg.concat_aggregates([agg.trajectory_aggregates(scores[t.trajectory_id].surprisal,
                                                            scores[t.trajectory_id].rank,
                                                            scores[t.trajectory_id].entropy) for t in some])
    with StoreWriter(tmp_path / "s", settings()) as writer:
        assert writer.append_aggregates(some, aggs, table).written == [t.trajectory_id for t in some]
    store = ResultsStore(tmp_path / "s")
    assert store.trajectory_table(STUDENT)["trajectory_id"].tolist() == [t.trajectory_id for t in some]
    with pytest.raises(KeyError, match="not stored"):
        store.token_scores(STUDENT, some[0].trajectory_id)


def test_settings_versions_and_writers_are_checked(tmp_path, demo):
    table, scores, trajectories = demo
    write_demo(tmp_path / "s", demo, batch=40)
    with pytest.raises(SettingsMismatch, match="max_len=4096"):
        StoreWriter(tmp_path / "s", settings(max_len=4096))
    writer = StoreWriter(tmp_path / "s", settings())
    with pytest.raises(StoreError, match="being written by another process"):
        StoreWriter(tmp_path / "s", settings())
    writer.close()

    manifest = tmp_path / "s/students" / STUDENT / "manifest.json"
    obj = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**obj, "version": 99}))
    with pytest.raises(StoreVersionError, match="version 99 is not supported"):
        ResultsStore(tmp_path / "s").trajectory_table(STUDENT)
    marker = tmp_path / "s/store.json"
    marker.write_text(json.dumps({"format": "rsr-explorer-store", "version": 2}))
    for opener in (lambda: ResultsStore(tmp_path / "s"), lambda: StoreWriter(tmp_path / "s", settings())):
        with pytest.raises(StoreVersionError, match="reads version 1"):
            opener()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(StoreError, match="not an RSR Explorer results store"):
        StoreWriter(tmp_path / "other", settings())


# ------------------------------------------------------------------------------------------ kill and resume

CHILD = textwrap.dedent("""
    import json, os, signal, sys
    sys.path.insert(0, {root!r})
    import pandas as pd
    from rsr_core.data import store
    from rsr_core.data.demo import load_demo
    from rsr_core.data.trajectory import Trajectory
    kill_at = int(sys.argv[2])  # kill ourselves at the n-th file rename (-1: never, the parent kills us)
    real_replace, count = os.replace, [0]
    def replace(a, b):
        real_replace(a, b)
        count[0] += 1
        if count[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace
    from rsr_core.data import store_files
    store_files.MERGE_FANOUT = 3
    table, scores = load_demo({student!r})
    ts = [Trajectory(r.trajectory_id, r.problem_id, r.teacher, json.loads(r.messages), r.run, r.correct, r.source,
                     int(r.record)) for r in table.itertuples()]
    with store.StoreWriter(sys.argv[1], store.StudentSettings(student={student!r})) as w:
        for i in range(0, len(ts), 4):
            w.append(ts[i:i + 4], scores, table)
            print("committed", len(w), flush=True)
""")


def run_child(path: Path, kill_at: int) -> subprocess.Popen:
    script = path.parent / "child.py"
    script.write_text(CHILD.format(root=str(ROOT), student=STUDENT))
    return subprocess.Popen([sys.executable, str(script), str(path), str(kill_at)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def check_after_kill(path: Path, demo) -> set[str]:
    """The store reads back whatever was committed, exactly; returns the committed ids."""
    table, scores, _ = demo
    store = ResultsStore(path)
    if not (path / "students" / STUDENT / "manifest.json").exists():
        return set()
    got = store.trajectory_table(STUDENT)
    assert got["trajectory_id"].is_unique
    ids = set(got["trajectory_id"])
    assert len(store.rank_aggregates(STUDENT)) == len(ids)
    for tid in sorted(ids)[::5]:
        assert_same_scores(store.token_scores(STUDENT, tid), scores[tid])
    return ids


def resume_and_check(path: Path, demo) -> None:
    table, scores, trajectories = demo
    before = check_after_kill(path, demo)
    with StoreWriter(path, settings(top_k=5, r_max=100)) as writer:
        assert set(writer.committed_ids) == before
        result = writer.append(trajectories, scores, table)
    assert set(result.skipped) == before and len(result.written) == len(trajectories) - len(before)
    store = ResultsStore(path)
    got = store.trajectory_table(STUDENT)
    assert sorted(got["trajectory_id"]) == sorted(scores)
    leftovers = [p for p in path.rglob(".tmp-*")]
    assert leftovers == []
    for tid in list(scores)[::7]:
        assert_same_scores(store.token_scores(STUDENT, tid), scores[tid])


@pytest.mark.parametrize("kill_at", [2, 5, 9, 14, 20, 28, 30])
def test_kill_at_any_rename_leaves_a_readable_store_that_resumes(tmp_path, demo, kill_at):
    """SIGKILL right after the n-th rename (of a fresh store: 2 the student manifest, 5 conversations, 9 a part
    without its manifest, 14 between part files, 20 a merged conversation part, 28 inside a merge, 30 after a
    merge committed, before the merged parts are deleted)."""
    child = run_child(tmp_path / "s", kill_at)
    child.wait(timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr.read()
    resume_and_check(tmp_path / "s", demo)


def test_kill_at_a_random_moment_mid_append(tmp_path, demo):
    child = run_child(tmp_path / "s", -1)
    assert child.stdout.readline().startswith("committed")  # at least one batch is in
    time.sleep(0.05 + np.random.default_rng().random() * 0.3)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    resume_and_check(tmp_path / "s", demo)


# ------------------------------------------------------------------------------------------- import-scores


@pytest.fixture(scope="module")
def flat_files(tmp_path_factory):
    """{student: (trajectory table, token table)}: the demo's scores as the flat files `score` writes."""
    from tests.conftest import demo_flat_files

    folder = tmp_path_factory.mktemp("flat")
    return {s: demo_flat_files(folder, s) for s in available_demo_students()}


def score_paths(student: str, flat: dict) -> tuple[Path, Path]:
    return flat[student]


def test_import_scores_of_the_demo_files(tmp_path, capsys, flat_files):
    for student in flat_files:
        table_path, tokens_path = score_paths(student, flat_files)
        assert cli.main(["import-scores", str(table_path), str(tokens_path), "--out", str(tmp_path / "s")]) == 0
        table = pd.read_parquet(table_path)
        tokens = pd.read_parquet(tokens_path)
        store = ResultsStore(tmp_path / "s")
        got = store.trajectory_table(student)
        cols = [c for c in table.columns if c not in CONVERSATION_COLUMNS]
        assert plain(got).equals(plain(table[cols]))
        _, scores = load_demo(student)
        for tid in scores:
            assert_same_scores(store.token_scores(student, tid), scores[tid])
        assert store.conversation(table["trajectory_id"][0])["messages"] == json.loads(table["messages"][0])
        assert len(tokens) == got["n_tokens"].sum()
    assert "imported" in capsys.readouterr().err
    # a second import resumes: nothing new, nothing duplicated
    assert cli.main(["import-scores", str(table_path), str(tokens_path), "--out", str(tmp_path / "s")]) == 0
    assert f"{len(table)} already there" in capsys.readouterr().err


def test_import_scores_names_bad_rows_and_keeps_going(tmp_path, capsys, flat_files):
    table_path, tokens_path = score_paths(STUDENT, flat_files)
    table = pd.read_parquet(table_path)
    tokens = pd.read_parquet(tokens_path)
    ids = table["trajectory_id"].tolist()
    no_tokens, bad_json, bad_text = ids[2], ids[5], ids[9]
    table.loc[table["trajectory_id"] == bad_json, "messages"] = "[{not json"
    tokens = tokens[tokens["trajectory_id"] != no_tokens]
    row = tokens.index[tokens["trajectory_id"] == bad_text][3]
    tokens.loc[row, "token"] = tokens.loc[row, "token"] + "!"
    stray = tokens[tokens["trajectory_id"] == ids[0]].head(3).assign(trajectory_id="nobody")
    tokens = pd.concat([tokens, stray], ignore_index=True)
    table.to_csv(tmp_path / "t.csv", index=False)  # CSV, read in batches too
    tokens.to_parquet(tmp_path / "k.parquet", index=False)
    assert cli.main(["import-scores", str(tmp_path / "t.csv"), str(tmp_path / "k.parquet"),
                     "--out", str(tmp_path / "s")]) == 0
    err = capsys.readouterr().err
    assert f"trajectory {no_tokens}: no token rows" in err
    assert f"trajectory {bad_json}: messages is not valid JSON" in err and "row 6" in err
    assert f"trajectory {bad_text}: token 3" in err
    assert "trajectory nobody: has token rows but no row in the trajectory table" in err
    store = ResultsStore(tmp_path / "s")
    assert store.scored_ids(STUDENT) == set(ids) - {no_tokens, bad_json, bad_text}
    got = store.trajectory_table(STUDENT)  # the CSV's values back (booleans, missing runs, ids as text)
    want = table[table["trajectory_id"].isin(got["trajectory_id"])]
    cols = [c for c in table.columns if c not in CONVERSATION_COLUMNS]
    assert plain(got).equals(plain(want[cols]))


def test_import_scores_refuses_files_without_the_needed_columns(tmp_path, capsys, flat_files):
    table_path, tokens_path = score_paths(STUDENT, flat_files)
    pd.read_parquet(table_path).drop(columns=["messages"]).to_parquet(tmp_path / "t.parquet")
    assert cli.main(["import-scores", str(tmp_path / "t.parquet"), str(tokens_path),
                     "--out", str(tmp_path / "s")]) == 2
    assert "missing columns messages" in capsys.readouterr().err
    pq.write_table(pq.read_table(tokens_path).drop_columns(["top_tokens"]), tmp_path / "k.parquet")
    assert cli.main(["import-scores", str(table_path), str(tmp_path / "k.parquet"),
                     "--out", str(tmp_path / "s")]) == 2
    assert "missing columns top_tokens" in capsys.readouterr().err


def test_a_reader_follows_a_writer_that_appends_and_merges(tmp_path, demo):
    table, scores, trajectories = demo
    with StoreWriter(tmp_path / "s", settings()) as writer:
        writer.append(trajectories[:30], scores, table)
    store = ResultsStore(tmp_path / "s")
    first = trajectories[0].trajectory_id
    assert_same_scores(store.token_scores(STUDENT, first), scores[first])
    before = store.generation(STUDENT)
    with StoreWriter(tmp_path / "s", settings()) as writer:
        for i in range(30, len(trajectories), 10):
            writer.append(trajectories[i:i + 10], scores, table)
        writer.compact()  # the parts the reader knew are gone
    assert store.generation(STUDENT) > before
    assert len(store.trajectory_table(STUDENT)) == len(trajectories)
    for t in trajectories[::11]:
        assert_same_scores(store.token_scores(STUDENT, t.trajectory_id), scores[t.trajectory_id])
