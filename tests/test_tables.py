"""Trajectory and token tables: r_max changes recompute from stored ranks; the token table round-trips."""
import numpy as np
import pytest

from rsr_core.analysis.metrics import trajectory_rsr
from rsr_core.engine.pipeline import score_trajectories
from rsr_core.data.tables import (read_table, rescore_table, scores_from_token_table, token_table, trajectory_table,
                                  write_table)
from rsr_core.data.trajectory import Trajectory


@pytest.fixture(scope="module")
def scored(student):
    question = {"role": "user", "content": "Compute 12 * 11."}
    good = {"role": "assistant", "content": "12 * 11 = 132, since 12 * 10 = 120 and 120 + 12 = 132."}
    bad = {"role": "assistant", "content": "Quantum flux yields 132 bananas."}
    trajs = [Trajectory("a", "p1", "T1", [question, good]),
             Trajectory("b", "p1", "T2", [question, bad], correct=False)]
    return trajs, score_trajectories(trajs, student, use_cache=False).scores


def test_rescoring_for_another_r_max_matches_a_fresh_table(scored):
    trajs, scores = scored
    base = trajectory_table(trajs, scores, "s", r_max=100)
    for r_max in (1, 5, 50, 500):
        fresh = trajectory_table(trajs, scores, "s", r_max=r_max)
        again = rescore_table(base, scores, r_max)
        assert again["rsr"].tolist() == pytest.approx(fresh["rsr"].tolist())
        assert again["rsr"].tolist() == pytest.approx([trajectory_rsr(scores[t].surprisal, scores[t].rank, r_max)
                                                       for t in ("a", "b")])
    assert base.loc[1, "correct"] == False and base.loc[0, "correct"] is not False  # noqa: E712
    # the nonsense answer ranks far worse under the student
    assert base.loc[1, "avg_rank"] > base.loc[0, "avg_rank"]


def test_token_table_round_trips_through_parquet(scored, tmp_path):
    _, scores = scored
    write_table(token_table(scores), tmp_path / "tokens.parquet")
    back = scores_from_token_table(read_table(tmp_path / "tokens.parquet"))
    assert set(back) == {"a", "b"}
    for tid, s in scores.items():
        b = back[tid]
        np.testing.assert_array_equal(b.rank, s.rank)
        np.testing.assert_array_equal(b.surprisal, s.surprisal)
        np.testing.assert_array_equal(b.top_ids, s.top_ids)
        assert b.tokens == s.tokens and b.top_tokens == s.top_tokens
        assert "".join(b.tokens) in ("12 * 11 = 132, since 12 * 10 = 120 and 120 + 12 = 132.",
                                     "Quantum flux yields 132 bananas.")
