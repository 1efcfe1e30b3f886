"""The score cache: hits cost no forward pass, changed settings miss, runs resume, corrupt entries recompute."""
import numpy as np
import pytest

from rsr_core.engine.cache import ScoreCache
from rsr_core.engine.pipeline import score_trajectories
from rsr_core.data.trajectory import Trajectory


def traj(i, text=None):
    return Trajectory(f"t{i}", f"p{i}", "teacher", [
        {"role": "user", "content": f"What is {i} + {i}?"},
        {"role": "assistant", "content": text or f"{i} + {i} = {2 * i}. Let me check: {2 * i} - {i} = {i}."}])


@pytest.fixture
def forward_calls(student):
    calls = []
    handle = student.model.base_model.register_forward_hook(lambda *a: calls.append(1))
    yield calls
    handle.remove()


def test_a_second_run_is_served_from_the_cache(student, tmp_path, forward_calls):
    trajs = [traj(i) for i in range(3)]
    first = score_trajectories(trajs, student, cache_dir=tmp_path)
    assert first.cached == 0 and len(forward_calls) == 3
    second = score_trajectories(trajs, student, cache_dir=tmp_path)
    assert second.cached == 3 and len(forward_calls) == 3  # no new forward pass
    for t in trajs:
        a, b = first.scores[t.trajectory_id], second.scores[t.trajectory_id]
        np.testing.assert_array_equal(a.rank, b.rank)
        np.testing.assert_array_equal(a.surprisal, b.surprisal)
        assert a.tokens == b.tokens and a.top_tokens == b.top_tokens


def test_changed_settings_or_text_never_reuse_stale_results(student, tmp_path, forward_calls):
    t = traj(1)
    score_trajectories([t], student, cache_dir=tmp_path)
    cut = score_trajectories([t], student, cache_dir=tmp_path, max_len=50)
    assert cut.cached == 0 and cut.scores["t1"].truncated
    edited = traj(1, text="1 + 1 = 2.")
    assert score_trajectories([edited], student, cache_dir=tmp_path).cached == 0
    renamed = Trajectory("other-id", "p", "other teacher", t.messages)  # same text: same numbers
    assert score_trajectories([renamed], student, cache_dir=tmp_path).cached == 1
    assert len(forward_calls) == 3


def test_an_interrupted_run_resumes_where_it_stopped(student, tmp_path, forward_calls):
    trajs = [traj(i) for i in range(4)]
    seen = []
    stop_after_two = lambda: len(seen) >= 2  # noqa: E731
    first = score_trajectories(trajs, student, cache_dir=tmp_path, should_stop=stop_after_two,
                               progress=lambda p: seen.append(p.done) if p.done else None)
    assert first.stopped and len(first.scores) == 2
    second = score_trajectories(trajs, student, cache_dir=tmp_path)
    assert not second.stopped and second.cached == 2 and len(second.scores) == 4
    assert len(forward_calls) == 4


def test_a_corrupt_entry_is_detected_and_recomputed(student, tmp_path):
    t = traj(2)
    first = score_trajectories([t], student, cache_dir=tmp_path)
    (entry,) = list((tmp_path / "scores").rglob("*.npz"))
    data = bytearray(entry.read_bytes())
    for k in range(1, 10):  # damage bytes throughout the file
        data[k * len(data) // 10] ^= 0xFF
    entry.write_bytes(bytes(data))
    cache = ScoreCache(tmp_path)
    assert cache.get(entry.stem) is None and cache.dropped == 1 and not entry.exists()
    entry.write_bytes(b"truncated")
    again = score_trajectories([t], student, cache_dir=tmp_path)
    assert again.cached == 0
    np.testing.assert_array_equal(again.scores["t2"].rank, first.scores["t2"].rank)
    assert score_trajectories([t], student, cache_dir=tmp_path).cached == 1


def test_a_response_cut_away_entirely_costs_no_forward_pass(student, forward_calls):
    from rsr_core.data.tables import trajectory_table

    t = traj(3)
    result = score_trajectories([t], student, max_len=20, use_cache=False)
    s = result.scores["t3"]
    assert len(s) == 0 and s.truncated and forward_calls == []
    row = trajectory_table([t], result.scores, "s").iloc[0]
    assert row["n_tokens"] == 0 and row["truncated"] and np.isnan(row["rsr"])
