"""Per-part aggregates: the RSR of a trajectory's thinking, answer and tool calls at any r_max without the tokens.

A part's RSR is Σ min(rank, r_max) / Σ surprisal over its tokens (`segments.part_rsr`). Σ surprisal is a number
per part; Σ min(rank, r_max) is exact at every r_max from the part's distinct ranks and their counts. The thinking
is most of a reasoning trace, and its sums are the trajectory's (`aggregates.RankAggregates`) less those of the
other two parts, so only the answer and the tool calls are stored: their token counts and surprisal sums per
trajectory, and their (part, rank, count) triples, flat with offsets (a few hundred bytes per trajectory). A row
whose parts are unknown (results without tokens, stores written before parts were kept) has n = -1 and gives NaN.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import pyarrow as pa

from rsr_core.analysis.ragged import concat_offsets, gather, lengths_to_offsets
from rsr_core.analysis.segments import ANSWER, PART_COLUMNS, PARTS, THINKING, TOOL_CALLS

STORED = (ANSWER, TOOL_CALLS)  # the parts kept; the thinking is the rest
TRIPLE_TYPE = pa.struct([("part", pa.uint8()), ("rank", pa.uint32()), ("count", pa.uint32())])
ARROW_SCHEMA = pa.schema([("agg_n_answer", pa.int64()), ("agg_n_tools", pa.int64()),
                          ("agg_s_answer", pa.float64()), ("agg_s_tools", pa.float64()),
                          ("agg_part_ranks", pa.list_(TRIPLE_TYPE))])
ARROW_COLUMNS = tuple(ARROW_SCHEMA.names)


@dataclass
class PartAggregates:
    """The answer and tool-call parts of N trajectories: M (part, rank, count) triples in all."""

    n: np.ndarray  # [N, 2] int64, tokens of the answer and of the tool calls; -1: unknown
    sum_s: np.ndarray  # [N, 2] float64, their surprisal sums
    offsets: np.ndarray  # [N + 1] int64 into the triples
    part: np.ndarray  # [M] uint8, ANSWER or TOOL_CALLS
    rank: np.ndarray  # [M] uint32, a distinct rank of that part
    count: np.ndarray  # [M] uint32, its tokens

    def __len__(self) -> int:
        return int(self.n.shape[0])


def unknown(n: int) -> PartAggregates:
    """Aggregates of n trajectories whose parts are not known."""
    return PartAggregates(np.full((n, 2), -1, np.int64), np.full((n, 2), np.nan), np.zeros(n + 1, np.int64),
                          np.zeros(0, np.uint8), np.zeros(0, np.uint32), np.zeros(0, np.uint32))


def batch_part_aggregates(surprisal: np.ndarray, rank: np.ndarray, parts: np.ndarray,
                          lengths: np.ndarray) -> PartAggregates:
    """Part aggregates of N trajectories from their tokens, concatenated: surprisal [T] (taken as float32, as the
    scores hold it), rank [T] unclipped, parts [T] part codes (`segments.token_parts`), lengths [N]."""
    lengths = np.asarray(lengths, dtype=np.int64)
    n_traj = lengths.size
    s = np.asarray(surprisal).astype(np.float32, copy=False).astype(np.float64)
    r = np.asarray(rank, dtype=np.int64)
    codes = np.asarray(parts, dtype=np.int64)
    seg = np.repeat(np.arange(n_traj, dtype=np.int64), lengths)
    n = np.zeros((n_traj, 2), np.int64)
    sum_s = np.zeros((n_traj, 2))
    for j, code in enumerate(STORED):
        keep = codes == code
        n[:, j] = np.bincount(seg[keep], minlength=n_traj)
        sum_s[:, j] = [s[a:b][codes[a:b] == code].sum() for a, b in _bounds(lengths)]
    kept = np.flatnonzero(codes != THINKING)
    key = (seg[kept] * 4 + codes[kept]) * (int(r.max(initial=0)) + 1) + r[kept]
    uniq, counts = np.unique(key, return_counts=True)
    width = int(r.max(initial=0)) + 1
    t_seg, rest = np.divmod(uniq, 4 * width)
    t_part, t_rank = np.divmod(rest, width)
    return PartAggregates(n, sum_s, lengths_to_offsets(np.bincount(t_seg, minlength=n_traj)),
                          t_part.astype(np.uint8), t_rank.astype(np.uint32), counts.astype(np.uint32))


def _bounds(lengths: np.ndarray):
    ends = np.cumsum(lengths)
    return zip((ends - lengths).tolist(), ends.tolist())


def concat(parts: Sequence[PartAggregates]) -> PartAggregates:
    """The part aggregates of several groups of trajectories, one after the other."""
    if not parts:
        return unknown(0)
    return PartAggregates(**{f.name: (concat_offsets if f.name == "offsets" else np.concatenate)(
        [getattr(p, f.name) for p in parts]) for f in fields(PartAggregates)})


def take(parts: PartAggregates, index: np.ndarray) -> PartAggregates:
    """The part aggregates of trajectories `index` ([K] positions), in that order."""
    index = np.asarray(index, dtype=np.int64)
    offsets, elems = gather(parts.offsets, index)
    return PartAggregates(parts.n[index], parts.sum_s[index], offsets, parts.part[elems], parts.rank[elems],
                          parts.count[elems])


def part_columns(parts: PartAggregates, n_tokens: np.ndarray, sum_s: np.ndarray, clip_sum: np.ndarray,
                 r_max: int) -> dict[str, np.ndarray]:
    """[N] columns rsr_thinking, rsr_answer, rsr_tool_calls at r_max, from the part aggregates and the
    trajectories' own token counts, surprisal sums and clipped-rank sums at that r_max ([N] each)."""
    n_traj = len(parts)
    seg = np.repeat(np.arange(n_traj, dtype=np.int64), np.diff(parts.offsets))
    clipped = np.minimum(parts.rank.astype(np.float64), float(r_max)) * parts.count
    clip = np.zeros((n_traj, 2))
    for j, code in enumerate(STORED):
        keep = parts.part == code
        clip[:, j] = np.bincount(seg[keep], weights=clipped[keep], minlength=n_traj)
    known = parts.n[:, 0] >= 0
    n = {ANSWER: parts.n[:, 0], TOOL_CALLS: parts.n[:, 1],
         THINKING: np.asarray(n_tokens, np.int64) - parts.n[:, 0] - parts.n[:, 1]}
    s = {ANSWER: parts.sum_s[:, 0], TOOL_CALLS: parts.sum_s[:, 1],
         THINKING: np.asarray(sum_s, np.float64) - parts.sum_s[:, 0] - parts.sum_s[:, 1]}
    c = {ANSWER: clip[:, 0], TOOL_CALLS: clip[:, 1], THINKING: np.asarray(clip_sum, np.float64) - clip.sum(axis=1)}
    out = {}
    for code, name in enumerate(PARTS):
        values = np.full(n_traj, np.nan)
        ok = known & (n[code] > 0) & (s[code] > 0)
        np.divide(c[code], s[code], out=values, where=ok)
        out[PART_COLUMNS[name]] = values
    return out


