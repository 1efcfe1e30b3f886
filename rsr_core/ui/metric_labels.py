"""Display names of the trajectory-table and teacher-table columns, in the paper's wording where it has one, and
counts in words.

A column means one thing per trajectory and another per teacher or set: `rsr` of a trajectory is Eq. 7 of the
paper (Σ clipped rank / Σ surprisal over its tokens), `rsr` of a teacher or a selected set is the dataset RSR of
Eq. 9 (Σ of the trajectories' mean clipped ranks / Σ of their mean surprisals). `metric_label(name, level)` says
which.
"""
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
    "brier": "Brier (full vocabulary)",
    "lark_brier": "LARK Brier (top 50)",
    "lark_rho": "LARK ρ",
    "lark_g": "LARK ĝ",
    "accuracy": "post-training accuracy",
}


TRAJECTORY_LABELS: dict[str, str] = {  # where a trajectory's value differs in name from a teacher's
    "rsr": "RSR (Eq. 7)",
    "avg_surprisal": "mean surprisal",
    "avg_rank_clipped": "mean clipped rank",
    "avg_rank": "mean rank (unclipped)",
    "avg_entropy": "mean entropy",
    "avg_rsr_token": "mean RSR_token",
    "filtered_rsr_token": "RSR_token^filter",
    "rsr_thinking": "RSR of the thinking",
    "rsr_answer": "RSR of the answer",
    "rsr_tool_calls": "RSR of the tool calls",
    "brier": "mean Brier (full vocabulary)",
    "lark_brier": "mean LARK Brier (top 50)",
    "lark_rho": "LARK ρ (Brier / surprisal)",
    "lark_g": "LARK ĝ (per problem)",
}


def metric_label(name: str, level: str = "dataset") -> str:
    """The display name of a column (the column name itself when it has none). level: "dataset" for teachers and
    sets of trajectories (RSR of Eq. 9), "trajectory" for one trajectory's values (RSR of Eq. 7)."""
    if level == "trajectory" and name in TRAJECTORY_LABELS:
        return TRAJECTORY_LABELS[name]
    return METRIC_LABELS.get(name, name)


def count(n: int, noun: str, plural: str | None = None) -> str:
    """A count in words: "1 token", "1,500 tokens" (`plural` for nouns that do not just take an s)."""
    return f"{int(n):,} {noun if int(n) == 1 else plural or noun + 's'}"
