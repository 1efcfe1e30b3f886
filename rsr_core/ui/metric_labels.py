"""Display names of the trajectory-table and teacher-table columns, in the paper's wording where it has one."""
from __future__ import annotations

METRIC_LABELS: dict[str, str] = {
    "rsr": "RSR (Eq. 9)",
    "teacher_score": "teacher score (mean RSR over runs)",
    "rsr_simple_average": "RSR (simple average)",
    "avg_surprisal": "Avg-Surprisal",
    "avg_rank_clipped": "Avg-Rank (clipped)",
    "avg_rank": "Avg-Rank",
    "avg_length": "Avg-Token Length",
    "n_tokens": "length (tokens)",
    "avg_entropy": "Avg-Entropy",
    "avg_rsr_token": "Avg-RSR_token",
    "filtered_rsr_token": "Avg-RSR_token^filter",
    "rank_entropy_ratio": "Rank-Entropy Ratio",
    "rank_minus_surprisal": "Rank Minus Surprisal",
    "rank_times_surprisal": "Rank Times Surprisal",
    "correct_rate": "Verified Accuracy (correct rate)",
    "accuracy": "post-training accuracy",
}


def metric_label(name: str) -> str:
    """The display name of a column (the column name itself when it has none)."""
    return METRIC_LABELS.get(name, name)
