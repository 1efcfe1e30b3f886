"""The app's background scoring run (`ScoringJob`) on the real embedded student: what the store would refuse (an
id it holds with another conversation) is named up front and never scored, as `score` does; the rest is scored."""
from __future__ import annotations

import threading

from rsr_core.data.store import ResultsStore
from rsr_core.data.trajectory import Trajectory
from rsr_core.engine.job import ScoringJob


def trajectory(tid: str, answer: str) -> Trajectory:
    return Trajectory(tid, "p1", "teacher", [{"role": "user", "content": "What is 2 + 2?"},
                                             {"role": "assistant", "content": answer}], source="in.jsonl", record=1)


def test_a_clashing_id_is_refused_before_scoring(tmp_path, student):
    store, lock = tmp_path / "store", threading.Lock()
    first = ScoringJob([trajectory("a", "It is 4.")], student, lock, store).start()
    assert first.wait(300) and first.failure is None and first.written == 1
    before = ResultsStore(store).trajectory_table(student.name).set_index("trajectory_id")["rsr"]
    job = ScoringJob([trajectory("a", "The answer is 4."), trajectory("b", "Four.")], student, lock, store).start()
    assert job.wait(300) and job.failure is None
    assert job.written == 1  # only b: a was never scored
    assert len(job.errors) == 1 and "trajectory a:" in str(job.errors[0]) and "another text" in str(job.errors[0])
    assert str(job.errors[0]).startswith("in.jsonl, line 1")
    after = ResultsStore(store).trajectory_table(student.name).set_index("trajectory_id")["rsr"]
    assert after["a"] == before["a"] and "b" in after.index
