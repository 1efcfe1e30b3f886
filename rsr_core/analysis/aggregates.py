"""Per-trajectory aggregates that give every metric of `trajectory_metrics` at any r_max >= 1 without the tokens.

Why: the study behind this tool scores 165,000 trajectories of ~10,000 tokens (1.65 billion tokens per student).
The app recomputes every table when r_max changes; it cannot hold the tokens, but it can hold these aggregates.

What the metrics need (T tokens, s surprisal, r unclipped rank, e entropy, c = min(r, r_max)):

    n_tokens, avg_surprisal, avg_rank, avg_entropy     scalars: n, sum s, sum r, sum e
    rsr = sum c / sum s,  avg_rank_clipped = sum c / n,  rank_entropy_ratio = sum c / sum e
    avg_rsr_token      = sum over valid tokens of c / s, over n_valid
    filtered_rsr_token = the same over the valid tokens of the top 30 % by surprisal (the set
                         `metrics.filtered_rsr_token` keeps: stable argsort of -s, first ceil(0.3 T), at least 1)

A token is *valid* when c / s is finite: s != 0 and s is not NaN (as `metrics.avg_rsr_token` keeps them).
sum c, sum c/s and sum over the top tokens of c/s depend on r_max only through min(rank, r_max), so grouping the
tokens by their distinct rank is exact for every r_max: per distinct rank its count, the sum of 1/s over its
valid tokens, and the same over its valid top tokens.

Compact and still exact: most tokens sit on a few low ranks, which occur many times; the heavy tail (ranks up
to the vocabulary size) has mostly one token per rank. So a distinct rank is stored one of two ways:

- a **bin** when it occurs at least `BIN_MIN_COUNT` (3) times: rank uint32, count uint32, sum of 1/s float64
  over its valid tokens, the same over its valid top tokens float64 (24 bytes, whatever the count);
- otherwise each of its tokens is a **single**: rank uint32 and the token's own surprisal float32 (8 bytes).
  Surprisal is float32 in `TokenScores`, so keeping s itself is lossless, where a float32 1/s would not be. The
  singles of a trajectory are ordered top tokens first (`single_n_top` of them), so no flag is stored.

A bin costs what three singles cost, so a rank becomes a bin from its third token on. Why not bins only: the
exact sparse histogram needs 24 bytes per distinct rank, and the heavy tail gives ~265 distinct ranks per
10k-token trajectory (6.4 KB, 1.05 GB for 165,000), most of them holding a single token. Measured on 10k-token
trajectories with Zipf-like ranks over a 49,152 vocabulary (P(rank 1) 0.55-0.72, 1-4 % above rank 100;
`bench/synthetic_store.py`): 78 bins and 219 singles, 3.7 KB per trajectory, 611 MB for 165,000, recomputed at
a new r_max in 0.2-0.4 s on 2 CPU cores. The demo's short trajectories (~150 tokens) take ~350 bytes each.

Exactness: counts and clipped sums are integers (exact in float64); the 1/s sums differ from the reference's
token-by-token mean only by summation order (~1e-15 relative). Surprisal is taken as float32, the type the
scores have; the scalar sums are np.sum of the float64 arrays, as `trajectory_metrics` computes its means.

All arrays are flat with offsets (N trajectories: [N + 1] offsets into [M] bins and [L] singles), so the
aggregates of many trajectories are a handful of numpy arrays (or Arrow list columns), never Python objects;
`rmax_columns` works through them in chunks of `CHUNK_ELEMENTS`, so its temporaries stay a few MB.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa

from rsr_core.analysis.metrics import FILTER_TOP_FRACTION, TRAJECTORY_METRICS
from rsr_core.analysis.part_aggregates import PartAggregates, part_columns
from rsr_core.analysis.ragged import concat_offsets, gather, lengths_to_offsets
from rsr_core.analysis.segments import PART_COLUMNS

BIN_MIN_COUNT = 3
LONG_TRAJECTORY = 512  # mean tokens from which the top-30 % set is found by a partition per trajectory
CHUNK_ELEMENTS = 1 << 18  # recompute in chunks of about this many bins + singles: bounded temporaries

RMAX_METRICS = ("rsr", "avg_rank_clipped", "avg_rsr_token", "filtered_rsr_token", "rank_entropy_ratio")

BIN_TYPE = pa.struct([("rank", pa.uint32()), ("count", pa.uint32()),
                      ("inv_s", pa.float64()), ("inv_s_top", pa.float64())])
SINGLE_TYPE = pa.struct([("rank", pa.uint32()), ("s", pa.float32())])
ARROW_SCHEMA = pa.schema([
    ("agg_n", pa.int64()), ("agg_n_valid", pa.int64()), ("agg_n_valid_top", pa.int64()),
    ("agg_sum_s", pa.float64()), ("agg_sum_e", pa.float64()), ("agg_sum_rank", pa.float64()),
    ("agg_bins", pa.list_(BIN_TYPE)), ("agg_singles", pa.list_(SINGLE_TYPE)), ("agg_single_n_top", pa.int64()),
])
ARROW_COLUMNS = tuple(ARROW_SCHEMA.names)


@dataclass
class RankAggregates:
    """Aggregates of N trajectories: M bins and L singles in all, flat with offsets."""

    n: np.ndarray  # [N] int64, tokens
    n_valid: np.ndarray  # [N] int64, tokens with a finite r/s
    n_valid_top: np.ndarray  # [N] int64, those among the top-30 % surprisal tokens
    sum_s: np.ndarray  # [N] float64, sum of surprisal
    sum_e: np.ndarray  # [N] float64, sum of entropy (NaN: no entropy)
    sum_rank: np.ndarray  # [N] float64, sum of unclipped ranks (an integer)
    bin_offsets: np.ndarray  # [N + 1] int64
    bin_rank: np.ndarray  # [M] uint32, ascending within a trajectory
    bin_count: np.ndarray  # [M] uint32
    bin_inv_s: np.ndarray  # [M] float64, sum of 1/s over the bin's valid tokens
    bin_inv_s_top: np.ndarray  # [M] float64, the same over its valid top tokens
    single_offsets: np.ndarray  # [N + 1] int64
    single_n_top: np.ndarray  # [N] int64, the first single_n_top[j] singles of trajectory j are top tokens
    single_rank: np.ndarray  # [L] uint32
    single_s: np.ndarray  # [L] float32, the token's surprisal

    def __len__(self) -> int:
        return int(self.n.shape[0])

    @cached_property
    def invalid_singles(self) -> np.ndarray:
        """[I] positions of the singles whose c/s is not finite (s = 0 or NaN), ascending; rare."""
        return np.flatnonzero((self.single_s == 0) | np.isnan(self.single_s))

    @property
    def nbytes(self) -> int:
        """Bytes of all arrays."""
        return int(sum(getattr(self, f.name).nbytes for f in fields(self)))


def _segments(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N] lengths -> ([N + 1] offsets, [sum] segment id of each element)."""
    return lengths_to_offsets(lengths), np.repeat(np.arange(lengths.size, dtype=np.int64), lengths)