def to_arrow(parts: PartAggregates) -> list[pa.Array]:
    """The columns of `ARROW_SCHEMA` (one row per trajectory); unknown rows are null."""
    known = parts.n[:, 0] >= 0
    mask = pa.array(~known)
    triples = pa.StructArray.from_arrays([pa.array(parts.part), pa.array(parts.rank), pa.array(parts.count)],
                                         fields=list(TRIPLE_TYPE))
    return [pa.array(parts.n[:, 0], pa.int64(), mask=~known), pa.array(parts.n[:, 1], pa.int64(), mask=~known),
            pa.array(parts.sum_s[:, 0], pa.float64(), mask=~known),
            pa.array(parts.sum_s[:, 1], pa.float64(), mask=~known),
            pa.ListArray.from_arrays(pa.array(parts.offsets.astype(np.int32)), triples, mask=mask)]


def from_arrow(table: pa.Table) -> PartAggregates:
    """Inverse of `to_arrow`, from a table that may lack the columns (every row unknown then)."""
    n_rows = table.num_rows
    if any(c not in table.column_names for c in ARROW_COLUMNS):
        return unknown(n_rows)

    def col(name, dtype, fill):
        return np.asarray(table.column(name).combine_chunks().fill_null(fill).to_numpy(zero_copy_only=False), dtype)

    n = np.stack([col("agg_n_answer", np.int64, -1), col("agg_n_tools", np.int64, -1)], axis=1)
    sum_s = np.stack([col("agg_s_answer", np.float64, np.nan), col("agg_s_tools", np.float64, np.nan)], axis=1)
    lists = table.column("agg_part_ranks").combine_chunks()
    lists = lists.fill_null(pa.scalar([], lists.type)) if lists.null_count else lists
    offsets = np.asarray(lists.offsets, dtype=np.int64)
    values = lists.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    part, rank, count = values.flatten()
    return PartAggregates(n, sum_s, offsets - offsets[0], np.asarray(part.to_numpy(zero_copy_only=False), np.uint8),
                          np.asarray(rank.to_numpy(zero_copy_only=False), np.uint32),
                          np.asarray(count.to_numpy(zero_copy_only=False), np.uint32))
