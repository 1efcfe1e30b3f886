"""What one append is about to commit, and the checks that decide what of it the store accepts.

A batch is trajectories with their per-token columns or their aggregates. Before a writer commits it, each
trajectory's token texts must come back exactly from its conversation and the vocabulary, and its trajectory-table
row must agree with its tokens (n_tokens, truncation, the metric columns at the store's r_max, the same-pass
columns) and the store's settings; a trajectory that does not is left out with a message.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from rsr_core.analysis import aggregates as agg
from rsr_core.analysis import part_aggregates as pagg
from rsr_core.analysis.metrics import SAME_PASS_METRICS
from rsr_core.analysis.segments import PART_COLUMNS, token_parts
from rsr_core.data.store.layout import CONVERSATION_COLUMNS, INDEX_COLUMNS, AppendResult, StudentSettings
from rsr_core.data.store_columns import TokenColumns, Vocabulary, range_problems, token_problems
from rsr_core.data.store_files import StoreError
from rsr_core.data.trajectory import Trajectory, assistant_texts, turn_part_starts


@dataclass
class _Batch:
    """What one append is about to commit: trajectories with their per-token columns or their aggregates."""

    trajectories: list[Trajectory]
    columns: TokenColumns | None = None
    aggregates: agg.RankAggregates | None = None
    rows: pd.DataFrame | None = None  # the trajectory-table rows, once found
    parts: pagg.PartAggregates | None = None  # the aggregates of the answer and tool-call parts

    @property
    def ids(self) -> list[str]:
        return [t.trajectory_id for t in self.trajectories]

    def keep(self, positions: Sequence[int]) -> "_Batch":
        index = np.asarray(positions, dtype=np.int64)
        return _Batch([self.trajectories[j] for j in index.tolist()],
                      None if self.columns is None else self.columns.take(index),
                      None if self.aggregates is None else agg.take(self.aggregates, index),
                      None if self.rows is None else self.rows.iloc[index].reset_index(drop=True),
                      None if self.parts is None else pagg.take(self.parts, index))

    def without(self, problems: dict[str, str], result: AppendResult) -> "_Batch":
        """The batch less the trajectories with a problem ({id: problem}), each reported in `result`."""
        if not problems:
            return self
        result.errors += [f"trajectory {tid}: {p}" for tid, p in problems.items()]
        return self.keep([j for j, tid in enumerate(self.ids) if tid not in problems])

    def lengths(self) -> np.ndarray:
        return self.columns.lengths if self.columns is not None else self.aggregates.n


def _token_problems(batch: _Batch, vocab: Vocabulary) -> dict[str, str]:
    """{id: problem} for per-token data that the store could not give back exactly; the vocabulary learns
    the alternatives' texts of the rest."""
    columns = batch.columns
    problems = token_problems(columns, [assistant_texts(t.messages) for t in batch.trajectories])
    for j, p in range_problems(columns).items():
        problems.setdefault(j, p)
    rest = [j for j in range(len(batch.ids)) if j not in problems]
    for j, p in vocab.problems(columns.take(rest)).items():
        problems[rest[j]] = p
    return {batch.ids[j]: p for j, p in problems.items()}


def _table_rows(table: pd.DataFrame, batch: _Batch,
                settings: StudentSettings) -> tuple[pd.DataFrame, dict[str, str]]:
    """The table rows of the batch in its order, without conversation columns, and {id: problem} where a row
    is missing or disagrees with the scores or the settings."""
    if "trajectory_id" not in table.columns:
        raise StoreError("the trajectory table has no trajectory_id column")
    reserved = [c for c in table.columns if c in INDEX_COLUMNS or c in agg.ARROW_COLUMNS]
    if reserved:
        raise StoreError(f"the trajectory table has columns the store reserves: {reserved}")
    frame = table.reset_index(drop=True).drop(columns=[c for c in CONVERSATION_COLUMNS if c in table.columns])
    frame = frame.assign(trajectory_id=frame["trajectory_id"].astype(str)).drop_duplicates("trajectory_id")
    ids = batch.ids
    rows = frame.set_index("trajectory_id", drop=False).reindex(ids).reset_index(drop=True)
    problems = {tid: "no row in the trajectory table" for tid, missing in
                zip(ids, rows["trajectory_id"].isna().to_numpy()) if missing}
    columns = batch.columns
    expected = {"n_tokens": batch.lengths(), "student": settings.student, "r_max": settings.r_max,
                "truncated": None if columns is None else columns.truncated,
                "n_context": None if columns is None else columns.n_context}
    for name, want in expected.items():
        if name not in rows.columns:
            if name != "n_tokens":  # results without tokens: unknown truncation and context
                rows[name] = want if want is not None else {"truncated": False, "n_context": 0}[name]
        elif want is not None:
            for j in np.flatnonzero(_differ(rows[name], want) & rows["trajectory_id"].notna().to_numpy()):
                value = want if np.ndim(want) == 0 else np.asarray(want)[j]
                problems.setdefault(ids[j], f"{name} is {_shown(rows[name].iloc[j])} in the table but "
                                            f"{_shown(value)} in the scores or the store's settings")
    _check_metrics(rows, batch.aggregates, batch.parts, settings.r_max, problems)
    _check_same_pass(rows, batch.columns, problems)
    return rows, problems


