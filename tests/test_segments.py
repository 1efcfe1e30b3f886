"""Thinking and answer parts of a trace: token membership and each part's numbers."""
import numpy as np

from rsr_core.analysis.metrics import trajectory_rsr
from rsr_core.analysis.segments import answer_boundaries, part_metrics, thinking_mask
from rsr_core.data.trajectory import answer_start


def test_parts_follow_the_answer_offset_of_each_turn():
    turns = [{"role": "assistant", "content": "A", "reasoning_content": "R"}, {"role": "assistant", "content": "B"}]
    starts = [answer_start(m) for m in turns]  # "<think>\nR\n</think>\n\n" is 20 characters
    assert starts == [20, 0]
    offsets = np.array([[0, 7], [7, 8], [8, 9], [9, 18], [18, 20], [20, 21], [0, 1]])
    turn = np.array([0, 0, 0, 0, 0, 0, 1])
    mask = thinking_mask(offsets, turn, starts)
    assert mask.tolist() == [True] * 5 + [False, False]
    assert answer_boundaries(mask, turn) == [5]


def test_part_numbers_are_the_rsr_of_each_part():
    rng = np.random.default_rng(0)
    s, r = rng.gamma(1.5, 1.0, 50), rng.integers(1, 300, 50)
    mask = np.arange(50) < 30
    table = part_metrics(s, r, mask, r_max=100).set_index("part")
    assert table.loc["thinking", "tokens"] == 30 and table.loc["answer", "tokens"] == 20
    assert np.isclose(table.loc["thinking", "rsr"], trajectory_rsr(s[:30], r[:30], 100))
    assert np.isclose(table.loc["answer", "avg_rank_clipped"], np.minimum(r[30:], 100).mean())
    empty = part_metrics(s, r, np.zeros(50, bool)).set_index("part")
    assert empty.loc["thinking", "tokens"] == 0 and np.isnan(empty.loc["thinking", "rsr"])