def _top_one(s: np.ndarray) -> np.ndarray:
    """[T] mask of the tokens `metrics.filtered_rsr_token` keeps in one trajectory ([T] float64 surprisal)."""
    n = s.size
    k = max(1, int(np.ceil(FILTER_TOP_FRACTION * n)))
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    if k >= n or np.isnan(s).any():
        mask[np.argsort(-s, kind="stable")[:k]] = True
        return mask
    threshold = np.partition(s, n - k)[n - k]  # the k-th highest surprisal
    np.greater(s, threshold, out=mask)
    mask[np.flatnonzero(s == threshold)[:k - int(mask.sum())]] = True  # ties: the earlier tokens, as a stable sort
    return mask


def top_mask(surprisal: np.ndarray, offsets: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """[T] True for the tokens `metrics.filtered_rsr_token` keeps: per trajectory the first ceil(0.3 T) (at
    least 1) of a stable argsort of -s, i.e. highest surprisal first, ties to the earlier token, NaN last.

    surprisal: [T] float64; offsets: [N + 1]; seg: [T] trajectory of each token.
    """
    lengths = np.diff(offsets)
    if lengths.size and surprisal.size >= LONG_TRAJECTORY * lengths.size:  # long trajectories: partition each
        return np.concatenate([_top_one(surprisal[a:b]) for a, b in zip(offsets[:-1].tolist(),
                                                                         offsets[1:].tolist())])
    k = np.maximum(1, np.ceil(FILTER_TOP_FRACTION * lengths)).astype(np.int64)
    order = np.lexsort((-surprisal, seg))  # stable: within a trajectory, as np.argsort(-s, kind="stable")
    place = np.arange(surprisal.size, dtype=np.int64) - offsets[seg[order]]
    top = np.empty(surprisal.size, dtype=bool)
    top[order] = place < k[seg[order]]
    return top


def _segment_sums(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """[N] np.sum of each segment of [T] float values (pairwise, as `trajectory_metrics` sums)."""
    return np.array([values[a:b].sum() for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())],
                    dtype=np.float64)


def _segment_counts(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """[N] exact integer sums of each segment of [T] integer or boolean values."""
    padded = np.zeros(values.size + 1, dtype=np.int64)
    padded[:-1] = values
    out = np.add.reduceat(padded, offsets[:-1]) if offsets.size > 1 else np.zeros(0, np.int64)
    out[offsets[1:] == offsets[:-1]] = 0
    return out


def _rank_groups(seg: np.ndarray, r: np.ndarray, n_traj: int, weights: tuple[np.ndarray, ...]):
    """Distinct (trajectory, rank) groups of [T] tokens, sorted by trajectory then rank.

    Returns (group trajectory [G], group rank [G], group count [G], per weight its group sums [G], [T] group of
    each token). Low ranks are counted densely (no sort); only the rare high ranks are sorted.
    """
    dense = int(np.clip(4 * r.size // max(n_traj, 1), 16, 256))  # ranks 0 .. dense - 1 counted densely
    low = r < dense
    key = seg * (dense + 1) + np.minimum(r, dense)  # slot `dense` of each trajectory collects the high ranks
    width = n_traj * (dense + 1)
    counts = np.bincount(key, minlength=width)
    sums = [np.bincount(key, weights=w, minlength=width) for w in weights]
    counts[dense::dense + 1] = 0
    occupied = np.flatnonzero(counts)
    remap = np.full(width, -1, dtype=np.int64)
    remap[occupied] = np.arange(occupied.size)
    group_of = remap[key]
    g_seg, g_rank, g_count = occupied // (dense + 1), occupied % (dense + 1), counts[occupied]
    g_sums = [x[occupied] for x in sums]

    high = np.flatnonzero(~low)
    if high.size:
        hkey = seg[high] * (int(r.max()) + 1) + r[high]
        uniq, first, inverse, hcounts = np.unique(hkey, return_index=True, return_inverse=True, return_counts=True)
        group_of[high] = occupied.size + inverse
        g_seg = np.concatenate([g_seg, seg[high[first]]])
        g_rank = np.concatenate([g_rank, r[high[first]]])
        g_count = np.concatenate([g_count, hcounts])
        g_sums = [np.concatenate([g, np.bincount(inverse, weights=w[high], minlength=uniq.size)])
                  for g, w in zip(g_sums, weights)]
        order = np.lexsort((g_rank, g_seg))
        rank_of = np.empty(order.size, dtype=np.int64)
        rank_of[order] = np.arange(order.size)
        g_seg, g_rank, g_count = g_seg[order], g_rank[order], g_count[order]
        g_sums = [g[order] for g in g_sums]
        group_of = rank_of[group_of]
    return g_seg, g_rank, g_count, g_sums, group_of


def batch_aggregates(surprisal: np.ndarray, rank: np.ndarray, entropy: np.ndarray | None,
                     lengths: np.ndarray) -> RankAggregates:
    """Aggregates of N trajectories from their tokens, concatenated.

    surprisal: [T] (taken as float32), rank: [T] unclipped, entropy: [T] or None, lengths: [N] tokens each.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    s32 = np.asarray(surprisal).astype(np.float32, copy=False)
    s = s32.astype(np.float64)
    r = np.asarray(rank, dtype=np.int64)
    if s.size != r.size or s.size != int(lengths.sum()) or (entropy is not None and len(entropy) != s.size):
        raise ValueError("surprisal, rank and entropy must have sum(lengths) tokens each")
    if s.size and (r.min() < 0 or r.max() > np.iinfo(np.uint32).max):
        raise ValueError("ranks must lie in 0 .. 2**32 - 1")
    offsets, seg = _segments(lengths)
    n_traj = lengths.size
    valid = (s != 0) & ~np.isnan(s)
    with np.errstate(divide="ignore"):
        inv = np.where(valid, 1.0 / np.where(valid, s, 1.0), 0.0)
    top = top_mask(s, offsets, seg)
    g_seg, g_rank, g_count, (g_inv, g_inv_top), group_of = _rank_groups(seg, r, n_traj, (inv, inv * top))
    is_bin = g_count >= BIN_MIN_COUNT

    sidx = np.flatnonzero(~is_bin[group_of])
    sorder = sidx[np.lexsort((r[sidx], ~top[sidx], seg[sidx]))]  # per trajectory: top first, then by rank
    e_sum = (_segment_sums(np.asarray(entropy, dtype=np.float64), offsets) if entropy is not None
             else np.full(n_traj, np.nan))
    return RankAggregates(
        n=lengths.copy(),
        n_valid=_segment_counts(valid, offsets), n_valid_top=_segment_counts(valid & top, offsets),
        sum_s=_segment_sums(s, offsets), sum_e=e_sum,
        sum_rank=_segment_counts(r, offsets).astype(np.float64),
        bin_offsets=_segments(np.bincount(g_seg[is_bin], minlength=n_traj))[0],
        bin_rank=g_rank[is_bin].astype(np.uint32), bin_count=g_count[is_bin].astype(np.uint32),
        bin_inv_s=g_inv[is_bin], bin_inv_s_top=g_inv_top[is_bin],
        single_offsets=_segments(np.bincount(seg[sidx], minlength=n_traj))[0],
        single_n_top=np.bincount(seg[sidx[top[sidx]]], minlength=n_traj).astype(np.int64),
        single_rank=r[sorder].astype(np.uint32), single_s=s32[sorder].copy(),
    )


def trajectory_aggregates(surprisal: np.ndarray, rank: np.ndarray,
                          entropy: np.ndarray | None = None) -> RankAggregates:
    """Aggregates of one trajectory (N = 1) from [T] surprisal, [T] unclipped rank and [T] entropy."""
    return batch_aggregates(surprisal, rank, entropy, np.array([len(surprisal)]))


def concat_aggregates(parts: list[RankAggregates]) -> RankAggregates:
    """The aggregates of several groups of trajectories, one after the other."""
    if not parts:
        return batch_aggregates(np.zeros(0, np.float32), np.zeros(0, np.int64), None, np.zeros(0, np.int64))
    return RankAggregates(**{f.name: (concat_offsets if f.name.endswith("_offsets") else np.concatenate)(
        [getattr(p, f.name) for p in parts]) for f in fields(RankAggregates)})


def take(aggs: RankAggregates, index: np.ndarray) -> RankAggregates:
    """The aggregates of trajectories `index` ([K] positions), in that order."""
    index = np.asarray(index, dtype=np.int64)
    out = {}
    for prefix, cols in (("bin", ("rank", "count", "inv_s", "inv_s_top")), ("single", ("rank", "s"))):
        new_offsets, elems = gather(getattr(aggs, f"{prefix}_offsets"), index)
        out[f"{prefix}_offsets"] = new_offsets
        for c in cols:
            out[f"{prefix}_{c}"] = getattr(aggs, f"{prefix}_{c}")[elems]
    for name in ("n", "n_valid", "n_valid_top", "sum_s", "sum_e", "sum_rank", "single_n_top"):
        out[name] = getattr(aggs, name)[index]
    return RankAggregates(**out)


def _chunks(aggs: RankAggregates, limit: int = CHUNK_ELEMENTS):
    """Trajectory ranges [a, b) holding about `limit` bins + singles each."""
    load = aggs.bin_offsets + aggs.single_offsets
    a, n = 0, len(aggs)
    while a < n:
        b = int(np.searchsorted(load, load[a] + limit, side="right")) - 1
        b = min(max(b, a + 1), n)
        yield a, b
        a = b


def _segment_totals(values: np.ndarray, starts: np.ndarray, empty: np.ndarray) -> np.ndarray:
    """[S] sums of `values` over the ranges [starts[i], starts[i + 1]) (the last to the end); 0 where `empty`.

    `values` must end with one spare 0 element, so that every start (also of an empty range at the end) indexes
    into it (np.add.reduceat gives values[start] for an empty range, hence `empty`).
    """
    out = np.add.reduceat(values, starts) if starts.size else np.zeros(0)
    out[empty] = 0.0
    return out


def _clipped_sums(aggs: RankAggregates, a: int, b: int, r_max: float) -> tuple[np.ndarray, ...]:
    """For trajectories [a, b): sum of clipped ranks, sum of c/s over valid tokens and over valid top tokens."""
    b0, b1 = int(aggs.bin_offsets[a]), int(aggs.bin_offsets[b])
    starts = aggs.bin_offsets[a:b] - b0
    empty = aggs.bin_offsets[a + 1:b + 1] == aggs.bin_offsets[a:b]
    bc = np.empty(b1 - b0 + 1)
    np.minimum(aggs.bin_rank[b0:b1], r_max, out=bc[:-1], dtype=np.float64)
    bc[-1] = 0.0
    weighted = np.empty_like(bc)
    weighted[-1] = 0.0
    sums = []
    for w in (aggs.bin_count[b0:b1], aggs.bin_inv_s[b0:b1], aggs.bin_inv_s_top[b0:b1]):
        np.multiply(bc[:-1], w, out=weighted[:-1])
        sums.append(_segment_totals(weighted, starts, empty))
    clip_sum, ratio_sum, ratio_top = sums

    s0, s1 = int(aggs.single_offsets[a]), int(aggs.single_offsets[b])
    starts = aggs.single_offsets[a:b] - s0
    ends = aggs.single_offsets[a + 1:b + 1] - s0
    splits = starts + aggs.single_n_top[a:b]
    sc = np.empty(s1 - s0 + 1)
    np.minimum(aggs.single_rank[s0:s1], r_max, out=sc[:-1], dtype=np.float64)
    sc[-1] = 0.0
    clip_sum += _segment_totals(sc, starts, ends == starts)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(sc[:-1], aggs.single_s[s0:s1], out=sc[:-1])  # sc is now c/s; its spare 0 stays
    invalid = aggs.invalid_singles
    sc[invalid[np.searchsorted(invalid, s0):np.searchsorted(invalid, s1)] - s0] = 0.0  # s = 0 or NaN: not valid
    bounds = np.empty(2 * (b - a), dtype=np.int64)
    bounds[0::2], bounds[1::2] = starts, splits
    empty = np.empty(bounds.size, dtype=bool)
    empty[0::2], empty[1::2] = splits == starts, ends == splits
    halves = _segment_totals(sc, bounds, empty)
    ratio_sum += halves[0::2] + halves[1::2]
    ratio_top += halves[0::2]
    return clip_sum, ratio_sum, ratio_top


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den where den > 0, NaN elsewhere (`metrics.ratio`, vectorised)."""
    out = np.full(num.shape, np.nan)
    ok = den > 0
    np.divide(num, den, out=out, where=ok)
    return out


def rmax_columns(aggs: RankAggregates, r_max: int, parts: PartAggregates | None = None) -> dict[str, np.ndarray]:
    """[N] columns of every r_max-dependent metric (`RMAX_METRICS`) of N trajectories at once, and with `parts`
    (their part aggregates) the RSR of each part (`part_aggregates.part_columns`)."""
    if r_max is None or r_max < 1:
        raise ValueError("r_max must be at least 1")
    n = len(aggs)
    clip_sum, ratio_sum, ratio_top = np.zeros(n), np.zeros(n), np.zeros(n)
    for a, b in _chunks(aggs):
        clip_sum[a:b], ratio_sum[a:b], ratio_top[a:b] = _clipped_sums(aggs, a, b, float(r_max))
    out = {
        "rsr": _ratio(clip_sum, aggs.sum_s),
        "avg_rank_clipped": _ratio(clip_sum, aggs.n.astype(np.float64)),
        "avg_rsr_token": _ratio(ratio_sum, aggs.n_valid.astype(np.float64)),
        "filtered_rsr_token": _ratio(ratio_top, aggs.n_valid_top.astype(np.float64)),
        "rank_entropy_ratio": _ratio(clip_sum, np.where(aggs.n > 0, aggs.sum_e, np.nan)),
    }
    if parts is not None:
        out.update(part_columns(parts, aggs.n, aggs.sum_s, clip_sum, r_max))
    return out


def rmax_columns_of_parts(parts: Sequence[RankAggregates], r_max: int,
                          part_aggs: Sequence[PartAggregates] | None = None) -> dict[str, np.ndarray]:
    """`rmax_columns` of parts that follow each other (e.g. a store's files, memory-mapped), without first
    copying them into one set of arrays; with `part_aggs` (aligned with them) the per-part RSR columns too."""
    columns = [rmax_columns(part, r_max, None if part_aggs is None else part_aggs[k])
               for k, part in enumerate(parts)]
    names = list(RMAX_METRICS) + (list(PART_COLUMNS.values()) if part_aggs is not None else [])
    return {name: np.concatenate([c[name] for c in columns]) if columns else np.zeros(0) for name in names}


def metric_columns(aggs: RankAggregates, r_max: int, parts: PartAggregates | None = None) -> dict[str, np.ndarray]:
    """[N] columns of every metric of `metrics.TRAJECTORY_METRICS`, in that order (and with `parts` the per-part
    RSR columns after them)."""
    n = aggs.n.astype(np.float64)
    out = {"n_tokens": aggs.n.copy(), "avg_surprisal": _ratio(aggs.sum_s, n), "avg_rank": _ratio(aggs.sum_rank, n),
           "avg_entropy": _ratio(aggs.sum_e, n), **rmax_columns(aggs, r_max, parts)}
    return {name: out[name] for name in [*TRAJECTORY_METRICS, *(PART_COLUMNS.values() if parts is not None else ())]}


def to_arrow(aggs: RankAggregates) -> pa.Table:
    """The aggregates as an Arrow table of `ARROW_SCHEMA` (one row per trajectory, list columns)."""
    bins = pa.StructArray.from_arrays(
        [pa.array(aggs.bin_rank), pa.array(aggs.bin_count), pa.array(aggs.bin_inv_s), pa.array(aggs.bin_inv_s_top)],
        fields=list(BIN_TYPE))
    singles = pa.StructArray.from_arrays([pa.array(aggs.single_rank), pa.array(aggs.single_s)],
                                         fields=list(SINGLE_TYPE))
    columns = [aggs.n, aggs.n_valid, aggs.n_valid_top, aggs.sum_s, aggs.sum_e, aggs.sum_rank,
               pa.ListArray.from_arrays(pa.array(aggs.bin_offsets.astype(np.int32)), bins),
               pa.ListArray.from_arrays(pa.array(aggs.single_offsets.astype(np.int32)), singles),
               aggs.single_n_top]
    return pa.Table.from_arrays([pa.array(c) if isinstance(c, np.ndarray) else c for c in columns],
                                schema=ARROW_SCHEMA)


def _list_parts(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, pa.StructArray]:
    """(offsets [N + 1] int64, struct values) of a list column, chunks combined, slices honoured."""
    if isinstance(column, pa.ChunkedArray):  # one chunk: as it is (combining would copy it)
        arr = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    else:
        arr = column
    offsets = np.asarray(arr.offsets, dtype=np.int64)
    values = arr.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    return offsets - offsets[0], values


def _numpy(arr: pa.Array, dtype) -> np.ndarray:
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=dtype)


def from_arrow(table: pa.Table) -> RankAggregates:
    """Inverse of `to_arrow`: numpy arrays (zero-copy where Arrow allows) from a table with `ARROW_COLUMNS`."""
    if table.num_rows == 0:
        return concat_aggregates([])
    bin_offsets, bins = _list_parts(table.column("agg_bins"))
    single_offsets, singles = _list_parts(table.column("agg_singles"))
    b_rank, b_count, b_inv, b_inv_top = bins.flatten()
    s_rank, s_s = singles.flatten()
    col = lambda name, dtype: _numpy(table.column(name).combine_chunks(), dtype)  # noqa: E731
    return RankAggregates(
        n=col("agg_n", np.int64), n_valid=col("agg_n_valid", np.int64), n_valid_top=col("agg_n_valid_top", np.int64),
        sum_s=col("agg_sum_s", np.float64), sum_e=col("agg_sum_e", np.float64),
        sum_rank=col("agg_sum_rank", np.float64),
        bin_offsets=bin_offsets, bin_rank=_numpy(b_rank, np.uint32), bin_count=_numpy(b_count, np.uint32),
        bin_inv_s=_numpy(b_inv, np.float64), bin_inv_s_top=_numpy(b_inv_top, np.float64),
        single_offsets=single_offsets, single_n_top=col("agg_single_n_top", np.int64),
        single_rank=_numpy(s_rank, np.uint32), single_s=_numpy(s_s, np.float32),
    )


def table_at_r_max(table: pd.DataFrame, parts: Sequence[RankAggregates], r_max: int,
                   part_aggs: Sequence[PartAggregates] | None = None) -> pd.DataFrame:
    """The trajectory table (rows aligned with the aggregates `parts`) with its r_max-dependent columns and `r_max`
    recomputed at another r_max: a new frame sharing the other columns (the table itself is not changed)."""
    columns = rmax_columns_of_parts(parts, r_max, part_aggs)
    frame = table.assign(**{k: v for k, v in columns.items() if k in table.columns})
    if "r_max" in frame:
        frame["r_max"] = np.int64(r_max)
    return frame