def _check_metrics(rows: pd.DataFrame, aggregates: agg.RankAggregates, parts: pagg.PartAggregates, r_max: int,
                   problems: dict[str, str]) -> None:
    """Fill the metric columns the table lacks from the aggregates; report rows whose metrics are not those of
    their tokens at the store's r_max (within 1e-6: a table written as text rounds them). A part column is
    checked where the parts are known, and `rsr_tool_calls` added only where there are tool calls."""
    ids = rows["trajectory_id"].to_numpy()
    known = parts.n[:, 0] >= 0
    for name, want in agg.metric_columns(aggregates, r_max, parts).items():
        is_part = name in PART_COLUMNS.values()
        if name not in rows.columns:
            if not is_part or (known.any() and not (name == "rsr_tool_calls" and np.isnan(want).all())):
                rows[name] = want
            continue
        have = pd.to_numeric(rows[name].astype(object), errors="coerce").to_numpy(np.float64, na_value=np.nan)
        bad = ~np.isclose(have, want, rtol=1e-6, atol=0, equal_nan=True) & pd.notna(ids)
        if is_part:
            bad &= known
        for j in np.flatnonzero(bad).tolist():
            problems.setdefault(ids[j], f"{name} is {_shown(have[j])} in the table but {_shown(want[j])} from its "
                                        f"tokens at r_max = {r_max}")


def _check_same_pass(rows: pd.DataFrame, columns: TokenColumns | None, problems: dict[str, str]) -> None:
    """Set the same-pass columns (`metrics.SAME_PASS_METRICS`) of the trajectories whose Brier terms are known from
    them, reporting a table value that disagrees; keep the table's own values for the others (results without
    per-token data), NaN where it has none."""
    ids = rows["trajectory_id"].to_numpy()
    known = columns.known_terms() if columns is not None else np.zeros(len(rows), bool)
    computed = columns.same_pass() if columns is not None else {}
    for name in SAME_PASS_METRICS:
        have = (pd.to_numeric(rows[name].astype(object), errors="coerce").to_numpy(np.float64, na_value=np.nan)
                if name in rows.columns else np.full(len(rows), np.nan))
        if not known.any():
            rows[name] = have
            continue
        want = computed[name]
        bad = known & ~np.isnan(have) & ~np.isclose(have, want, rtol=1e-6, atol=0, equal_nan=True) & pd.notna(ids)
        for j in np.flatnonzero(bad).tolist():
            problems.setdefault(ids[j], f"{name} is {_shown(have[j])} in the table but {_shown(want[j])} from its "
                                        f"tokens")
        rows[name] = np.where(known, want, have)


def _shown(value) -> str:
    """A table value in a message as a user writes it: 70, 3.25, True, 'text' (never np.int64(70))."""
    value = value.item() if isinstance(value, np.generic) else value
    return repr(value) if isinstance(value, str) else str(value)


def _differ(have: pd.Series, want) -> np.ndarray:
    """[n] whether table values differ from the expected ones (a scalar or [n] values)."""
    if isinstance(want, str):
        return (have.astype(str) != want).to_numpy()
    values = pd.to_numeric(have.astype(object), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return values != np.asarray(want, dtype=np.float64)


def _part_aggregates(trajectories: Sequence[Trajectory], columns: TokenColumns) -> pagg.PartAggregates:
    """The part aggregates of a batch from its tokens' offsets and turns and each conversation's parts."""
    offsets = columns.offsets
    codes = [token_parts(np.stack([columns.start[a:b], columns.end[a:b]], axis=1), columns.turn[a:b],
                         *turn_part_starts(t.messages))
             if b > a else np.zeros(0, np.int8)
             for t, a, b in zip(trajectories, offsets[:-1].tolist(), offsets[1:].tolist())]
    codes = np.concatenate(codes) if codes else np.zeros(0, np.int8)
    return pagg.batch_part_aggregates(columns.surprisal, columns.rank, codes, columns.lengths)

